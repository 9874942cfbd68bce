import Tensor

/// Graph-rewriting passes that fuse ops whose kernels can share a pass over memory.
extension Graph {
  /// BN → ReLU fusion: a `relu` whose input is the output of a training batch norm that nothing
  /// else reads becomes part of that batch norm (`batchNormTraining(relu: true)`), so the forward
  /// writes max(0, y) directly and autodiff emits one fused gradient. NASNet's bottlenecks
  /// (1x1 → BN → ReLU → core → BN → ReLU → 1x1) have two such pairs per op.
  ///
  /// Run it on the forward graph, before `gradients(of:withRespectTo:)`. Returns the rewritten
  /// graph and the new value of every old value (a fused ReLU maps to its batch norm's output).
  /// The results are bitwise identical to the unfused graph.
  public func fusingBatchNormRelu() throws(GraphError) -> (graph: Graph, values: [Value: Value]) {
    var readers: [Value: Int] = [:]
    for node in nodes { for input in node.inputs { readers[input, default: 0] += 1 } }
    var fusedNorms = Set<Int>(), fusedRelus: [Int: Int] = [:]
    for (index, node) in nodes.enumerated() where node.op == .relu {
      let input = node.inputs[0]
      guard input.output == 0, case .batchNormTraining(_, relu: false) = nodes[input.node].op,
            readers[input] == 1 else { continue }
      fusedNorms.insert(input.node)
      fusedRelus[index] = input.node
    }

    var rewritten = Graph()
    var values: [Value: Value] = [:]
    for (index, node) in nodes.enumerated() {
      if let norm = fusedRelus[index] {
        values[Value(node: index)] = values[Value(node: norm)]
        continue
      }
      var op = node.op
      if fusedNorms.contains(index), case let .batchNormTraining(epsilon, _) = op {
        op = .batchNormTraining(epsilon: epsilon, relu: true)
      }
      let first = try rewritten.add(op, node.inputs.map { values[$0]! }, name: node.name, outputShapes: node.outputs)
      for output in node.outputs.indices {
        values[Value(node: index, output: output)] = Value(node: first.node, output: output)
      }
    }
    return (rewritten, values)
  }
}
