import Graph
import Model

/// The training step of one worker as a graph, before any backend sees it: AmoebaNet on a batch,
/// the reference's loss (smoothed cross-entropy, 0.4 × the aux head's, weight decay) and the
/// gradient of every trainable parameter. The CPU backend asks for the BN → ReLU pairs fused
/// before differentiation; an XLA backend takes the plain graph and lets its compiler fuse.
public struct TrainingGraph: Sendable {
  public let graph: Graph
  public let model: AmoebaNet
  public let images: Value
  public let labels: Value
  public let dropPathKeep: Value?
  public let totalLoss: Value
  public let crossEntropy: Value
  /// Trainable parameters in model order, their values in `graph`, and their gradients.
  public let trainable: [ModelParameter]
  public let parameters: [Value]
  public let gradients: [Value]
  /// Each batch norm's batch mean and variance, which the moving statistics follow.
  public let moments: [(layer: BatchNormLayer, mean: Value, variance: Value)]

  public init(network: NetworkConfig, training: TrainingConfig, batchSize: Int, fuseBatchNormRelu: Bool) throws {
    let model = try AmoebaNet(config: network, batchSize: batchSize, mode: .training)
    self.model = model
    var g = model.graph
    let labels = try g.input("labels", [batchSize])
    let smoothing = Float(training.labelSmoothing)
    let crossEntropy = try g.softmaxCrossEntropy(logits: model.logits, labels: labels, labelSmoothing: smoothing, name: "softmax_loss")
    var terms = [crossEntropy]
    if let aux = model.auxLogits {
      let auxLoss = try g.softmaxCrossEntropy(logits: aux, labels: labels, labelSmoothing: smoothing, name: "aux_loss")
      terms.append(try g.scale(auxLoss, by: Float(training.auxLossWeight), name: "aux_loss_weighted"))
    }
    let decayed = model.parameters.filter(\.isWeightDecayed)
    if network.weightDecay > 0, !decayed.isEmpty {
      let l2 = try g.addN(try decayed.map { try g.l2Loss($0.value!, name: $0.name + "/l2_loss") }, name: "l2_sum")
      terms.append(try g.scale(l2, by: Float(network.weightDecay), name: "regularization_loss"))
    }
    let total = try g.addN(terms, name: "total_loss")

    // Values of the model's graph as they are after the optional fusion.
    var map: (Value) -> Value = { $0 }
    if fuseBatchNormRelu {
      let (fused, fusedMap) = try g.fusingBatchNormRelu()
      g = fused
      map = { fusedMap[$0]! }
    }
    trainable = model.parameters.filter(\.isTrainable)
    parameters = trainable.map { map($0.value!) }
    gradients = try g.gradients(of: map(total), withRespectTo: parameters)
    moments = model.batchNorms.map { ($0, map($0.batchMean!), map($0.batchVariance!)) }
    images = map(model.images)
    self.labels = map(labels)
    dropPathKeep = model.dropPathKeepProbability.map(map)
    totalLoss = map(total)
    self.crossEntropy = map(crossEntropy)
    graph = g
  }
}
