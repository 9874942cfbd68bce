import Tensor

/// Reverse-mode automatic differentiation as a pass over the IR.
///
/// `gradients(of:withRespectTo:)` appends the backward ops to the graph and returns one gradient
/// value per requested parameter. Only nodes on a path from a parameter to the loss are
/// differentiated. A value used by several ops (AmoebaNet cells reuse their hidden states) gets one
/// gradient contribution per use; they are summed with one `addN` in the order the uses were
/// visited, so the result is deterministic.
extension Graph {
  public mutating func gradients(of loss: Value, withRespectTo parameters: [Value]) throws(GraphError) -> [Value] {
    guard shape(loss) == .scalar else {
      throw .invalidRequest("gradients: the loss \(loss) (\(nodes[loss.node].name)) must be a scalar, not \(shape(loss))")
    }
    let forwardCount = loss.node + 1
    // Nodes that depend on a parameter, and nodes the loss depends on.
    var dependsOnParameter = [Bool](repeating: false, count: forwardCount)
    for p in parameters where p.node < forwardCount { dependsOnParameter[p.node] = true }
    for index in 0..<forwardCount where !dependsOnParameter[index] {
      dependsOnParameter[index] = nodes[index].inputs.contains { dependsOnParameter[$0.node] }
    }
    var reachesLoss = [Bool](repeating: false, count: forwardCount)
    reachesLoss[loss.node] = true
    for index in stride(from: forwardCount - 1, through: 0, by: -1) where reachesLoss[index] {
      for input in nodes[index].inputs { reachesLoss[input.node] = true }
    }
    let relevant = (0..<forwardCount).map { dependsOnParameter[$0] && reachesLoss[$0] }

    var contributions: [Value: [Value]] = [:]
    contributions[loss] = [try withScope("gradients") { g throws(GraphError) in try g.constant(1, .scalar) }]

    for index in stride(from: loss.node, through: 0, by: -1) where relevant[index] {
      let node = nodes[index]
      // A leaf's contributions are summed at the end, once per requested parameter.
      if node.op.isLeaf { continue }
      var outputGradients: [Value?] = []
      for output in node.outputs.indices {
        let value = Value(node: index, output: output)
        guard let parts = contributions.removeValue(forKey: value) else { outputGradients.append(nil); continue }
        outputGradients.append(try withScope("gradients") { g throws(GraphError) in try g.addN(parts) })
      }
      if outputGradients.allSatisfy({ $0 == nil }) { continue }
      let needed = node.inputs.map { relevant[$0.node] }
      let inputGradients = try withScope("gradients") { g throws(GraphError) in
        try g.backward(of: index, outputGradients: outputGradients, needed: needed)
      }
      for (input, gradient) in zip(node.inputs, inputGradients) {
        if let gradient, relevant[input.node] { contributions[input, default: []].append(gradient) }
      }
    }

    var result: [Value] = []
    for p in parameters {
      if let parts = contributions[p] {
        result.append(try withScope("gradients") { g throws(GraphError) in try g.addN(parts) })
      } else {
        // A parameter the loss does not depend on has a zero gradient.
        result.append(try withScope("gradients") { g throws(GraphError) in try g.constant(0, g.shape(p)) })
      }
    }
    return result
  }

  /// The gradient rule of one node: given the gradients of its outputs (nil where none flows),
  /// returns the gradients of its inputs (nil where not needed or not defined).
  private mutating func backward(of index: Int, outputGradients: [Value?], needed: [Bool]) throws(GraphError) -> [Value?] {
    let node = nodes[index]
    let x = node.inputs
    let y = Value(node: index)
    let name = node.name.split(separator: "/").last.map(String.init) ?? node.op.name
    func only() throws(GraphError) -> Value {
      guard let dy = outputGradients[0], outputGradients.dropFirst().allSatisfy({ $0 == nil }) else {
        throw .notDifferentiable(op: node.name, reason: "only its first output can carry a gradient")
      }
      return dy
    }
    func op(_ op: Op, _ inputs: [Value], shape: Shape? = nil) throws(GraphError) -> Value {
      try add(op, inputs, name: name + "_grad", outputShapes: shape.map { [$0] })
    }

    switch node.op {
    case .input, .parameter, .constant:
      return []
    case let .conv2d(g):
      let dy = try only()
      return [needed[0] ? try op(.conv2dBackpropInput(g), [dy, x[1]]) : nil,
              needed[1] ? try op(.conv2dBackpropFilter(g), [x[0], dy]) : nil]
    case let .depthwiseConv2d(g):
      let dy = try only()
      return [needed[0] ? try op(.depthwiseConv2dBackpropInput(g), [dy, x[1]]) : nil,
              needed[1] ? try op(.depthwiseConv2dBackpropFilter(g), [x[0], dy]) : nil]
    case let .maxPool(g):
      return [try op(.maxPoolGrad(g), [x[0], try only()])]
    case let .avgPool(g):
      return [try op(.avgPoolGrad(g), [try only()])]
    case let .batchNormTraining(epsilon, relu):
      let dy = try only()
      let moments = [Value(node: index, output: 1), Value(node: index, output: 2)]
      let dx = try op(.batchNormGrad(epsilon: epsilon, relu: relu), [x[0], x[1]] + moments + [dy] + (relu ? [y] : []))
      return [dx, Value(node: dx.node, output: 1), Value(node: dx.node, output: 2)]
    case .relu:
      return [try op(.reluGrad, [try only(), y])]
    case .add:
      let dy = try only()
      return [dy, dy]
    case .addN:
      let dy = try only()
      return x.map { _ in dy }
    case let .scale(factor):
      return [try op(.scale(factor), [try only()])]
    case .multiplyByScalar:
      if needed[1] { throw .notDifferentiable(op: node.name, reason: "the gradient of the scalar factor is not implemented") }
      return [try op(.multiplyByScalar, [try only(), x[1]]), nil]
    case .dropout:
      return [try op(node.op, [try only()])]
    case .dropPath:
      if needed[1] { throw .notDifferentiable(op: node.name, reason: "the keep probability is a schedule, not a parameter") }
      return [try op(node.op, [try only(), x[1]]), nil]
    case .reshape:
      return [try op(.reshape, [try only()], shape: shape(x[0]))]
    case .concat:
      let dy = try only()
      var first = 0
      var result: [Value?] = []
      for (input, isNeeded) in zip(x, needed) {
        let width = shape(input).dims.last ?? 0
        result.append(isNeeded ? try op(.sliceChannels(first: first, width: width), [dy]) : nil)
        first += width
      }
      return result
    case let .slice(w):
      return [try op(.pad(w), [try only()], shape: shape(x[0]))]
    case let .pad(w):
      return [try op(.slice(w), [try only()], shape: shape(x[0]))]
    case .globalAvgPool:
      return [try op(.globalAvgPoolGrad, [try only()], shape: shape(x[0]))]
    case let .matmul(tA, tB):
      let dc = try only()
      let a = x[0], b = x[1]
      let da: Op, daInputs: [Value], db: Op, dbInputs: [Value]
      switch (tA, tB) {
      case (false, false): (da, daInputs, db, dbInputs) = (.matmul(transposeA: false, transposeB: true), [dc, b], .matmul(transposeA: true, transposeB: false), [a, dc])
      case (false, true): (da, daInputs, db, dbInputs) = (.matmul(transposeA: false, transposeB: false), [dc, b], .matmul(transposeA: true, transposeB: false), [dc, a])
      case (true, false): (da, daInputs, db, dbInputs) = (.matmul(transposeA: false, transposeB: true), [b, dc], .matmul(transposeA: false, transposeB: false), [a, dc])
      case (true, true): (da, daInputs, db, dbInputs) = (.matmul(transposeA: true, transposeB: true), [b, dc], .matmul(transposeA: true, transposeB: true), [dc, a])
      }
      return [needed[0] ? try op(da, daInputs) : nil, needed[1] ? try op(db, dbInputs) : nil]
    case .biasAdd:
      let dy = try only()
      return [dy, needed[1] ? try op(.biasAddGrad, [dy]) : nil]
    case let .softmaxCrossEntropy(labelSmoothing):
      if needed[1] { throw .notDifferentiable(op: node.name, reason: "labels are not differentiable") }
      return [try op(.softmaxCrossEntropyGrad(labelSmoothing: labelSmoothing), [x[0], x[1], try only()]), nil]
    case .l2Loss:
      return [try op(.multiplyByScalar, [x[0], try only()])]
    case .reduceSum:
      return [try op(.broadcastScalar(scale: 1), [try only()], shape: shape(x[0]))]
    case .reduceMean:
      return [try op(.broadcastScalar(scale: 1 / Float(max(shape(x[0]).elementCount, 1))), [try only()], shape: shape(x[0]))]
    case .batchNormInference:
      throw .notDifferentiable(op: node.name, reason: "inference batch norm is for evaluation; train with batchNormTraining")
    case .conv2dBackpropInput, .conv2dBackpropFilter, .depthwiseConv2dBackpropInput, .depthwiseConv2dBackpropFilter,
         .maxPoolGrad, .avgPoolGrad, .batchNormGrad, .reluGrad, .sliceChannels, .globalAvgPoolGrad, .biasAddGrad,
         .softmaxCrossEntropyGrad, .broadcastScalar:
      throw .notDifferentiable(op: node.name, reason: "second derivatives are not supported")
    case .applyRMSProp, .applyMomentum, .applyGradientDescent, .movingAverage, .stepSchedule, .allReduceMean:
      throw .notDifferentiable(op: node.name, reason: "state updates come after the gradients; differentiate the loss before adding them")
    }
  }
}
