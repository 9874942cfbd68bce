/// Counter-based random numbers: the value at `(seed, stream, index)` is a pure function of the three,
/// so a kernel can draw element `i` on any thread in any order and still be reproducible, and a
/// gradient kernel can regenerate the forward's mask instead of storing it.
///
/// The mixer is SplitMix64's finaliser applied twice (a strong 64-bit bijection); quality is ample
/// for dropout masks and initialisation, and it costs a few multiplies per element.
public enum CounterRandom {
  @inline(__always)
  public static func bits(seed: UInt64, stream: UInt64, index: UInt64) -> UInt64 {
    var z = seed &+ stream &* 0x9E37_79B9_7F4A_7C15
    z = mix(z)
    z = mix(z ^ (index &* 0xBF58_476D_1CE4_E5B9 &+ 0x94D0_49BB_1331_11EB))
    return z
  }

  /// Uniform in [0, 1) with 24 bits of precision.
  @inline(__always)
  public static func uniform(seed: UInt64, stream: UInt64, index: UInt64) -> Float {
    Float(bits(seed: seed, stream: stream, index: index) >> 40) * (1.0 / 16_777_216.0)
  }

  @inline(__always)
  static func mix(_ value: UInt64) -> UInt64 {
    var z = value
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
