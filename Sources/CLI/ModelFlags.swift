import Model

extension Flags {
  /// The model flags, with the reference's names (`--num_cells`, `--reduction_size`, …).
  public mutating func networkConfig() throws -> NetworkConfig {
    var c = NetworkConfig()
    do { c.genotype = try Genotype.resolve(string("cell_name", default: c.cellName)) } catch { throw UsageError("\(error)") }
    c.numCells = try int("num_cells", default: c.numCells)
    c.reductionSize = try int("reduction_size", default: c.reductionSize)
    c.stemReductionSize = try int("stem_reduction_size", default: c.stemReductionSize)
    c.imageSize = try int("image_size", default: c.imageSize)
    c.numLabelClasses = try int("num_label_classes", default: c.numLabelClasses)
    c.useAuxHead = try bool("use_aux_head", default: c.useAuxHead)
    c.auxScaling = try double("aux_scaling", default: c.auxScaling)
    c.denseDropoutKeepProb = try double("dense_dropout_keep_prob", default: c.denseDropoutKeepProb)
    c.dropConnectKeepProb = try double("drop_connect_keep_prob", default: c.dropConnectKeepProb)
    c.batchNormEpsilon = try double("batch_norm_epsilon", default: c.batchNormEpsilon)
    c.batchNormDecay = try double("batch_norm_decay", default: c.batchNormDecay)
    c.weightDecay = try double("weight_decay", default: c.weightDecay)
    let fcInit = string("fc_init", default: c.fcInit.rawValue)
    guard let initializer = NetworkConfig.FullyConnectedInit(rawValue: fcInit) else {
      throw UsageError("--fc_init must be fan_out (the reference's) or zeros, got '\(fcInit)'")
    }
    c.fcInit = initializer
    return c
  }
}
