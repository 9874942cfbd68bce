import Tensor

/// Typed constructors for the forward ops, in TensorFlow's vocabulary. Each computes what its op
/// needs (window geometry, output shape) from the input shapes and throws a `GraphError` naming
/// the op and the shapes when they do not fit.
extension Graph {
  public mutating func input(_ name: String, _ shape: Shape) throws(GraphError) -> Value {
    try add(.input(name: name), [], name: name, outputShapes: [shape])
  }

  public mutating func parameter(_ name: String, _ shape: Shape) throws(GraphError) -> Value {
    try add(.parameter(name: name), [], name: name, outputShapes: [shape])
  }

  public mutating func constant(_ value: Float, _ shape: Shape) throws(GraphError) -> Value {
    try add(.constant(value), [], outputShapes: [shape])
  }

  /// `tf.nn.conv2d` with an HWIO filter; `strides` and `dilations` are (height, width).
  public mutating func conv2d(_ x: Value, filter: Value, strides: (Int, Int) = (1, 1), dilations: (Int, Int) = (1, 1),
                              padding: Padding, name: String? = nil) throws(GraphError) -> Value {
    let f = shape(filter)
    guard f.rank == 4 else {
      throw .shapeMismatch(op: scoped(name ?? "conv2d"), inputs: [shape(x), f], reason: "filter must be [kh, kw, in, out]")
    }
    let g = try geometry("conv2d", name, x, [shape(x), f], window: (f[0], f[1]), strides: strides,
                         dilations: dilations, padding: padding, outChannels: f[3])
    return try add(.conv2d(g), [x, filter], name: name)
  }

  /// `tf.nn.depthwise_conv2d` with channel multiplier 1; the filter is `[kh, kw, C]`.
  public mutating func depthwiseConv2d(_ x: Value, filter: Value, strides: (Int, Int) = (1, 1),
                                       dilations: (Int, Int) = (1, 1), padding: Padding,
                                       name: String? = nil) throws(GraphError) -> Value {
    let f = shape(filter)
    guard f.rank == 3 else {
      throw .shapeMismatch(op: scoped(name ?? "depthwise_conv2d"), inputs: [shape(x), f], reason: "filter must be [kh, kw, C]")
    }
    let xs = shape(x)
    let g = try geometry("depthwise_conv2d", name, x, [xs, f], window: (f[0], f[1]), strides: strides,
                         dilations: dilations, padding: padding, outChannels: xs.rank == 4 ? xs[3] : 0)
    return try add(.depthwiseConv2d(g), [x, filter], name: name)
  }

  public mutating func maxPool(_ x: Value, window: (Int, Int), strides: (Int, Int), padding: Padding,
                               name: String? = nil) throws(GraphError) -> Value {
    let xs = shape(x)
    let g = try geometry("max_pool", name, x, [xs], window: window, strides: strides, dilations: (1, 1),
                         padding: padding, outChannels: xs.rank == 4 ? xs[3] : 0)
    return try add(.maxPool(g), [x], name: name)
  }

  public mutating func avgPool(_ x: Value, window: (Int, Int), strides: (Int, Int), padding: Padding,
                               name: String? = nil) throws(GraphError) -> Value {
    let xs = shape(x)
    let g = try geometry("avg_pool", name, x, [xs], window: window, strides: strides, dilations: (1, 1),
                         padding: padding, outChannels: xs.rank == 4 ? xs[3] : 0)
    return try add(.avgPool(g), [x], name: name)
  }

  /// Training-mode batch norm: returns (y, batch mean, biased batch variance).
  public mutating func batchNormTraining(_ x: Value, gamma: Value, beta: Value, epsilon: Float,
                                         name: String? = nil) throws(GraphError) -> (y: Value, mean: Value, variance: Value) {
    let y = try add(.batchNormTraining(epsilon: epsilon, relu: false), [x, gamma, beta], name: name)
    return (y, Value(node: y.node, output: 1), Value(node: y.node, output: 2))
  }

  public mutating func batchNormInference(_ x: Value, gamma: Value, beta: Value, mean: Value, variance: Value,
                                          epsilon: Float, name: String? = nil) throws(GraphError) -> Value {
    try add(.batchNormInference(epsilon: epsilon), [x, gamma, beta, mean, variance], name: name)
  }

  public mutating func relu(_ x: Value, name: String? = nil) throws(GraphError) -> Value { try add(.relu, [x], name: name) }
  public mutating func add(_ a: Value, _ b: Value, name: String? = nil) throws(GraphError) -> Value { try add(.add, [a, b], name: name) }
  public mutating func addN(_ xs: [Value], name: String? = nil) throws(GraphError) -> Value {
    xs.count == 1 ? xs[0] : try add(.addN, xs, name: name)
  }
  public mutating func scale(_ x: Value, by factor: Float, name: String? = nil) throws(GraphError) -> Value {
    try add(.scale(factor), [x], name: name)
  }
  public mutating func dropout(_ x: Value, keepProbability: Float, seed: UInt64, name: String? = nil) throws(GraphError) -> Value {
    guard keepProbability > 0, keepProbability <= 1 else {
      throw .shapeMismatch(op: scoped(name ?? "dropout"), inputs: [shape(x)], reason: "keep probability \(keepProbability) is not in (0, 1]")
    }
    return try add(.dropout(keepProbability: keepProbability, seed: seed), [x], name: name)
  }

  /// Drop-path with the keep probability read from a scalar tensor (see `Op.dropPath`).
  public mutating func dropPath(_ x: Value, keepProbability: Value, seed: UInt64, name: String? = nil) throws(GraphError) -> Value {
    try add(.dropPath(seed: seed), [x, keepProbability], name: name)
  }

  public mutating func reshape(_ x: Value, to shape: Shape, name: String? = nil) throws(GraphError) -> Value {
    try add(.reshape, [x], name: name, outputShapes: [shape])
  }

  public mutating func concat(_ xs: [Value], name: String? = nil) throws(GraphError) -> Value {
    xs.count == 1 ? xs[0] : try add(.concat, xs, name: name)
  }

  /// `x[:, top::strideH, left::strideW, :]` with `height`×`width` outputs (defaults: as many as fit).
  public mutating func slice(_ x: Value, top: Int = 0, left: Int = 0, strides: (Int, Int) = (1, 1),
                             height: Int? = nil, width: Int? = nil, name: String? = nil) throws(GraphError) -> Value {
    let xs = shape(x)
    guard xs.rank == 4 else { throw .shapeMismatch(op: scoped(name ?? "slice"), inputs: [xs], reason: "input must be NHWC") }
    let h = height ?? max(0, (xs[1] - top + strides.0 - 1) / strides.0)
    let w = width ?? max(0, (xs[2] - left + strides.1 - 1) / strides.1)
    let window = SpatialWindow(top: top, left: left, strideH: strides.0, strideW: strides.1)
    return try add(.slice(window), [x], name: name, outputShapes: [[xs[0], h, w, xs[3]]])
  }

  /// Zero padding of the spatial axes.
  public mutating func pad(_ x: Value, top: Int, bottom: Int, left: Int, right: Int, name: String? = nil) throws(GraphError) -> Value {
    let xs = shape(x)
    guard xs.rank == 4, min(top, bottom, left, right) >= 0 else {
      throw .shapeMismatch(op: scoped(name ?? "pad"), inputs: [xs], reason: "pad needs an NHWC input and non-negative amounts")
    }
    return try add(.pad(SpatialWindow(top: top, left: left)), [x], name: name,
                   outputShapes: [[xs[0], xs[1] + top + bottom, xs[2] + left + right, xs[3]]])
  }

  public mutating func globalAvgPool(_ x: Value, name: String? = nil) throws(GraphError) -> Value {
    try add(.globalAvgPool, [x], name: name)
  }

  public mutating func matmul(_ a: Value, _ b: Value, transposeA: Bool = false, transposeB: Bool = false,
                              name: String? = nil) throws(GraphError) -> Value {
    try add(.matmul(transposeA: transposeA, transposeB: transposeB), [a, b], name: name)
  }

  /// `x · weights + bias` for `x` `[N, K]`, `weights` `[K, M]`, `bias` `[M]`.
  public mutating func dense(_ x: Value, weights: Value, bias: Value, name: String? = nil) throws(GraphError) -> Value {
    let product = try matmul(x, weights, name: name.map { $0 + "/matmul" })
    return try add(.biasAdd, [product, bias], name: name.map { $0 + "/bias_add" })
  }

  public mutating func softmaxCrossEntropy(logits: Value, labels: Value, labelSmoothing: Float = 0,
                                           name: String? = nil) throws(GraphError) -> Value {
    try add(.softmaxCrossEntropy(labelSmoothing: labelSmoothing), [logits, labels], name: name)
  }

  public mutating func l2Loss(_ x: Value, name: String? = nil) throws(GraphError) -> Value { try add(.l2Loss, [x], name: name) }
  public mutating func reduceSum(_ x: Value, name: String? = nil) throws(GraphError) -> Value { try add(.reduceSum, [x], name: name) }
  public mutating func reduceMean(_ x: Value, name: String? = nil) throws(GraphError) -> Value { try add(.reduceMean, [x], name: name) }

  // MARK: Helpers

  /// `name` under the current scope, as a node added now would be named.
  public func scoped(_ name: String) -> String { (scope + [name]).joined(separator: "/") }

  private func geometry(_ op: String, _ name: String?, _ x: Value, _ shapes: [Shape], window: (Int, Int),
                        strides: (Int, Int), dilations: (Int, Int), padding: Padding,
                        outChannels: Int) throws(GraphError) -> WindowGeometry {
    let xs = shape(x)
    let fail = { (reason: String) in GraphError.shapeMismatch(op: scoped(name ?? op), inputs: shapes, reason: reason) }
    guard xs.rank == 4 else { throw fail("input must be NHWC") }
    guard min(window.0, window.1, strides.0, strides.1, dilations.0, dilations.1) >= 1 else {
      throw fail("window \(window), strides \(strides) and dilations \(dilations) must be positive")
    }
    guard let g = WindowGeometry(input: xs, window: window, strides: strides, dilations: dilations,
                                 padding: padding, outChannels: outChannels)
    else {
      throw fail("a \(window.0)x\(window.1) window (dilation \(dilations)) does not fit a \(xs[1])x\(xs[2]) input with \(padding.rawValue) padding")
    }
    return g
  }
}
