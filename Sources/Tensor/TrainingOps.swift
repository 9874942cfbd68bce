/// TensorFlow's training ops (`ApplyRMSProp`, `ApplyMomentum`, `ApplyGradientDescent`) and moving
/// averages, element by element. Each result may be the same memory as the state it replaces: element
/// i reads only element i, so a state update runs in place. The learning rate and decay are scalars.
public enum TrainingOps {
  public static func applyRMSProp(weights w: UnsafePointer<Float>, ms: UnsafePointer<Float>, mom: UnsafePointer<Float>,
                                  gradients g: UnsafePointer<Float>, learningRate: Float, decay rho: Float, momentum mu: Float,
                                  epsilon: Float, count: Int,
                                  into newWeights: UnsafeMutablePointer<Float>, newMS: UnsafeMutablePointer<Float>,
                                  newMom: UnsafeMutablePointer<Float>, context: KernelContext) {
    Elementwise.parallelRanges(count, context: context) { s, e in
      for i in s..<e {
        let square = rho * ms[i] + (1 - rho) * g[i] * g[i]
        let step = mu * mom[i] + learningRate * g[i] / (square + epsilon).squareRoot()
        newMS[i] = square
        newMom[i] = step
        newWeights[i] = w[i] - step
      }
    }
  }

  public static func applyMomentum(weights w: UnsafePointer<Float>, accumulation: UnsafePointer<Float>, gradients g: UnsafePointer<Float>,
                                   learningRate: Float, momentum mu: Float, count: Int,
                                   into newWeights: UnsafeMutablePointer<Float>, newAccumulation: UnsafeMutablePointer<Float>,
                                   context: KernelContext) {
    Elementwise.parallelRanges(count, context: context) { s, e in
      for i in s..<e {
        let a = mu * accumulation[i] + g[i]
        newAccumulation[i] = a
        newWeights[i] = w[i] - learningRate * a
      }
    }
  }

  public static func applyGradientDescent(weights w: UnsafePointer<Float>, gradients g: UnsafePointer<Float>, learningRate: Float,
                                          count: Int, into newWeights: UnsafeMutablePointer<Float>, context: KernelContext) {
    Elementwise.parallelRanges(count, context: context) { s, e in
      for i in s..<e { newWeights[i] = w[i] - learningRate * g[i] }
    }
  }

  /// shadow − (1 − decay)·(shadow − scale·value).
  public static func movingAverage(shadow: UnsafePointer<Float>, value: UnsafePointer<Float>, decay: Float, scale: Float, count: Int,
                                   into result: UnsafeMutablePointer<Float>, context: KernelContext) {
    Elementwise.parallelRanges(count, context: context) { s, e in
      for i in s..<e { result[i] = shadow[i] - (1 - decay) * (shadow[i] - value[i] * scale) }
    }
  }
}
