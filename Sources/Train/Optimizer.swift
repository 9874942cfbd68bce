/// The update rules of the reference's optimizers, TensorFlow's kernels exactly
/// (`ApplyRMSProp`, `ApplyMomentum`, `ApplyGradientDescent`), on one parameter tensor at a time.
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

  /// Slots per parameter element, with their initial values.
  public var slotInitialValues: [Float] {
    switch self {
    case .rmsprop: [1, 0]   // ms, mom
    case .momentum: [0]     // accumulation
    case .sgd: []
    }
  }

  /// Applies one update to `count` elements. `slots` holds `slotInitialValues.count` arrays of `count`.
  public func apply(weights w: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>, count: Int,
                    slots: [UnsafeMutablePointer<Float>], learningRate: Float) {
    switch self {
    case .rmsprop:
      let ms = slots[0], mom = slots[1]
      let rho = OptimizerKind.rmspropDecay, mu = OptimizerKind.momentumRate, epsilon = OptimizerKind.rmspropEpsilon
      for i in 0..<count {
        ms[i] = rho * ms[i] + (1 - rho) * g[i] * g[i]
        mom[i] = mu * mom[i] + learningRate * g[i] / (ms[i] + epsilon).squareRoot()
        w[i] -= mom[i]
      }
    case .momentum:
      let accumulation = slots[0], mu = OptimizerKind.momentumRate
      for i in 0..<count {
        accumulation[i] = mu * accumulation[i] + g[i]
        w[i] -= learningRate * accumulation[i]
      }
    case .sgd:
      for i in 0..<count { w[i] -= learningRate * g[i] }
    }
  }
}

/// Exponential moving averages, as `tf.train.ExponentialMovingAverage(decay, num_updates=step)`:
/// shadow −= (1 − d)·(shadow − value) with d = min(decay, (1 + t)/(10 + t)). Also the batch-norm
/// moving statistics (`assign_moving_average`, zero_debias off), with the fixed decay.
public enum MovingAverage {
  public static func effectiveDecay(_ decay: Double, step: Int) -> Float {
    Float(min(decay, (1 + Double(step)) / (10 + Double(step))))
  }

  public static func update(shadow: UnsafeMutablePointer<Float>, toward value: UnsafePointer<Float>, count: Int,
                            decay: Float, scale: Float = 1) {
    for i in 0..<count { shadow[i] -= (1 - decay) * (shadow[i] - value[i] * scale) }
  }
}
