import CLI
import Graph
import Tensor

/// `amoeba bench step`: one training step (forward, backward) of a small NASNet-style network run by
/// the planned executor: milliseconds per step, the memory plan against the naive sum, and the
/// schedule's size. Also the harness for checking that a step allocates nothing (run it under
/// `valgrind` with different `--steps` and compare the allocation totals; see docs/BENCHMARKS.md).
struct StepBenchmark {
  var batch: Int, imageSize: Int, filters: Int, cells: Int
  var steps: Int, threads: Int
  var profile: Bool
  var fuseBatchNormRelu: Bool

  init(flags: Flags) throws {
    var flags = flags
    batch = try flags.int("batch", default: 32)
    imageSize = try flags.int("image_size", default: 32)
    filters = try flags.int("filters", default: 64)
    cells = try flags.int("cells", default: 3)
    steps = try flags.int("steps", default: 5)
    threads = try flags.int("threads", default: ThreadPool.onlineCores)
    profile = try flags.bool("profile")
    fuseBatchNormRelu = flags.string("fuse_bn_relu", default: "true") != "false"
    try flags.finish()
    guard batch > 0, imageSize >= 8, filters >= 4, cells >= 1, steps >= 1, threads >= 1 else {
      throw UsageError("bench step needs --batch ≥ 1, --image_size ≥ 8, --filters ≥ 4, --cells ≥ 1, --steps ≥ 1, --threads ≥ 1")
    }
  }

  func run() throws {
    var g = Graph()
    var parameters: [Value] = []
    // The helpers take the graph as an argument: they run inside `withScope`, which holds `g`.
    func weight(_ g: inout Graph, _ name: String, _ shape: Shape) throws -> Value {
      let value = try g.parameter(g.scoped(name), shape)
      parameters.append(value)
      return value
    }
    func convBN(_ g: inout Graph, _ x: Value, _ name: String, window: (Int, Int), out: Int, relu: Bool = true) throws -> Value {
      try g.withScope(name) { g in
        let input = relu ? try g.relu(x) : x
        let c = g.shape(input)[3]
        let y = try g.conv2d(input, filter: try weight(&g, "weights", [window.0, window.1, c, out]), padding: .same)
        let gamma = try weight(&g, "gamma", [out]), beta = try weight(&g, "beta", [out])
        return try g.batchNormTraining(y, gamma: gamma, beta: beta, epsilon: 1.001e-5).y
      }
    }
    let imagesBeforeFusion = try g.input("images", [batch, imageSize, imageSize, 3])
    let labelsBeforeFusion = try g.input("labels", [batch])
    var previous = try convBN(&g, imagesBeforeFusion, "stem", window: (3, 3), out: filters, relu: false)
    for cell in 0..<cells {
      previous = try g.withScope("cell_\(cell)") { g in
        let h0 = try convBN(&g, previous, "prev_1x1", window: (1, 1), out: filters)
        let a = try convBN(&g, h0, "left_1x1", window: (1, 1), out: filters)
        let b = try g.maxPool(h0, window: (3, 3), strides: (1, 1), padding: .same)
        let h2 = try g.add(a, b)
        let r = try convBN(&g, h0, "bottleneck", window: (1, 1), out: filters / 4)
        let s = try convBN(&g, r, "conv_1x7", window: (1, 7), out: filters / 4)
        let t = try convBN(&g, s, "conv_7x1", window: (7, 1), out: filters / 4)
        let h3 = try g.add(h0, try convBN(&g, t, "expand", window: (1, 1), out: filters))
        let h4 = try g.add(try g.avgPool(h2, window: (3, 3), strides: (1, 1), padding: .same), h3)
        return try convBN(&g, try g.concat([h2, h3, h4]), "combine", window: (3, 3), out: filters)
      }
    }
    let pooled = try g.globalAvgPool(try g.relu(previous))
    let logits = try g.dense(pooled, weights: try weight(&g, "fc/weights", [filters, 1001]), bias: try weight(&g, "fc/biases", [1001]))
    let crossEntropy = try g.softmaxCrossEntropy(logits: logits, labels: labelsBeforeFusion, labelSmoothing: 0.1)
    let lossBeforeFusion = try g.add(crossEntropy, try g.scale(try g.addN(try parameters.map { try g.l2Loss($0) }), by: 4e-5))
    let unfusedNodes = g.nodes.count
    var values: [Value: Value] = Dictionary(uniqueKeysWithValues: (0..<g.nodes.count).flatMap { node in
      g.nodes[node].outputs.indices.map { (Value(node: node, output: $0), Value(node: node, output: $0)) }
    })
    if fuseBatchNormRelu { (g, values) = try g.fusingBatchNormRelu() }
    let loss = values[lossBeforeFusion]!, images = values[imagesBeforeFusion]!, labels = values[labelsBeforeFusion]!
    parameters = parameters.map { values[$0]! }
    let forwardNodes = g.nodes.count
    let gradients = try g.gradients(of: loss, withRespectTo: parameters)

    let context = KernelContext(threads: threads)
    let executor = try Executor(graph: g, outputs: [loss] + gradients, context: context)
    for (index, p) in parameters.enumerated() {
      let shape = g.shape(p)
      let fanOut = Float(shape.rank == 1 ? 1 : shape.dims.dropLast(2).reduce(1, *) * shape.dims.last!)
      let isScale = shape.rank == 1 && g.nodes[p.node].name.hasSuffix("gamma")
      let storage = executor.pointer(p)
      for e in 0..<shape.elementCount {
        storage[e] = isScale ? 1 : (shape.rank == 1 ? 0 : (CounterRandom.uniform(seed: UInt64(index), stream: 1, index: UInt64(e)) * 2 - 1) * (3 / fanOut).squareRoot())
      }
    }
    let pixels = executor.pointer(images)
    for e in 0..<g.shape(images).elementCount { pixels[e] = CounterRandom.uniform(seed: 9, stream: 2, index: UInt64(e)) * 2 - 1 }
    let labelStorage = executor.pointer(labels)
    for n in 0..<batch { labelStorage[n] = Float((n * 37) % 1001) }

    var times: [Double] = []
    times.reserveCapacity(steps)
    executor.profiling = profile
    for step in 0..<steps {
      executor.randomStream = UInt64(step)
      let start = now()
      try executor.run()
      times.append(now() - start)
    }
    let loss0 = executor.read(loss)[0]
    times.sort()
    let mib = { (bytes: Int) in round1(Double(bytes) / 1_048_576) }
    print("machine: \(machineDescription()); \(threads) threads")
    print("graph: \(unfusedNodes) forward nodes, \(forwardNodes) after BN+ReLU fusion (\(fuseBatchNormRelu ? "on" : "off")), \(g.nodes.count) with the backward pass; \(executor.schedule.count) scheduled; \(parameters.count) parameters")
    print("memory plan: planned peak \(mib(executor.plan.plannedPeakBytes)) MiB, naive sum \(mib(executor.plan.naiveBytes)) MiB (\(round1(Double(executor.plan.naiveBytes) / Double(max(executor.plan.plannedPeakBytes, 1))))x)")
    if profile {
      let total = executor.secondsByOp().reduce(0) { $0 + $1.seconds }
      print("profile (each node's fastest run; sum \(round1(total * 1e3)) ms):")
      for entry in executor.secondsByOp() {
        print(pad("  " + entry.op, 36) + pad("\(entry.count)x", 6) + pad(String(round1(entry.seconds * 1e3)) + " ms", 12) + String(round1(100 * entry.seconds / total)) + "%")
      }
      print("slowest nodes:")
      let slowest = executor.scheduledSeconds.enumerated().sorted { $0.element > $1.element }.prefix(12)
      for (index, seconds) in slowest {
        let node = g.nodes[executor.executedNodes[index]]
        let shapes = node.inputs.map { g.shape($0).description }.joined(separator: " ")
        print("  " + pad(String(round1(seconds * 1e3)) + " ms", 10) + pad(node.op.name, 24) + pad(shapes, 40) + node.name)
      }
    }
    print("step: median \(round3(times[times.count / 2] * 1e3)) ms over \(steps) steps at batch \(batch), \(round1(Double(batch) / times[times.count / 2])) images/s; loss \(loss0)")
  }
}
