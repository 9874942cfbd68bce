import Graph
import Model
import Tensor

/// The whole training step of one worker as one graph, before any backend sees it: AmoebaNet on a
/// batch, the reference's loss (smoothed cross-entropy, 0.4 × the aux head's, weight decay), the
/// gradient of every trainable parameter, the data-parallel boundary (`allReduceMean`), then the
/// learning rate, the optimizer update, the batch-norm moving statistics, the step counter and the
/// moving averages — with the training state as parameters and `stateUpdates` saying what replaces
/// each. The CPU backend asks for the BN → ReLU pairs fused before differentiation; an XLA backend
/// takes the plain graph and lets its compiler fuse.
public struct TrainingGraph: Sendable {
  /// A tensor of the training state other than the trainable parameters, in checkpoint order
  /// (TensorFlow's names: `<var>/RMSProp`, `<var>/ExponentialMovingAverage`, `<bn>/moving_mean`).
  public struct StateTensor: Sendable {
    public let name: String
    public let shape: Shape
    public let value: Value
    /// Its value before the first step: a constant, or (moving averages) the parameter it follows.
    public let initial: Initial
    public enum Initial: Sendable { case filled(Float), copyOf(Int) }
  }

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
  /// The gradients averaged over the workers (the boundary's outputs), which the update reads.
  public let averagedGradients: [Value]
  /// The step counter (a scalar parameter, a whole number) and the learning rate at it.
  public let globalStep: Value
  public let learningRate: Value
  /// Slots, moving statistics and moving averages.
  public let state: [StateTensor]
  /// What each state parameter — trainable ones, `state`, the step — becomes after the step.
  public let stateUpdates: [(state: Value, next: Value)]

  public init(network: NetworkConfig, training: TrainingConfig, batchSize: Int, fuseBatchNormRelu: Bool) throws {
    // T = int(N/B · epochs): the drop-path ramp's length, as the reference computes it.
    let rampSteps = Int(Double(training.numTrainImages) / Double(training.trainBatchSize) * training.numEpochs)
    let model = try AmoebaNet(config: network, batchSize: batchSize, mode: .training, dropPathRampSteps: max(rampSteps, 1))
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

    // The step after the gradients. Reads of a parameter all come before the op that replaces it.
    let step = try model.globalStep.map(map) ?? g.parameter("global_step", .scalar)
    globalStep = step
    let boundary = try g.add(.allReduceMean, gradients, name: "all_reduce_mean")
    averagedGradients = gradients.indices.map { Value(node: boundary.node, output: $0) }
    learningRate = try g.add(.stepSchedule(LearningRateSchedule(training).stepSchedule), [step], name: "learning_rate")
    var state: [StateTensor] = []
    var updates: [(state: Value, next: Value)] = []
    let optimizer = OptimizerKind(rawValue: training.optimizer)!
    var newWeights: [Value] = []
    for (i, (parameter, w)) in zip(trainable, parameters).enumerated() {
      let slots = try zip(optimizer.slotNames, optimizer.slotInitialValues).map { slotName, fill in
        let slot = try g.parameter(parameter.name + "/" + slotName, parameter.shape)
        state.append(StateTensor(name: parameter.name + "/" + slotName, shape: parameter.shape, value: slot, initial: .filled(fill)))
        return slot
      }
      let update = try g.add(optimizer.op, [w] + slots + [averagedGradients[i], learningRate], name: parameter.name + "/" + optimizer.op.name)
      newWeights.append(update)
      updates.append((w, update))
      for (k, slot) in slots.enumerated() { updates.append((slot, Value(node: update.node, output: k + 1))) }
    }
    let bnDecay = try g.constant(Float(network.batchNormDecay), .scalar)
    var newStatistics: [(name: String, shape: Shape, value: Value)] = []
    var statisticState: [StateTensor] = []
    for (layer, mean, variance) in moments {
      let bessel = Float(layer.rows) / Float(max(layer.rows - 1, 1))
      for (statistic, batchValue, scale, fill) in [("moving_mean", mean, Float(1), Float(0)), ("moving_variance", variance, bessel, 1)] {
        let name = layer.name + "/" + statistic
        let moving = try g.parameter(name, [layer.channels])
        let next = try g.add(.movingAverage(scale: scale), [moving, batchValue, bnDecay], name: name + "/update")
        statisticState.append(StateTensor(name: name, shape: [layer.channels], value: moving, initial: .filled(fill)))
        updates.append((moving, next))
        newStatistics.append((name, [layer.channels], next))
      }
    }
    let nextStep = try g.add(.add, [step, try g.constant(1, .scalar)], name: "global_step/increment")
    updates.append((step, nextStep))
    // tf.train.ExponentialMovingAverage(decay, num_updates = the incremented step).
    let averageDecay = try g.add(.stepSchedule(.movingAverageDecay(training.movingAverageDecay)), [nextStep], name: "ema_decay")
    // The checkpoint's order: each parameter's slots and average, then each layer's statistics and theirs.
    var ordered: [StateTensor] = []
    var slotIndex = 0
    for (i, parameter) in trainable.enumerated() {
      ordered += state[slotIndex..<slotIndex + optimizer.slotNames.count]
      slotIndex += optimizer.slotNames.count
      let name = parameter.name + "/ExponentialMovingAverage"
      let shadow = try g.parameter(name, parameter.shape)
      let next = try g.add(.movingAverage(scale: 1), [shadow, newWeights[i], averageDecay], name: name + "/update")
      ordered.append(StateTensor(name: name, shape: parameter.shape, value: shadow, initial: .copyOf(i)))
      updates.append((shadow, next))
    }
    for k in newStatistics.indices {
      ordered.append(statisticState[k])
      if k % 2 == 1 {
        // After a layer's mean and variance come their averages, as the trainer stored them.
        for j in [k - 1, k] {
          let name = newStatistics[j].name + "/ExponentialMovingAverage"
          let shadow = try g.parameter(name, newStatistics[j].shape)
          let next = try g.add(.movingAverage(scale: 1), [shadow, newStatistics[j].value, averageDecay], name: name + "/update")
          ordered.append(StateTensor(name: name, shape: newStatistics[j].shape, value: shadow,
                                     initial: .filled(j % 2 == 0 ? 0 : 1)))
          updates.append((shadow, next))
        }
      }
    }
    self.state = ordered
    stateUpdates = updates
    graph = g
  }
}
