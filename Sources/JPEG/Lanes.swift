/// Lane conversions and clamps written out in operations the compiler vectorises. The standard
/// library's `clamped(lowerBound:upperBound:)` and `init(truncatingIfNeeded:)` between SIMD types
/// were compiled to calls (`pointwiseMax`, `pointwiseMin`, the generic conversion) from every
/// 16-pixel step of the colour conversion, the upsampler and the IDCTs — nine calls per 16 pixels.
enum Lanes {
  /// Each lane clamped to 0...255 and narrowed to a byte, as one lane loop: the compiler sees a
  /// clamp feeding a truncation and emits saturating packs.
  @inline(__always) static func clampedBytes(_ v: SIMD16<Int32>) -> SIMD16<UInt8> {
    var out = SIMD16<UInt8>()
    for i in 0..<16 { out[i] = UInt8(truncatingIfNeeded: Swift.min(Swift.max(v[i], 0), 255)) }
    return out
  }

  @inline(__always) static func clampedBytes(_ v: SIMD8<Int32>) -> SIMD8<UInt8> {
    var out = SIMD8<UInt8>()
    for i in 0..<8 { out[i] = UInt8(truncatingIfNeeded: Swift.min(Swift.max(v[i], 0), 255)) }
    return out
  }

  /// The low byte of each lane.
  @inline(__always) static func narrow(_ v: SIMD16<Int32>) -> SIMD16<UInt8> {
    var out = SIMD16<UInt8>()
    for i in 0..<16 { out[i] = UInt8(truncatingIfNeeded: v[i]) }
    return out
  }

  @inline(__always) static func widen(_ v: SIMD16<UInt8>) -> SIMD16<Int32> {
    var out = SIMD16<Int32>()
    for i in 0..<16 { out[i] = Int32(v[i]) }
    return out
  }
}
