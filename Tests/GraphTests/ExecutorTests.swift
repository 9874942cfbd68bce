import Testing
import Graph
import Tensor

@Suite struct MemoryPlanTests {
  @Test func randomLifetimesNeverShareMemoryWhileBothLive() {
    for trial in 0..<20 {
      let buffers = (0..<60).map { i -> MemoryPlan.Buffer in
        let first = Int(CounterRandom.bits(seed: UInt64(trial), stream: 1, index: UInt64(i)) % 40)
        let length = Int(CounterRandom.bits(seed: UInt64(trial), stream: 2, index: UInt64(i)) % 10)
        let size = 1 + Int(CounterRandom.bits(seed: UInt64(trial), stream: 3, index: UInt64(i)) % 5000)
        return .init(elements: size, firstStep: first, lastStep: first + length)
      }
      let plan = MemoryPlan(buffers: buffers)
      #expect(plan.isValid)
      #expect(plan.plannedPeakBytes <= plan.naiveBytes)
      // Lower bound: the bytes live at the busiest step.
      let busiest = (0..<50).map { s in buffers.filter { $0.firstStep <= s && s <= $0.lastStep }.reduce(0) { $0 + $1.elements } }.max()!
      #expect(plan.arenaElements >= busiest)
    }
  }

  @Test func aChainReusesTwoBuffers() throws {
    var g = Graph()
    var x = try g.input("x", [1, 32, 32, 16])
    for _ in 0..<20 { x = try g.relu(x) }
    let executor = try Executor(graph: g, outputs: [x], context: KernelContext(threads: 1))
    let tensorBytes = 32 * 32 * 16 * 4
    #expect(executor.plan.naiveBytes == 20 * tensorBytes)
    #expect(executor.plan.plannedPeakBytes == 2 * tensorBytes)
  }

  @Test func trainingGraphPlansFarBelowTheNaiveSum() throws {
    var network = try MiniNetwork(batch: 8)
    let grads = try network.graph.gradients(of: network.loss, withRespectTo: network.parameterValues)
    let executor = try Executor(graph: network.graph, outputs: [network.loss] + grads, context: KernelContext(threads: 1))
    #expect(executor.plan.isValid)
    #expect(executor.plan.plannedPeakBytes * 2 < executor.plan.naiveBytes,
            "planned \(executor.plan.plannedPeakBytes) vs naive \(executor.plan.naiveBytes)")
  }
}

@Suite struct GraphErrorTests {
  @Test func shapeMismatchNamesTheOpAndTheShapes() throws {
    var g = Graph()
    let x = try g.input("images", [2, 8, 8, 3])
    let w = try g.parameter("w", [3, 3, 4, 8])
    let error = #expect(throws: GraphError.self) {
      try g.withScope("cell_0") { g throws(GraphError) in try g.conv2d(x, filter: w, padding: .same) }
    }
    let text = error.map(String.init(describing:)) ?? ""
    #expect(text.contains("cell_0/conv2d"))
    #expect(text.contains("[2,8,8,3]") && text.contains("[3,3,4,8]"))
  }

  @Test func windowThatDoesNotFitIsAnError() throws {
    var g = Graph()
    let x = try g.input("x", [1, 4, 4, 3])
    #expect(throws: GraphError.self) { try g.avgPool(x, window: (5, 5), strides: (3, 3), padding: .valid) }
    #expect(throws: GraphError.self) { try g.concat([x, try g.input("y", [1, 5, 4, 3])]) }
    #expect(throws: GraphError.self) { try g.matmul(try g.input("a", [2, 3]), try g.input("b", [4, 5])) }
  }

  @Test func gradientOfANonScalarIsRefused() throws {
    var g = Graph()
    let x = try g.parameter("x", [3])
    #expect(throws: GraphError.self) { try g.gradients(of: try g.relu(x), withRespectTo: [x]) }
  }

  @Test func labelsOutOfRangeAreReportedAtRunTime() throws {
    var g = Graph()
    let logits = try g.input("logits", [2, 4])
    let labels = try g.input("labels", [2])
    let loss = try g.softmaxCrossEntropy(logits: logits, labels: labels, labelSmoothing: 0.1, name: "xent")
    let executor = try Executor(graph: g, outputs: [loss], context: KernelContext(threads: 1))
    executor.write(labels, [1, 4])
    #expect(throws: ExecutionError.invalidLabels(op: "xent", classes: 4)) { try executor.run() }
    executor.write(labels, [1, 3])
    try executor.run()
    // Zero logits: the loss is log(4) whatever the targets.
    #expect(abs(executor.read(loss)[0] - 1.3862944) < 1e-5)
  }
}
