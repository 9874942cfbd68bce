/// The training flags, with the reference's names and defaults (`amoeba_net.py`). Defaults that the
/// reference leaves to its hparams are the hparams' values; `lr_warmup_epochs` unset means the
/// DAWNBench rule (warm-up over 1% of the training steps), so the DAWNBench command line gives the
/// DAWNBench schedule unchanged.
public struct TrainingConfig: Hashable, Sendable {
  public var trainBatchSize = 256
  public var evalBatchSize = 256
  public var lr = 0.64
  public var lrDecayValue = 0.9
  public var lrNumEpochsPerDecay = 1
  public var lrDecayMethod = "exponential"
  public var lrWarmupEpochs: Double? = nil
  public var numEpochs = 48.0
  public var numTrainImages = 1_281_167
  public var numEvalImages = 50_000
  public var optimizer = "rmsprop"
  public var movingAverageDecay = 0.9999
  public var labelSmoothing = 0.1
  public var auxLossWeight = 0.4
  public var iterationsPerLoop = 500
  public var numEpochsPerEval = 1.0
  public var mode = "train_and_eval"
  /// Newest checkpoints kept in --model_dir.
  public var keepCheckpointMax = 5
  /// `--micro_batch_size`: how many of a worker's examples go through forward and backward at
  /// once; the gradients of its passes are averaged before the update, so the global batch and the
  /// learning-rate schedule stay what they are.
  public var microBatchSize: MicroBatchSize = .whole

  public enum MicroBatchSize: Hashable, Sendable, CustomStringConvertible {
    /// The worker's whole batch in one pass (the reference).
    case whole
    case fixed(Int)
    /// The largest size dividing the worker's batch whose step fits in the memory available.
    case auto
    public var description: String {
      switch self {
      case .whole: "whole"
      case let .fixed(n): String(n)
      case .auto: "auto"
      }
    }
  }

  public init() {}

  /// floor(N / B): the epoch length the learning-rate schedule counts in.
  public var stepsPerEpochForLearningRate: Int { numTrainImages / trainBatchSize }
  /// ceil(N / B): the epoch length the training length counts in.
  public var stepsPerEpochForTraining: Int { (numTrainImages + trainBatchSize - 1) / trainBatchSize }
  /// int(num_epochs · ceil(N / B)).
  public var totalSteps: Int { Int(numEpochs * Double(stepsPerEpochForTraining)) }
  /// Steps between evaluations in train_and_eval mode (--num_epochs_per_eval); nil in the others.
  public var evaluationInterval: Int? {
    mode == "train_and_eval" ? max(1, Int(numEpochsPerEval * Double(stepsPerEpochForTraining))) : nil
  }

  public func validate() throws(TrainError) {
    guard trainBatchSize >= 1, evalBatchSize >= 1 else { throw .invalidConfig("--train_batch_size and --eval_batch_size must be positive") }
    guard lr > 0, lr.isFinite else { throw .invalidConfig("--lr must be positive, got \(lr)") }
    guard numEpochs > 0 else { throw .invalidConfig("--num_epochs must be positive, got \(numEpochs)") }
    guard numTrainImages >= trainBatchSize else {
      throw .invalidConfig("--num_train_images=\(numTrainImages) is smaller than --train_batch_size=\(trainBatchSize)")
    }
    guard ["exponential", "cosine", "constant"].contains(lrDecayMethod) else {
      throw .invalidConfig("--lr_decay_method must be exponential, cosine or constant (the reference's stepwise needs a stepwise_epoch it never sets), got '\(lrDecayMethod)'")
    }
    guard ["rmsprop", "momentum", "sgd"].contains(optimizer) else {
      throw .invalidConfig("--optimizer must be rmsprop, momentum or sgd, got '\(optimizer)'")
    }
    guard ["train", "eval", "train_and_eval"].contains(mode) else {
      throw .invalidConfig("--mode must be train, eval or train_and_eval, got '\(mode)'")
    }
    guard lrNumEpochsPerDecay >= 1 else { throw .invalidConfig("--lr_num_epochs_per_decay must be at least 1") }
    guard movingAverageDecay >= 0, movingAverageDecay <= 1 else { throw .invalidConfig("--moving_average_decay must be in [0, 1]") }
    guard keepCheckpointMax >= 1 else { throw .invalidConfig("--keep_checkpoint_max must be at least 1, got \(keepCheckpointMax)") }
    if case let .fixed(n) = microBatchSize, n < 1 { throw .invalidConfig("--micro_batch_size must be a positive number or auto, got \(n)") }
  }
}

/// A training configuration or state that cannot work; each case says what to change.
public enum TrainError: Error, CustomStringConvertible, Equatable {
  case invalidConfig(String)
  case checkpoint(String)
  case diverged(String)

  public var description: String {
    switch self {
    case let .invalidConfig(m), let .checkpoint(m), let .diverged(m): m
    }
  }
}

extension TrainingConfig {
  /// The flags as `--name` → value text, for checkpoint sidecars and logs.
  public var flagValues: [String: String] {
    var values = ["train_batch_size": String(trainBatchSize), "eval_batch_size": String(evalBatchSize), "lr": String(lr),
                  "lr_decay_value": String(lrDecayValue), "lr_num_epochs_per_decay": String(lrNumEpochsPerDecay),
                  "lr_decay_method": lrDecayMethod, "num_epochs": String(numEpochs), "num_train_images": String(numTrainImages),
                  "num_eval_images": String(numEvalImages), "optimizer": optimizer, "moving_average_decay": String(movingAverageDecay),
                  "iterations_per_loop": String(iterationsPerLoop), "mode": mode, "num_epochs_per_eval": String(numEpochsPerEval),
                  "keep_checkpoint_max": String(keepCheckpointMax)]
    if let warmup = lrWarmupEpochs { values["lr_warmup_epochs"] = String(warmup) }
    if microBatchSize != .whole { values["micro_batch_size"] = microBatchSize.description }
    return values
  }
}
