#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A scalar that follows the global step: the learning rate, the moving averages' decay, the
/// drop-path keep probability. An op of the graph (`stepSchedule`) so that a step whose counter
/// lives on a device computes them there; `value(at:)` is the definition both backends follow
/// (the CPU in double precision, as the reference's Python does, XLA in float32).
public enum StepSchedule: Hashable, Sendable {
  /// base · rate^floor(t / decaySteps) (staircase).
  case exponentialDecay(base: Double, rate: Double, decaySteps: Int, warmupSteps: Int)
  /// ½ · base · (1 + cos(π t / totalSteps)).
  case cosineDecay(base: Double, totalSteps: Int, warmupSteps: Int)
  case constant(base: Double, warmupSteps: Int)
  /// min(decay, (1 + t)/(10 + t)): `tf.train.ExponentialMovingAverage(decay, num_updates=t)`.
  case movingAverageDecay(Double)
  /// 1 − min(1, t/steps)·(1 − final): from 1 down to `final` linearly, then flat (drop-path's ramp).
  case linearRamp(final: Double, steps: Int)

  /// Learning-rate schedules: linear warm-up from 0 over `warmupSteps` (exponential only, as in the
  /// reference), and never below 1e-4 of the base rate.
  public func value(at step: Int) -> Double {
    let t = Double(step)
    switch self {
    case let .exponentialDecay(base, rate, decaySteps, warmup):
      let decayed = base * pow(rate, Double(step / max(decaySteps, 1)))
      return max(step < warmup ? base * t / Double(warmup) : decayed, 1e-4 * base)
    case let .cosineDecay(base, totalSteps, warmup):
      let decayed = 0.5 * base * (1 + cos(Double.pi * t / Double(max(totalSteps, 1))))
      return max(step < warmup ? base * t / Double(warmup) : decayed, 1e-4 * base)
    case let .constant(base, warmup):
      return max(step < warmup ? base * t / Double(warmup) : base, 1e-4 * base)
    case let .movingAverageDecay(decay):
      return min(decay, (1 + t) / (10 + t))
    case let .linearRamp(final, steps):
      return 1 - min(1, t / Double(max(steps, 1))) * (1 - final)
    }
  }
}
