import Graph
import Model
import Tensor

/// One worker's training state and step: the AmoebaNet training graph with its loss and gradients,
/// the optimizer, the batch-norm moving statistics and the exponential moving averages.
///
/// A step is split in two so the distributed worker can average gradients in between:
/// `computeGradients` runs forward and backward on one batch, `applyGradients` runs the optimizer,
/// folds the batch moments into the moving statistics and updates the averages.
public final class Trainer {
  public let network: NetworkConfig
  public let training: TrainingConfig
  public let schedule: LearningRateSchedule
  public let batchSize: Int
  public let optimizer: OptimizerKind
  public let model: AmoebaNet
  /// Trainable parameters, in model order; `gradients[i]` belongs to `trainable[i]`.
  public let trainable: [ModelParameter]
  public let executor: Executor
  /// Everything kept outside the graph: slots, moving statistics, averages.
  public let state = TensorStore()
  public private(set) var globalStep = 0
  /// Mixed into every dropout and drop-path mask.
  public let seed: UInt64

  let images: Value
  let labels: Value
  let dropPathKeep: Value?
  public let totalLoss: Value
  public let crossEntropy: Value
  public let gradients: [Value]
  let moments: [(layer: BatchNormLayer, mean: Value, variance: Value)]
  private var slots: [[UnsafeMutablePointer<Float>]] = []

  public init(network: NetworkConfig, training: TrainingConfig, batchSize: Int, context: KernelContext, seed: UInt64 = 0) throws {
    try training.validate()
    self.network = network
    self.training = training
    self.schedule = LearningRateSchedule(training)
    self.batchSize = batchSize
    self.seed = seed
    optimizer = OptimizerKind(rawValue: training.optimizer)!
    let model = try AmoebaNet(config: network, batchSize: batchSize, mode: .training)
    self.model = model

    // Loss: smoothed cross-entropy of the logits, 0.4 × that of the aux logits, weight decay.
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

    // BN → ReLU fusion, then autodiff on the fused graph.
    let (fused, map) = try g.fusingBatchNormRelu()
    g = fused
    let trainable = model.parameters.filter(\.isTrainable)
    self.trainable = trainable
    let parameterValues = trainable.map { map[$0.value!]! }
    gradients = try g.gradients(of: map[total]!, withRespectTo: parameterValues)
    moments = model.batchNorms.map { ($0, map[$0.batchMean!]!, map[$0.batchVariance!]!) }
    images = map[model.images]!
    self.labels = map[labels]!
    dropPathKeep = model.dropPathKeepProbability.map { map[$0]! }
    totalLoss = map[total]!
    self.crossEntropy = map[crossEntropy]!
    executor = try Executor(graph: g, outputs: [totalLoss, self.crossEntropy] + gradients + moments.flatMap { [$0.mean, $0.variance] },
                            context: context)
    parameterValuesInGraph = parameterValues

    // Initial values, optimizer slots, moving statistics and their averages.
    for (parameter, value) in zip(trainable, parameterValues) {
      executor.write(value, parameter.initialValues(seed: seed))
    }
    for (parameter, value) in zip(trainable, parameterValues) {
      let names = optimizer == .rmsprop ? ["RMSProp", "RMSProp_1"] : optimizer == .momentum ? ["Momentum"] : []
      slots.append(zip(names, optimizer.slotInitialValues).map { state.add(parameter.name + "/" + $0, parameter.shape, filledWith: $1) })
      let shadow = state.add(parameter.name + "/ExponentialMovingAverage", parameter.shape, filledWith: 0)
      shadow.update(from: executor.pointer(value), count: parameter.shape.elementCount)
    }
    for (layer, _, _) in moments {
      state.add(layer.name + "/moving_mean", [layer.channels], filledWith: 0)
      state.add(layer.name + "/moving_variance", [layer.channels], filledWith: 1)
      state.add(layer.name + "/moving_mean/ExponentialMovingAverage", [layer.channels], filledWith: 0)
      state.add(layer.name + "/moving_variance/ExponentialMovingAverage", [layer.channels], filledWith: 1)
    }
  }

  let parameterValuesInGraph: [Value]

  /// Storage of trainable parameter i (in the graph's leaf memory).
  public func parameterPointer(_ i: Int) -> UnsafeMutablePointer<Float> { executor.pointer(parameterValuesInGraph[i]) }
  /// Storage of the gradient of trainable parameter i after `computeGradients`.
  public func gradientPointer(_ i: Int) -> UnsafeMutablePointer<Float> { executor.pointer(gradients[i]) }

  /// The drop-path keep probability at a step: 1 − min(1, t/T)·(1 − keep), T = int(N/B · epochs).
  public func dropPathKeepProbability(at step: Int) -> Float {
    let burnIn = Double(Int(Double(training.numTrainImages) / Double(training.trainBatchSize) * training.numEpochs))
    let ratio = min(1, Double(step) / max(burnIn, 1))
    return Float(1 - ratio * (1 - network.dropConnectKeepProb))
  }

  /// Forward and backward on one batch: `images` is `[batch, S, S, 3]`, `labels` class indices.
  /// Returns the total loss and the main cross-entropy.
  @discardableResult
  public func computeGradients(images pixels: UnsafePointer<Float>, labels classes: UnsafePointer<Float>) throws -> (total: Float, crossEntropy: Float) {
    executor.pointer(images).update(from: pixels, count: executor.graph.shape(images).elementCount)
    executor.pointer(labels).update(from: classes, count: batchSize)
    if let keep = dropPathKeep { executor.pointer(keep)[0] = dropPathKeepProbability(at: globalStep) }
    executor.randomStream = seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(globalStep)
    try executor.run()
    let total = executor.pointer(totalLoss)[0], ce = executor.pointer(crossEntropy)[0]
    guard total.isFinite else {
      throw TrainError.diverged("step \(globalStep): the loss is \(total); lower --lr or check the input data")
    }
    return (total, ce)
  }

  /// The optimizer step with the gradients now in the gradient buffers, then the moving statistics
  /// and the moving averages. Returns the learning rate used.
  @discardableResult
  public func applyGradients() -> Double {
    let rate = schedule.learningRate(at: globalStep)
    for i in trainable.indices {
      optimizer.apply(weights: parameterPointer(i), gradients: gradientPointer(i), count: trainable[i].shape.elementCount,
                      slots: slots[i], learningRate: Float(rate))
    }
    let bnDecay = Float(network.batchNormDecay)
    for (layer, mean, variance) in moments {
      let bessel = Float(layer.rows) / Float(max(layer.rows - 1, 1))
      MovingAverage.update(shadow: state[layer.name + "/moving_mean"]!.pointer, toward: executor.pointer(mean),
                           count: layer.channels, decay: bnDecay)
      MovingAverage.update(shadow: state[layer.name + "/moving_variance"]!.pointer, toward: executor.pointer(variance),
                           count: layer.channels, decay: bnDecay, scale: bessel)
    }
    globalStep += 1
    let decay = MovingAverage.effectiveDecay(training.movingAverageDecay, step: globalStep)
    for i in trainable.indices {
      MovingAverage.update(shadow: state[trainable[i].name + "/ExponentialMovingAverage"]!.pointer, toward: parameterPointer(i),
                           count: trainable[i].shape.elementCount, decay: decay)
    }
    for (layer, _, _) in moments {
      for statistic in ["moving_mean", "moving_variance"] {
        MovingAverage.update(shadow: state[layer.name + "/\(statistic)/ExponentialMovingAverage"]!.pointer,
                             toward: state[layer.name + "/\(statistic)"]!.pointer, count: layer.channels, decay: decay)
      }
    }
    return rate
  }

  /// Sets the step counter (restore from a checkpoint).
  public func setGlobalStep(_ step: Int) { globalStep = step }
}
