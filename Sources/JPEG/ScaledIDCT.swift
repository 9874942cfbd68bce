/// libjpeg's reduced-size inverse DCTs (`jidctred.c`), which produce 4×4, 2×2 or 1×1 pixels straight
/// from an 8×8 block's low frequencies: decoding at 1/2, 1/4 and 1/8 scale costs a fraction of a
/// full decode. Same constants, passes and rounding as libjpeg, so scaled output equals
/// TensorFlow's `decode_jpeg(ratio:)`. Wrapping arithmetic: corrupt data cannot trap.
enum ScaledIDCT {
  static let constBits: Int32 = 13
  static let pass1Bits: Int32 = 2
  static func fix(_ x: Double) -> Int32 { Int32(x * 8192 + 0.5) }
  static let fix0_211164243 = fix(0.211164243), fix0_509795579 = fix(0.509795579)
  static let fix0_601344887 = fix(0.601344887), fix0_720959822 = fix(0.720959822)
  static let fix0_765366865 = fix(0.765366865), fix0_850430095 = fix(0.850430095)
  static let fix0_899976223 = fix(0.899976223), fix1_061594337 = fix(1.061594337)
  static let fix1_272758580 = fix(1.272758580), fix1_451774981 = fix(1.451774981)
  static let fix1_847759065 = fix(1.847759065), fix2_172734803 = fix(2.172734803)
  static let fix2_562915447 = fix(2.562915447), fix3_624509785 = fix(3.624509785)

  @inline(__always) static func descale(_ x: Int32, _ n: Int32) -> Int32 { (x &+ (1 &<< (n - 1))) &>> n }
  @inline(__always) static func pixel(_ x: Int32) -> UInt8 { UInt8(clamping: x &+ 128) }

  /// Frequencies 1, 3, 5, 7 → the odd parts of a 4-point output (sqrt(2)-scaled, libjpeg's names).
  @inline(__always)
  static func odd4(_ z1: Int32, _ z2: Int32, _ z3: Int32, _ z4: Int32) -> (Int32, Int32) {
    let tmp0 = z1 &* -fix0_211164243 &+ z2 &* fix1_451774981 &+ z3 &* -fix2_172734803 &+ z4 &* fix1_061594337
    let tmp2 = z1 &* -fix0_509795579 &+ z2 &* -fix0_601344887 &+ z3 &* fix0_899976223 &+ z4 &* fix2_562915447
    return (tmp0, tmp2)
  }

  static func idct4x4(_ c: UnsafePointer<Int16>, _ q: UnsafePointer<Int32>, _ out: UnsafeMutablePointer<UInt8>, stride: Int) {
    // 4 rows × 8 columns (column 4 unused), on the stack.
    withUnsafeTemporaryAllocation(of: Int32.self, capacity: 32) { w in
      @inline(__always) func input(_ row: Int, _ col: Int) -> Int32 { Int32(c[row * 8 + col]) &* q[row * 8 + col] }
      for col in 0..<8 where col != 4 {
        if c[8 + col] == 0 && c[16 + col] == 0 && c[24 + col] == 0 && c[40 + col] == 0 && c[48 + col] == 0 && c[56 + col] == 0 {
          let dc = input(0, col) &<< pass1Bits
          for r in 0..<4 { w[r * 8 + col] = dc }
          continue
        }
        let tmp0 = input(0, col) &<< (constBits + 1)
        let tmp2 = input(2, col) &* fix1_847759065 &+ input(6, col) &* -fix0_765366865
        let tmp10 = tmp0 &+ tmp2, tmp12 = tmp0 &- tmp2
        let (odd0, odd2) = odd4(input(7, col), input(5, col), input(3, col), input(1, col))
        let shift = constBits - pass1Bits + 1
        w[col] = descale(tmp10 &+ odd2, shift)
        w[24 + col] = descale(tmp10 &- odd2, shift)
        w[8 + col] = descale(tmp12 &+ odd0, shift)
        w[16 + col] = descale(tmp12 &- odd0, shift)
      }
      for r in 0..<4 {
        let row = w.baseAddress! + r * 8, line = out + r * stride
        if row[1] == 0 && row[2] == 0 && row[3] == 0 && row[5] == 0 && row[6] == 0 && row[7] == 0 {
          let value = pixel(descale(row[0], pass1Bits + 3))
          for x in 0..<4 { line[x] = value }
          continue
        }
        let tmp0 = row[0] &<< (constBits + 1)
        let tmp2 = row[2] &* fix1_847759065 &+ row[6] &* -fix0_765366865
        let tmp10 = tmp0 &+ tmp2, tmp12 = tmp0 &- tmp2
        let (odd0, odd2) = odd4(row[7], row[5], row[3], row[1])
        let shift = constBits + pass1Bits + 3 + 1
        line[0] = pixel(descale(tmp10 &+ odd2, shift))
        line[3] = pixel(descale(tmp10 &- odd2, shift))
        line[1] = pixel(descale(tmp12 &+ odd0, shift))
        line[2] = pixel(descale(tmp12 &- odd0, shift))
      }
    }
  }

  /// Frequencies 1, 3, 5, 7 → the odd part of a 2-point output.
  @inline(__always)
  static func odd2(_ x7: Int32, _ x5: Int32, _ x3: Int32, _ x1: Int32) -> Int32 {
    x7 &* -fix0_720959822 &+ x5 &* fix0_850430095 &+ x3 &* -fix1_272758580 &+ x1 &* fix3_624509785
  }

  static func idct2x2(_ c: UnsafePointer<Int16>, _ q: UnsafePointer<Int32>, _ out: UnsafeMutablePointer<UInt8>, stride: Int) {
    var ws = (SIMD8<Int32>(), SIMD8<Int32>())   // 2 rows × 8 columns (only 0, 1, 3, 5, 7 used)
    @inline(__always) func input(_ row: Int, _ col: Int) -> Int32 { Int32(c[row * 8 + col]) &* q[row * 8 + col] }
    for col in 0..<8 where col == 0 || col % 2 == 1 {
      if c[8 + col] == 0 && c[24 + col] == 0 && c[40 + col] == 0 && c[56 + col] == 0 {
        let dc = input(0, col) &<< pass1Bits
        ws.0[col] = dc; ws.1[col] = dc
        continue
      }
      let tmp10 = input(0, col) &<< (constBits + 2)
      let tmp0 = odd2(input(7, col), input(5, col), input(3, col), input(1, col))
      let shift = constBits - pass1Bits + 2
      ws.0[col] = descale(tmp10 &+ tmp0, shift)
      ws.1[col] = descale(tmp10 &- tmp0, shift)
    }
    for r in 0..<2 {
      let row = r == 0 ? ws.0 : ws.1, line = out + r * stride
      if row[1] == 0 && row[3] == 0 && row[5] == 0 && row[7] == 0 {
        let value = pixel(descale(row[0], pass1Bits + 3))
        line[0] = value; line[1] = value
        continue
      }
      let tmp10 = row[0] &<< (constBits + 2)
      let tmp0 = odd2(row[7], row[5], row[3], row[1])
      let shift = constBits + pass1Bits + 3 + 2
      line[0] = pixel(descale(tmp10 &+ tmp0, shift))
      line[1] = pixel(descale(tmp10 &- tmp0, shift))
    }
  }

  static func idct1x1(_ c: UnsafePointer<Int16>, _ q: UnsafePointer<Int32>, _ out: UnsafeMutablePointer<UInt8>) {
    out[0] = pixel(descale(Int32(c[0]) &* q[0], 3))
  }
}
