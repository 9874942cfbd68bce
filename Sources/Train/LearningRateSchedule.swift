import Graph

/// The reference's learning rate (`_build_learning_rate_schedule`, `build_learning_rate`):
///
///     steps_per_epoch = floor(N / B)
///     warmup          = int(lr_warmup_epochs · steps_per_epoch), or int(0.01 · steps_per_epoch · num_epochs) when unset
///     base(step)      = lr · decay^floor(step / (steps_per_epoch · epochs_per_decay))     (exponential, staircase)
///     lr(step)        = lr · step / warmup  if step < warmup  else base(step)
///     lr(step)        = max(lr(step), 1e-4 · lr)
///
/// The decay counts the raw global step (not shifted by the warm-up); warm-up applies only to the
/// exponential method, as in the reference.
public struct LearningRateSchedule: Hashable, Sendable {
  public let config: TrainingConfig

  public init(_ config: TrainingConfig) { self.config = config }

  public var warmupSteps: Int {
    guard config.lrDecayMethod == "exponential" else { return 0 }
    let perEpoch = Double(config.stepsPerEpochForLearningRate)
    if let epochs = config.lrWarmupEpochs { return Int(epochs * perEpoch) }
    return Int(0.01 * perEpoch * config.numEpochs)
  }

  public var decaySteps: Int { config.stepsPerEpochForLearningRate * config.lrNumEpochsPerDecay }

  /// The schedule as the graph computes it.
  public var stepSchedule: StepSchedule {
    switch config.lrDecayMethod {
    case "cosine": .cosineDecay(base: config.lr, totalSteps: config.totalSteps, warmupSteps: warmupSteps)
    case "constant": .constant(base: config.lr, warmupSteps: warmupSteps)
    default: .exponentialDecay(base: config.lr, rate: config.lrDecayValue, decaySteps: decaySteps, warmupSteps: warmupSteps)
    }
  }

  public func learningRate(at step: Int) -> Double { stepSchedule.value(at: step) }
}
