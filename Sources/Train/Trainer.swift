import Collective
import Graph
import Model
import Tensor

/// One worker's training step and state: the whole step as one graph (`TrainingGraph`: forward,
/// loss, backward, the data-parallel boundary, optimizer, batch-norm moving statistics, step counter,
/// moving averages), its training state as the graph's parameters, replaced in place every run.
///
/// `step` runs it all. `computeGradients` and `applyGradients` run the halves on either side of the
/// boundary, for callers that do something with the local gradients in between (accumulation over
/// micro-batches, tests); with a ring attached the boundary averages them over the workers.
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
  /// The rest of the training state by name (slots, moving statistics, averages): views of the
  /// graph's parameters, in checkpoint order.
  public let state = TensorStore()
  /// Steps completed; the graph's own counter holds the same number.
  public private(set) var globalStep = 0
  /// Mixed into every dropout and drop-path mask.
  public let seed: UInt64

  let images: Value
  let labels: Value
  let stepCounter: Value
  public let totalLoss: Value
  public let crossEntropy: Value
  public let learningRate: Value
  /// Each worker's own gradients, before the boundary averages them.
  public let gradients: [Value]
  /// The gradients the update used (averaged over the workers when a ring is attached).
  public let averagedGradients: [Value]
  public let moments: [(layer: BatchNormLayer, mean: Value, variance: Value)]
  let parameterValuesInGraph: [Value]

  /// `fuseBatchNormRelu`: the CPU backend's pass (on by default); a trainer meant for a device
  /// backend leaves the graph plain for the device's compiler.
  /// `exampleOffset`: the global index of this worker's first example (rank × batch), which its
  /// dropout and drop-path masks are keyed on. `memoryLimit`: bytes the step may take (default:
  /// what the system and the process's cgroup have left); a step that needs more is refused with
  /// both figures and what to change, and `--micro_batch_size=auto` picks a size that fits.
  /// `alsoReadable`: values of the step's graph to keep readable after a run besides the usual
  /// (`amoeba crosscheck` reads every ReLU's output).
  public init(network: NetworkConfig, training: TrainingConfig, batchSize: Int, context: KernelContext, seed: UInt64 = 0,
              fuseBatchNormRelu: Bool = true, exampleOffset: Int = 0, memoryLimit: Int? = SystemMemory.availableBytes(),
              alsoReadable: (Graph) -> [Value] = { _ in [] }) throws {
    try training.validate()
    self.network = network
    self.training = training
    self.schedule = LearningRateSchedule(training)
    self.batchSize = batchSize
    self.seed = seed
    optimizer = OptimizerKind(rawValue: training.optimizer)!
    let micro = try Trainer.microBatch(network: network, training: training, batchSize: batchSize,
                                       fuseBatchNormRelu: fuseBatchNormRelu, memoryLimit: memoryLimit)
    microBatch = micro
    self.exampleOffset = exampleOffset
    let step = try TrainingGraph(network: network, training: training, batchSize: micro, fuseBatchNormRelu: fuseBatchNormRelu)
    model = step.model
    trainable = step.trainable
    gradients = step.gradients
    averagedGradients = step.averagedGradients
    moments = step.moments
    images = step.images
    labels = step.labels
    stepCounter = step.globalStep
    totalLoss = step.totalLoss
    crossEntropy = step.crossEntropy
    learningRate = step.learningRate
    parameterValuesInGraph = step.parameters
    executor = try Trainer.executor(for: step, extraOutputs: alsoReadable(step.graph), context: context, memoryLimit: memoryLimit,
                                    micro: micro, batchSize: batchSize)
    executor.randomStreamFromStep = (step.globalStep, seed &* 0x9E37_79B9_7F4A_7C15)
    executor.exampleOffset = exampleOffset
    if micro < batchSize { accumulated = gradients.map { UnsafeMutablePointer<Float>.allocateAligned(step.graph.shape($0).elementCount) } }

    // Initial values: the parameters' initialisers, slots and statistics filled, averages as copies.
    for (parameter, value) in zip(trainable, step.parameters) {
      executor.write(value, parameter.initialValues(seed: seed))
    }
    for tensor in step.state {
      let pointer = executor.pointer(tensor.value)
      switch tensor.initial {
      case let .filled(value): pointer.update(repeating: value, count: tensor.shape.elementCount)
      case let .copyOf(i): pointer.update(from: executor.pointer(step.parameters[i]), count: tensor.shape.elementCount)
      }
      state.adopt(tensor.name, tensor.shape, pointer)
    }
    executor.pointer(stepCounter)[0] = 0
  }

  /// The global index of the batch's first example for the masks (a single process running a
  /// global batch in groups sets it per group).
  public var exampleOffset: Int
  /// Examples per forward and backward pass (`--micro_batch_size`); `batchSize` when whole.
  public let microBatch: Int
  /// What this worker's gradients are multiplied by as they go to the ring, whose mean then is
  /// the global batch's: its examples over an equal share's (`BatchShares`; 1 when shares are equal).
  public var gradientWeight: Float = 1
  /// Gradient sums over a step's micro-batches but the last.
  private var accumulated: [UnsafeMutablePointer<Float>] = []

  deinit { for buffer in accumulated { buffer.deallocate() } }

  /// What the executor keeps readable: the scalars, both sets of gradients, and the moments (a
  /// few floats per layer; tests and diagnostics read them).
  static func outputs(of step: TrainingGraph) -> [Value] {
    [step.totalLoss, step.crossEntropy, step.learningRate] + step.gradients + step.averagedGradients
      + step.moments.flatMap { [$0.mean, $0.variance] }
  }

  /// The micro-batch size `training.microBatchSize` asks for: the whole batch, a given divisor, or
  /// (auto) the largest divisor whose step fits in `memoryLimit`.
  static func microBatch(network: NetworkConfig, training: TrainingConfig, batchSize: Int, fuseBatchNormRelu: Bool,
                         memoryLimit: Int?) throws -> Int {
    switch training.microBatchSize {
    case .whole:
      return batchSize
    case let .fixed(n):
      guard n >= 1, batchSize % n == 0 else {
        throw TrainError.invalidConfig("--micro_batch_size=\(n) does not divide this worker's batch of \(batchSize) (--train_batch_size / workers)")
      }
      return n
    case .auto:
      var needed = 0
      for candidate in (1...batchSize).reversed() where batchSize % candidate == 0 {
        let step = try TrainingGraph(network: network, training: training, batchSize: candidate, fuseBatchNormRelu: fuseBatchNormRelu)
        needed = try Executor.requiredBytes(graph: step.graph, outputs: outputs(of: step), stateUpdates: step.stateUpdates)
        if memoryLimit.map({ needed <= $0 }) ?? true { return candidate }
      }
      throw TrainError.invalidConfig(memoryAdvice(needed: needed, available: memoryLimit ?? 0, micro: 1, batchSize: batchSize))
    }
  }

  static func executor(for step: TrainingGraph, extraOutputs: [Value], context: KernelContext, memoryLimit: Int?, micro: Int,
                       batchSize: Int) throws -> Executor {
    do {
      return try Executor(graph: step.graph, outputs: outputs(of: step) + extraOutputs, stateUpdates: step.stateUpdates, context: context,
                          memoryLimit: memoryLimit)
    } catch {
      guard case let .insufficientMemory(needed, available) = error else { throw error }
      throw TrainError.invalidConfig(memoryAdvice(needed: needed, available: available, micro: micro, batchSize: batchSize))
    }
  }

  static func memoryAdvice(needed: Int, available: Int, micro: Int, batchSize: Int) -> String {
    let gib = { (bytes: Int) in
      bytes >= 1 << 30 ? "\((Double(bytes) / 1_073_741_824 * 10).rounded() / 10) GiB" : "\((Double(bytes) / 1_048_576 * 10).rounded() / 10) MiB"
    }
    let what = micro < batchSize ? "a micro-batch of \(micro) (of this worker's \(batchSize))" : "this worker's batch of \(batchSize)"
    return "the training step at \(what) needs \(gib(needed)) of memory and this process has \(gib(available)); "
      + (micro > 1 ? "pass --micro_batch_size=auto (gradients accumulate over smaller passes; the global batch and the learning-rate schedule stay), " : "")
      + "use more workers, or a smaller --image_size, --num_cells or --reduction_size"
  }

  /// Storage of trainable parameter i (in the graph's leaf memory).
  public func parameterPointer(_ i: Int) -> UnsafeMutablePointer<Float> { executor.pointer(parameterValuesInGraph[i]) }
  /// Storage of this worker's gradient of trainable parameter i after `computeGradients`.
  public func gradientPointer(_ i: Int) -> UnsafeMutablePointer<Float> { executor.pointer(gradients[i]) }
  /// The gradient of trainable parameter i that the last update used.
  public func averagedGradientPointer(_ i: Int) -> UnsafeMutablePointer<Float> { executor.pointer(averagedGradients[i]) }

  /// The drop-path keep probability at a step: 1 − min(1, t/T)·(1 − keep), T = int(N/B · epochs).
  public func dropPathKeepProbability(at step: Int) -> Float {
    let burnIn = Int(Double(training.numTrainImages) / Double(training.trainBatchSize) * training.numEpochs)
    return Float(StepSchedule.linearRamp(final: network.dropConnectKeepProb, steps: max(burnIn, 1)).value(at: step))
  }

  /// What one step reports.
  public struct StepResult: Sendable {
    public let total: Float
    public let crossEntropy: Float
    public let learningRate: Float
  }

  /// One whole step on a batch: `images` is `[batch, S, S, 3]`, `labels` class indices.
  @discardableResult
  public func step(images pixels: UnsafePointer<Float>, labels classes: UnsafePointer<Float>) throws -> StepResult {
    if let backend, backend.replicas > 1 { return try replicatedStep(backend, images: pixels, labels: classes) }
    if microBatch < batchSize { return try accumulatingStep(images: pixels, labels: classes) }
    feed(pixels, classes)
    if let backend {
      try averagingErrors { try backend.run(executor) }
    } else {
      try averagingErrors { try executor.run() }
    }
    globalStep += 1
    return try result()
  }

  /// The first half of a step: forward and backward on one batch, this worker's gradients in
  /// `gradientPointer`. Returns the total loss and the main cross-entropy. (The Swift executor only.)
  @discardableResult
  public func computeGradients(images pixels: UnsafePointer<Float>, labels classes: UnsafePointer<Float>) throws -> (total: Float, crossEntropy: Float) {
    precondition(backend == nil && microBatch == batchSize, "computeGradients runs half a step of a whole batch on the Swift executor; use step(images:labels:)")
    feed(pixels, classes)
    try executor.run(.gradients)
    let total = executor.pointer(totalLoss)[0], ce = executor.pointer(crossEntropy)[0]
    guard total.isFinite else {
      throw TrainError.diverged("step \(globalStep): the loss is \(total); lower --lr or check the input data")
    }
    return (total, ce)
  }

  /// The second half: the boundary (the ring, when attached, or the gradients as they are), the
  /// update, moving statistics and averages. Returns the learning rate used.
  @discardableResult
  public func applyGradients() throws -> Double {
    try averagingErrors { try executor.run(.update) }
    globalStep += 1
    return Double(executor.pointer(learningRate)[0])
  }

  private func feed(_ pixels: UnsafePointer<Float>, _ classes: UnsafePointer<Float>, micro: Int = 0) {
    let pixelsPerPass = executor.graph.shape(images).elementCount
    executor.pointer(images).update(from: pixels + micro * pixelsPerPass, count: pixelsPerPass)
    executor.pointer(labels).update(from: classes + micro * microBatch, count: microBatch)
    executor.exampleOffset = exampleOffset + micro * microBatch
    if micro == 0 { prepareBuckets() }
  }

  /// A step on a backend replicated over the host's devices: micro-batch r is device r's slice,
  /// run at the same time as the others (what `accumulatingStep` computes one after another).
  private func replicatedStep(_ backend: GraphBackend, images pixels: UnsafePointer<Float>,
                              labels classes: UnsafePointer<Float>) throws -> StepResult {
    guard microBatch * backend.replicas == batchSize else {
      throw TrainError.invalidConfig("\(backend.name) runs \(backend.replicas) devices; a batch of \(batchSize) per host is \(batchSize / backend.replicas) per device only with --micro_batch_size=\(batchSize / backend.replicas) (it is \(microBatch))")
    }
    feed(pixels, classes)
    executor.replicaBatches = [images: pixels, labels: classes]
    defer { executor.replicaBatches = [:] }
    try averagingErrors { try backend.run(executor) }
    globalStep += 1
    return try result()
  }

  /// A step over micro-batches: forward and backward on each (batch norm over each), the gradients
  /// averaged over them — the last pass hands each one to the ring as it becomes final — then
  /// the update. The moving statistics follow the last micro-batch's moments.
  /// Gradient g becomes (the sum of the earlier passes + this pass's) × scale.
  private func averageAccumulated(_ g: Int, scale: Float) {
    let count = executor.graph.shape(gradients[g]).elementCount
    let sum = accumulated[g], gradient = gradientPointer(g)
    for e in 0..<count { gradient[e] = (sum[e] + gradient[e]) * scale }
  }

  private func accumulatingStep(images pixels: UnsafePointer<Float>, labels classes: UnsafePointer<Float>) throws -> StepResult {
    guard backend == nil else {
      throw TrainError.invalidConfig("--micro_batch_size runs on the Swift executor only so far; use --device cpu, or a whole batch on the device")
    }
    let passes = batchSize / microBatch, scale = 1 / Float(passes)
    let ring = executor.onExecuted
    defer { executor.onExecuted = ring; executor.exampleOffset = exampleOffset }
    var total: Float = 0, ce: Float = 0
    for micro in 0..<passes {
      feed(pixels, classes, micro: micro)
      let last = micro == passes - 1
      if last, let ring {
        executor.onExecuted = { [unowned self] node in
          for g in self.gradientsFinalAt[node] ?? [] { self.averageAccumulated(g, scale: scale) }
          ring(node)
        }
      } else {
        executor.onExecuted = nil
      }
      try averagingErrors { try executor.run(.gradients) }
      total += executor.pointer(totalLoss)[0]; ce += executor.pointer(crossEntropy)[0]
      for g in gradients.indices {
        let count = executor.graph.shape(gradients[g]).elementCount
        if micro == 0 { accumulated[g].update(from: gradientPointer(g), count: count) }
        else if !last { for e in 0..<count { accumulated[g][e] += gradientPointer(g)[e] } }
        else if ring == nil || gradientsFinalAtStart.contains(g) { averageAccumulated(g, scale: scale) }
      }
    }
    try averagingErrors { try executor.run(.update) }
    globalStep += 1
    let mean = total * scale
    guard mean.isFinite else { throw TrainError.diverged("step \(globalStep - 1): the loss is \(mean); lower --lr or check the input data") }
    return StepResult(total: mean, crossEntropy: ce * scale, learningRate: executor.pointer(learningRate)[0])
  }

  private func result() throws -> StepResult {
    let total = executor.pointer(totalLoss)[0], ce = executor.pointer(crossEntropy)[0]
    guard total.isFinite else {
      throw TrainError.diverged("step \(globalStep - 1): the loss is \(total); lower --lr or check the input data")
    }
    return StepResult(total: total, crossEntropy: ce, learningRate: executor.pointer(learningRate)[0])
  }

  /// Runs `body`; a failure of the ring inside the boundary is rethrown as the ring's own error.
  private func averagingErrors(_ body: () throws -> Void) throws {
    averagingError = nil
    do { try body() } catch {
      if let averagingError { throw averagingError }
      throw error
    }
  }

  /// Sets the step counter (restore from a checkpoint).
  public func setGlobalStep(_ step: Int) {
    globalStep = step
    executor.pointer(stepCounter)[0] = Float(step)
    backend?.hostStateChanged()
  }

  /// Brings the executor's copy of the state up to date with the backend's (before a checkpoint
  /// or an evaluation reads parameters, slots or averages).
  public func synchronizeHostState() throws { try backend?.copyStateToHost(executor) }

  /// Says the state was written on the host (a restore): the backend uploads it before the next step.
  public func hostStateChanged() { backend?.hostStateChanged() }

  // MARK: Data-parallel gradient averaging

  private var buckets: GradientBuckets?
  private var bucketOfGradient: [(bucket: Int, offset: Int)] = []
  private var gradientsFinalAt: [Int: [Int]] = [:]
  private var gradientsFinalAtStart: [Int] = []
  private var pendingPerBucket: [Int] = []
  /// Which gradients this step has handed to the buckets so far.
  private var handedOver: [Bool] = []
  private var bucketCounts: [Int] = []
  /// Where the step runs; nil: the Swift executor. A device backend announces gradients as they
  /// reach the host (`Executor.onExecuted`), bucket by bucket where it compiled backward in parts.
  public var backend: GraphBackend? {
    didSet { backend?.hostStateChanged() }
  }
  private var averagingError: Error?
  /// Communication of the last step: seconds spent all-reducing, and seconds not hidden by backward.
  public private(set) var lastCommunication: GradientBuckets.Statistics?
  /// How many buckets the gradients are all-reduced in (0 until `attach`).
  public var gradientBucketCount: Int { bucketCounts.count }

  /// Averages gradients over `ring` from now on: gradients are grouped in buckets in the order the
  /// backward pass finishes them, each bucket is all-reduced on a communication thread as soon as
  /// its last gradient is final, and `computeGradients` waits only for what is still in flight.
  public func attach(ring: Ring, bucketBytes: Int = 25 << 20, firstBucketBytes: Int = 1 << 20,
                     compression: WireCompression = .none) {
    detach()
    let position = Dictionary(uniqueKeysWithValues: executor.executedNodes.enumerated().map { ($1, $0) })
    let (order, plan) = bucketPlan(bucketBytes: bucketBytes, firstBucketBytes: firstBucketBytes)
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
    executor.allReduce = { [unowned self] _, outputs, counts in
      // A device backend's gradients that it did not announce as they reached the host (all of
      // them, with one program for backward) are final now.
      if self.backend != nil {
        for g in self.gradientsFinalAt.values.flatMap({ $0 }) where !self.handedOver[g] { self.handOver(g, to: buckets) }
      }
      do {
        self.lastCommunication = try buckets.waitAll()
      } catch {
        self.averagingError = error
        throw error
      }
      for g in outputs.indices {
        let (b, offset) = self.bucketOfGradient[g]
        outputs[g].update(from: buckets.buffer(b).baseAddress! + offset, count: counts[g])
      }
    }
  }

  /// Gradient indices in the order backward finishes them, and the buckets `attach` makes of
  /// them (indices into that order).
  private func bucketPlan(bucketBytes: Int, firstBucketBytes: Int) -> (order: [Int], buckets: [[Int]]) {
    let position = Dictionary(uniqueKeysWithValues: executor.executedNodes.enumerated().map { ($1, $0) })
    // Leaves (a zero gradient for an unused parameter) are final before the step runs.
    let order = gradients.indices.sorted { (position[gradients[$0].node] ?? -1, $0) < (position[gradients[$1].node] ?? -1, $1) }
    return (order, GradientBuckets.plan(tensorSizes: order.map { trainable[$0].shape.elementCount },
                                        bucketBytes: bucketBytes, firstBucketBytes: firstBucketBytes))
  }

  /// The gradient values of each bucket `attach` will make with these sizes, in the order the
  /// ring reduces them: a device backend compiles backward in as many programs, so that each
  /// bucket leaves the device while the rest of backward runs (`XLABackend(gradientGroups:)`).
  public func gradientBuckets(bucketBytes: Int = 25 << 20, firstBucketBytes: Int = 1 << 20) -> [[Value]] {
    let (order, plan) = bucketPlan(bucketBytes: bucketBytes, firstBucketBytes: firstBucketBytes)
    return plan.map { members in members.map { gradients[order[$0]] } }
  }

  /// Stops the communication thread (call before dropping a trainer that was attached to a ring).
  public func detach() {
    buckets?.shutDown()
    buckets = nil
    executor.onExecuted = nil
    executor.allReduce = nil
    // The plan belongs to the ring it was made for: a trainer attached again (a re-formed ring)
    // plans afresh.
    bucketOfGradient = []; gradientsFinalAt = [:]; gradientsFinalAtStart = []
    pendingPerBucket = []; bucketCounts = []; handedOver = []
  }

  private func handOver(_ g: Int, to buckets: GradientBuckets) {
    handedOver[g] = true
    let (b, offset) = bucketOfGradient[g]
    let count = trainable[g].shape.elementCount
    let target = buckets.buffer(b).baseAddress! + offset, gradient = gradientPointer(g)
    if gradientWeight == 1 {
      target.update(from: gradient, count: count)
    } else {
      for e in 0..<count { target[e] = gradient[e] * gradientWeight }
    }
    pendingPerBucket[b] -= 1
    if pendingPerBucket[b] == 0 { buckets.markReady(b) }
  }

  /// Before a run: re-arm the bucket counters and hand over the gradients that are final already.
  func prepareBuckets() {
    guard let buckets else { return }
    for b in pendingPerBucket.indices { pendingPerBucket[b] = bucketCounts[b] }
    handedOver = [Bool](repeating: false, count: gradients.count)
    for g in gradientsFinalAtStart { handOver(g, to: buckets) }
  }

}
