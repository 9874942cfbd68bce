#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// libjpeg's fast integer IDCT (`jidctfst.c`, `JDCT_IFAST`): the Arai–Agui–Nakajima algorithm with
/// 8-bit constants and truncating shifts, dequantizing with a quantization table pre-multiplied by
/// the AAN scale factors. It is what TensorFlow's `decode_jpeg` uses by default
/// (`dct_method=''`), and so what the reference's input pipeline saw; it differs from the accurate
/// IDCT by a few levels.
enum FastIDCT {
  static let constBits: Int32 = 8
  static let pass1Bits: Int32 = 2
  static let fix1_082392200: Int32 = 277
  static let fix1_414213562: Int32 = 362
  static let fix1_847759065: Int32 = 473
  static let fix2_613125930: Int32 = 669

  /// The AAN scale factors × 2^14 (`jddctmgr.c`'s `aanscales`): c(u)·c(v) with c(0) = 1,
  /// c(k) = √2·cos(kπ/16).
  static let scales: [Int32] = (0..<64).map { i in
    func c(_ k: Int) -> Double { k == 0 ? 1 : 2.0.squareRoot() * cos(Double(k) * .pi / 16) }
    return Int32((c(i / 8) * c(i % 8) * 16384).rounded())
  }

  /// The multiplier table for a quantization table (natural order): q·scale / 2^12, rounded.
  static func multipliers(_ quant: [Int32]) -> [Int32] {
    (0..<64).map { (quant[$0] &* scales[$0] &+ (1 << 11)) &>> 12 }
  }

  typealias Vector = SIMD8<Int32>

  @inline(__always) static func multiply(_ x: Vector, _ c: Int32) -> Vector { (x &* c) &>> constBits }

  /// The 8-point AAN IDCT on eight lanes at once; `x.k` holds frequency k of every lane.
  @inline(__always)
  static func transform(_ x: IDCT.Block) -> IDCT.Block {
    // Even part.
    let tmp10 = x.0 &+ x.4, tmp11 = x.0 &- x.4
    let tmp13 = x.2 &+ x.6
    let tmp12 = multiply(x.2 &- x.6, fix1_414213562) &- tmp13
    let e0 = tmp10 &+ tmp13, e3 = tmp10 &- tmp13
    let e1 = tmp11 &+ tmp12, e2 = tmp11 &- tmp12
    // Odd part.
    let z13 = x.5 &+ x.3, z10 = x.5 &- x.3
    let z11 = x.1 &+ x.7, z12 = x.1 &- x.7
    let o7 = z11 &+ z13
    let o11 = multiply(z11 &- z13, fix1_414213562)
    let z5 = multiply(z10 &+ z12, fix1_847759065)
    let o10 = multiply(z12, fix1_082392200) &- z5
    let o12 = multiply(z10, -fix2_613125930) &+ z5
    let o6 = o12 &- o7
    let o5 = o11 &- o6
    let o4 = o10 &+ o5
    return (e0 &+ o7, e1 &+ o6, e2 &+ o5, e3 &- o4, e3 &+ o4, e2 &- o5, e1 &- o6, e0 &- o7)
  }

  /// Columns, then rows (after a transpose), then a truncating descale by 2^5 and the level shift.
  /// libjpeg skips all-zero AC columns and rows; the full transform gives the same values there.
  static func idct(_ c: UnsafePointer<Int16>, _ multipliers: UnsafePointer<Int32>, _ out: UnsafeMutablePointer<UInt8>, stride: Int) {
    @inline(__always) func row(_ k: Int) -> Vector {
      var v = Vector()
      for i in 0..<8 { v[i] = Int32(c[k * 8 + i]) &* multipliers[k * 8 + i] }
      return v
    }
    let columns = transform((row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7)))
    let rows = transform(IDCT.transpose(columns))
    let level = Vector(repeating: 128)
    // Clamped after the transpose, in the narrowing to bytes (the clamp is per lane, so it commutes).
    @inline(__always) func pixels(_ v: Vector) -> Vector { (v &>> (pass1Bits + 3)) &+ level }
    let p = IDCT.transpose((pixels(rows.0), pixels(rows.1), pixels(rows.2), pixels(rows.3),
                            pixels(rows.4), pixels(rows.5), pixels(rows.6), pixels(rows.7)))
    @inline(__always) func store(_ v: Vector, _ j: Int) {
      UnsafeMutableRawPointer(out + j * stride).storeBytes(of: Lanes.clampedBytes(v), as: SIMD8<UInt8>.self)
    }
    store(p.0, 0); store(p.1, 1); store(p.2, 2); store(p.3, 3)
    store(p.4, 4); store(p.5, 5); store(p.6, 6); store(p.7, 7)
  }
}
