import Graph
/// The reference's optimizers: their slots and the graph op of their update (TensorFlow's kernels
/// exactly, `ApplyRMSProp`, `ApplyMomentum`, `ApplyGradientDescent`; see `TrainingOps`).
///
///     rmsprop:  ms  = ρ·ms + (1 − ρ)·g²;  mom = μ·mom + lr·g/√(ms + ε);  w −= mom   (ms starts at 1, ε = 1.0)
///     momentum: acc = μ·acc + g;           w −= lr·acc                                (no Nesterov)
///     sgd:      w −= lr·g
///
/// ρ = 0.9, μ = 0.9 and ε = 1.0 are the reference's module constants, not flags.
public enum OptimizerKind: String, Hashable, Sendable {
  case rmsprop, momentum, sgd

  public static let rmspropDecay: Float = 0.9
  public static let momentumRate: Float = 0.9
  public static let rmspropEpsilon: Float = 1.0

  /// The slots' names after the parameter's (`<var>/RMSProp`), as TensorFlow names them.
  public var slotNames: [String] {
    switch self {
    case .rmsprop: ["RMSProp", "RMSProp_1"]
    case .momentum: ["Momentum"]
    case .sgd: []
    }
  }

  /// The graph op of the update: [w, slots…, gradient, learning rate] → (w, slots…).
  public var op: Op {
    switch self {
    case .rmsprop: .applyRMSProp(decay: OptimizerKind.rmspropDecay, momentum: OptimizerKind.momentumRate, epsilon: OptimizerKind.rmspropEpsilon)
    case .momentum: .applyMomentum(momentum: OptimizerKind.momentumRate)
    case .sgd: .applyGradientDescent
    }
  }

  /// Slots per parameter element, with their initial values.
  public var slotInitialValues: [Float] {
    switch self {
    case .rmsprop: [1, 0]   // ms, mom
    case .momentum: [0]     // accumulation
    case .sgd: []
    }
  }
}
