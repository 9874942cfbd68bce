import Testing
import Graph
import Tensor

/// A finite-difference check for every differentiable op, on shapes with odd sizes and strides.
@Suite struct GradientTests {
  let checker = GradientChecker()

  @Test(arguments: [
    ((3, 3), (1, 1), (1, 1), Padding.same), ((3, 3), (2, 2), (1, 1), .same), ((1, 7), (1, 2), (1, 1), .same),
    ((7, 1), (2, 1), (1, 1), .same), ((3, 3), (2, 2), (1, 1), .valid), ((3, 3), (1, 1), (2, 2), .same),
    ((1, 1), (1, 1), (1, 1), .same), ((1, 1), (2, 2), (1, 1), .same),
  ])
  func conv2d(window: (Int, Int), strides: (Int, Int), dilations: (Int, Int), padding: Padding) throws {
    try checker.checkOp([Parameter("x", [2, 7, 6, 3], seed: 1), Parameter("w", [window.0, window.1, 3, 4], seed: 2)]) { g, p, _ in
      try g.conv2d(p[0], filter: p[1], strides: strides, dilations: dilations, padding: padding)
    }
  }

  @Test(arguments: [((3, 3), (1, 1), Padding.same), ((5, 5), (2, 2), .same), ((3, 3), (2, 2), .valid)])
  func depthwiseConv2d(window: (Int, Int), strides: (Int, Int), padding: Padding) throws {
    try checker.checkOp([Parameter("x", [2, 6, 7, 5], seed: 3), Parameter("w", [window.0, window.1, 5], seed: 4)]) { g, p, _ in
      try g.depthwiseConv2d(p[0], filter: p[1], strides: strides, padding: padding)
    }
  }

  @Test(arguments: [((3, 3), (1, 1), Padding.same), ((3, 3), (2, 2), .same), ((2, 2), (2, 2), .same), ((5, 5), (3, 3), .valid)])
  func pooling(window: (Int, Int), strides: (Int, Int), padding: Padding) throws {
    // Spread 0.01 apart (no ties within a step) with 17 channels, so the vector body and the
    // scalar tail of the kernels both run; small enough a loss for float32 differences.
    let x = Parameter("x", [1, 5, 5, 17], distinct(425, seed: 5, gap: 0.01))
    try checker.checkOp([x]) { g, p, _ in try g.maxPool(p[0], window: window, strides: strides, padding: padding) }
    try checker.checkOp([x]) { g, p, _ in try g.avgPool(p[0], window: window, strides: strides, padding: padding) }
  }

  /// 4 channels take the scalar tail of the kernels, 19 the vector body and the tail.
  @Test(arguments: [4, 19])
  func batchNormTraining(channels: Int) throws {
    try checker.checkOp([Parameter("x", [3, 3, 2, channels], seed: 6), Parameter("gamma", [channels], uniform(channels, seed: 7, in: 0.5...1.5)),
                         Parameter("beta", [channels], seed: 8)]) { g, p, _ in
      try g.batchNormTraining(p[0], gamma: p[1], beta: p[2], epsilon: 1e-3).y
    }
  }

  @Test func elementwise() throws {
    let x = Parameter("x", [2, 3, 3, 4], distinct(72, seed: 9))
    try checker.checkOp([x]) { g, p, _ in try g.relu(p[0]) }
    try checker.checkOp([x]) { g, p, _ in try g.scale(p[0], by: -0.7) }
    try checker.checkOp([x, Parameter("b", [2, 3, 3, 4], seed: 10)]) { g, p, _ in try g.add(p[0], p[1]) }
    // Fan-out: x used three times, once through a ReLU.
    try checker.checkOp([x]) { g, p, _ in try g.addN([p[0], try g.relu(p[0]), p[0]]) }
    try checker.checkOp([x], inputs: [("s", .scalar, [1.7])]) { g, p, i in try g.add(.multiplyByScalar, [p[0], i[0]]) }
    try checker.checkOp([x]) { g, p, _ in try g.dropout(p[0], keepProbability: 0.6, seed: 42) }
    try checker.checkOp([x], inputs: [("keep", .scalar, [0.7])]) { g, p, i in try g.dropPath(p[0], keepProbability: i[0], seed: 3) }
  }

  @Test func dataMovement() throws {
    let a = Parameter("a", [2, 5, 4, 3], seed: 11), b = Parameter("b", [2, 5, 4, 2], seed: 12)
    try checker.checkOp([a, b]) { g, p, _ in try g.concat([p[0], p[1], p[0]]) }
    try checker.checkOp([a]) { g, p, _ in try g.slice(p[0], top: 1, left: 1, strides: (2, 2)) }
    try checker.checkOp([a]) { g, p, _ in try g.slice(p[0], strides: (2, 2)) }
    try checker.checkOp([a]) { g, p, _ in try g.pad(p[0], top: 0, bottom: 1, left: 2, right: 1) }
    try checker.checkOp([a]) { g, p, _ in try g.globalAvgPool(p[0]) }
    try checker.checkOp([a]) { g, p, _ in try g.reshape(p[0], to: [2, 60]) }
  }

  @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
  func matmul(transposeA: Bool, transposeB: Bool) throws {
    let a = Parameter("a", transposeA ? [5, 3] : [3, 5], seed: 13), b = Parameter("b", transposeB ? [4, 5] : [5, 4], seed: 14)
    try checker.checkOp([a, b]) { g, p, _ in try g.matmul(p[0], p[1], transposeA: transposeA, transposeB: transposeB) }
  }

  @Test func denseAndReductions() throws {
    try checker.checkOp([Parameter("x", [3, 6], seed: 15), Parameter("w", [6, 4], seed: 16), Parameter("bias", [4], seed: 17)]) { g, p, _ in
      try g.dense(p[0], weights: p[1], bias: p[2])
    }
    let x = Parameter("x", [2, 3, 4], seed: 18)
    try checker.checkOp([x]) { g, p, _ in try g.l2Loss(p[0]) }
    try checker.checkOp([x]) { g, p, _ in try g.reduceSum(p[0]) }
    try checker.checkOp([x]) { g, p, _ in try g.reduceMean(p[0]) }
  }

  @Test func softmaxCrossEntropyWithLabelSmoothing() throws {
    let logits = Parameter("logits", [4, 7], uniform(28, seed: 19, in: -3...3))
    try checker.checkLoss([logits], inputs: [("labels", [4], [0, 6, 3, 3])]) { g, p, i in
      (try g.softmaxCrossEntropy(logits: p[0], labels: i[0], labelSmoothing: 0.1), [])
    }
  }
}
