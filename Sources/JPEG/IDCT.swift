#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The accurate integer inverse DCT of libjpeg (`jidctint.c`, `JDCT_ISLOW`): the Loeffler–
/// Ligtenberg–Moschytz factorization with 13-bit constants, columns first with 2 extra bits of
/// precision, then rows, descaled, level-shifted by 128 and clamped to 0...255. Reproducing its
/// rounding exactly is what makes the output equal TensorFlow's `INTEGER_ACCURATE` and Pillow's.
enum IDCT {
  static let constBits: Int32 = 13
  static let pass1Bits: Int32 = 2
  static let fix0_298631336: Int32 = 2446
  static let fix0_390180644: Int32 = 3196
  static let fix0_541196100: Int32 = 4433
  static let fix0_765366865: Int32 = 6270
  static let fix0_899976223: Int32 = 7373
  static let fix1_175875602: Int32 = 9633
  static let fix1_501321110: Int32 = 12299
  static let fix1_847759065: Int32 = 15137
  static let fix1_961570560: Int32 = 16069
  static let fix2_053119869: Int32 = 16819
  static let fix2_562915447: Int32 = 20995
  static let fix3_072711026: Int32 = 25172

  /// One-dimensional 8-point IDCT on eight lanes at once; `x[k]` holds frequency k of every lane.
  /// Returns the eight outputs before their final descale. Wrapping arithmetic: corrupt
  /// coefficients give garbage pixels, never a trap.
  @inline(__always)
  static func transform(_ x0: SIMD8<Int32>, _ x1: SIMD8<Int32>, _ x2: SIMD8<Int32>, _ x3: SIMD8<Int32>,
                        _ x4: SIMD8<Int32>, _ x5: SIMD8<Int32>, _ x6: SIMD8<Int32>, _ x7: SIMD8<Int32>)
    -> (SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>) {
    // Even part: rotation of frequencies 2 and 6, butterflies with 0 and 4.
    let z1 = (x2 &+ x6) &* fix0_541196100
    let tmp2 = z1 &+ x6 &* -fix1_847759065
    let tmp3 = z1 &+ x2 &* fix0_765366865
    let tmp0 = (x0 &+ x4) &<< constBits
    let tmp1 = (x0 &- x4) &<< constBits
    let tmp10 = tmp0 &+ tmp3, tmp13 = tmp0 &- tmp3
    let tmp11 = tmp1 &+ tmp2, tmp12 = tmp1 &- tmp2
    // Odd part: frequencies 7, 5, 3, 1.
    let s1 = x7 &+ x1, s2 = x5 &+ x3, s3 = x7 &+ x3, s4 = x5 &+ x1
    let z5 = (s3 &+ s4) &* fix1_175875602
    let o0 = x7 &* fix0_298631336, o1 = x5 &* fix2_053119869
    let o2 = x3 &* fix3_072711026, o3 = x1 &* fix1_501321110
    let m1 = s1 &* -fix0_899976223, m2 = s2 &* -fix2_562915447
    let m3 = s3 &* -fix1_961570560 &+ z5, m4 = s4 &* -fix0_390180644 &+ z5
    let t0 = o0 &+ m1 &+ m3, t1 = o1 &+ m2 &+ m4
    let t2 = o2 &+ m2 &+ m3, t3 = o3 &+ m1 &+ m4
    return (tmp10 &+ t3, tmp11 &+ t2, tmp12 &+ t1, tmp13 &+ t0,
            tmp13 &- t0, tmp12 &- t1, tmp11 &- t2, tmp10 &- t3)
  }

  /// Dequantizes `coefficients` (natural order) with `quant` and writes the 8×8 pixels at `out`
  /// with row stride `stride`.
  @inline(__always)
  static func islow(_ coefficients: UnsafePointer<Int16>, _ quant: UnsafePointer<Int32>,
                    _ out: UnsafeMutablePointer<UInt8>, stride: Int) {
    @inline(__always) func row(_ k: Int) -> SIMD8<Int32> {
      var v = SIMD8<Int32>()
      for i in 0..<8 { v[i] = Int32(coefficients[k * 8 + i]) &* quant[k * 8 + i] }
      return v
    }
    // Pass 1: columns. Lane i is column i; row k is vertical frequency k.
    let c = transform(row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
    let shift1 = constBits - pass1Bits
    let round1 = SIMD8<Int32>(repeating: 1 << (shift1 - 1))
    // Pass 2: rows. Transposed, lane j is row j and vector k is horizontal frequency k.
    var t = transpose(((c.0 &+ round1) &>> shift1, (c.1 &+ round1) &>> shift1, (c.2 &+ round1) &>> shift1,
                       (c.3 &+ round1) &>> shift1, (c.4 &+ round1) &>> shift1, (c.5 &+ round1) &>> shift1,
                       (c.6 &+ round1) &>> shift1, (c.7 &+ round1) &>> shift1))
    // libjpeg folds the rounding of the final descale into the DC term.
    t.0 &+= SIMD8<Int32>(repeating: 1 << (pass1Bits + 2))
    let shift2 = constBits + pass1Bits + 3
    let r = transform(t.0, t.1, t.2, t.3, t.4, t.5, t.6, t.7)
    let level = SIMD8<Int32>(repeating: 128)
    // Clamped after the transpose, in the narrowing to bytes (the clamp is per lane, so it commutes).
    @inline(__always) func pixels(_ v: SIMD8<Int32>) -> SIMD8<Int32> { (v &>> shift2) &+ level }
    let p = transpose((pixels(r.0), pixels(r.1), pixels(r.2), pixels(r.3), pixels(r.4), pixels(r.5), pixels(r.6), pixels(r.7)))
    @inline(__always) func store(_ v: SIMD8<Int32>, _ j: Int) {
      UnsafeMutableRawPointer(out + j * stride).storeBytes(of: Lanes.clampedBytes(v), as: SIMD8<UInt8>.self)
    }
    store(p.0, 0); store(p.1, 1); store(p.2, 2); store(p.3, 3)
    store(p.4, 4); store(p.5, 5); store(p.6, 6); store(p.7, 7)
  }

  typealias Block = (SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>)

  @inline(__always)
  static func transpose(_ m: Block) -> Block {
    var r = Block(.zero, .zero, .zero, .zero, .zero, .zero, .zero, .zero)
    withUnsafeBytes(of: m) { src in
      let a = src.assumingMemoryBound(to: Int32.self)
      withUnsafeMutableBytes(of: &r) { dst in
        let b = dst.assumingMemoryBound(to: Int32.self)
        for i in 0..<8 { for j in 0..<8 { b[j * 8 + i] = a[i * 8 + j] } }
      }
    }
    return r
  }

  /// The definition (T.81 A.3.3) in double precision: the reference the integer IDCT is tested against.
  static func reference(_ coefficients: [Int16], _ quant: [Int32]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 64)
    for y in 0..<8 {
      for x in 0..<8 {
        var sum = 0.0
        for v in 0..<8 {
          for u in 0..<8 {
            let cu = u == 0 ? 1 / 2.0.squareRoot() : 1, cv = v == 0 ? 1 / 2.0.squareRoot() : 1
            let f = Double(Int32(coefficients[v * 8 + u]) * quant[v * 8 + u])
            sum += cu * cv * f * cos(Double(2 * x + 1) * Double(u) * .pi / 16) * cos(Double(2 * y + 1) * Double(v) * .pi / 16)
          }
        }
        out[y * 8 + x] = UInt8(clamping: Int((sum / 4 + 128).rounded()))
      }
    }
    return out
  }
}
