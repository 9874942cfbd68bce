/// The 12×32 register tile of the fast GEMM for CPUs with 32 vector registers of 16 floats
/// (AVX-512): 24 accumulators, two B vectors and one broadcast of A. Written once, compiled twice:
/// `WideTileAVX512` inlines it into a function built for AVX-512, `Tensor` into one built with the
/// default flags, so the tests check this source's logic on hosts without AVX-512 too.
///
/// It is `@inlinable @inline(__always)` so that in a release build each wrapper holds its own copy
/// compiled with its own target flags (checked: `WideTileAVX512.o` defines only its wrapper, no
/// shared specialisation the linker could swap). A debug build does not inline: both wrappers then
/// call this module's copy on the default flags, correct and slow, like everything at -Onone.
public enum WideTile {
  public static let mr = 12
  public static let nr = 32

  /// C[12×32] (row stride `ldc`) = alpha · A·B + beta · C over `kc` products, A packed as 12-row
  /// slivers (`rowMajor`: `a[r*kc + p]`; else `a[p*12 + r]`), B as one 32-wide k-major sliver.
  /// With beta == 0 C is not read.
  @inlinable @inline(__always)
  public static func multiply(kc: Int, a: UnsafePointer<Float>, rowMajor: Bool, b: UnsafePointer<Float>,
                              c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
    var acc = Accumulators()
    // Two loops, one per layout: a stride chosen at run time inside the loop spills accumulators.
    // Wrapping index arithmetic: overflow checks in the loop cost more than the FMAs.
    var bp = b
    if rowMajor {
      var ap = a
      for _ in 0..<kc {
        let b0 = load(bp), b1 = load(bp + 16)
        acc.update(b0, b1) { ap[$0 &* kc] }
        ap += 1; bp += 32
      }
    } else {
      var ap = a
      for _ in 0..<kc {
        let b0 = load(bp), b1 = load(bp + 16)
        acc.update(b0, b1) { ap[$0] }
        ap += 12; bp += 32
      }
    }
    acc.store(c, ldc: ldc, alpha: alpha, beta: beta)
  }

  @inlinable @inline(__always)
  static func load(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
  }

  /// Twelve rows of two vectors each, spelled out: an array of vectors would live in memory.
  @usableFromInline
  struct Accumulators {
    @usableFromInline var r0a = SIMD16<Float>(), r0b = SIMD16<Float>(), r1a = SIMD16<Float>(), r1b = SIMD16<Float>()
    @usableFromInline var r2a = SIMD16<Float>(), r2b = SIMD16<Float>(), r3a = SIMD16<Float>(), r3b = SIMD16<Float>()
    @usableFromInline var r4a = SIMD16<Float>(), r4b = SIMD16<Float>(), r5a = SIMD16<Float>(), r5b = SIMD16<Float>()
    @usableFromInline var r6a = SIMD16<Float>(), r6b = SIMD16<Float>(), r7a = SIMD16<Float>(), r7b = SIMD16<Float>()
    @usableFromInline var r8a = SIMD16<Float>(), r8b = SIMD16<Float>(), r9a = SIMD16<Float>(), r9b = SIMD16<Float>()
    @usableFromInline var r10a = SIMD16<Float>(), r10b = SIMD16<Float>(), r11a = SIMD16<Float>(), r11b = SIMD16<Float>()

    @inlinable @inline(__always) init() {}

    /// One k step: row r gains `a(r)` · (b0, b1).
    @inlinable @inline(__always)
    mutating func update(_ b0: SIMD16<Float>, _ b1: SIMD16<Float>, _ a: (Int) -> Float) {
      var x = SIMD16<Float>(repeating: a(0)); r0a.addProduct(x, b0); r0b.addProduct(x, b1)
      x = SIMD16<Float>(repeating: a(1)); r1a.addProduct(x, b0); r1b.addProduct(x, b1)
      x = SIMD16<Float>(repeating: a(2)); r2a.addProduct(x, b0); r2b.addProduct(x, b1)
      x = SIMD16<Float>(repeating: a(3)); r3a.addProduct(x, b0); r3b.addProduct(x, b1)
      x = SIMD16<Float>(repeating: a(4)); r4a.addProduct(x, b0); r4b.addProduct(x, b1)
      x = SIMD16<Float>(repeating: a(5)); r5a.addProduct(x, b0); r5b.addProduct(x, b1)
      x = SIMD16<Float>(repeating: a(6)); r6a.addProduct(x, b0); r6b.addProduct(x, b1)
      x = SIMD16<Float>(repeating: a(7)); r7a.addProduct(x, b0); r7b.addProduct(x, b1)
      x = SIMD16<Float>(repeating: a(8)); r8a.addProduct(x, b0); r8b.addProduct(x, b1)
      x = SIMD16<Float>(repeating: a(9)); r9a.addProduct(x, b0); r9b.addProduct(x, b1)
      x = SIMD16<Float>(repeating: a(10)); r10a.addProduct(x, b0); r10b.addProduct(x, b1)
      x = SIMD16<Float>(repeating: a(11)); r11a.addProduct(x, b0); r11b.addProduct(x, b1)
    }

    @inlinable @inline(__always)
    func store(_ c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
      row(r0a, r0b, c, alpha, beta); row(r1a, r1b, c + ldc, alpha, beta)
      row(r2a, r2b, c + 2 * ldc, alpha, beta); row(r3a, r3b, c + 3 * ldc, alpha, beta)
      row(r4a, r4b, c + 4 * ldc, alpha, beta); row(r5a, r5b, c + 5 * ldc, alpha, beta)
      row(r6a, r6b, c + 6 * ldc, alpha, beta); row(r7a, r7b, c + 7 * ldc, alpha, beta)
      row(r8a, r8b, c + 8 * ldc, alpha, beta); row(r9a, r9b, c + 9 * ldc, alpha, beta)
      row(r10a, r10b, c + 10 * ldc, alpha, beta); row(r11a, r11b, c + 11 * ldc, alpha, beta)
    }

    @inlinable @inline(__always)
    func row(_ v0: SIMD16<Float>, _ v1: SIMD16<Float>, _ out: UnsafeMutablePointer<Float>, _ alpha: Float, _ beta: Float) {
      var s0 = v0, s1 = v1
      if alpha != 1 { s0 *= alpha; s1 *= alpha }
      let raw = UnsafeMutableRawPointer(out)
      if beta != 0 {
        s0.addProduct(SIMD16<Float>(repeating: beta), raw.loadUnaligned(as: SIMD16<Float>.self))
        s1.addProduct(SIMD16<Float>(repeating: beta), (raw + 64).loadUnaligned(as: SIMD16<Float>.self))
      }
      raw.storeBytes(of: s0, as: SIMD16<Float>.self)
      (raw + 64).storeBytes(of: s1, as: SIMD16<Float>.self)
    }
  }
}
