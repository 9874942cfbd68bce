import Collective
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
    let step = try TrainingGraph(network: network, training: training, batchSize: batchSize, fuseBatchNormRelu: true)
    model = step.model
    trainable = step.trainable
    gradients = step.gradients
    moments = step.moments
    images = step.images
    labels = step.labels
    dropPathKeep = step.dropPathKeep
    totalLoss = step.totalLoss
    crossEntropy = step.crossEntropy
    let parameterValues = step.parameters
    executor = try Executor(graph: step.graph, outputs: [totalLoss, crossEntropy] + gradients + moments.flatMap { [$0.mean, $0.variance] },
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
    prepareBuckets()
    if let backend {
      // The whole backward pass comes back at once: every bucket is ready when the step is.
      try backend.run(executor)
      if let buckets { for g in gradientsFinalAt.values.flatMap({ $0 }) { handOver(g, to: buckets) } }
    } else {
      try executor.run()
    }
    try finishBuckets()
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

  // MARK: Data-parallel gradient averaging

  private var buckets: GradientBuckets?
  private var bucketOfGradient: [(bucket: Int, offset: Int)] = []
  private var gradientsFinalAt: [Int: [Int]] = [:]
  private var gradientsFinalAtStart: [Int] = []
  private var pendingPerBucket: [Int] = []
  private var bucketCounts: [Int] = []
  /// Where forward and backward run; nil: the Swift executor. With a backend, gradients reach the
  /// ring once the step has finished (no overlap with backward yet).
  public var backend: GraphBackend?
  /// Communication of the last step: seconds spent all-reducing, and seconds not hidden by backward.
  public private(set) var lastCommunication: GradientBuckets.Statistics?
  /// How many buckets the gradients are all-reduced in (0 until `attach`).
  public var gradientBucketCount: Int { bucketCounts.count }

  /// Averages gradients over `ring` from now on: gradients are grouped in buckets in the order the
  /// backward pass finishes them, each bucket is all-reduced on a communication thread as soon as
  /// its last gradient is final, and `computeGradients` waits only for what is still in flight.
  public func attach(ring: Ring, bucketBytes: Int = 25 << 20, firstBucketBytes: Int = 1 << 20,
                     compression: WireCompression = .none) {
    let position = Dictionary(uniqueKeysWithValues: executor.executedNodes.enumerated().map { ($1, $0) })
    // Leaves (a zero gradient for an unused parameter) are final before the step runs.
    let order = gradients.indices.sorted { (position[gradients[$0].node] ?? -1, $0) < (position[gradients[$1].node] ?? -1, $1) }
    let plan = GradientBuckets.plan(tensorSizes: order.map { trainable[$0].shape.elementCount },
                                    bucketBytes: bucketBytes, firstBucketBytes: firstBucketBytes)
    bucketOfGradient = [(Int, Int)](repeating: (0, 0), count: gradients.count)
    var sizes: [Int] = []
    for (b, members) in plan.enumerated() {
      var offset = 0
      for k in members {
        let g = order[k]
        bucketOfGradient[g] = (b, offset)
        offset += trainable[g].shape.elementCount
        if position[gradients[g].node] != nil {
          gradientsFinalAt[gradients[g].node, default: []].append(g)
        } else {
          gradientsFinalAtStart.append(g)
        }
      }
      sizes.append(offset)
      bucketCounts.append(members.count)
    }
    pendingPerBucket = bucketCounts
    let buckets = GradientBuckets(ring: ring, bucketSizes: sizes, operation: .mean, compression: compression)
    self.buckets = buckets
    executor.onExecuted = { [unowned self] node in
      guard let finals = self.gradientsFinalAt[node] else { return }
      for g in finals { self.handOver(g, to: buckets) }
    }
  }

  /// Stops the communication thread (call before dropping a trainer that was attached to a ring).
  public func detach() {
    buckets?.shutDown()
    buckets = nil
    executor.onExecuted = nil
  }

  private func handOver(_ g: Int, to buckets: GradientBuckets) {
    let (b, offset) = bucketOfGradient[g]
    let count = trainable[g].shape.elementCount
    (buckets.buffer(b).baseAddress! + offset).update(from: gradientPointer(g), count: count)
    pendingPerBucket[b] -= 1
    if pendingPerBucket[b] == 0 { buckets.markReady(b) }
  }

  /// Before a run: re-arm the bucket counters and hand over the gradients that are final already.
  func prepareBuckets() {
    guard let buckets else { return }
    for b in pendingPerBucket.indices { pendingPerBucket[b] = bucketCounts[b] }
    for g in gradientsFinalAtStart { handOver(g, to: buckets) }
  }

  /// After a run: wait for the buckets and copy the averaged gradients back.
  func finishBuckets() throws {
    guard let buckets else { return }
    lastCommunication = try buckets.waitAll()
    for g in gradients.indices {
      let (b, offset) = bucketOfGradient[g]
      gradientPointer(g).update(from: buckets.buffer(b).baseAddress! + offset, count: trainable[g].shape.elementCount)
    }
  }
}
