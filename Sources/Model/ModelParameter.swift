import Graph
import Tensor

/// One variable of the model, named as the reference names it (`cell_3/comb_iter_1/left/1x1/weights`),
/// so checkpoints and exports map 1:1 onto the TensorFlow variables.
public struct ModelParameter: Hashable, Sendable {
  public enum Kind: String, Hashable, Sendable {
    case convWeights = "weights"
    case depthwiseWeights = "depthwise_weights"
    case pointwiseWeights = "pointwise_weights"
    case fullyConnectedWeights = "fc_weights"
    case biases
    case gamma, beta
    case movingMean = "moving_mean"
    case movingVariance = "moving_variance"
  }

  public let name: String
  public let kind: Kind
  public let shape: Shape
  /// The graph leaf holding it; nil for batch-norm moving statistics in a training graph, which
  /// the trainer updates from the batch moments outside the graph.
  public let value: Value?
  /// Starts at zero instead of the reference's initializer (`--fc_init=zeros` for the FC weights).
  public var startsAtZero = false

  /// Trained by the optimizer (everything except the moving statistics).
  public var isTrainable: Bool { kind != .movingMean && kind != .movingVariance }
  /// Carries the L2 weight decay: convolution, depthwise, pointwise and FC weights, as the reference's
  /// `weights_regularizer`; not biases or batch-norm parameters.
  public var isWeightDecayed: Bool {
    kind == .convWeights || kind == .depthwiseWeights || kind == .pointwiseWeights || kind == .fullyConnectedWeights
  }

  /// `variance_scaling_initializer(mode='FAN_OUT')`: fan_out = kh·kw·out for convolution kernels
  /// (out = 1 for depthwise), the output width for FC weights.
  public var fanOut: Int {
    switch kind {
    case .convWeights, .pointwiseWeights: shape.dims.reduce(1, *) / shape[2]
    case .depthwiseWeights: shape[0] * shape[1]
    case .fullyConnectedWeights: shape[1]
    default: 1
    }
  }

  /// The reference's initial values: truncated normal with stddev √(1.3·2/fan_out) for weights
  /// (TensorFlow 1.x's variance scaling, factor 2, its truncation correction 1.3), γ = 1, β = 0,
  /// biases 0, moving mean 0, moving variance 1. Deterministic in (seed, name).
  public func initialValues(seed: UInt64) -> [Float] {
    let count = shape.elementCount
    switch kind {
    case .gamma, .movingVariance: return [Float](repeating: 1, count: count)
    case .beta, .biases, .movingMean: return [Float](repeating: 0, count: count)
    case .convWeights, .depthwiseWeights, .pointwiseWeights, .fullyConnectedWeights:
      if startsAtZero { return [Float](repeating: 0, count: count) }
      let stddev = (1.3 * 2 / Double(fanOut)).squareRoot()
      let stream = ModelParameter.hash(name)
      return (0..<count).map { Float(stddev * ModelParameter.truncatedNormal(seed: seed, stream: stream, index: UInt64($0))) }
    }
  }

  /// A standard normal sample re-drawn until it lies within two standard deviations.
  static func truncatedNormal(seed: UInt64, stream: UInt64, index: UInt64) -> Double {
    var attempt: UInt64 = 0
    while true {
      let base = (index << 8) | (attempt & 0xFF)
      let u1 = max(Double(CounterRandom.uniform(seed: seed, stream: stream, index: base * 2)), 1e-12)
      let u2 = Double(CounterRandom.uniform(seed: seed, stream: stream, index: base * 2 + 1))
      let z = (-2 * logarithm(u1)).squareRoot() * cosine(2 * .pi * u2)
      if abs(z) <= 2 { return z }
      attempt += 1
    }
  }

  /// FNV-1a of the name: a stable stream per parameter, independent of build order.
  static func hash(_ text: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return h
  }
}

/// A batch-norm layer: its parameters, and in a training graph the batch moments the trainer folds
/// into the moving statistics (decay 0.9, Bessel-corrected variance, as the reference).
public struct BatchNormLayer: Hashable, Sendable {
  /// The layer's scope, e.g. `cell_0/beginning_bn`.
  public let name: String
  public let channels: Int
  /// N·H·W, the count behind the batch variance (for the N/(N−1) correction).
  public let rows: Int
  public let batchMean: Value?
  public let batchVariance: Value?
}
