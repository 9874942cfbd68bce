#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

  public func learningRate(at step: Int) -> Double {
    let lr = config.lr
    var rate: Double
    switch config.lrDecayMethod {
    case "cosine":
      rate = 0.5 * lr * (1 + cos(Double.pi * Double(step) / Double(max(config.totalSteps, 1))))
    case "constant":
      rate = lr
    default:
      rate = lr * pow(config.lrDecayValue, Double(step / max(decaySteps, 1)))
    }
    let warmup = warmupSteps
    if step < warmup { rate = lr * Double(step) / Double(warmup) }
    return max(rate, 1e-4 * lr)
  }
}
