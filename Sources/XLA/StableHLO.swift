import Graph
import Tensor

/// Lowers an IR graph to a StableHLO module (MLIR text) with one function, `@main`: its arguments
/// are the graph's leaves (inputs and parameters) in node order, its results the requested
/// outputs. Each op becomes the construct `Op.stablehloName` names; NHWC activations and HWIO
/// filters map onto `convolution`'s `[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]` directly.
///
/// Every op of the IR has a lowering (the switch is exhaustive, so a new op cannot be added
/// without one), including the CPU backend's fused BN+ReLU forms, lowered to the pair they replaced.
public struct StableHLOLowering {
  /// What convolutions and matrix products compute in. `bfloat16`: their operands are rounded to
  /// bf16 and they accumulate into f32 results (what a TPU's matrix unit does at full rate);
  /// everything else — weights, batch norm, the loss, gradients' sums — stays f32.
  public enum Precision: String, Sendable {
    case float32, bfloat16
  }

  public let graph: Graph
  public let outputs: [Value]
  public let precision: Precision
  /// Values that arrive as arguments (after the leaves) instead of being computed: the cut
  /// between two programs, such as the averaged gradients after the ring.
  public let cut: [Value]
  /// When set, the random stream is computed in the program as offset + the step counter's value
  /// (as `Executor.randomStreamFromStep`), so no stream argument is passed.
  public let randomStreamFromStep: (step: Value, offset: UInt64)?
  /// Arguments donated to outputs (argument value → output index): the state a step replaces is
  /// updated in the device memory it came in (XLA's input–output aliasing).
  public let aliases: [Value: Int]
  /// The global index of the batch's first example (`Executor.exampleOffset`), baked into the masks.
  public let exampleOffset: Int
  /// Devices the program is replicated over (one host's local devices). Above 1, the
  /// data-parallel boundary is a cross-replica mean (`stablehlo.all_reduce` over all replicas,
  /// over ICI or NVLink where the devices have them) instead of the identity.
  public let replicas: Int
  /// Outputs returned as their mean over the replicas (the gradients the host ring averages next).
  public let averagedOverReplicas: Set<Value>
  /// The nodes the outputs need, cut values excluded.
  let needed: Set<Int>

  public init(graph: Graph, outputs: [Value], precision: Precision = .float32, cut: [Value] = [],
              randomStreamFromStep: (step: Value, offset: UInt64)? = nil, aliases: [Value: Int] = [:], exampleOffset: Int = 0,
              replicas: Int = 1, averagedOverReplicas: Set<Value> = []) {
    precondition(replicas >= 1, "replicas \(replicas)")
    self.exampleOffset = exampleOffset
    self.replicas = replicas
    self.averagedOverReplicas = averagedOverReplicas
    self.graph = graph
    self.outputs = outputs
    self.precision = precision
    self.cut = cut
    self.randomStreamFromStep = randomStreamFromStep
    self.aliases = aliases
    let cutSet = Set(cut)
    var needed = Set<Int>()
    var stack = outputs.filter { !cutSet.contains($0) }.map(\.node)
    while let node = stack.popLast() {
      guard needed.insert(node).inserted else { continue }
      stack += graph.nodes[node].inputs.filter { !cutSet.contains($0) }.map(\.node)
    }
    let random = needed.contains { if case .dropout = graph.nodes[$0].op { true } else if case .dropPath = graph.nodes[$0].op { true } else { false } }
    if random, let (step, _) = randomStreamFromStep { needed.insert(step.node) }
    self.needed = needed
  }

  /// Whether the needed nodes draw random masks (dropout, drop-path). Without
  /// `randomStreamFromStep`, `@main` then takes one more argument after the others, the run's
  /// random stream (`tensor<ui64>`, the executor's `randomStream`).
  public var usesRandomStream: Bool {
    needed.contains { if case .dropout = graph.nodes[$0].op { true } else if case .dropPath = graph.nodes[$0].op { true } else { false } }
  }

  /// Whether `@main` takes the random stream as its last argument.
  public var takesRandomStream: Bool { usesRandomStream && randomStreamFromStep == nil }

  /// `@main`'s arguments: the leaves the outputs need, in node order, then the cut values.
  public var arguments: [Value] {
    needed.sorted().filter { if case .input = graph.nodes[$0].op { true } else if case .parameter = graph.nodes[$0].op { true } else { false } }
      .map { Value(node: $0) } + cut
  }

  static func type(_ shape: Shape) -> String {
    shape.rank == 0 ? "tensor<f32>" : "tensor<" + shape.dims.map(String.init).joined(separator: "x") + "xf32>"
  }

  /// A float32 constant by its bits, so XLA sees exactly the value the CPU kernels use.
  static func float(_ x: Float) -> String { "0x" + String(format8: x.bitPattern) }

  public func module(named moduleName: String = "amoeba") -> String {
    let leaves = arguments
    var names: [Value: String] = [:]
    for (i, leaf) in leaves.enumerated() { names[leaf] = "%arg\(i)" }
    var body: [String] = []
    var temporary = 0
    func fresh() -> String { temporary += 1; return "%t\(temporary)" }
    func name(_ value: Value) -> String { names[value]! }
    func type(_ value: Value) -> String { StableHLOLowering.type(graph.shape(value)) }
    /// A contraction's operand in the lowering's precision.
    func narrowed(_ operand: String, _ operandType: String) -> (String, String) {
      guard precision == .bfloat16 else { return (operand, operandType) }
      let converted = fresh(), narrowType = String(operandType.dropLast("f32>".count)) + "bf16>"
      body.append("\(converted) = stablehlo.convert \(operand) : (\(operandType)) -> \(narrowType)")
      return (converted, narrowType)
    }
    /// A tensor of `shape` filled with `value`.
    func splat(_ value: Float, _ shape: Shape) -> String {
      let result = fresh()
      body.append("\(result) = stablehlo.constant dense<\(StableHLOLowering.float(value))> : \(StableHLOLowering.type(shape))")
      return result
    }

    /// The mean of `operand` over the replicas: a cross-replica sum, then 1/N.
    func meanOverReplicas(_ operand: String, _ t: String, _ shape: Shape) -> String {
      let sum = fresh(), a = fresh(), b = fresh(), c = fresh(), mean = fresh()
      body += [
        "\(sum) = \"stablehlo.all_reduce\"(\(operand)) ({",
        "  ^bb0(\(a): tensor<f32>, \(b): tensor<f32>):",
        "    \(c) = stablehlo.add \(a), \(b) : tensor<f32>",
        "    stablehlo.return \(c) : tensor<f32>",
        "}) {replica_groups = dense<[[\(StableHLOLowering.list(Array(0..<replicas)))]]> : tensor<1x\(replicas)xi64>} : (\(t)) -> \(t)",
        "\(mean) = stablehlo.multiply \(sum), \(splat(1 / Float(replicas), shape)) : \(t)",
      ]
      return mean
    }

    if usesRandomStream, let (step, offset) = randomStreamFromStep {
      let bits = fresh(), start = fresh()
      body.append("\(start) = stablehlo.constant dense<\(offset)> : tensor<ui64>")
      body.append("\(bits) = stablehlo.convert \(name(step)) : (tensor<f32>) -> tensor<ui64>")
      body.append("%stream = stablehlo.add \(start), \(bits) : tensor<ui64>")
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
      case .allReduceMean:
        // One device: the boundary is the identity (two programs cut here for the host ring).
        guard replicas > 1 else {
          for k in node.inputs.indices { names[Value(node: index, output: k)] = name(node.inputs[k]) }
          continue
        }
        for (k, input) in node.inputs.enumerated() {
          names[Value(node: index, output: k)] = meanOverReplicas(name(input), type(input), graph.shape(input))
        }
        continue
      case let .applyRMSProp(rho, mu, epsilon):
        let (w, ms, mom, g) = (name(node.inputs[0]), name(node.inputs[1]), name(node.inputs[2]), name(node.inputs[3]))
        let shape = node.outputs[0], t = resultType
        let rate = fresh(), decayed = fresh(), scaledG = fresh(), squared = fresh(), newMS = fresh(), shifted = fresh(),
            root = fresh(), numerator = fresh(), quotient = fresh(), kept = fresh(), newMom = fresh(), newW = fresh()
        body.append("\(rate) = stablehlo.broadcast_in_dim \(name(node.inputs[4])), dims = [] : (tensor<f32>) -> \(t)")
        body.append("\(decayed) = stablehlo.multiply \(splat(rho, shape)), \(ms) : \(t)")
        body.append("\(scaledG) = stablehlo.multiply \(splat(1 - rho, shape)), \(g) : \(t)")
        body.append("\(squared) = stablehlo.multiply \(scaledG), \(g) : \(t)")
        body.append("\(newMS) = stablehlo.add \(decayed), \(squared) : \(t)")
        body.append("\(shifted) = stablehlo.add \(newMS), \(splat(epsilon, shape)) : \(t)")
        body.append("\(root) = stablehlo.sqrt \(shifted) : \(t)")
        body.append("\(numerator) = stablehlo.multiply \(rate), \(g) : \(t)")
        body.append("\(quotient) = stablehlo.divide \(numerator), \(root) : \(t)")
        body.append("\(kept) = stablehlo.multiply \(splat(mu, shape)), \(mom) : \(t)")
        body.append("\(newMom) = stablehlo.add \(kept), \(quotient) : \(t)")
        body.append("\(newW) = stablehlo.subtract \(w), \(newMom) : \(t)")
        for (k, value) in [newW, newMS, newMom].enumerated() { names[Value(node: index, output: k)] = value }
        continue
      case let .applyMomentum(mu):
        let (w, accumulation, g) = (name(node.inputs[0]), name(node.inputs[1]), name(node.inputs[2]))
        let t = resultType, rate = fresh(), kept = fresh(), newAccumulation = fresh(), step = fresh(), newW = fresh()
        body.append("\(rate) = stablehlo.broadcast_in_dim \(name(node.inputs[3])), dims = [] : (tensor<f32>) -> \(t)")
        body.append("\(kept) = stablehlo.multiply \(splat(mu, node.outputs[0])), \(accumulation) : \(t)")
        body.append("\(newAccumulation) = stablehlo.add \(kept), \(g) : \(t)")
        body.append("\(step) = stablehlo.multiply \(rate), \(newAccumulation) : \(t)")
        body.append("\(newW) = stablehlo.subtract \(w), \(step) : \(t)")
        names[Value(node: index, output: 1)] = newAccumulation
        names[out] = newW
        continue
      case .applyGradientDescent:
        let rate = fresh(), step = fresh()
        body.append("\(rate) = stablehlo.broadcast_in_dim \(name(node.inputs[2])), dims = [] : (tensor<f32>) -> \(resultType)")
        body.append("\(step) = stablehlo.multiply \(rate), \(name(node.inputs[1])) : \(resultType)")
        body.append("\(result) = stablehlo.subtract \(x), \(step) : \(resultType)")
      case let .movingAverage(scale):
        let one = fresh(), rate = fresh(), spread = fresh(), difference = fresh(), step = fresh()
        var value = name(node.inputs[1])
        if scale != 1 {
          let scaled = fresh()
          body.append("\(scaled) = stablehlo.multiply \(value), \(splat(scale, node.outputs[0])) : \(resultType)")
          value = scaled
        }
        body.append("\(one) = stablehlo.constant dense<\(StableHLOLowering.float(1))> : tensor<f32>")
        body.append("\(rate) = stablehlo.subtract \(one), \(name(node.inputs[2])) : tensor<f32>")
        body.append("\(spread) = stablehlo.broadcast_in_dim \(rate), dims = [] : (tensor<f32>) -> \(resultType)")
        body.append("\(difference) = stablehlo.subtract \(x), \(value) : \(resultType)")
        body.append("\(step) = stablehlo.multiply \(spread), \(difference) : \(resultType)")
        body.append("\(result) = stablehlo.subtract \(x), \(step) : \(resultType)")
      case let .stepSchedule(schedule):
        let (lines, value) = StableHLOLowering.schedule(schedule, step: x, fresh: fresh)
        body += lines
        names[out] = value
        continue
      case let .dropout(keep, seed):
        // CounterRandom(seed, stream, element index) as ui64 arithmetic: the CPU's mask, bit for bit.
        let shape = node.outputs[0], count = shape.elementCount
        let u = uniform(seed: seed, count: count, firstIndex: UInt64(exampleOffset * (count / max(shape[0], 1))), fresh: fresh, body: &body)
        let shaped = fresh(), keeps = fresh(), scaled = fresh()
        body.append("\(shaped) = stablehlo.reshape \(u) : (tensor<\(count)xf32>) -> \(resultType)")
        let keepSplat = splat(keep, shape), inverse = splat(1 / keep, shape), zero = splat(0, shape)
        body.append("\(keeps) = stablehlo.compare LT, \(shaped), \(keepSplat) : (\(resultType), \(resultType)) -> \(StableHLOLowering.predicateType(shape))")
        body.append("\(scaled) = stablehlo.multiply \(x), \(inverse) : \(resultType)")
        body.append("\(result) = stablehlo.select \(keeps), \(scaled), \(zero) : \(StableHLOLowering.predicateType(shape)), \(resultType)")
      case let .dropPath(seed):
        // Example n is kept when floor(keep + u_n) ≥ 1, then scaled by 1/keep (computed on the device
        // from the scalar, as the CPU kernel does).
        let shape = node.outputs[0], batch = shape[0], rowType = StableHLOLowering.type([batch])
        let keep = name(node.inputs[1])
        let u = uniform(seed: seed, count: batch, firstIndex: UInt64(exampleOffset), fresh: fresh, body: &body)
        let keepRow = fresh(), sum = fresh(), floored = fresh(), kept = fresh(), one = splat(1, [batch]), zero = splat(0, [batch])
        let inverse = fresh(), inverseRow = fresh(), factor = fresh(), spread = fresh(), unit = splat(1, .scalar)
        body.append("\(keepRow) = stablehlo.broadcast_in_dim \(keep), dims = [] : (tensor<f32>) -> \(rowType)")
        body.append("\(sum) = stablehlo.add \(keepRow), \(u) : \(rowType)")
        body.append("\(floored) = stablehlo.floor \(sum) : \(rowType)")
        body.append("\(kept) = stablehlo.compare GE, \(floored), \(one) : (\(rowType), \(rowType)) -> tensor<\(batch)xi1>")
        body.append("\(inverse) = stablehlo.divide \(unit), \(keep) : tensor<f32>")
        body.append("\(inverseRow) = stablehlo.broadcast_in_dim \(inverse), dims = [] : (tensor<f32>) -> \(rowType)")
        body.append("\(factor) = stablehlo.select \(kept), \(inverseRow), \(zero) : tensor<\(batch)xi1>, \(rowType)")
        body.append("\(spread) = stablehlo.broadcast_in_dim \(factor), dims = [0] : (\(rowType)) -> \(resultType)")
        body.append("\(result) = stablehlo.multiply \(x), \(spread) : \(resultType)")
      case let .conv2d(g):
        let (lhs, lhsType) = narrowed(x, type(node.inputs[0])), (rhs, rhsType) = narrowed(name(node.inputs[1]), type(node.inputs[1]))
        body.append("\(result) = stablehlo.convolution(\(lhs), \(rhs)) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], window = {\(StableHLOLowering.window(g))} {batch_group_count = 1 : i64, feature_group_count = 1 : i64} : (\(lhsType), \(rhsType)) -> \(resultType)")
      case let .depthwiseConv2d(g):
        // The [kh, kw, C] filter as [kh, kw, 1, C], one group per channel.
        let filter = fresh(), filterType = StableHLOLowering.type([g.kh, g.kw, 1, g.inC])
        body.append("\(filter) = stablehlo.reshape \(name(node.inputs[1])) : (\(type(node.inputs[1]))) -> \(filterType)")
        let (lhs, lhsType) = narrowed(x, type(node.inputs[0])), (rhs, rhsType) = narrowed(filter, filterType)
        body.append("\(result) = stablehlo.convolution(\(lhs), \(rhs)) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], window = {\(StableHLOLowering.window(g))} {batch_group_count = 1 : i64, feature_group_count = \(g.inC) : i64} : (\(lhsType), \(rhsType)) -> \(resultType)")
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
        let (lhs, lhsType) = narrowed(x, type(node.inputs[0])), (rhs, rhsType) = narrowed(name(node.inputs[1]), type(node.inputs[1]))
        body.append("\(result) = stablehlo.dot_general \(lhs), \(rhs), contracting_dims = [\(transposeA ? 0 : 1)] x [\(transposeB ? 1 : 0)] : (\(lhsType), \(rhsType)) -> \(resultType)")
      case .biasAdd:
        let rank = node.outputs[0].rank
        let bias = fresh()
        body.append("\(bias) = stablehlo.broadcast_in_dim \(name(node.inputs[1])), dims = [\(rank - 1)] : (\(type(node.inputs[1]))) -> \(resultType)")
        body.append("\(result) = stablehlo.add \(x), \(bias) : \(resultType)")
      case let .batchNormInference(epsilon):
        let c = node.inputs[1...].map(type)
        body.append("\(result) = \"stablehlo.batch_norm_inference\"(\(node.inputs.map(name).joined(separator: ", "))) {epsilon = \(StableHLOLowering.float(epsilon)) : f32, feature_index = \(node.outputs[0].rank - 1) : i64} : (\(type(node.inputs[0])), \(c.joined(separator: ", "))) -> \(resultType)")
      case let .maxPool(g):
        let lowest = fresh()
        body.append("\(lowest) = stablehlo.constant dense<0xFF800000> : tensor<f32>")  // −∞: padding never wins
        body += reduceWindow(result, x, initial: lowest, combiner: "maximum", g, inputType: type(node.inputs[0]), resultType: resultType, fresh: fresh)
      case let .avgPool(g):
        // TensorFlow divides by the pixels inside the image.
        let zero = fresh(), sum = fresh()
        body.append("\(zero) = stablehlo.constant dense<0.0> : tensor<f32>")
        body += reduceWindow(sum, x, initial: zero, combiner: "add", g, inputType: type(node.inputs[0]), resultType: resultType, fresh: fresh)
        let count = windowCounts(g, resultType: resultType, fresh: fresh, body: &body)
        body.append("\(result) = stablehlo.divide \(sum), \(count) : \(resultType)")
      case let .slice(w):
        let o = node.outputs[0]
        let start = [0, w.top, w.left, 0]
        let limit = [o[0], w.top + (o[1] - 1) * w.strideH + 1, w.left + (o[2] - 1) * w.strideW + 1, o[3]]
        body.append(StableHLOLowering.slice(result, x, start: start, limit: limit, strides: [1, w.strideH, w.strideW, 1],
                                            inputType: type(node.inputs[0]), resultType: resultType))
      case let .sliceChannels(first, width):
        let i = graph.shape(node.inputs[0])
        let start = [Int](repeating: 0, count: i.rank - 1) + [first]
        body.append(StableHLOLowering.slice(result, x, start: start, limit: Array(i.dims.dropLast()) + [first + width],
                                            strides: [Int](repeating: 1, count: i.rank), inputType: type(node.inputs[0]), resultType: resultType))
      case let .pad(w):
        let i = graph.shape(node.inputs[0]), o = node.outputs[0]
        let low = [0, w.top, w.left, 0], interior = [0, w.strideH - 1, w.strideW - 1, 0]
        let high = (0..<4).map { d in o[d] - (low[d] + (i[d] - 1) * (interior[d] + 1) + 1) }
        let zero = fresh()
        body.append("\(zero) = stablehlo.constant dense<0.0> : tensor<f32>")
        body.append("\(result) = \"stablehlo.pad\"(\(x), \(zero)) {edge_padding_low = array<i64: \(StableHLOLowering.list(low))>, edge_padding_high = array<i64: \(StableHLOLowering.list(high))>, interior_padding = array<i64: \(StableHLOLowering.list(interior))>} : (\(type(node.inputs[0])), tensor<f32>) -> \(resultType)")
      case let .batchNormTraining(epsilon, relu):
        // The CPU backend's BN+ReLU fusion lowers to the pair it replaced (XLA fuses on its own).
        let c = StableHLOLowering.type(node.outputs[1])
        let normalised = relu ? fresh() : result
        body.append("\(normalised):3 = \"stablehlo.batch_norm_training\"(\(x), \(name(node.inputs[1])), \(name(node.inputs[2]))) {epsilon = \(StableHLOLowering.float(epsilon)) : f32, feature_index = \(node.outputs[0].rank - 1) : i64} : (\(type(node.inputs[0])), \(c), \(c)) -> (\(resultType), \(c), \(c))")
        names[out] = "\(normalised)#0"
        if relu {
          let zero = splat(0, node.outputs[0])
          body.append("\(result) = stablehlo.maximum \(normalised)#0, \(zero) : \(resultType)")
          names[out] = result
        }
        for k in 1..<3 { names[Value(node: index, output: k)] = "\(normalised)#\(k)" }
        continue
      case let .batchNormGrad(epsilon, relu):
        let c = StableHLOLowering.type(node.outputs[1])
        var dy = name(node.inputs[4])
        if relu {
          // dy counts only where the fused output y (the sixth input) is positive.
          let zero = splat(0, node.outputs[0]), positive = fresh(), masked = fresh()
          body.append("\(positive) = stablehlo.compare GT, \(name(node.inputs[5])), \(zero) : (\(resultType), \(resultType)) -> \(StableHLOLowering.predicateType(node.outputs[0]))")
          body.append("\(masked) = stablehlo.select \(positive), \(dy), \(zero) : \(StableHLOLowering.predicateType(node.outputs[0])), \(resultType)")
          dy = masked
        }
        let operands = node.inputs.prefix(4).map(name) + [dy]
        body.append("\(result):3 = \"stablehlo.batch_norm_grad\"(\(operands.joined(separator: ", "))) {epsilon = \(StableHLOLowering.float(epsilon)) : f32, feature_index = \(node.outputs[0].rank - 1) : i64} : (\(type(node.inputs[0])), \(c), \(c), \(c), \(type(node.inputs[4]))) -> (\(resultType), \(c), \(c))")
        for k in 0..<3 { names[Value(node: index, output: k)] = "\(result)#\(k)" }
        continue
      case .reluGrad:
        // dx = dy where y > 0.
        let zero = splat(0, node.outputs[0]), positive = fresh()
        body.append("\(positive) = stablehlo.compare GT, \(name(node.inputs[1])), \(zero) : (\(resultType), \(resultType)) -> \(StableHLOLowering.predicateType(node.outputs[0]))")
        body.append("\(result) = stablehlo.select \(positive), \(x), \(zero) : \(StableHLOLowering.predicateType(node.outputs[0])), \(resultType)")
      case let .conv2dBackpropInput(g):
        // dx = dy dilated by the stride, convolved with the filter flipped in space, in and out swapped.
        let flipped = fresh()
        body.append("\(flipped) = stablehlo.reverse \(name(node.inputs[1])), dims = [0, 1] : \(type(node.inputs[1]))")
        let (lhs, lhsType) = narrowed(x, type(node.inputs[0])), (rhs, rhsType) = narrowed(flipped, type(node.inputs[1]))
        body.append("\(result) = stablehlo.convolution(\(lhs), \(rhs)) dim_numbers = [b, 0, 1, f]x[0, 1, o, i]->[b, 0, 1, f], window = {\(StableHLOLowering.transposedWindow(g))} {batch_group_count = 1 : i64, feature_group_count = 1 : i64} : (\(lhsType), \(rhsType)) -> \(resultType)")
      case let .depthwiseConv2dBackpropInput(g):
        let filter = fresh(), flipped = fresh(), filterType = StableHLOLowering.type([g.kh, g.kw, 1, g.inC])
        body.append("\(filter) = stablehlo.reshape \(name(node.inputs[1])) : (\(type(node.inputs[1]))) -> \(filterType)")
        body.append("\(flipped) = stablehlo.reverse \(filter), dims = [0, 1] : \(filterType)")
        let (lhs, lhsType) = narrowed(x, type(node.inputs[0])), (rhs, rhsType) = narrowed(flipped, filterType)
        body.append("\(result) = stablehlo.convolution(\(lhs), \(rhs)) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], window = {\(StableHLOLowering.transposedWindow(g))} {batch_group_count = 1 : i64, feature_group_count = \(g.inC) : i64} : (\(lhsType), \(rhsType)) -> \(resultType)")
      case let .conv2dBackpropFilter(g):
        // dW = x ⋆ dy with the batch as the contracted dimension: dy is the kernel, strided by the
        // forward stride's dilation.
        let (lhs, lhsType) = narrowed(x, type(node.inputs[0])), (rhs, rhsType) = narrowed(name(node.inputs[1]), type(node.inputs[1]))
        body.append("\(result) = stablehlo.convolution(\(lhs), \(rhs)) dim_numbers = [f, 0, 1, b]x[i, 0, 1, o]->[0, 1, b, f], window = {\(StableHLOLowering.filterGradientWindow(g))} {batch_group_count = 1 : i64, feature_group_count = 1 : i64} : (\(lhsType), \(rhsType)) -> \(resultType)")
      case let .depthwiseConv2dBackpropFilter(g):
        // As the dense case, one batch group per channel (the diagonal of the dense result).
        let grouped = fresh(), groupedType = StableHLOLowering.type([g.kh, g.kw, 1, g.inC])
        let (lhs, lhsType) = narrowed(x, type(node.inputs[0])), (rhs, rhsType) = narrowed(name(node.inputs[1]), type(node.inputs[1]))
        body.append("\(grouped) = stablehlo.convolution(\(lhs), \(rhs)) dim_numbers = [f, 0, 1, b]x[i, 0, 1, o]->[0, 1, b, f], window = {\(StableHLOLowering.filterGradientWindow(g))} {batch_group_count = \(g.inC) : i64, feature_group_count = 1 : i64} : (\(lhsType), \(rhsType)) -> \(groupedType)")
        body.append("\(result) = stablehlo.reshape \(grouped) : (\(groupedType)) -> \(resultType)")
      case let .maxPoolGrad(g):
        let zero = fresh(), a = fresh(), b = fresh(), c = fresh(), d = fresh(), e = fresh(), f = fresh()
        let bottom = max(0, (g.outH - 1) * g.strideH + g.kh - g.inH - g.padTop)
        let right = max(0, (g.outW - 1) * g.strideW + g.kw - g.inW - g.padLeft)
        body.append("\(zero) = stablehlo.constant dense<0.0> : tensor<f32>")
        body += [
          "\(result) = \"stablehlo.select_and_scatter\"(\(x), \(name(node.inputs[1])), \(zero)) ({",
          "  ^bb0(\(a): tensor<f32>, \(b): tensor<f32>):",
          "    \(c) = stablehlo.compare GE, \(a), \(b) : (tensor<f32>, tensor<f32>) -> tensor<i1>",
          "    stablehlo.return \(c) : tensor<i1>",
          "}, {",
          "  ^bb0(\(d): tensor<f32>, \(e): tensor<f32>):",
          "    \(f) = stablehlo.add \(d), \(e) : tensor<f32>",
          "    stablehlo.return \(f) : tensor<f32>",
          "}) {window_dimensions = array<i64: 1, \(g.kh), \(g.kw), 1>, window_strides = array<i64: 1, \(g.strideH), \(g.strideW), 1>, padding = dense<[[0, 0], [\(g.padTop), \(bottom)], [\(g.padLeft), \(right)], [0, 0]]> : tensor<4x2xi64>} : (\(type(node.inputs[0])), \(type(node.inputs[1])), tensor<f32>) -> \(resultType)",
        ]
      case let .avgPoolGrad(g):
        // Each window's share of dy (dy ÷ its pixel count), scattered back: the shares dilated by the
        // stride, padded by the window, summed over stride-1 windows.
        let outType = type(node.inputs[0])
        let zero = fresh(), share = fresh(), spread = fresh()
        body.append("\(zero) = stablehlo.constant dense<0.0> : tensor<f32>")
        let count = windowCounts(g, resultType: outType, fresh: fresh, body: &body)
        body.append("\(share) = stablehlo.divide \(x), \(count) : \(outType)")
        let lowH = g.kh - 1 - g.padTop, lowW = g.kw - 1 - g.padLeft
        let highH = g.inH + g.kh - 1 - lowH - ((g.outH - 1) * g.strideH + 1)
        let highW = g.inW + g.kw - 1 - lowW - ((g.outW - 1) * g.strideW + 1)
        let spreadShape: Shape = [g.batch, g.inH + g.kh - 1, g.inW + g.kw - 1, g.inC]
        body.append("\(spread) = \"stablehlo.pad\"(\(share), \(zero)) {edge_padding_low = array<i64: 0, \(lowH), \(lowW), 0>, edge_padding_high = array<i64: 0, \(highH), \(highW), 0>, interior_padding = array<i64: 0, \(g.strideH - 1), \(g.strideW - 1), 0>} : (\(outType), tensor<f32>) -> \(StableHLOLowering.type(spreadShape))")
        var unit = g
        unit.strideH = 1; unit.strideW = 1; unit.padTop = 0; unit.padLeft = 0
        unit.inH = spreadShape[1]; unit.inW = spreadShape[2]; unit.outH = g.inH; unit.outW = g.inW
        body += reduceWindow(result, spread, initial: zero, combiner: "add", unit, inputType: StableHLOLowering.type(spreadShape), resultType: resultType, fresh: fresh)
      case .globalAvgPoolGrad:
        let o = node.outputs[0]
        let spread = fresh()
        body.append("\(spread) = stablehlo.broadcast_in_dim \(x), dims = [0, 3] : (\(type(node.inputs[0]))) -> \(resultType)")
        let count = splat(Float(o[1] * o[2]), o)
        body.append("\(result) = stablehlo.divide \(spread), \(count) : \(resultType)")
      case .biasAddGrad:
        let rank = graph.shape(node.inputs[0]).rank
        body += reduceSum(result, x, dimensions: Array(0..<(rank - 1)), inputType: type(node.inputs[0]), resultType: resultType, fresh: fresh)
      case .reduceSum, .reduceMean, .l2Loss:
        let input = graph.shape(node.inputs[0])
        var operand = x
        if case .l2Loss = node.op {
          operand = fresh()
          body.append("\(operand) = stablehlo.multiply \(x), \(x) : \(type(node.inputs[0]))")
        }
        let sum = fresh()
        body += reduceSum(sum, operand, dimensions: Array(0..<input.rank), inputType: type(node.inputs[0]), resultType: resultType, fresh: fresh)
        let factor: Float
        switch node.op {
        case .reduceMean: factor = 1 / Float(input.elementCount)
        case .l2Loss: factor = 0.5
        default: factor = 1
        }
        if factor == 1 { names[out] = sum; continue }
        let c = splat(factor, node.outputs[0])
        body.append("\(result) = stablehlo.multiply \(sum), \(c) : \(resultType)")
      case let .broadcastScalar(scale):
        let spread = fresh(), c = splat(scale, node.outputs[0])
        body.append("\(spread) = stablehlo.broadcast_in_dim \(x), dims = [] : (\(type(node.inputs[0]))) -> \(resultType)")
        body.append("\(result) = stablehlo.multiply \(spread), \(c) : \(resultType)")
      case .multiplyByScalar:
        let spread = fresh()
        body.append("\(spread) = stablehlo.broadcast_in_dim \(name(node.inputs[1])), dims = [] : (\(type(node.inputs[1]))) -> \(resultType)")
        body.append("\(result) = stablehlo.multiply \(x), \(spread) : \(resultType)")
      case let .softmaxCrossEntropy(epsilon), let .softmaxCrossEntropyGrad(epsilon):
        let logits = graph.shape(node.inputs[0])
        let (n, k) = (logits[0], logits[1])
        let logitsType = type(node.inputs[0]), rowType = StableHLOLowering.type([n])
        // Smoothed one-hot targets from the float class indices.
        let classes = fresh(), labels = fresh(), hit = fresh(), on = splat(1 - epsilon + epsilon / Float(k), logits),
            off = splat(epsilon / Float(k), logits), target = fresh()
        body.append("\(classes) = stablehlo.iota dim = 1 : \(logitsType)")
        body.append("\(labels) = stablehlo.broadcast_in_dim \(name(node.inputs[1])), dims = [0] : (\(rowType)) -> \(logitsType)")
        body.append("\(hit) = stablehlo.compare EQ, \(classes), \(labels) : (\(logitsType), \(logitsType)) -> \(StableHLOLowering.predicateType(logits))")
        body.append("\(target) = stablehlo.select \(hit), \(on), \(off) : \(StableHLOLowering.predicateType(logits)), \(logitsType)")
        // log-sum-exp per row, the row maximum subtracted first.
        let lowest = fresh(), maximum = fresh(), spreadMax = fresh(), shifted = fresh(), exps = fresh(), sums = fresh(), logs = fresh()
        body.append("\(lowest) = stablehlo.constant dense<0xFF800000> : tensor<f32>")
        body.append("\(maximum) = stablehlo.reduce(\(x) init: \(lowest)) applies stablehlo.maximum across dimensions = [1] : (\(logitsType), tensor<f32>) -> \(rowType)")
        body.append("\(spreadMax) = stablehlo.broadcast_in_dim \(maximum), dims = [0] : (\(rowType)) -> \(logitsType)")
        body.append("\(shifted) = stablehlo.subtract \(x), \(spreadMax) : \(logitsType)")
        body.append("\(exps) = stablehlo.exponential \(shifted) : \(logitsType)")
        body += reduceSum(sums, exps, dimensions: [1], inputType: logitsType, resultType: rowType, fresh: fresh)
        body.append("\(logs) = stablehlo.log \(sums) : \(rowType)")
        if case .softmaxCrossEntropy = node.op {
          // mean over rows of −Σ target · (shifted − log Σ exp).
          let spreadLog = fresh(), logP = fresh(), weighted = fresh(), total = fresh()
          body.append("\(spreadLog) = stablehlo.broadcast_in_dim \(logs), dims = [0] : (\(rowType)) -> \(logitsType)")
          body.append("\(logP) = stablehlo.subtract \(shifted), \(spreadLog) : \(logitsType)")
          body.append("\(weighted) = stablehlo.multiply \(target), \(logP) : \(logitsType)")
          body += reduceSum(total, weighted, dimensions: [0, 1], inputType: logitsType, resultType: "tensor<f32>", fresh: fresh)
          let c = splat(-1 / Float(n), .scalar)
          body.append("\(result) = stablehlo.multiply \(total), \(c) : tensor<f32>")
        } else {
          // (softmax − target) · dloss / rows.
          let spreadSum = fresh(), softmax = fresh(), difference = fresh(), scale = fresh(), spreadScale = fresh()
          body.append("\(spreadSum) = stablehlo.broadcast_in_dim \(sums), dims = [0] : (\(rowType)) -> \(logitsType)")
          body.append("\(softmax) = stablehlo.divide \(exps), \(spreadSum) : \(logitsType)")
          body.append("\(difference) = stablehlo.subtract \(softmax), \(target) : \(logitsType)")
          let inverse = splat(1 / Float(n), .scalar)
          body.append("\(scale) = stablehlo.multiply \(name(node.inputs[2])), \(inverse) : tensor<f32>")
          body.append("\(spreadScale) = stablehlo.broadcast_in_dim \(scale), dims = [] : (tensor<f32>) -> \(logitsType)")
          body.append("\(result) = stablehlo.multiply \(difference), \(spreadScale) : \(logitsType)")
        }
      }
      names[out] = result
    }
    var argumentList = leaves.enumerated().map { i, leaf in
      "%arg\(i): \(type(leaf))" + (aliases[leaf].map { " {tf.aliasing_output = \($0) : i32}" } ?? "")
    }.joined(separator: ", ")
    if takesRandomStream { argumentList += (leaves.isEmpty ? "" : ", ") + "%stream: tensor<ui64>" }
    let resultTypes = outputs.map(type).joined(separator: ", ")
    // The first of two programs over several devices returns the gradients already averaged
    // over the host's devices: one copy per host goes round the ring.
    let returned = outputs.map { value in
      replicas > 1 && averagedOverReplicas.contains(value) ? meanOverReplicas(name(value), type(value), graph.shape(value)) : name(value)
    }
    var text = "module @\(moduleName) {\n  func.func public @main(\(argumentList)) -> (\(resultTypes)) {\n"
    for line in body { text += "    \(line)\n" }
    text += "    return \(returned.joined(separator: ", ")) : \(resultTypes)\n  }\n}\n"
    return text
  }

  /// A `StepSchedule` in float32 scalar arithmetic on the step counter.
  static func schedule(_ schedule: StepSchedule, step t: String, fresh: () -> String) -> (lines: [String], value: String) {
    var lines: [String] = []
    let f = "tensor<f32>"
    func constant(_ value: Double) -> String {
      let name = fresh()
      lines.append("\(name) = stablehlo.constant dense<\(float(Float(value)))> : \(f)")
      return name
    }
    func binary(_ op: String, _ a: String, _ b: String) -> String {
      let name = fresh()
      lines.append("\(name) = stablehlo.\(op) \(a), \(b) : \(f)")
      return name
    }
    func unary(_ op: String, _ a: String) -> String {
      let name = fresh()
      lines.append("\(name) = stablehlo.\(op) \(a) : \(f)")
      return name
    }
    /// Linear warm-up below `warmup`, then `decayed`; never below 1e-4 of `base`.
    func warmedUp(_ decayed: String, base: Double, warmup: Int) -> String {
      var rate = decayed
      if warmup > 0 {
        let warm = binary("multiply", constant(base / Double(warmup)), t), early = fresh(), chosen = fresh()
        lines.append("\(early) = stablehlo.compare LT, \(t), \(constant(Double(warmup))) : (\(f), \(f)) -> tensor<i1>")
        lines.append("\(chosen) = stablehlo.select \(early), \(warm), \(decayed) : tensor<i1>, \(f)")
        rate = chosen
      }
      return binary("maximum", rate, constant(1e-4 * base))
    }
    let value: String
    switch schedule {
    case let .exponentialDecay(base, rate, decaySteps, warmup):
      let periods = unary("floor", binary("divide", t, constant(Double(max(decaySteps, 1)))))
      value = warmedUp(binary("multiply", constant(base), binary("power", constant(rate), periods)), base: base, warmup: warmup)
    case let .cosineDecay(base, totalSteps, warmup):
      let angle = binary("multiply", t, constant(Double.pi / Double(max(totalSteps, 1))))
      let decayed = binary("multiply", constant(0.5 * base), binary("add", constant(1), unary("cosine", angle)))
      value = warmedUp(decayed, base: base, warmup: warmup)
    case let .constant(base, warmup):
      value = warmedUp(constant(base), base: base, warmup: warmup)
    case let .movingAverageDecay(decay):
      value = binary("minimum", constant(decay), binary("divide", binary("add", constant(1), t), binary("add", constant(10), t)))
    case let .linearRamp(final, steps):
      let ratio = binary("minimum", constant(1), binary("divide", t, constant(Double(max(steps, 1)))))
      value = binary("subtract", constant(1), binary("multiply", ratio, constant(1 - final)))
    }
    return (lines, value)
  }

  static func list(_ values: [Int]) -> String { values.map(String.init).joined(separator: ", ") }

  /// `count` uniform floats in [0, 1): CounterRandom.uniform(seed, stream, i) for i in 0..<count,
  /// computed with wrapping ui64 multiplies, xors and shifts.
  func uniform(seed: UInt64, count: Int, firstIndex: UInt64, fresh: () -> String, body: inout [String]) -> String {
    let scalar = "tensor<ui64>", vector = "tensor<\(count)xui64>"
    func constant(_ value: UInt64, _ type: String) -> String {
      let name = fresh()
      body.append("\(name) = stablehlo.constant dense<\(value)> : \(type)")
      return name
    }
    func mix(_ z: String, _ type: String) -> String {
      var value = z
      for (shift, multiplier) in [(UInt64(30), UInt64(0xBF58_476D_1CE4_E5B9)), (27, 0x94D0_49BB_1331_11EB)] {
        let shifted = fresh(), mixed = fresh(), product = fresh()
        body.append("\(shifted) = stablehlo.shift_right_logical \(value), \(constant(shift, type)) : \(type)")
        body.append("\(mixed) = stablehlo.xor \(value), \(shifted) : \(type)")
        body.append("\(product) = stablehlo.multiply \(mixed), \(constant(multiplier, type)) : \(type)")
        value = product
      }
      let shifted = fresh(), result = fresh()
      body.append("\(shifted) = stablehlo.shift_right_logical \(value), \(constant(31, type)) : \(type)")
      body.append("\(result) = stablehlo.xor \(value), \(shifted) : \(type)")
      return result
    }
    // The per-run part: mix(seed + stream · φ).
    let scaled = fresh(), start = fresh()
    body.append("\(scaled) = stablehlo.multiply %stream, \(constant(0x9E37_79B9_7F4A_7C15, scalar)) : \(scalar)")
    body.append("\(start) = stablehlo.add \(constant(seed, scalar)), \(scaled) : \(scalar)")
    let key = mix(start, scalar)
    // The per-element part: mix(key ^ (i · c1 + c2)).
    let index = fresh(), product = fresh(), offset = fresh(), spreadKey = fresh(), combined = fresh()
    body.append("\(index) = stablehlo.iota dim = 0 : \(vector)")
    var counter = index
    if firstIndex != 0 {
      counter = fresh()
      body.append("\(counter) = stablehlo.add \(index), \(constant(firstIndex, vector)) : \(vector)")
    }
    if replicas > 1 {
      // Replica r holds the r-th slice of the host's batch: its examples' global indices follow
      // the r slices before it, so every device draws the masks one process would.
      let id = fresh(), wide = fresh(), skipped = fresh(), spread = fresh(), shifted = fresh()
      body.append("\(id) = stablehlo.replica_id : tensor<ui32>")
      body.append("\(wide) = stablehlo.convert \(id) : (tensor<ui32>) -> \(scalar)")
      body.append("\(skipped) = stablehlo.multiply \(wide), \(constant(UInt64(count), scalar)) : \(scalar)")
      body.append("\(spread) = stablehlo.broadcast_in_dim \(skipped), dims = [] : (\(scalar)) -> \(vector)")
      body.append("\(shifted) = stablehlo.add \(counter), \(spread) : \(vector)")
      counter = shifted
    }
    body.append("\(product) = stablehlo.multiply \(counter), \(constant(0xBF58_476D_1CE4_E5B9, vector)) : \(vector)")
    body.append("\(offset) = stablehlo.add \(product), \(constant(0x94D0_49BB_1331_11EB, vector)) : \(vector)")
    body.append("\(spreadKey) = stablehlo.broadcast_in_dim \(key), dims = [] : (\(scalar)) -> \(vector)")
    body.append("\(combined) = stablehlo.xor \(spreadKey), \(offset) : \(vector)")
    let bits = mix(combined, vector)
    // The top 24 bits as a float in [0, 1).
    let top = fresh(), asFloat = fresh(), result = fresh()
    body.append("\(top) = stablehlo.shift_right_logical \(bits), \(constant(40, vector)) : \(vector)")
    body.append("\(asFloat) = stablehlo.convert \(top) : (\(vector)) -> tensor<\(count)xf32>")
    let unit = fresh()
    body.append("\(unit) = stablehlo.constant dense<\(StableHLOLowering.float(1.0 / 16_777_216.0))> : tensor<\(count)xf32>")
    body.append("\(result) = stablehlo.multiply \(asFloat), \(unit) : tensor<\(count)xf32>")
    return result
  }

  static func predicateType(_ shape: Shape) -> String {
    shape.rank == 0 ? "tensor<i1>" : "tensor<" + shape.dims.map(String.init).joined(separator: "x") + "xi1>"
  }

  /// A sum over `dimensions`.
  func reduceSum(_ result: String, _ x: String, dimensions: [Int], inputType: String, resultType: String, fresh: () -> String) -> [String] {
    let zero = fresh()
    return ["\(zero) = stablehlo.constant dense<0.0> : tensor<f32>",
            "\(result) = stablehlo.reduce(\(x) init: \(zero)) applies stablehlo.add across dimensions = [\(StableHLOLowering.list(dimensions))] : (\(inputType), tensor<f32>) -> \(resultType)"]
  }

  /// The window of the input gradient's convolution: dy dilated by the stride (`lhs_dilate`),
  /// padded so that every input pixel sees every filter tap that touched it.
  static func transposedWindow(_ g: WindowGeometry) -> String {
    let effectiveH = (g.kh - 1) * g.dilationH + 1, effectiveW = (g.kw - 1) * g.dilationW + 1
    let lowH = effectiveH - 1 - g.padTop, lowW = effectiveW - 1 - g.padLeft
    let highH = g.inH + effectiveH - 1 - lowH - ((g.outH - 1) * g.strideH + 1)
    let highW = g.inW + effectiveW - 1 - lowW - ((g.outW - 1) * g.strideW + 1)
    return "stride = [1, 1], pad = [[\(lowH), \(highH)], [\(lowW), \(highW)]], lhs_dilate = [\(g.strideH), \(g.strideW)], rhs_dilate = [\(g.dilationH), \(g.dilationW)]"
  }

  /// The window of the filter gradient's convolution: x against dy, dy's taps spaced by the
  /// forward stride (`rhs_dilate`), stepping by the forward dilation.
  static func filterGradientWindow(_ g: WindowGeometry) -> String {
    let highH = (g.kh - 1) * g.dilationH + (g.outH - 1) * g.strideH + 1 - g.inH - g.padTop
    let highW = (g.kw - 1) * g.dilationW + (g.outW - 1) * g.strideW + 1 - g.inW - g.padLeft
    return "stride = [\(g.dilationH), \(g.dilationW)], pad = [[\(g.padTop), \(highH)], [\(g.padLeft), \(highW)]], rhs_dilate = [\(g.strideH), \(g.strideW)]"
  }

  static func slice(_ result: String, _ x: String, start: [Int], limit: [Int], strides: [Int], inputType: String, resultType: String) -> String {
    "\(result) = \"stablehlo.slice\"(\(x)) {start_indices = array<i64: \(list(start))>, limit_indices = array<i64: \(list(limit))>, strides = array<i64: \(list(strides))>} : (\(inputType)) -> \(resultType)"
  }

  /// The pixels inside the image under each output position's window, as a constant `[outH, outW]`
  /// broadcast over batch and channels. (A window sum over a tensor of ones gives the same, but
  /// XLA then constant-folds a full-size reduce_window: minutes of compile time at 128×128.)
  func windowCounts(_ g: WindowGeometry, resultType: String, fresh: () -> String, body: inout [String]) -> String {
    func inside(_ o: Int, stride: Int, pad: Int, k: Int, size: Int) -> Int {
      min(o * stride - pad + k, size) - max(o * stride - pad, 0)
    }
    let rows = (0..<g.outH).map { oh in
      "[" + (0..<g.outW).map { ow in
        "\(inside(oh, stride: g.strideH, pad: g.padTop, k: g.kh, size: g.inH) * inside(ow, stride: g.strideW, pad: g.padLeft, k: g.kw, size: g.inW)).0"
      }.joined(separator: ", ") + "]"
    }
    let table = fresh(), counts = fresh(), tableType = StableHLOLowering.type([g.outH, g.outW])
    body.append("\(table) = stablehlo.constant dense<[\(rows.joined(separator: ", "))]> : \(tableType)")
    body.append("\(counts) = stablehlo.broadcast_in_dim \(table), dims = [1, 2] : (\(tableType)) -> \(resultType)")
    return counts
  }

  /// A pooling window over H and W (TensorFlow's padding), reduced with `combiner`.
  func reduceWindow(_ result: String, _ x: String, initial: String, combiner: String, _ g: WindowGeometry,
                    inputType: String, resultType: String, fresh: () -> String) -> [String] {
    let bottom = max(0, (g.outH - 1) * g.strideH + g.kh - g.inH - g.padTop)
    let right = max(0, (g.outW - 1) * g.strideW + g.kw - g.inW - g.padLeft)
    let a = fresh(), b = fresh(), c = fresh()
    return [
      "\(result) = \"stablehlo.reduce_window\"(\(x), \(initial)) ({",
      "  ^bb0(\(a): tensor<f32>, \(b): tensor<f32>):",
      "    \(c) = stablehlo.\(combiner) \(a), \(b) : tensor<f32>",
      "    stablehlo.return \(c) : tensor<f32>",
      "}) {window_dimensions = array<i64: 1, \(g.kh), \(g.kw), 1>, window_strides = array<i64: 1, \(g.strideH), \(g.strideW), 1>, padding = dense<[[0, 0], [\(g.padTop), \(bottom)], [\(g.padLeft), \(right)], [0, 0]]> : tensor<4x2xi64>} : (\(inputType), tensor<f32>) -> \(resultType)",
    ]
  }

  /// `convolution`'s window attribute from a geometry. The padding after is what the output size
  /// needs (TensorFlow's SAME puts the odd pixel there); never negative.
  static func window(_ g: WindowGeometry) -> String {
    let bottom = max(0, (g.outH - 1) * g.strideH + (g.kh - 1) * g.dilationH + 1 - g.inH - g.padTop)
    let right = max(0, (g.outW - 1) * g.strideW + (g.kw - 1) * g.dilationW + 1 - g.inW - g.padLeft)
    return "stride = [\(g.strideH), \(g.strideW)], pad = [[\(g.padTop), \(bottom)], [\(g.padLeft), \(right)]], rhs_dilate = [\(g.dilationH), \(g.dilationW)]"
  }
}

extension String {
  /// Eight hex digits, zero-padded.
  init(format8 value: UInt32) {
    let digits = String(value, radix: 16, uppercase: true)
    self = String(repeating: "0", count: 8 - digits.count) + digits
  }
}
