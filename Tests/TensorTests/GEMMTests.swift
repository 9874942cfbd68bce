import Foundation
import Testing
import Tensor

@Suite struct GEMMTests {
  /// Each test gets its own pool: a KernelContext serves one caller at a time.
  let context = KernelContext(threads: 2)

  /// Every register tile this CPU runs (the wide one at least on default flags), on shapes with
  /// full and ragged tiles of both 6×16 and 12×32, through the blocked and the rectangle paths.
  @Test(arguments: [
    (1, 1, 1), (5, 7, 3), (6, 16, 256), (12, 32, 256), (13, 33, 257), (25, 65, 513), (97, 31, 300), (200, 129, 70),
    (7, 300, 520), (130, 2100, 17),
  ], GEMMKernel.runnable)
  func fastMatchesReferenceOnAwkwardShapes(shape: (Int, Int, Int), variant: GEMMKernel.Variant) {
    let (m, n, k) = shape
    let context = KernelContext(threads: 2, gemm: .variant(variant))
    for (transA, transB) in [(false, false), (true, false), (false, true), (true, true)] {
      for beta: Float in [0, 1, -0.5] {
        let a = randomArray(m * k, seed: 1), b = randomArray(k * n, seed: 2), c0 = randomArray(m * n, seed: 3)
        var fast = c0, slow = c0
        let lda = transA ? m : k, ldb = transB ? k : n
        fast.withUnsafeMutableBufferPointer { c in
          GEMM.compute(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda, b: b, ldb: ldb,
                       beta: beta, c: c.baseAddress!, ldc: n, context: context)
        }
        slow.withUnsafeMutableBufferPointer { c in
          GEMM.reference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda, b: b, ldb: ldb,
                         beta: beta, c: c.baseAddress!, ldc: n)
        }
        #expect(maxRelativeError(fast, slow) < 1e-4, "\(variant) m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) beta=\(beta)")
      }
    }
  }

  @Test func betaZeroIgnoresGarbageInC() {
    let a = randomArray(12 * 9, seed: 4), b = randomArray(9 * 20, seed: 5)
    var c = [Float](repeating: .nan, count: 12 * 20)
    c.withUnsafeMutableBufferPointer { c in
      GEMM.compute(transA: false, transB: false, m: 12, n: 20, k: 9, a: a, lda: 9, b: b, ldb: 20,
                   c: c.baseAddress!, ldc: 20, context: context)
    }
    #expect(c.allSatisfy { $0.isFinite })
  }

  @Test func cpuFlagsChooseTheTile() {
    let zen5 = CPUFeatures(cpuinfo: "processor\t: 0\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu sse avx2 fma avx512f avx512dq avx512bw avx512vl\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    #expect(zen5.model == "AMD EPYC 9B45" && zen5.flags.contains("avx512vl"))
    let zen3 = CPUFeatures(cpuinfo: "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 fma\n")
    let onlyF = CPUFeatures(cpuinfo: "flags\t\t: avx2 avx512f\n")
    #if arch(x86_64)
    #expect(zen5.hasAVX512)
    #endif
    #expect(!zen3.hasAVX512 && !onlyF.hasAVX512)
    #expect(!CPUFeatures(cpuinfo: "").hasAVX512)
    #expect(GEMMKernel.runnable.contains(.narrow) && GEMMKernel.runnable.contains(.wideBaseline))
    #expect(GEMMKernel.runnable.contains(.avx512) == CPUFeatures.current.hasAVX512)
    #expect(GEMMKernel.detected.variant == (CPUFeatures.current.hasAVX512 ? .avx512 : .narrow)
            || ProcessInfo.processInfo.environment["AMOEBA_GEMM_KERNEL"] != nil)
  }

  @Test func resultIsBitwiseIndependentOfThreadCount() {
    let m = 150, n = 70, k = 600
    let a = randomArray(m * k, seed: 6), b = randomArray(k * n, seed: 7)
    var results: [[Float]] = []
    for threads in [1, 2, 3] {
      let context = KernelContext(threads: threads)
      var c = [Float](repeating: 0, count: m * n)
      c.withUnsafeMutableBufferPointer { c in
        GEMM.compute(transA: false, transB: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n,
                     c: c.baseAddress!, ldc: n, context: context)
      }
      results.append(c)
    }
    #expect(results[0] == results[1])
    #expect(results[0] == results[2])
  }
}
