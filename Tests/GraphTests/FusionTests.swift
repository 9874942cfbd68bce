import Testing
import Graph
import Tensor

@Suite struct FusionTests {
  /// conv → BN → ReLU → conv → BN → ReLU (one pair fusable, one not: its BN output has a second reader).
  func network() throws -> (Graph, [Value], Value, Value) {
    var g = Graph()
    let x = try g.input("x", [2, 6, 6, 3])
    let w1 = try g.parameter("w1", [3, 3, 3, 8]), w2 = try g.parameter("w2", [1, 1, 8, 8])
    let gamma = try g.parameter("gamma", [8]), beta = try g.parameter("beta", [8])
    let a = try g.batchNormTraining(try g.conv2d(x, filter: w1, padding: .same), gamma: gamma, beta: beta, epsilon: 1e-3).y
    let b = try g.relu(a)
    let c = try g.batchNormTraining(try g.conv2d(b, filter: w2, padding: .same), gamma: gamma, beta: beta, epsilon: 1e-3).y
    let loss = try g.l2Loss(try g.add(try g.relu(c), c))
    return (g, [w1, w2, gamma, beta], x, loss)
  }

  @Test func fusesOnlyPairsWhoseNormHasNoOtherReader() throws {
    let (g, _, _, _) = try network()
    let (fused, _) = try g.fusingBatchNormRelu()
    try fused.verify()
    #expect(fused.nodes.count == g.nodes.count - 1)
    #expect(fused.nodes.filter { $0.op == .batchNormTraining(epsilon: 1e-3, relu: true) }.count == 1)
    #expect(fused.nodes.filter { $0.op == .relu }.count == 1)
  }

  @Test func fusedGraphGivesBitwiseTheSameLossAndGradients() throws {
    let (g, params, x, loss) = try network()
    let (f, map) = try g.fusingBatchNormRelu()
    var results: [[[Float]]] = []
    for (graph, p, input, l) in [(g, params, x, loss), (f, params.map { map[$0]! }, map[x]!, map[loss]!)] {
      var graph = graph
      let grads = try graph.gradients(of: l, withRespectTo: p)
      let executor = try Executor(graph: graph, outputs: [l] + grads, context: KernelContext(threads: 2))
      for (i, value) in p.enumerated() {
        executor.write(value, uniform(graph.shape(value).elementCount, seed: UInt64(i + 40), in: 0.2...1.2))
      }
      executor.write(input, uniform(graph.shape(input).elementCount, seed: 50))
      try executor.run()
      results.append(([l] + grads).map { executor.read($0) })
    }
    #expect(results[0] == results[1])
  }

  @Test func fusedBatchNormReluGradientsMatchFiniteDifferences() throws {
    try GradientChecker().checkLoss([Parameter("x", [3, 3, 2, 4], seed: 6), Parameter("gamma", [4], uniform(4, seed: 7, in: 0.5...1.5)),
                                     Parameter("beta", [4], seed: 8)]) { g, p, _ in
      let y = try g.relu(try g.batchNormTraining(p[0], gamma: p[1], beta: p[2], epsilon: 1e-3).y)
      let noise = try g.input("noise", g.shape(y))
      let (fused, map) = try g.fusingBatchNormRelu()
      g = fused
      #expect(g.nodes.contains { $0.op == .batchNormTraining(epsilon: 1e-3, relu: true) })
      return (try g.l2Loss(try g.add(map[y]!, map[noise]!)), [(map[noise]!, uniform(g.shape(map[noise]!).elementCount, seed: 99))])
    }
  }
}
