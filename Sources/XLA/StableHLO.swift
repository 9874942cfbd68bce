import Graph
import Tensor

/// A graph lowering that is not written yet, or a graph that cannot be lowered: names the op and
/// the node.
public struct LoweringError: Error, CustomStringConvertible, Sendable {
  public let description: String
}

/// Lowers an IR graph to a StableHLO module (MLIR text) with one function, `@main`: its arguments
/// are the graph's leaves (inputs and parameters) in node order, its results the requested
/// outputs. Each op becomes the construct `Op.stablehloName` names; NHWC activations and HWIO
/// filters map onto `convolution`'s `[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]` directly.
///
/// The forward ops of the evaluation graph are lowered so far; gradients, batch-norm training,
/// pooling, dropout and the losses are the next part of the lowering and are refused by name.
public struct StableHLOLowering {
  public let graph: Graph
  public let outputs: [Value]

  public init(graph: Graph, outputs: [Value]) { self.graph = graph; self.outputs = outputs }

  /// The leaves, in the order of `@main`'s arguments.
  public var arguments: [Value] {
    graph.nodes.indices.filter { if case .input = graph.nodes[$0].op { true } else if case .parameter = graph.nodes[$0].op { true } else { false } }
      .map { Value(node: $0) }
  }

  static func type(_ shape: Shape) -> String {
    shape.rank == 0 ? "tensor<f32>" : "tensor<" + shape.dims.map(String.init).joined(separator: "x") + "xf32>"
  }

  static func float(_ x: Float) -> String {
    // MLIR float literals need a decimal point or an exponent.
    let text = "\(x)"
    return text.contains(".") || text.contains("e") || text.contains("n") ? text : text + ".0"
  }

  public func module(named moduleName: String = "amoeba") throws(LoweringError) -> String {
    let leaves = arguments
    var names: [Value: String] = [:]
    for (i, leaf) in leaves.enumerated() { names[leaf] = "%arg\(i)" }
    var body: [String] = []
    var temporary = 0
    func fresh() -> String { temporary += 1; return "%t\(temporary)" }
    func name(_ value: Value) -> String { names[value]! }
    func type(_ value: Value) -> String { StableHLOLowering.type(graph.shape(value)) }
    /// A tensor of `shape` filled with `value`.
    func splat(_ value: Float, _ shape: Shape) -> String {
      let result = fresh()
      body.append("\(result) = stablehlo.constant dense<\(StableHLOLowering.float(value))> : \(StableHLOLowering.type(shape))")
      return result
    }

    // Only nodes the outputs depend on.
    var needed = Set<Int>()
    var stack = outputs.map(\.node)
    while let node = stack.popLast() {
      guard needed.insert(node).inserted else { continue }
      stack += graph.nodes[node].inputs.map(\.node)
    }
    for index in needed.sorted() {
      let node = graph.nodes[index]
      let out = Value(node: index)
      if names[out] != nil { continue }
      let x = node.inputs.first.map(name) ?? ""
      let resultType = StableHLOLowering.type(node.outputs[0])
      let result = "%v\(index)"
      switch node.op {
      case .input, .parameter:
        continue
      case let .constant(value):
        body.append("\(result) = stablehlo.constant dense<\(StableHLOLowering.float(value))> : \(resultType)")
      case let .conv2d(g):
        body.append("\(result) = stablehlo.convolution(\(x), \(name(node.inputs[1]))) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], window = {\(StableHLOLowering.window(g))} {batch_group_count = 1 : i64, feature_group_count = 1 : i64} : (\(type(node.inputs[0])), \(type(node.inputs[1]))) -> \(resultType)")
      case let .depthwiseConv2d(g):
        // The [kh, kw, C] filter as [kh, kw, 1, C], one group per channel.
        let filter = fresh(), filterType = StableHLOLowering.type([g.kh, g.kw, 1, g.inC])
        body.append("\(filter) = stablehlo.reshape \(name(node.inputs[1])) : (\(type(node.inputs[1]))) -> \(filterType)")
        body.append("\(result) = stablehlo.convolution(\(x), \(filter)) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], window = {\(StableHLOLowering.window(g))} {batch_group_count = 1 : i64, feature_group_count = \(g.inC) : i64} : (\(type(node.inputs[0])), \(filterType)) -> \(resultType)")
      case .relu:
        let zero = splat(0, node.outputs[0])
        body.append("\(result) = stablehlo.maximum \(x), \(zero) : \(resultType)")
      case .add:
        body.append("\(result) = stablehlo.add \(x), \(name(node.inputs[1])) : \(resultType)")
      case .addN:
        // In input order, as the CPU kernel sums.
        var sum = x
        for (k, input) in node.inputs.dropFirst().enumerated() {
          let next = k == node.inputs.count - 2 ? result : fresh()
          body.append("\(next) = stablehlo.add \(sum), \(name(input)) : \(resultType)")
          sum = next
        }
        if node.inputs.count == 1 { names[out] = x; continue }
      case let .scale(factor):
        let c = splat(factor, node.outputs[0])
        body.append("\(result) = stablehlo.multiply \(x), \(c) : \(resultType)")
      case .concat:
        let operands = node.inputs.map(name).joined(separator: ", ")
        let types = node.inputs.map(type).joined(separator: ", ")
        body.append("\(result) = stablehlo.concatenate \(operands), dim = \(node.outputs[0].rank - 1) : (\(types)) -> \(resultType)")
      case .reshape:
        body.append("\(result) = stablehlo.reshape \(x) : (\(type(node.inputs[0]))) -> \(resultType)")
      case .globalAvgPool:
        let s = graph.shape(node.inputs[0])
        let zero = fresh(), sum = fresh()
        body.append("\(zero) = stablehlo.constant dense<0.0> : tensor<f32>")
        body.append("\(sum) = stablehlo.reduce(\(x) init: \(zero)) applies stablehlo.add across dimensions = [1, 2] : (\(type(node.inputs[0])), tensor<f32>) -> \(resultType)")
        let count = splat(Float(s[1] * s[2]), node.outputs[0])
        body.append("\(result) = stablehlo.divide \(sum), \(count) : \(resultType)")
      case let .matmul(transposeA, transposeB):
        body.append("\(result) = stablehlo.dot_general \(x), \(name(node.inputs[1])), contracting_dims = [\(transposeA ? 0 : 1)] x [\(transposeB ? 1 : 0)] : (\(type(node.inputs[0])), \(type(node.inputs[1]))) -> \(resultType)")
      case .biasAdd:
        let rank = node.outputs[0].rank
        let bias = fresh()
        body.append("\(bias) = stablehlo.broadcast_in_dim \(name(node.inputs[1])), dims = [\(rank - 1)] : (\(type(node.inputs[1]))) -> \(resultType)")
        body.append("\(result) = stablehlo.add \(x), \(bias) : \(resultType)")
      case let .batchNormInference(epsilon):
        let c = node.inputs[1...].map(type)
        body.append("\(result) = \"stablehlo.batch_norm_inference\"(\(node.inputs.map(name).joined(separator: ", "))) {epsilon = \(StableHLOLowering.float(epsilon)) : f32, feature_index = \(node.outputs[0].rank - 1) : i64} : (\(type(node.inputs[0])), \(c.joined(separator: ", "))) -> \(resultType)")
      default:
        throw LoweringError(description: "the StableHLO lowering of \(node.op.name) (node \(node.name)) is not written yet; it would use \(node.op.stablehloName)")
      }
      names[out] = result
    }
    let argumentList = leaves.enumerated().map { "%arg\($0.offset): \(type($0.element))" }.joined(separator: ", ")
    let resultTypes = outputs.map(type).joined(separator: ", ")
    var text = "module @\(moduleName) {\n  func.func public @main(\(argumentList)) -> (\(resultTypes)) {\n"
    for line in body { text += "    \(line)\n" }
    text += "    return \(outputs.map(name).joined(separator: ", ")) : \(resultTypes)\n  }\n}\n"
    return text
  }

  /// `convolution`'s window attribute from a geometry. The padding after is what the output size
  /// needs (TensorFlow's SAME puts the odd pixel there); never negative.
  static func window(_ g: WindowGeometry) -> String {
    let bottom = max(0, (g.outH - 1) * g.strideH + (g.kh - 1) * g.dilationH + 1 - g.inH - g.padTop)
    let right = max(0, (g.outW - 1) * g.strideW + (g.kw - 1) * g.dilationW + 1 - g.inW - g.padLeft)
    return "stride = [\(g.strideH), \(g.strideW)], pad = [[\(g.padTop), \(bottom)], [\(g.padLeft), \(right)]], rhs_dilate = [\(g.dilationH), \(g.dilationW)]"
  }
}
