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

/// A copy of a few floats with vector moves (8, then 4, then single): for the packers' runs of
/// 6 to 32 floats, where a memcpy call or a scalar loop costs as much as the copy.
@inline(__always)
func copyShortRun(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
  var j = 0
  while j &+ vectorWidth <= count { dst.storeVector(src.vector(at: j), at: j); j &+= vectorWidth }
  while j &+ 4 <= count {
    UnsafeMutableRawPointer(dst + j).storeBytes(of: UnsafeRawPointer(src + j).loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self)
    j &+= 4
  }
  while j < count { dst[j] = src[j]; j &+= 1 }
}
