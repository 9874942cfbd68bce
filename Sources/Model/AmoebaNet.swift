import Graph
import Tensor

/// AmoebaNet (any genotype of the NASNet space) built as IR, op for op as tensorflow/tpu's
/// `model_builder.py` and `network_utils.py` build it: the ImageNet stem (conv0 3×3/2 VALID and two
/// reduction cells at filter scaling ¼ and ½), normal cells with reduction cells before cells
/// int(n/3) and int(2n/3), the aux head after cell int(2n/3)−1, and ReLU → global pool → dropout →
/// FC. Names of nodes and parameters follow the reference's variable scopes.
public struct AmoebaNet: Sendable {
  public enum Mode: Sendable, Hashable {
    /// Batch statistics in every batch norm, dropout, drop-path, the aux head.
    case training
    /// Moving statistics, no dropout, no aux head (the reference's eval graph).
    case evaluation
  }

  public let config: NetworkConfig
  public let mode: Mode
  public let batchSize: Int
  public let graph: Graph
  /// `[batch, image_size, image_size, 3]`, scaled to [−1, 1].
  public let images: Value
  public let logits: Value
  /// Present in training when `use_aux_head` is on.
  public let auxLogits: Value?
  /// The drop-path keep probability (the reference's linear ramp): an input fed every step, or, when
  /// the model is built with `dropPathRampSteps`, computed from `globalStep`; nil when drop-path is
  /// off (`drop_connect_keep_prob = 1`, the DAWNBench recipe).
  public let dropPathKeepProbability: Value?
  /// The step counter (a scalar parameter) the keep probability follows, when it is computed.
  public let globalStep: Value?
  public let parameters: [ModelParameter]
  public let batchNorms: [BatchNormLayer]
  /// The output of each stage (`conv0`, `cell_stem_0`, …, `cell_5`, `global_pool`), for the summary.
  public let stages: [(name: String, value: Value)]

  /// `dropPathRampSteps`: the keep probability goes from 1 to `drop_connect_keep_prob` over that
  /// many steps of a `global_step` parameter in the graph; nil: it is an input.
  public init(config: NetworkConfig, batchSize: Int, mode: Mode, dropPathRampSteps: Int? = nil) throws(ModelError) {
    try config.validate()
    guard batchSize >= 1 else { throw .invalidConfig("batch size must be at least 1, got \(batchSize)") }
    let genotype = config.genotype
    try genotype.validate()
    var builder = Builder(config: config, mode: mode, genotype: genotype)
    builder.dropPathRampSteps = dropPathRampSteps
    do {
      try builder.build(batchSize: batchSize)
    } catch let error as ModelError {
      throw error
    } catch {
      throw .graph("building \(config.cellName): \(error)")
    }
    self.config = config
    self.mode = mode
    self.batchSize = batchSize
    graph = builder.graph
    images = builder.images!
    logits = builder.logits!
    auxLogits = builder.auxLogits
    dropPathKeepProbability = builder.dropPathKeep
    globalStep = builder.globalStep
    parameters = builder.parameters
    batchNorms = builder.batchNorms
    stages = builder.stages
  }

  public var trainableParameterCount: Int {
    parameters.filter(\.isTrainable).reduce(0) { $0 + $1.shape.elementCount }
  }

  /// Multiply-adds of convolutions, depthwise convolutions and matrix products per image.
  public var multiplyAddsPerImage: Int {
    var total = 0
    for node in graph.nodes {
      switch node.op {
      case let .conv2d(g): total += g.convMultiplyAdds
      case let .depthwiseConv2d(g): total += g.outputPixels * g.kh * g.kw * g.inC
      case let .matmul(transposeA, _):
        let a = graph.shape(node.inputs[0])
        total += node.outputs[0].elementCount * (transposeA ? a[0] : a[1])
      default: break
      }
    }
    return total / batchSize
  }
}

/// The construction state: the graph, the scope stack (which names every node and parameter), and
/// the registries the trainer needs.
struct Builder {
  let config: NetworkConfig
  let mode: AmoebaNet.Mode
  let genotype: Genotype
  var graph = Graph()
  var scope: [String] = []
  var parameters: [ModelParameter] = []
  var batchNorms: [BatchNormLayer] = []
  var stages: [(name: String, value: Value)] = []
  var images: Value?
  var logits: Value?
  var auxLogits: Value?
  var dropPathKeep: Value?
  var dropPathRampSteps: Int?
  var globalStep: Value?
  var randomSeeds: UInt64 = 1

  init(config: NetworkConfig, mode: AmoebaNet.Mode, genotype: Genotype) {
    self.config = config
    self.mode = mode
    self.genotype = genotype
  }

  var training: Bool { mode == .training }

  mutating func build(batchSize: Int) throws {
    let images = try graph.input("images", [batchSize, config.imageSize, config.imageSize, 3])
    self.images = images
    if training && config.dropConnectKeepProb < 1 {
      if let steps = dropPathRampSteps {
        let step = try graph.parameter("global_step", .scalar)
        globalStep = step
        dropPathKeep = try graph.add(.stepSchedule(.linearRamp(final: config.dropConnectKeepProb, steps: steps)), [step],
                                     name: "drop_path_keep_prob")
      } else {
        dropPathKeep = try graph.input("drop_path_keep_prob", .scalar)
      }
    }
    // Stem: conv0 3×3 stride 2 VALID → BN, then the stem reduction cells.
    var net = try inScope("stem") { b in
      let conv = try b.conv(images, "conv0", filters: b.config.stemReductionSize, kernel: (3, 3), strides: (2, 2), padding: .valid)
      return try b.batchNorm(conv, "conv0_bn")
    }
    stages.append(("conv0", net))
    var cellOutputs: [Value?] = [nil, net]
    var filterScaling = 1.0 / Double(1 << config.numStemCells)
    for cell in 0..<config.numStemCells {
      net = try self.cell("cell_stem_\(cell)", genotype.reduction, input: net, previous: cellOutputs[cellOutputs.count - 2],
                          filterScaling: filterScaling, stride: 2)
      cellOutputs.append(net)
      stages.append(("cell_stem_\(cell)", net))
      filterScaling *= 2
    }

    filterScaling = 1
    let reductions = config.reductionIndices
    for cellNumber in 0..<config.numCells {
      if let reduction = reductions.firstIndex(of: cellNumber) {
        filterScaling *= 2
        net = try self.cell("reduction_cell_\(reduction)", genotype.reduction, input: net,
                            previous: cellOutputs[cellOutputs.count - 2], filterScaling: filterScaling, stride: 2)
        cellOutputs.append(net)
        stages.append(("reduction_cell_\(reduction)", net))
      }
      net = try self.cell("cell_\(cellNumber)", genotype.normal, input: net, previous: cellOutputs[cellOutputs.count - 2],
                          filterScaling: filterScaling, stride: 1)
      if training && config.useAuxHead && cellNumber == config.auxHeadCell {
        auxLogits = try auxHead(net, cellNumber: cellNumber)
      }
      cellOutputs.append(net)
      stages.append(("cell_\(cellNumber)", net))
    }

    logits = try inScope("final_layer") { b in
      var x = try b.graph.relu(net, name: b.scoped("Relu"))
      x = try b.graph.globalAvgPool(x, name: b.scoped("global_pool"))
      b.stages.append(("global_pool", x))
      if b.training && b.config.denseDropoutKeepProb < 1 {
        x = try b.graph.dropout(x, keepProbability: Float(b.config.denseDropoutKeepProb), seed: b.nextSeed(), name: b.scoped("dropout"))
      }
      return try b.fullyConnected(x, "FC", outputs: b.config.numLabelClasses)
    }
  }

  // MARK: Cells (`BaseCell`)

  /// One cell: h0 = BN(1×1(ReLU(input))), h1 = the previous output matched to it, five combinations,
  /// then the concat of the unused states.
  mutating func cell(_ name: String, _ spec: CellSpec, input: Value, previous: Value?, filterScaling: Double,
                     stride: Int) throws -> Value {
    let filters = Int(Double(config.reductionSize) * filterScaling)
    return try inScope(name) { b in
      let h1 = try b.reducePreviousLayer(previous, current: input, filters: filters)
      let h0 = try b.batchNorm(try b.conv(try b.relu(input), "1x1", filters: filters), "beginning_bn")
      var states = [h0, h1]
      for iteration in 0..<5 {
        let sum = try b.inScope("comb_iter_\(iteration)") { b in
          var sides: [Value] = []
          for (side, k) in [("left", 2 * iteration), ("right", 2 * iteration + 1)] {
            let index = spec.hiddenstateIndices[k]
            let operation = try CellOperation(parsing: spec.operations[k])
            sides.append(try b.inScope(side) { b in
              try b.apply(operation, to: states[index], stride: stride, isOriginalInput: index < 2, filters: filters)
            })
          }
          return try b.graph.add(sides[0], sides[1], name: b.scoped("combine/add"))
        }
        states.append(sum)
      }
      return try b.inScope("cell_output") { b in try b.combineUnusedStates(states, used: spec.usedHiddenstates) }
    }
  }

  /// `_reduce_prev_layer`: the raw input when there is no previous layer (cell_stem_0 only); a
  /// factorized reduction when the widths differ; ReLU → 1×1 → BN when only the channels differ.
  mutating func reducePreviousLayer(_ previous: Value?, current: Value, filters: Int) throws -> Value {
    guard let previous else { return current }
    let p = graph.shape(previous), c = graph.shape(current)
    if p[2] != c[2] {
      return try factorizedReduction(try relu(previous), filters: filters, stride: 2)
    }
    if p[3] != filters {
      return try batchNorm(try conv(try relu(previous), "prev_1x1", filters: filters), "prev_bn")
    }
    return previous
  }

  /// `_apply_operation`: strides apply only to ops on the cell inputs (h0, h1).
  mutating func apply(_ operation: CellOperation, to input: Value, stride requested: Int, isOriginalInput: Bool,
                      filters: Int) throws -> Value {
    let stride = isOriginalInput ? requested : 1
    let inputFilters = graph.shape(input)[3]
    var net = input
    switch operation {
    case let .separable(kernel, layers):
      var s = stride
      for layer in 1...layers {
        net = try separableConv(try relu(net), "separable_\(kernel)x\(kernel)_\(layer)", filters: filters, kernel: kernel, stride: s)
        net = try batchNorm(net, "bn_sep_\(kernel)x\(kernel)_\(layer)")
        s = 1
      }
    case let .bottleneck(core):
      let reduced = core == .conv1x3_3x1 ? Int(3 * Double(filters) / 8) : Int(Double(filters) / 4)
      if reduced < 1 {
        net = try batchNorm(try bottleneckCore(core, try relu(net), stride: stride, filters: filters), "bn")
      } else {
        net = try batchNorm(try conv(try relu(net), "pre_1x1", filters: reduced), "pre_bn")
        net = try batchNorm(try bottleneckCore(core, try relu(net), stride: stride, filters: reduced), "bn")
        net = try batchNorm(try conv(try relu(net), "post_1x1", filters: filters), "post_bn")
      }
    case .none, .conv1x1:
      if stride > 1 || operation == .conv1x1 || inputFilters != filters {
        net = try batchNorm(try conv(try relu(net), "1x1", filters: filters, strides: (stride, stride)), "bn_1")
      }
    case let .pool(kind, size):
      net = try pool(kind, net, size: size, stride: stride)
      if inputFilters != filters {
        net = try batchNorm(try conv(net, "1x1", filters: filters), "bn_1")
      }
    }
    if operation != .none, let keep = dropPathKeep {
      net = try graph.dropPath(net, keepProbability: keep, seed: nextSeed(), name: scoped("drop_path"))
    }
    return net
  }

  mutating func bottleneckCore(_ core: CellOperation.BottleneckCore, _ x: Value, stride: Int, filters: Int) throws -> Value {
    switch core {
    case .conv3x3:
      return try conv(x, "3x3", filters: filters, kernel: (3, 3), strides: (stride, stride))
    case .conv1x7_7x1:
      let a = try conv(x, "1x7", filters: filters, kernel: (1, 7), strides: (1, stride))
      return try conv(try relu(try batchNorm(a, "bn_1x7_7x1")), "7x1", filters: filters, kernel: (7, 1), strides: (stride, 1))
    case .conv1x3_3x1:
      let a = try conv(x, "1x3", filters: filters, kernel: (1, 3), strides: (1, stride))
      return try conv(try relu(try batchNorm(a, "bn_1x3_3x1")), "3x1", filters: filters, kernel: (3, 1), strides: (stride, 1))
    case let .dilated3x3(rate):
      return try conv(x, "dilated_3x3", filters: filters, kernel: (3, 3), strides: (stride, stride), dilations: (rate, rate))
    }
  }

  mutating func pool(_ kind: CellOperation.PoolKind, _ x: Value, size: Int, stride: Int) throws -> Value {
    let name = kind.rawValue + "_pool"
    switch kind {
    case .max:
      return try graph.maxPool(x, window: (size, size), strides: (stride, stride), padding: .same, name: scoped(name))
    case .avg:
      return try graph.avgPool(x, window: (size, size), strides: (stride, stride), padding: .same, name: scoped(name))
    case .min:
      let negated = try graph.scale(x, by: -1, name: scoped("negate"))
      let pooled = try graph.maxPool(negated, window: (size, size), strides: (stride, stride), padding: .same, name: scoped(name))
      return try graph.scale(pooled, by: -1, name: scoped("negate_back"))
    }
  }

  /// `_combine_unused_states`: unused states whose width or channels differ from the last state's
  /// are factorized-reduced to match, then all unused states are concatenated.
  mutating func combineUnusedStates(_ states: [Value], used: [Int]) throws -> Value {
    var states = states
    let final = graph.shape(states[states.count - 1])
    for (index, isUsed) in used.enumerated() where isUsed == 0 {
      let current = graph.shape(states[index])
      if current[2] != final[2] || current[3] != final[3] {
        let stride = current[2] != final[2] ? 2 : 1
        states[index] = try inScope("reduction_\(index)") { b in
          try b.factorizedReduction(states[index], filters: final[3], stride: stride)
        }
      }
    }
    let unused = used.enumerated().filter { $0.element == 0 }.map { states[$0.offset] }
    return try graph.concat(unused, name: scoped("concat"))
  }

  /// `factorized_reduction`: with stride 2, path 1 subsamples x[::2, ::2] and path 2 subsamples the
  /// input shifted by one pixel (pad bottom/right, drop the first row and column), each through a 1×1
  /// conv to half the filters; the two are concatenated and batch-normalised.
  mutating func factorizedReduction(_ x: Value, filters: Int, stride: Int) throws -> Value {
    if stride == 1 {
      return try batchNorm(try conv(x, "path_conv", filters: filters), "path_bn")
    }
    let path1 = try conv(try graph.slice(x, strides: (stride, stride), name: scoped("path1_subsample")), "path1_conv", filters: filters / 2)
    let padded = try graph.pad(x, top: 0, bottom: 1, left: 0, right: 1, name: scoped("path2_pad"))
    let shifted = try graph.slice(padded, top: 1, left: 1, strides: (stride, stride), name: scoped("path2_subsample"))
    let path2 = try conv(shifted, "path2_conv", filters: filters / 2)
    return try batchNorm(try graph.concat([path1, path2], name: scoped("path_concat")), "final_path_bn")
  }

  // MARK: Heads

  /// `_build_aux_head`: ReLU → avg-pool 5×5/3 VALID → 1×1 to int(128·s) → BN → ReLU → conv over the
  /// whole remaining map to int(768·s) → BN → ReLU → FC.
  mutating func auxHead(_ cellOutput: Value, cellNumber: Int) throws -> Value {
    let shape = graph.shape(cellOutput)
    guard shape[1] >= 5, shape[2] >= 5 else {
      throw ModelError.invalidConfig("the aux head after cell_\(cellNumber) needs a feature map of at least 5x5 for its 5x5 VALID pool, but it is \(shape[1])x\(shape[2]) at --image_size=\(config.imageSize); pass --use_aux_head=false or a larger --image_size")
    }
    return try inScope("aux_\(cellNumber)") { b in
      try b.inScope("aux_logits") { b in
        var x = try b.relu(cellOutput)
        x = try b.graph.avgPool(x, window: (5, 5), strides: (3, 3), padding: .valid, name: b.scoped("AvgPool2D"))
        x = try b.relu(try b.batchNorm(try b.conv(x, "proj", filters: Int(128 * b.config.auxScaling)), "aux_bn0"))
        let map = b.graph.shape(x)
        x = try b.conv(x, "Conv", filters: Int(768 * b.config.auxScaling), kernel: (map[1], map[2]), padding: .valid)
        x = try b.relu(try b.batchNorm(x, "aux_bn1"))
        let flat = b.graph.shape(x)
        x = try b.graph.reshape(x, to: [flat[0], flat[1] * flat[2] * flat[3]], name: b.scoped("Flatten"))
        return try b.fullyConnected(x, "FC", outputs: b.config.numLabelClasses)
      }
    }
  }

  // MARK: Layers (slim's conv2d, separable_conv2d, fully_connected and the reference's batch_norm)

  mutating func conv(_ x: Value, _ name: String, filters: Int, kernel: (Int, Int) = (1, 1), strides: (Int, Int) = (1, 1),
                     dilations: (Int, Int) = (1, 1), padding: Padding = .same) throws -> Value {
    let channels = graph.shape(x)[3]
    let weights = try parameter(name + "/weights", [kernel.0, kernel.1, channels, filters], .convWeights)
    return try graph.conv2d(x, filter: weights, strides: strides, dilations: dilations, padding: padding, name: scoped(name + "/Conv2D"))
  }

  mutating func separableConv(_ x: Value, _ name: String, filters: Int, kernel: Int, stride: Int) throws -> Value {
    let channels = graph.shape(x)[3]
    let depthwise = try parameter(name + "/depthwise_weights", [kernel, kernel, channels], .depthwiseWeights)
    let pointwise = try parameter(name + "/pointwise_weights", [1, 1, channels, filters], .pointwiseWeights)
    let spatial = try graph.depthwiseConv2d(x, filter: depthwise, strides: (stride, stride), padding: .same, name: scoped(name + "/depthwise"))
    return try graph.conv2d(spatial, filter: pointwise, padding: .same, name: scoped(name + "/pointwise"))
  }

  mutating func fullyConnected(_ x: Value, _ name: String, outputs: Int) throws -> Value {
    let inputs = graph.shape(x)[1]
    let weights = try parameter(name + "/weights", [inputs, outputs], .fullyConnectedWeights)
    if config.fcInit == .zeros { parameters[parameters.count - 1].startsAtZero = true }
    let biases = try parameter(name + "/biases", [outputs], .biases)
    return try graph.dense(x, weights: weights, bias: biases, name: scoped(name))
  }

  mutating func batchNorm(_ x: Value, _ name: String) throws -> Value {
    let shape = graph.shape(x), channels = shape[3]
    let gamma = try parameter(name + "/gamma", [channels], .gamma)
    let beta = try parameter(name + "/beta", [channels], .beta)
    let epsilon = config.effectiveBatchNormEpsilon
    if training {
      parameters.append(ModelParameter(name: scoped(name + "/moving_mean"), kind: .movingMean, shape: [channels], value: nil))
      parameters.append(ModelParameter(name: scoped(name + "/moving_variance"), kind: .movingVariance, shape: [channels], value: nil))
      let result = try graph.batchNormTraining(x, gamma: gamma, beta: beta, epsilon: epsilon, name: scoped(name + "/FusedBatchNorm"))
      batchNorms.append(BatchNormLayer(name: scoped(name), channels: channels, rows: shape.elementCount / channels,
                                       batchMean: result.mean, batchVariance: result.variance))
      return result.y
    }
    let mean = try parameter(name + "/moving_mean", [channels], .movingMean)
    let variance = try parameter(name + "/moving_variance", [channels], .movingVariance)
    batchNorms.append(BatchNormLayer(name: scoped(name), channels: channels, rows: shape.elementCount / channels,
                                     batchMean: nil, batchVariance: nil))
    return try graph.batchNormInference(x, gamma: gamma, beta: beta, mean: mean, variance: variance, epsilon: epsilon,
                                        name: scoped(name + "/FusedBatchNorm"))
  }

  mutating func relu(_ x: Value) throws -> Value { try graph.relu(x, name: scoped("Relu")) }

  mutating func parameter(_ name: String, _ shape: Shape, _ kind: ModelParameter.Kind) throws -> Value {
    let full = scoped(name)
    let value = try graph.parameter(full, shape)
    parameters.append(ModelParameter(name: full, kind: kind, shape: shape, value: value))
    return value
  }

  // MARK: Scopes

  func scoped(_ name: String) -> String { (scope + [name]).joined(separator: "/") }

  mutating func inScope<T>(_ name: String, _ body: (inout Builder) throws -> T) rethrows -> T {
    scope.append(name)
    defer { scope.removeLast() }
    return try body(&self)
  }

  mutating func nextSeed() -> UInt64 {
    randomSeeds += 1
    return randomSeeds
  }
}
