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
    if ProcessInfo.processInfo.environment["AMOEBA_GEMM_KERNEL"] == nil {
      // With AVX-512 the choice rests on timing the two tiles; without it there is none to make.
      if CPUFeatures.current.hasAVX512 {
        #expect([.avx512, .narrow].contains(GEMMKernel.detected.variant) && GEMMKernel.selection.reason.hasPrefix("the AVX-512 tile timed in cache"))
      } else {
        #expect(GEMMKernel.detected.variant == .narrow && GEMMKernel.selection.reason == "no AVX-512")
      }
    }
  }

  /// The blocks follow the caches: KC×NR of B fills half of L1d, MC×KC of A an eighth of L2, and MC and
  /// NC stay multiples of the tile.
  @Test func blockingFollowsTheCaches() {
    let zen4 = CPUCaches(l1d: 32 << 10, l2: 1 << 20, l3PerCore: 16 << 20)
    let narrow = GEMMBlocking.chosen(for: .narrow, caches: zen4)
    #expect(narrow.kc * GEMMKernel.narrow.nr * 4 == 16 << 10)
    #expect(narrow.mc % GEMMKernel.narrow.mr == 0 && narrow.mc * narrow.kc * 4 <= 128 << 10 && narrow.mc >= 120)
    #expect(narrow.nc % GEMMKernel.narrow.nr == 0 && narrow.nc <= 4096)
    let wide = GEMMBlocking.chosen(for: .wideBaseline, caches: CPUCaches(l1d: 48 << 10, l2: 1 << 20, l3PerCore: 4 << 20))
    #expect(wide.kc == 256 && wide.mc % 12 == 0 && wide.nc % 32 == 0)
    let big = GEMMBlocking.chosen(for: .narrow, caches: CPUCaches(l1d: 64 << 10, l2: 2 << 20, l3PerCore: 4 << 20))
    #expect(big.kc * GEMMKernel.narrow.nr * 4 == 32 << 10)
    // A tiny L1 still gets the smallest KC that pays for the C updates; a huge L2 does not grow MC without bound.
    let odd = GEMMBlocking.chosen(for: .narrow, caches: CPUCaches(l1d: 1 << 10, l2: 64 << 20, l3PerCore: 1 << 10))
    #expect(odd.kc == 256 && odd.mc <= 1020 && odd.nc == 8 * GEMMKernel.narrow.nr)
  }

  @Test func cachesAreReadFromSysfs() throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("amoeba-cache-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: root) }
    let entries = [("index0", "1", "Data", "48K", "0"), ("index1", "1", "Instruction", "32K", "0"),
                   ("index2", "2", "Unified", "1024K", "0"), ("index3", "3", "Unified", "32M", "0-3,8-11")]
    for (name, level, type, size, shared) in entries {
      let dir = root.appendingPathComponent(name)
      try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
      for (file, value) in [("level", level), ("type", type), ("size", size), ("shared_cpu_list", shared)] {
        try (value + "\n").write(to: dir.appendingPathComponent(file), atomically: true, encoding: .utf8)
      }
    }
    let caches = CPUCaches(sysfs: root.path)
    #expect(caches == CPUCaches(l1d: 48 << 10, l2: 1 << 20, l3PerCore: 4 << 20))
    #expect(CPUCaches(sysfs: root.appendingPathComponent("absent").path) == .assumed)
  }

  /// Blocks far smaller than any cache would choose, so every loop runs several times: several KC
  /// steps, MC blocks and NC panels, ragged at each edge.
  @Test(arguments: GEMMKernel.runnable)
  func smallBlocksMatchTheReference(variant: GEMMKernel.Variant) {
    let tile = GEMMKernel.variant(variant)
    let blocking = GEMMBlocking(kc: 64, mc: 2 * tile.mr, nc: 4 * tile.nr)
    let context = KernelContext(threads: 2, gemm: tile, blocking: blocking)
    let m = 97, n = 5 * tile.nr + 3
    // k 128: the blocked path (two KC steps); k 200: the rectangle path (k > 2·KC, small C).
    for (k, transA, transB) in [(128, false, false), (128, true, true), (200, false, false), (200, true, true)] {
      let a = randomArray(m * k, seed: 21), b = randomArray(k * n, seed: 22), c0 = randomArray(m * n, seed: 23)
      var fast = c0, slow = c0
      let lda = transA ? m : k, ldb = transB ? k : n
      fast.withUnsafeMutableBufferPointer { c in
        GEMM.compute(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: 1,
                     c: c.baseAddress!, ldc: n, context: context)
      }
      slow.withUnsafeMutableBufferPointer { c in
        GEMM.reference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb,
                       beta: 1, c: c.baseAddress!, ldc: n)
      }
      #expect(maxRelativeError(fast, slow) < 1e-4, "\(variant) \(blocking) k=\(k) tA=\(transA) tB=\(transB)")
    }
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
