import Tensor

extension Op {
  /// Output shapes of this op for the given input shapes, or a `GraphError` saying what does not fit.
  /// `declared` carries the output shape of ops whose output cannot be derived from the inputs
  /// (leaves, `slice`, `pad`, `broadcastScalar`, `globalAvgPoolGrad`).
  func inferShapes(_ inputs: [Shape], declared: [Shape]?, name: String) throws(GraphError) -> [Shape] {
    func fail(_ reason: String) -> GraphError { .shapeMismatch(op: name, inputs: inputs, reason: reason) }
    func arity(_ count: Int) throws(GraphError) {
      if inputs.count != count { throw fail("expects \(count) inputs, got \(inputs.count)") }
    }
    func needDeclared() throws(GraphError) -> Shape {
      guard let declared, declared.count == 1 else { throw fail("needs its output shape") }
      return declared[0]
    }
    func expect(_ index: Int, _ shape: Shape, _ what: String) throws(GraphError) {
      if inputs[index] != shape { throw fail("\(what) must be \(shape), got \(inputs[index])") }
    }
    func channels(_ index: Int) throws(GraphError) -> Int {
      guard let last = inputs[index].dims.last, inputs[index].rank >= 1 else { throw fail("input \(index) has no channel axis") }
      return last
    }

    switch self {
    case .input, .parameter, .constant:
      try arity(0)
      return [try needDeclared()]

    case let .conv2d(g):
      try arity(2)
      try expect(0, g.inputShape, "input"); try expect(1, [g.kh, g.kw, g.inC, g.outC], "filter")
      return [g.outputShape]
    case let .conv2dBackpropInput(g):
      try arity(2)
      try expect(0, g.outputShape, "output gradient"); try expect(1, [g.kh, g.kw, g.inC, g.outC], "filter")
      return [g.inputShape]
    case let .conv2dBackpropFilter(g):
      try arity(2)
      try expect(0, g.inputShape, "input"); try expect(1, g.outputShape, "output gradient")
      return [[g.kh, g.kw, g.inC, g.outC]]
    case let .depthwiseConv2d(g):
      try arity(2)
      try expect(0, g.inputShape, "input"); try expect(1, [g.kh, g.kw, g.inC], "filter")
      return [g.outputShape]
    case let .depthwiseConv2dBackpropInput(g):
      try arity(2)
      try expect(0, g.outputShape, "output gradient"); try expect(1, [g.kh, g.kw, g.inC], "filter")
      return [g.inputShape]
    case let .depthwiseConv2dBackpropFilter(g):
      try arity(2)
      try expect(0, g.inputShape, "input"); try expect(1, g.outputShape, "output gradient")
      return [[g.kh, g.kw, g.inC]]

    case let .maxPool(g), let .avgPool(g):
      try arity(1)
      try expect(0, g.inputShape, "input")
      return [g.outputShape]
    case let .maxPoolGrad(g):
      try arity(2)
      try expect(0, g.inputShape, "input"); try expect(1, g.outputShape, "output gradient")
      return [g.inputShape]
    case let .avgPoolGrad(g):
      try arity(1)
      try expect(0, g.outputShape, "output gradient")
      return [g.inputShape]

    case .batchNormTraining:
      try arity(3)
      let c = try channels(0)
      try expect(1, [c], "gamma"); try expect(2, [c], "beta")
      return [inputs[0], [c], [c]]
    case .batchNormInference:
      try arity(5)
      let c = try channels(0)
      for (i, what) in [(1, "gamma"), (2, "beta"), (3, "mean"), (4, "variance")] { try expect(i, [c], what) }
      return [inputs[0]]
    case let .batchNormGrad(_, relu):
      try arity(relu ? 6 : 5)
      let c = try channels(0)
      for (i, what) in [(1, "gamma"), (2, "mean"), (3, "variance")] { try expect(i, [c], what) }
      try expect(4, inputs[0], "output gradient")
      if relu { try expect(5, inputs[0], "fused output") }
      return [inputs[0], [c], [c]]

    case .relu, .scale, .dropout:
      try arity(1)
      return [inputs[0]]
    case .reluGrad, .add:
      try arity(2)
      try expect(1, inputs[0], "second operand")
      return [inputs[0]]
    case .addN:
      if inputs.count < 2 { throw fail("needs at least 2 inputs") }
      for i in 1..<inputs.count { try expect(i, inputs[0], "operand \(i)") }
      return [inputs[0]]
    case .multiplyByScalar:
      try arity(2)
      try expect(1, .scalar, "scale")
      return [inputs[0]]

    case .concat:
      if inputs.isEmpty { throw fail("needs at least 1 input") }
      let leading = Array(inputs[0].dims.dropLast())
      var total = 0
      for (i, shape) in inputs.enumerated() {
        if shape.rank != inputs[0].rank || Array(shape.dims.dropLast()) != leading {
          throw fail("input \(i) differs from input 0 outside the channel axis")
        }
        total += shape.dims.last ?? 0
      }
      return [Shape(leading + [total])]
    case let .sliceChannels(first, width):
      try arity(1)
      let c = try channels(0)
      if first < 0 || width < 0 || first + width > c { throw fail("channels \(first)..<\(first + width) out of 0..<\(c)") }
      return [Shape(inputs[0].dims.dropLast() + [width])]
    case let .slice(w):
      try arity(1)
      let out = try needDeclared(), x = inputs[0]
      guard x.rank == 4, out.rank == 4, out[0] == x[0], out[3] == x[3], w.strideH >= 1, w.strideW >= 1,
            w.top >= 0, w.left >= 0,
            out[1] == 0 || w.top + (out[1] - 1) * w.strideH < x[1],
            out[2] == 0 || w.left + (out[2] - 1) * w.strideW < x[2]
      else { throw fail("slice \(w) to \(out) does not fit the input") }
      return [out]
    case let .pad(w):
      try arity(1)
      let out = try needDeclared(), x = inputs[0]
      guard x.rank == 4, out.rank == 4, out[0] == x[0], out[3] == x[3], w.strideH >= 1, w.strideW >= 1,
            w.top >= 0, w.left >= 0,
            x[1] == 0 || w.top + (x[1] - 1) * w.strideH < out[1],
            x[2] == 0 || w.left + (x[2] - 1) * w.strideW < out[2]
      else { throw fail("pad \(w) to \(out) does not hold the input") }
      return [out]
    case .globalAvgPool:
      try arity(1)
      if inputs[0].rank != 4 { throw fail("input must be NHWC") }
      return [[inputs[0][0], inputs[0][3]]]
    case .dropPath:
      try arity(2)
      if inputs[0].rank < 1 { throw fail("input needs a batch axis") }
      try expect(1, .scalar, "keep probability")
      return [inputs[0]]
    case .reshape:
      try arity(1)
      let out = try needDeclared()
      if out.elementCount != inputs[0].elementCount { throw fail("cannot reshape \(inputs[0]) to \(out)") }
      return [out]
    case .globalAvgPoolGrad:
      try arity(1)
      let out = try needDeclared()
      if out.rank != 4 || inputs[0] != [out[0], out[3]] { throw fail("gradient \(inputs[0]) does not match NHWC \(out)") }
      return [out]

    case let .matmul(transposeA, transposeB):
      try arity(2)
      guard inputs[0].rank == 2, inputs[1].rank == 2 else { throw fail("operands must be matrices") }
      let (m, ka) = transposeA ? (inputs[0][1], inputs[0][0]) : (inputs[0][0], inputs[0][1])
      let (kb, n) = transposeB ? (inputs[1][1], inputs[1][0]) : (inputs[1][0], inputs[1][1])
      if ka != kb { throw fail("inner dimensions differ: \(ka) vs \(kb)") }
      return [[m, n]]
    case .biasAdd:
      try arity(2)
      try expect(1, [try channels(0)], "bias")
      return [inputs[0]]
    case .biasAddGrad:
      try arity(1)
      return [[try channels(0)]]

    case .softmaxCrossEntropy:
      try arity(2)
      if inputs[0].rank != 2 { throw fail("logits must be [batch, classes]") }
      try expect(1, [inputs[0][0]], "labels")
      return [.scalar]
    case .softmaxCrossEntropyGrad:
      try arity(3)
      if inputs[0].rank != 2 { throw fail("logits must be [batch, classes]") }
      try expect(1, [inputs[0][0]], "labels"); try expect(2, .scalar, "loss gradient")
      return [inputs[0]]
    case .l2Loss, .reduceSum, .reduceMean:
      try arity(1)
      return [.scalar]
    case .broadcastScalar:
      try arity(1)
      try expect(0, .scalar, "input")
      return [try needDeclared()]
    case .applyRMSProp:
      try arity(5)
      for (i, what) in [(1, "ms"), (2, "mom"), (3, "gradient")] { try expect(i, inputs[0], what) }
      try expect(4, .scalar, "learning rate")
      return [inputs[0], inputs[0], inputs[0]]
    case .applyMomentum:
      try arity(4)
      try expect(1, inputs[0], "accumulation"); try expect(2, inputs[0], "gradient"); try expect(3, .scalar, "learning rate")
      return [inputs[0], inputs[0]]
    case .applyGradientDescent:
      try arity(3)
      try expect(1, inputs[0], "gradient"); try expect(2, .scalar, "learning rate")
      return [inputs[0]]
    case .movingAverage:
      try arity(3)
      try expect(1, inputs[0], "value"); try expect(2, .scalar, "decay")
      return [inputs[0]]
    case .stepSchedule:
      try arity(1)
      try expect(0, .scalar, "step")
      return [.scalar]
    case .allReduceMean:
      if inputs.isEmpty { throw fail("needs at least one input") }
      return inputs
    }
  }
}
