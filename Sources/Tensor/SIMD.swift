/// The vector type the kernels are written in.
///
/// 8 lanes (one AVX2 ymm register, two NEON q registers) by default; 16 lanes (one zmm register)
/// when the package is built with `AMOEBA_SIMD=avx512` (see Package.swift). Kernels are written
/// against `FloatVector.scalarCount`, so both builds run the same code.
#if AMOEBA_AVX512
public typealias FloatVector = SIMD16<Float>
#else
public typealias FloatVector = SIMD8<Float>
#endif

/// Lanes per `FloatVector`.
public let vectorWidth = FloatVector.scalarCount

extension UnsafePointer where Pointee == Float {
  @inline(__always) func vector(at offset: Int) -> FloatVector {
    UnsafeRawPointer(self + offset).loadUnaligned(as: FloatVector.self)
  }
}

extension UnsafeMutablePointer where Pointee == Float {
  @inline(__always) func vector(at offset: Int) -> FloatVector {
    UnsafeRawPointer(self + offset).loadUnaligned(as: FloatVector.self)
  }
  @inline(__always) func storeVector(_ v: FloatVector, at offset: Int) {
    UnsafeMutableRawPointer(self + offset).storeBytes(of: v, as: FloatVector.self)
  }
}

/// `value` where `selector > 0`, else 0, without a branch: the integer lane mask of the comparison
/// ANDed into the float bits. (A `? :` per element compiled to a branch that mispredicted on real
/// ReLU patterns; the generic SIMD `replacing(with:where:)` is a per-lane loop.)
@inline(__always)
func keepWherePositive(_ value: FloatVector, _ selector: FloatVector) -> FloatVector {
  let bits = unsafeBitCast(value, to: FloatVector.MaskStorage.self) & (selector .> FloatVector())._storage
  return unsafeBitCast(bits, to: FloatVector.self)
}
