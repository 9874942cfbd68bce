import Testing
import Graph
import Tensor

/// A miniature NASNet-style cell: a stem, a state reused by several branches (fan-out), 1×7→7×1,
/// max/avg pools, a factorized reduction with the one-pixel shift, concat, head and the smoothed
/// cross-entropy plus weight decay. Small enough for finite differences on every parameter.
struct MiniNetwork {
  var graph = Graph()
  var parameters: [Parameter] = []
  var parameterValues: [Value] = []
  var images: Value
  var labels: Value
  var loss: Value

  init(batch: Int = 2, dropoutKeep: Float = 1) throws {
    var g = Graph()
    var params: [Parameter] = []
    var values: [Value] = []
    var decayed: [Value] = []
    func weight(_ name: String, _ shape: Shape, decay: Bool = true, values initial: [Float]? = nil) throws -> Value {
      let seed = UInt64(params.count + 100)
      let fanOut = Float(shape.dims.count == 1 ? 1 : shape.dims.dropLast(2).reduce(1, *) * shape.dims.last!)
      let p = Parameter(name, shape, initial ?? uniform(shape.elementCount, seed: seed).map { $0 * (3 / fanOut).squareRoot() })
      params.append(p)
      let v = try g.parameter(name, shape)
      values.append(v)
      if decay { decayed.append(v) }
      return v
    }
    func bn(_ x: Value, _ name: String) throws -> Value {
      let c = g.shape(x).dims.last!
      let gamma = try weight(name + "/gamma", [c], decay: false, values: uniform(c, seed: UInt64(params.count), in: 0.8...1.2))
      let beta = try weight(name + "/beta", [c], decay: false, values: uniform(c, seed: UInt64(params.count + 50), in: -0.1...0.1))
      return try g.batchNormTraining(x, gamma: gamma, beta: beta, epsilon: 1e-3).y
    }

    images = try g.input("images", [batch, 9, 9, 3])
    labels = try g.input("labels", [batch])
    // Stem: 3x3 stride 2 VALID → BN.
    let stem = try bn(try g.conv2d(images, filter: try weight("conv0", [3, 3, 3, 6]), strides: (2, 2), padding: .valid), "conv0_bn")
    // h0 is used by four branches.
    let h0 = try bn(try g.conv2d(try g.relu(stem), filter: try weight("h0", [1, 1, 6, 4]), padding: .same), "h0_bn")
    let a = try g.conv2d(try g.relu(h0), filter: try weight("left_1x1", [1, 1, 4, 4]), padding: .same)
    let b = try g.maxPool(h0, window: (3, 3), strides: (1, 1), padding: .same)
    let h2 = try g.add(a, b)
    var r = try g.conv2d(try g.relu(h0), filter: try weight("conv_1x7", [1, 7, 4, 4]), padding: .same)
    r = try g.conv2d(try g.relu(try bn(r, "bn_1x7")), filter: try weight("conv_7x1", [7, 1, 4, 4]), padding: .same)
    let h3 = try g.add(h0, try bn(r, "bn_7x1"))
    let h4 = try g.add(try g.avgPool(h2, window: (3, 3), strides: (1, 1), padding: .same), h2)
    let cell = try g.concat([h0, h3, h4])
    // Factorized reduction: path 1 subsamples, path 2 pads bottom/right then crops the first row and
    // column (the one-pixel shift) before subsampling.
    let relu = try g.relu(cell)
    let path1 = try g.conv2d(try g.slice(relu, strides: (2, 2)), filter: try weight("path1_conv", [1, 1, 12, 3]), padding: .same)
    let shifted = try g.slice(try g.pad(relu, top: 0, bottom: 1, left: 0, right: 1), top: 1, left: 1, strides: (2, 2))
    let path2 = try g.conv2d(shifted, filter: try weight("path2_conv", [1, 1, 12, 3]), padding: .same)
    let reduced = try bn(try g.concat([path1, path2]), "final_path_bn")
    let depthwise = try g.depthwiseConv2d(try g.relu(reduced), filter: try weight("separable", [3, 3, 6]), padding: .same)
    var pooled = try g.globalAvgPool(try g.relu(depthwise))
    if dropoutKeep < 1 { pooled = try g.dropout(pooled, keepProbability: dropoutKeep, seed: 7) }
    let logits = try g.dense(pooled, weights: try weight("fc/weights", [6, 5]), bias: try weight("fc/biases", [5], decay: false))
    let crossEntropy = try g.softmaxCrossEntropy(logits: logits, labels: labels, labelSmoothing: 0.1)
    let l2 = try g.addN(try decayed.map { try g.l2Loss($0) })
    loss = try g.add(crossEntropy, try g.scale(l2, by: 4e-5))
    graph = g
    parameters = params
    parameterValues = values
  }

  var imageData: [Float] { uniform(graph.shape(images).elementCount, seed: 77) }
  var labelData: [Float] { (0..<graph.shape(labels)[0]).map { Float($0 * 3 % 5) } }
}

@Suite struct NetworkTests {
  @Test func multiBranchNetworkGradientsMatchFiniteDifferences() throws {
    let network = try MiniNetwork()
    var checker = GradientChecker()
    checker.elementsPerParameter = 12
    // The loss is a cross-entropy of order 1, so a step of 1e-3 keeps float32 rounding near 1e-4 while
    // making it unlikely that a perturbation moves a ReLU or a max-pool choice across its kink.
    checker.step = 1e-3
    checker.absoluteTolerance = 1e-3
    try checker.checkGraph(network.graph, loss: network.loss,
                           parameters: Array(zip(network.parameterValues, network.parameters)),
                           feeds: [(network.images, network.imageData), (network.labels, network.labelData)])
  }

  @Test func sameInputsAndSeedGiveBitwiseSameOutputsOnAnyThreadCount() throws {
    var network = try MiniNetwork(batch: 4, dropoutKeep: 0.5)
    let grads = try network.graph.gradients(of: network.loss, withRespectTo: network.parameterValues)
    var results: [[[Float]]] = []
    for threads in [1, 2, 2, 3] {
      let executor = try Executor(graph: network.graph, outputs: [network.loss] + grads, context: KernelContext(threads: threads))
      for (value, p) in zip(network.parameterValues, network.parameters) { executor.write(value, p.values) }
      executor.write(network.images, network.imageData)
      executor.write(network.labels, network.labelData)
      executor.randomStream = 5
      try executor.run()
      results.append(([network.loss] + grads).map { executor.read($0) })
    }
    #expect(results[0] == results[1])
    #expect(results[1] == results[2])
    #expect(results[2] == results[3])
    #expect(results[0][0][0].isFinite)
  }

  @Test func dropPathKeepsOrDropsWholeExamples() throws {
    var g = Graph()
    let x = try g.input("x", [64, 2, 2, 3])
    let keep = try g.input("keep", .scalar)
    let y = try g.dropPath(x, keepProbability: keep, seed: 9)
    let executor = try Executor(graph: g, outputs: [y], context: KernelContext(threads: 2))
    executor.write(x, [Float](repeating: 1, count: 64 * 12))
    executor.write(keep, [0.5])
    try executor.run()
    let out = executor.read(y)
    let examples = (0..<64).map { Array(out[$0 * 12..<($0 + 1) * 12]) }
    #expect(examples.allSatisfy { $0 == [Float](repeating: 0, count: 12) || $0 == [Float](repeating: 2, count: 12) })
    #expect((16...48).contains(examples.filter { $0[0] == 2 }.count))
    executor.write(keep, [1])
    try executor.run()
    #expect(executor.read(y) == [Float](repeating: 1, count: 64 * 12))
  }

  @Test func dropoutMaskChangesWithTheRandomStream() throws {
    var g = Graph()
    let x = try g.input("x", [64])
    let y = try g.dropout(x, keepProbability: 0.5, seed: 1)
    let executor = try Executor(graph: g, outputs: [y], context: KernelContext(threads: 1))
    executor.write(x, [Float](repeating: 1, count: 64))
    try executor.run()
    let first = executor.read(y)
    executor.randomStream = 1
    try executor.run()
    #expect(first != executor.read(y))
    #expect(first.allSatisfy { $0 == 0 || $0 == 2 })
    #expect((16...48).contains(first.filter { $0 == 2 }.count))
  }

  /// Masks are keyed on the global example: the halves of a batch of 8, run as two batches of 4
  /// with example offsets 0 and 4, draw exactly the whole batch's dropout and drop-path masks.
  @Test func aWorkersShareOfTheBatchDrawsThatShareOfTheMasks() throws {
    func masks(batch: Int, offset: Int) throws -> [Float] {
      var g = Graph()
      let x = try g.input("x", [batch, 2, 2, 3])
      let keep = try g.input("keep", .scalar)
      let pathed = try g.dropPath(x, keepProbability: keep, seed: 7)
      let y = try g.dropout(try g.reshape(pathed, to: [batch, 12]), keepProbability: 0.5, seed: 3)
      let executor = try Executor(graph: g, outputs: [y], context: KernelContext(threads: 1))
      executor.write(x, [Float](repeating: 1, count: batch * 12))
      executor.write(keep, [0.5])
      executor.randomStream = 9
      executor.exampleOffset = offset
      try executor.run()
      return executor.read(y)
    }
    let whole = try masks(batch: 8, offset: 0)
    let halves = try masks(batch: 4, offset: 0) + masks(batch: 4, offset: 4)
    #expect(halves == whole)
    #expect(try masks(batch: 4, offset: 4) != masks(batch: 4, offset: 0), "ranks must not share masks")
    #expect(Set(whole) == [0, 4])  // dropped, or kept by both (1 / 0.5 / 0.5)
  }
}
