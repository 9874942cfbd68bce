import CLI
import Graph
import Model
import Tensor
import Train

/// `amoeba crosscheck --weights W.safetensors --inputs X.f32 --labels 3,1 [--global_step S]
/// [model and training flags] --out R.safetensors`: what an independent implementation needs to
/// check this one. From given weights (an `amoeba export` file: every trainable variable and
/// batch-norm moving statistic under the reference's names) and input tensors (`amoeba data dump`)
/// it writes the evaluation network's logits, and for one training step at step S its losses,
/// learning rate, every gradient, every state tensor after the step, and each dropout and drop-path
/// mask it drew (as the factor it multiplied by: 0 or 1/keep), so the other side need not share our
/// random numbers. `Scripts/peers/torch_crosscheck.py` recomputes all of it in PyTorch.
///
/// The optimizer slots start as a fresh run's (RMSProp's mean square at 1, momentum at 0) and
/// every moving average starts at the value it follows.
struct CrossCheckCommand {
  var network: NetworkConfig
  var training: TrainingConfig
  var weights: String
  var inputs: String
  var labels: [Int]
  var globalStep: Int
  var seed: UInt64
  var threads: Int
  var out: String

  init(flags: Flags) throws {
    var flags = flags
    network = try flags.networkConfig()
    training = try flags.trainingConfig()
    weights = flags.string("weights", default: "")
    inputs = flags.string("inputs", default: "")
    labels = try flags.intList("labels", default: [])
    globalStep = try flags.int("global_step", default: 0)
    seed = try flags.seed()
    threads = try flags.int("threads", default: ThreadPool.onlineCores)
    out = flags.string("out", default: "")
    try flags.finish()
    guard !weights.isEmpty, !inputs.isEmpty, !out.isEmpty, !labels.isEmpty else {
      throw UsageError("crosscheck needs --weights FILE.safetensors (amoeba export), --inputs FILE (amoeba data dump), --labels L1,L2,… and --out FILE.safetensors")
    }
    guard globalStep >= 0 else { throw UsageError("--global_step must be at least 0, got \(globalStep)") }
    try training.validate()
  }

  func run() throws {
    let pixels = network.imageSize * network.imageSize * 3
    let images = try FileIO.read(inputs)
    guard images.count % (pixels * 4) == 0, images.count > 0 else {
      throw UsageError("\(inputs): \(images.count) bytes is not a whole number of \(network.imageSize)x\(network.imageSize)x3 float32 images (is --image_size the one data dump used?)")
    }
    let batch = images.count / (pixels * 4)
    guard labels.count == batch else { throw UsageError("--labels has \(labels.count) labels for the \(batch) images in \(inputs)") }
    if let bad = labels.first(where: { $0 < 0 || $0 >= network.numLabelClasses }) {
      throw UsageError("label \(bad) is outside 0..<\(network.numLabelClasses) (--num_label_classes)")
    }
    let given = try SafeTensors.decode(try FileIO.read(weights), file: weights).tensors
    let context = KernelContext(threads: threads)
    let trainer = try Trainer(network: network, training: training, batchSize: batch, context: context, seed: seed,
                              alsoReadable: { CrossCheckCommand.reluSites(in: $0) + CrossCheckCommand.maxPoolSites(in: $0).map(\.input) })
    func load(_ name: String, _ shape: Shape, into pointer: UnsafeMutablePointer<Float>) throws {
      guard let tensor = given[name] else { throw UsageError("\(weights) has no tensor \(name) (was it exported from a run with these model flags?)") }
      guard tensor.shape == shape else { throw UsageError("\(weights): \(name) has shape \(tensor.shape), this model's is \(shape)") }
      pointer.update(from: tensor.values, count: shape.elementCount)
    }
    for (i, parameter) in trainer.trainable.enumerated() { try load(parameter.name, parameter.shape, into: trainer.parameterPointer(i)) }
    let average = "/ExponentialMovingAverage"
    for entry in trainer.state.entries where entry.name.hasSuffix("/moving_mean") || entry.name.hasSuffix("/moving_variance") {
      try load(entry.name, entry.shape, into: entry.pointer)
    }
    for entry in trainer.state.entries where entry.name.hasSuffix(average) {
      let followed = String(entry.name.dropLast(average.count))
      try load(followed, entry.shape, into: entry.pointer)
    }
    trainer.setGlobalStep(globalStep)

    var results: [SafeTensors.Tensor] = []
    func record(_ name: String, _ shape: Shape, _ pointer: UnsafePointer<Float>) {
      results.append(SafeTensors.Tensor(name: name, shape: shape, values: Array(UnsafeBufferPointer(start: pointer, count: shape.elementCount))))
    }
    let floatLabels = labels.map(Float.init)
    try images.withUnsafeBytes { raw in
      let x = raw.bindMemory(to: Float.self).baseAddress!
      let evaluator = try Evaluator(network: network, batchSize: batch, context: context)
      try evaluator.load(from: trainer, useAverages: false)
      _ = try evaluator.evaluate(images: x, labels: floatLabels, count: batch)
      record("eval/logits", [batch, network.numLabelClasses], evaluator.executor.pointer(evaluator.model.logits))

      let result = try trainer.step(images: x, labels: floatLabels)
      for (name, value) in [("loss/total", result.total), ("loss/cross_entropy", result.crossEntropy),
                            ("step/learning_rate", result.learningRate),
                            ("step/drop_path_keep_prob", trainer.dropPathKeepProbability(at: globalStep))] {
        record(name, [1], [value])
      }
    }
    for (i, parameter) in trainer.trainable.enumerated() {
      record("grad/" + parameter.name, parameter.shape, trainer.gradientPointer(i))
    }
    for (i, parameter) in trainer.trainable.enumerated() { record("after/" + parameter.name, parameter.shape, trainer.parameterPointer(i)) }
    for entry in trainer.state.entries { record("after/" + entry.name, entry.shape, entry.pointer) }
    results += masks(of: trainer, batch: batch, context: context)
    // Each ReLU's decision (output > 0) as bits, 8 to a byte, least significant first, in graph
    // order: a value within float32 rounding of zero may go either way, and the other side takes
    // our side's decision there so that the gradients it compares were taken on the same branch.
    var decisions: [(name: String, values: [UInt8])] = []
    var siteShapes: [String] = []
    for value in CrossCheckCommand.reluSites(in: trainer.executor.graph) {
      let shape = trainer.executor.graph.shape(value), y = trainer.executor.pointer(value)
      var bits = [UInt8](repeating: 0, count: (shape.elementCount + 7) / 8)
      for i in 0..<shape.elementCount where y[i] > 0 { bits[i >> 3] |= 1 << UInt8(i & 7) }
      decisions.append(("relu/\(decisions.count)", bits))
      siteShapes.append(shape.dims.map(String.init).joined(separator: "x"))
    }
    // Each max pool's choice (the window tap, row-major, the first of equals as its gradient
    // takes), for the same reason: two taps within rounding of each other.
    var poolShapes: [String] = []
    for (k, site) in CrossCheckCommand.maxPoolSites(in: trainer.executor.graph).enumerated() {
      decisions.append(("maxpool/\(k)", CrossCheckCommand.maxPoolChoices(site.geometry, input: trainer.executor.pointer(site.input))))
      poolShapes.append(site.geometry.outputShape.dims.map(String.init).joined(separator: "x"))
    }
    let metadata = network.flagValues.merging(training.flagValues) { a, _ in a }
      .merging(["global_step": String(globalStep), "labels": labels.map(String.init).joined(separator: ","),
                "relu_shapes": siteShapes.joined(separator: ","), "maxpool_shapes": poolShapes.joined(separator: ",")]) { a, _ in a }
    try FileIO.writeAtomically(SafeTensors.encode(results, bytes: decisions, metadata: metadata), to: out)
    print("wrote \(results.count) tensors to \(out): eval logits, loss \(results.first { $0.name == "loss/total" }!.values[0]) at step \(globalStep), \(trainer.trainable.count) gradients, \(trainer.trainable.count + trainer.state.entries.count) state tensors after the step")
  }

  /// The forward pass's ReLU outputs, plain and fused into a batch norm, in graph order.
  static func reluSites(in graph: Graph) -> [Value] {
    graph.nodes.indices.filter { i in
      let node = graph.nodes[i]
      guard !node.name.hasPrefix("gradients/") else { return false }
      if case .relu = node.op { return true }
      if case .batchNormTraining(_, relu: true) = node.op { return true }
      return false
    }.map { Value(node: $0) }
  }

  /// The forward pass's max pools: their inputs and geometry, in graph order.
  static func maxPoolSites(in graph: Graph) -> [(input: Value, geometry: WindowGeometry)] {
    graph.nodes.compactMap { node in
      guard !node.name.hasPrefix("gradients/"), case let .maxPool(geometry) = node.op else { return nil }
      return (node.inputs[0], geometry)
    }
  }

  /// For each output element (NHWC order), the window tap i·kw + j its maximum came from, the
  /// first in row-major order among equals — the tap `Pooling.maxPoolGrad` gives the gradient.
  static func maxPoolChoices(_ g: WindowGeometry, input x: UnsafePointer<Float>) -> [UInt8] {
    var choices = [UInt8](repeating: 0, count: g.outputShape.elementCount)
    var o = 0
    for n in 0..<g.batch { for oh in 0..<g.outH { for ow in 0..<g.outW { for ch in 0..<g.inC {
      var best = -Float.infinity, tap = -1
      for i in 0..<g.kh { for j in 0..<g.kw {
        let ih = oh * g.strideH - g.padTop + i * g.dilationH, iw = ow * g.strideW - g.padLeft + j * g.dilationW
        guard ih >= 0, ih < g.inH, iw >= 0, iw < g.inW else { continue }
        let v = x[((n * g.inH + ih) * g.inW + iw) * g.inC + ch]
        if v > best || tap < 0 { best = v; tap = i * g.kw + j }
      } }
      choices[o] = UInt8(tap)
      o += 1
    } } } }
    return choices
  }

  /// The masks the step drew, regenerated from the same (seed, stream, example) counters on ones:
  /// `mask/<node>` is `[batch]` for drop-path and the input's shape for dropout.
  func masks(of trainer: Trainer, batch: Int, context: KernelContext) -> [SafeTensors.Tensor] {
    let graph = trainer.executor.graph, stream = trainer.executor.randomStream
    var masks: [SafeTensors.Tensor] = []
    // The backward pass regenerates each mask from the same counters; only the forward nodes are sites.
    for node in graph.nodes where !node.name.hasPrefix("gradients/") {
      switch node.op {
      case let .dropout(keep, seed):
        let count = graph.shape(node.inputs[0]).elementCount
        let ones = [Float](repeating: 1, count: count)
        var mask = [Float](repeating: 0, count: count)
        Elementwise.dropout(ones, keep: keep, seed: seed, stream: stream, firstIndex: UInt64(trainer.exampleOffset * count / batch),
                            into: &mask, count: count, context: context)
        masks.append(SafeTensors.Tensor(name: "mask/" + node.name, shape: graph.shape(node.inputs[0]), values: mask))
      case let .dropPath(seed):
        let keep = trainer.dropPathKeepProbability(at: globalStep)
        var mask = [Float](repeating: 0, count: batch)
        Elementwise.dropPath([Float](repeating: 1, count: batch), keep: keep, seed: seed, stream: stream,
                             firstExample: UInt64(trainer.exampleOffset), batch: batch, elementsPerExample: 1, into: &mask, context: context)
        masks.append(SafeTensors.Tensor(name: "mask/" + node.name, shape: [batch], values: mask))
      default:
        continue
      }
    }
    return masks
  }
}
