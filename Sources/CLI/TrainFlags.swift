import Train

extension Flags {
  /// The training flags, with the reference's names (`--train_batch_size`, `--lr`, …).
  public mutating func trainingConfig() throws -> TrainingConfig {
    var c = TrainingConfig()
    c.trainBatchSize = try int("train_batch_size", default: c.trainBatchSize)
    c.evalBatchSize = try int("eval_batch_size", default: c.evalBatchSize)
    c.lr = try double("lr", default: c.lr)
    c.lrDecayValue = try double("lr_decay_value", default: c.lrDecayValue)
    c.lrNumEpochsPerDecay = try int("lr_num_epochs_per_decay", default: c.lrNumEpochsPerDecay)
    c.lrDecayMethod = string("lr_decay_method", default: c.lrDecayMethod)
    if has("lr_warmup_epochs") { c.lrWarmupEpochs = try double("lr_warmup_epochs", default: 0) }
    c.numEpochs = try double("num_epochs", default: c.numEpochs)
    c.numTrainImages = try int("num_train_images", default: c.numTrainImages)
    c.numEvalImages = try int("num_eval_images", default: c.numEvalImages)
    c.optimizer = string("optimizer", default: c.optimizer)
    c.movingAverageDecay = try double("moving_average_decay", default: c.movingAverageDecay)
    c.iterationsPerLoop = try int("iterations_per_loop", default: c.iterationsPerLoop)
    c.numEpochsPerEval = try double("num_epochs_per_eval", default: c.numEpochsPerEval)
    c.mode = string("mode", default: c.mode)
    c.keepCheckpointMax = try int("keep_checkpoint_max", default: c.keepCheckpointMax)
    switch string("micro_batch_size", default: "whole") {
    case "whole": break
    case "auto": c.microBatchSize = .auto
    case let text:
      guard let n = Int(text), n >= 1 else { throw UsageError("--micro_batch_size must be a positive number or auto, got '\(text)'") }
      c.microBatchSize = .fixed(n)
    }
    return c
  }
}

