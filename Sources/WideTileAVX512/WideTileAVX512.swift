import WideTile

/// `WideTile.multiply` compiled for AVX-512 (this target's flags, Package.swift). Call it only
/// where the CPU has AVX-512 F/DQ/BW/VL: `GEMMKernel.detected` checks.
@inline(never)
public func wideTileAVX512(kc: Int, a: UnsafePointer<Float>, rowMajor: Bool, b: UnsafePointer<Float>,
                           c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
  WideTile.multiply(kc: kc, a: a, rowMajor: rowMajor, b: b, c: c, ldc: ldc, alpha: alpha, beta: beta)
}
