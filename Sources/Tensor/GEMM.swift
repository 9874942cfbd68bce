/// Single-precision matrix multiply, row-major:
///
///     C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C
///
/// where op(A) is A or Aᵀ. `A(i, p)` is `a[i*lda + p]`, or `a[p*lda + i]` when `transA`.
/// When `beta == 0`, C is not read (it may hold garbage, even NaN).
///
/// The fast path follows the BLIS structure: B is packed in KC×NC blocks shared by all threads, A in
/// MC×KC blocks per thread, and an MR×NR register-tiled micro-kernel does the FMAs. Every element of
/// C sums its k products in the same order whatever the thread count, so results are bitwise
/// reproducible across runs and pool sizes.
public enum GEMM {
  /// Plain triple loop with a Double accumulator: the algorithmic reference for tests.
  public static func reference(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    for i in 0..<m {
      for j in 0..<n {
        var sum = 0.0
        for p in 0..<k {
          let x = transA ? a[p * lda + i] : a[i * lda + p]
          let y = transB ? b[j * ldb + p] : b[p * ldb + j]
          sum += Double(x) * Double(y)
        }
        let prior = beta == 0 ? 0 : beta * c[i * ldc + j]
        c[i * ldc + j] = alpha * Float(sum) + prior
      }
    }
  }

  /// The fast, multi-threaded multiply. Same contract as `reference`.
  public static func compute(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, context: KernelContext
  ) {
    if m == 0 || n == 0 { return }
    if k == 0 {
      scale(c, rows: m, columns: n, ldc: ldc, by: beta, context: context)
      return
    }
    typealias B = GEMMBlocking
    let threads = context.threadCount
    // Split M so every thread gets a block; if M is too short for that, split N as well.
    let mc = min(B.mc, roundUp(max((m + threads - 1) / threads, 1), B.mr))
    let mBlocks = (m + mc - 1) / mc

    var jc = 0
    while jc < n {
      let nc = min(B.nc, n - jc)
      let slivers = (nc + B.nr - 1) / B.nr
      let nGroups = mBlocks >= 2 * threads ? 1 : min(slivers, max(1, (2 * threads + mBlocks - 1) / mBlocks))
      let sliversPerGroup = (slivers + nGroups - 1) / nGroups
      var pc = 0
      while pc < k {
        let kc = min(B.kc, k - pc)
        let blockBeta: Float = pc == 0 ? beta : 1
        let packedB = context.packedB
        // Phase 1: pack B[pc..<pc+kc, jc..<jc+nc] into NR-wide slivers, 8 slivers a task.
        context.pool.parallelFor((slivers + 7) / 8) { task, _ in
          for sliver in task * 8..<min(slivers, task * 8 + 8) {
            packB(transB: transB, b: b, ldb: ldb, row: pc, column: jc + sliver * B.nr, kc: kc,
                  columns: min(B.nr, nc - sliver * B.nr), into: packedB + sliver * kc * B.nr)
          }
        }
        // Phase 2: each task packs one MC×KC block of A and multiplies it with a range of slivers.
        context.pool.parallelFor(mBlocks * nGroups) { task, thread in
          let ic = (task / nGroups) * mc, group = task % nGroups
          let rows = min(mc, m - ic)
          let firstSliver = group * sliversPerGroup
          let lastSliver = min(slivers, firstSliver + sliversPerGroup)
          if firstSliver >= lastSliver { return }
          let packedA = context.packedA(thread: thread)
          packA(transA: transA, a: a, lda: lda, row: ic, column: pc, rows: rows, kc: kc, into: packedA)
          for sliver in firstSliver..<lastSliver {
            let j = jc + sliver * B.nr
            let columns = min(B.nr, n - j)
            var ir = 0
            while ir < rows {
              let tileRows = min(B.mr, rows - ir)
              let cTile = c + (ic + ir) * ldc + j
              let aSliver = UnsafePointer(packedA + ir * kc)
              let bSliver = UnsafePointer(packedB + sliver * kc * B.nr)
              if tileRows == B.mr && columns == B.nr {
                microKernel(kc: kc, a: aSliver, b: bSliver, c: cTile, ldc: ldc, alpha: alpha, beta: blockBeta)
              } else {
                edgeTile(kc: kc, a: aSliver, b: bSliver, c: cTile, ldc: ldc, rows: tileRows,
                         columns: columns, alpha: alpha, beta: blockBeta)
              }
              ir += B.mr
            }
          }
        }
        pc += kc
      }
      jc += nc
    }
  }

  private static func scale(_ c: UnsafeMutablePointer<Float>, rows: Int, columns: Int, ldc: Int,
                            by beta: Float, context: KernelContext) {
    for i in 0..<rows {
      for j in 0..<columns { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] }
    }
  }

  /// Packs `rows`×`kc` of A starting at (row, column) into MR-row slivers laid out p-major
  /// (`out[p*MR + r]`), zero-filling the rows past the end so the micro-kernel never branches.
  @inline(__always)
  static func packA(transA: Bool, a: UnsafePointer<Float>, lda: Int, row: Int, column: Int,
                    rows: Int, kc: Int, into out: UnsafeMutablePointer<Float>) {
    let mr = GEMMBlocking.mr
    var ir = 0
    var dst = out
    while ir < rows {
      let live = min(mr, rows - ir)
      if transA {
        for p in 0..<kc {
          let src = a + (column + p) * lda + row + ir
          for r in 0..<live { dst[p * mr + r] = src[r] }
          for r in live..<mr { dst[p * mr + r] = 0 }
        }
      } else {
        for r in 0..<mr {
          if r < live {
            let src = a + (row + ir + r) * lda + column
            for p in 0..<kc { dst[p * mr + r] = src[p] }
          } else {
            for p in 0..<kc { dst[p * mr + r] = 0 }
          }
        }
      }
      dst += kc * mr
      ir += mr
    }
  }

  /// Packs `kc`×`columns` of B starting at (row, column) into one NR-wide sliver (`out[p*NR + j]`),
  /// zero-filling the columns past `columns`.
  @inline(__always)
  static func packB(transB: Bool, b: UnsafePointer<Float>, ldb: Int, row: Int, column: Int,
                    kc: Int, columns: Int, into out: UnsafeMutablePointer<Float>) {
    let nr = GEMMBlocking.nr, w = vectorWidth
    if transB {
      for j in 0..<nr {
        if j < columns {
          let src = b + (column + j) * ldb + row
          for p in 0..<kc { out[p * nr + j] = src[p] }
        } else {
          for p in 0..<kc { out[p * nr + j] = 0 }
        }
      }
    } else if columns == nr {
      for p in 0..<kc {
        let src = b + (row + p) * ldb + column
        var j = 0
        while j < nr { out.storeVector(src.vector(at: j), at: p * nr + j); j += w }
      }
    } else {
      for p in 0..<kc {
        let src = b + (row + p) * ldb + column
        for j in 0..<columns { out[p * nr + j] = src[j] }
        for j in columns..<nr { out[p * nr + j] = 0 }
      }
    }
  }

  /// A partial tile: multiply into a full-size local tile, then merge the live part into C.
  private static func edgeTile(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                               c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, columns: Int,
                               alpha: Float, beta: Float) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: GEMMBlocking.mr * GEMMBlocking.nr) { tile in
      let t = tile.baseAddress!
      microKernel(kc: kc, a: a, b: b, c: t, ldc: GEMMBlocking.nr, alpha: alpha, beta: 0)
      for r in 0..<rows {
        for j in 0..<columns {
          let prior = beta == 0 ? 0 : beta * c[r * ldc + j]
          c[r * ldc + j] = t[r * GEMMBlocking.nr + j] + prior
        }
      }
    }
  }

  /// The register-tiled core: a 6×(2·W) tile of C in 12 vector accumulators, updated with one
  /// broadcast of A and two vector loads of B per k. Twelve accumulators cover the FMA latency on
  /// two pipes and leave registers for the B vectors and the broadcast with 16 ymm registers.
  @inline(__always)
  static func microKernel(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                          c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
    let w = vectorWidth
    var c00 = FloatVector(), c01 = FloatVector(), c10 = FloatVector(), c11 = FloatVector()
    var c20 = FloatVector(), c21 = FloatVector(), c30 = FloatVector(), c31 = FloatVector()
    var c40 = FloatVector(), c41 = FloatVector(), c50 = FloatVector(), c51 = FloatVector()
    var ap = a, bp = b
    for _ in 0..<kc {
      let b0 = bp.vector(at: 0), b1 = bp.vector(at: w)
      var x = FloatVector(repeating: ap[0]); c00.addProduct(x, b0); c01.addProduct(x, b1)
      x = FloatVector(repeating: ap[1]); c10.addProduct(x, b0); c11.addProduct(x, b1)
      x = FloatVector(repeating: ap[2]); c20.addProduct(x, b0); c21.addProduct(x, b1)
      x = FloatVector(repeating: ap[3]); c30.addProduct(x, b0); c31.addProduct(x, b1)
      x = FloatVector(repeating: ap[4]); c40.addProduct(x, b0); c41.addProduct(x, b1)
      x = FloatVector(repeating: ap[5]); c50.addProduct(x, b0); c51.addProduct(x, b1)
      ap += 6
      bp += 2 * w
    }
    store(c00, c01, row: c, w: w, alpha: alpha, beta: beta)
    store(c10, c11, row: c + ldc, w: w, alpha: alpha, beta: beta)
    store(c20, c21, row: c + 2 * ldc, w: w, alpha: alpha, beta: beta)
    store(c30, c31, row: c + 3 * ldc, w: w, alpha: alpha, beta: beta)
    store(c40, c41, row: c + 4 * ldc, w: w, alpha: alpha, beta: beta)
    store(c50, c51, row: c + 5 * ldc, w: w, alpha: alpha, beta: beta)
  }

  @inline(__always)
  private static func store(_ v0: FloatVector, _ v1: FloatVector, row: UnsafeMutablePointer<Float>,
                            w: Int, alpha: Float, beta: Float) {
    var r0 = v0, r1 = v1
    if alpha != 1 { r0 *= alpha; r1 *= alpha }
    if beta != 0 {
      r0.addProduct(FloatVector(repeating: beta), row.vector(at: 0))
      r1.addProduct(FloatVector(repeating: beta), row.vector(at: w))
    }
    row.storeVector(r0, at: 0)
    row.storeVector(r1, at: w)
  }
}

/// Block sizes of the fast GEMM. MR×NR is the register tile; KC×NR of packed B (16 KiB with 8
/// lanes) stays in L1 across a sliver of A; MC×KC of packed A (96 KiB) stays in L2; KC×NC of packed
/// B (2 MiB) in L3.
public enum GEMMBlocking {
  public static let mr = 6
  public static let nr = 2 * vectorWidth
  public static let kc = 256
  public static let mc = 96
  public static let nc = 2048
  static let packedAElements = mc * kc
  static let packedBElements = kc * nc
}

@inline(__always) func roundUp(_ x: Int, _ multiple: Int) -> Int { (x + multiple - 1) / multiple * multiple }
