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
    let mr = context.gemm.mr, nr = context.gemm.nr
    compute(m: m, n: n, k: k, alpha: alpha, packA: { row, column, rows, kc, out in
      packA(transA: transA, a: a, lda: lda, row: row, column: column, rows: rows, kc: kc, mr: mr, into: out)
    }, packB: { row, column, kc, columns, out in
      packB(transB: transB, b: b, ldb: ldb, row: row, column: column, kc: kc, columns: columns, nr: nr, into: out)
    }, beta: beta, c: c, ldc: ldc, context: context)
  }

  /// Packs `kc`×`columns` of B starting at (row, column) into ⌈columns/NR⌉ consecutive NR-wide
  /// slivers, each k-major (sliver s at `out + s·kc·NR`, element `[p*NR + j]`), zero-filling the
  /// last sliver past `columns`, NR being the context's `gemm.nr`. Called concurrently for
  /// disjoint spans; a span of several slivers lets a packer walk its source once for all of them.
  public typealias PackB = (_ row: Int, _ column: Int, _ kc: Int, _ columns: Int, _ into: UnsafeMutablePointer<Float>) -> Void

  /// Packs `rows`×`kc` of A starting at (row, column) into MR-row slivers (MR: the context's
  /// `gemm.mr`) of `MR·kc` floats each,
  /// zero-filling rows past the end, and says which layout it used inside the slivers. Called
  /// concurrently from several threads for disjoint blocks.
  public typealias PackA = (_ row: Int, _ column: Int, _ rows: Int, _ kc: Int, _ into: UnsafeMutablePointer<Float>) -> PackedLayout

  /// How a packed MR×kc sliver of A is laid out. The micro-kernel reads either, so each packer
  /// picks the one its source can fill with contiguous copies.
  public enum PackedLayout: Sendable {
    /// `sliver[r*kc + p]`: each row's kc values together (source rows are contiguous in k).
    case rowMajor
    /// `sliver[p*MR + r]`: the MR values of one k together (source columns are contiguous in rows).
    case kMajor
  }

  /// The multiply with A and B supplied by packing functions instead of matrices: convolutions pack
  /// their im2col windows straight from the image, so the im2col matrix is never written.
  public static func compute(
    m: Int, n: Int, k: Int, alpha: Float = 1, packA: PackA, packB: PackB,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, context: KernelContext
  ) {
    if m == 0 || n == 0 { return }
    if k == 0 {
      scale(c, rows: m, columns: n, ldc: ldc, by: beta, context: context)
      return
    }
    let B = context.blocking
    let threads = context.threadCount, tile = context.gemm
    if k > 2 * B.kc && m * n <= GEMMBlocking.rectangleElements {
      rectangles(m: m, n: n, k: k, alpha: alpha, packA: packA, packB: packB, beta: beta, c: c, ldc: ldc, context: context)
      return
    }
    // Split M into balanced blocks of at most MC rows; if M is too short for one block per
    // thread, split N as well.
    let mc = B.rowBlock(m: m, threads: threads, mr: tile.mr)
    let mBlocks = (m + mc - 1) / mc

    var jc = 0
    while jc < n {
      let nc = min(B.nc, n - jc)
      let slivers = (nc + tile.nr - 1) / tile.nr
      let nGroups = mBlocks >= 2 * threads ? 1 : min(slivers, max(1, (2 * threads + mBlocks - 1) / mBlocks))
      let sliversPerGroup = (slivers + nGroups - 1) / nGroups
      let kcStep = B.kcStep(k)
      var pc = 0
      while pc < k {
        let kc = min(kcStep, k - pc)
        let blockBeta: Float = pc == 0 ? beta : 1
        let packedB = context.packedB
        // Phase 1: pack B[pc..<pc+kc, jc..<jc+nc] into NR-wide slivers, 8 slivers a task.
        context.pool.parallelFor((slivers + 7) / 8) { task, _ in
          let first = task * 8 * tile.nr
          packB(pc, jc + first, kc, min(8 * tile.nr, nc - first), packedB + first * kc)
        }
        // Phase 2: each task packs one MC×KC block of A and multiplies it with a range of slivers.
        context.pool.parallelFor(mBlocks * nGroups) { task, thread in
          let ic = (task / nGroups) * mc, group = task % nGroups
          let rows = min(mc, m - ic)
          let firstSliver = group * sliversPerGroup
          let lastSliver = min(slivers, firstSliver + sliversPerGroup)
          if firstSliver >= lastSliver { return }
          let packedA = context.packedA(thread: thread)
          let layout = packA(ic, pc, rows, kc, packedA)
          for sliver in firstSliver..<lastSliver {
            let j = jc + sliver * tile.nr
            multiplySliver(tile, kc: kc, packedA: packedA, layout: layout, rows: rows, packedB: packedB + sliver * kc * tile.nr,
                           columns: min(tile.nr, n - j), alpha: alpha, beta: blockBeta, c: c + ic * ldc + j, ldc: ldc)
          }
        }
        pc += kc
      }
      jc += nc
    }
  }

  /// The small-and-deep case (a small C, a long k: the filter gradient of a convolution, whose k is
  /// every output pixel of the batch). Shared B blocks would cost two pool dispatches per KC step
  /// for little work each, so instead each task owns a rectangle of C for the whole k loop and
  /// packs its own A rows and B columns into per-thread scratch: one dispatch in all. The k order of
  /// every element is the same as in the blocked path.
  private static func rectangles(
    m: Int, n: Int, k: Int, alpha: Float, packA: PackA, packB: PackB,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, context: KernelContext
  ) {
    let tile = context.gemm, panelSlivers = GEMMBlocking.panelSlivers
    let columnSlivers = (n + tile.nr - 1) / tile.nr, rowSlivers = (m + tile.mr - 1) / tile.mr
    // Split columns first (each panel fits the per-thread B scratch), then whichever side has more
    // slivers per panel, until every thread has two rectangles.
    var columnPanels = (columnSlivers + panelSlivers - 1) / panelSlivers, rowPanels = 1
    while rowPanels * columnPanels < 2 * context.threadCount {
      let columnsLeft = columnSlivers / columnPanels, rowsLeft = rowSlivers / rowPanels
      if columnsLeft >= 2 && columnsLeft >= rowsLeft { columnPanels += 1 } else if rowsLeft >= 2 { rowPanels += 1 } else { break }
    }
    let slivPerColumnPanel = (columnSlivers + columnPanels - 1) / columnPanels
    let rowsPerPanel = (rowSlivers + rowPanels - 1) / rowPanels * tile.mr
    context.pool.parallelFor(rowPanels * columnPanels) { task, thread in
      let firstRow = (task / columnPanels) * rowsPerPanel, lastRow = min(m, firstRow + rowsPerPanel)
      let first = (task % columnPanels) * slivPerColumnPanel, last = min(columnSlivers, first + slivPerColumnPanel)
      if first >= last || firstRow >= lastRow { return }
      rectangle(tile, context.blocking, rows: firstRow..<lastRow, slivers: first..<last, n: n, k: k, alpha: alpha, packA: packA,
                packB: packB, beta: beta, c: c, ldc: ldc, packedA: context.packedA(thread: thread), packedB: context.panelB(thread: thread))
    }
  }

  /// The whole product on the calling thread, with `thread`'s scratch: for callers that split the
  /// work themselves (the split-k filter gradient runs one of these per chunk of pixels).
  public static func serial(m: Int, n: Int, k: Int, alpha: Float = 1, packA: PackA, packB: PackB,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, thread: Int, context: KernelContext) {
    if m == 0 || n == 0 { return }
    if k == 0 { scale(c, rows: m, columns: n, ldc: ldc, by: beta, context: context); return }
    let tile = context.gemm
    let slivers = (n + tile.nr - 1) / tile.nr
    var first = 0
    while first < slivers {
      let last = min(slivers, first + GEMMBlocking.panelSlivers)
      rectangle(tile, context.blocking, rows: 0..<m, slivers: first..<last, n: n, k: k, alpha: alpha, packA: packA, packB: packB, beta: beta,
                c: c, ldc: ldc, packedA: context.packedA(thread: thread), packedB: context.panelB(thread: thread))
      first = last
    }
  }

  /// C[rows, slivers] over the whole k, packing its own A rows and B columns into the given scratch.
  private static func rectangle(_ tile: GEMMKernel, _ B: GEMMBlocking, rows rowRange: Range<Int>, slivers: Range<Int>, n: Int, k: Int,
                                alpha: Float, packA: PackA, packB: PackB, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                                packedA: UnsafeMutablePointer<Float>, packedB: UnsafeMutablePointer<Float>) {
    let kcStep = B.kcStep(k)
    var pc = 0
    while pc < k {
      let kc = min(kcStep, k - pc)
      let blockBeta: Float = pc == 0 ? beta : 1
      let firstColumn = slivers.lowerBound * tile.nr
      packB(pc, firstColumn, kc, min(n, slivers.upperBound * tile.nr) - firstColumn, packedB)
      var ic = rowRange.lowerBound
      while ic < rowRange.upperBound {
        let rows = min(B.mc, rowRange.upperBound - ic)
        let layout = packA(ic, pc, rows, kc, packedA)
        for sliver in slivers {
          let j = sliver * tile.nr
          multiplySliver(tile, kc: kc, packedA: packedA, layout: layout, rows: rows,
                         packedB: packedB + (sliver - slivers.lowerBound) * kc * tile.nr,
                         columns: min(tile.nr, n - j), alpha: alpha, beta: blockBeta, c: c + ic * ldc + j, ldc: ldc)
        }
        ic += rows
      }
      pc += kc
    }
  }

  /// One packed A block (`rows` × kc, MR-slivers) times one packed B sliver (kc × NR) into the
  /// `rows` × `columns` corner of C at `c`: full tiles through the tile's kernel, the ragged edge
  /// through `edgeTile`.
  @inline(__always)
  private static func multiplySliver(_ tile: GEMMKernel, kc: Int, packedA: UnsafeMutablePointer<Float>, layout: PackedLayout, rows: Int,
                                     packedB: UnsafeMutablePointer<Float>, columns: Int, alpha: Float, beta: Float,
                                     c: UnsafeMutablePointer<Float>, ldc: Int) {
    var ir = 0
    let rowMajor = layout == .rowMajor
    while ir < rows {
      let tileRows = min(tile.mr, rows - ir)
      let aSliver = UnsafePointer(packedA + ir * kc), bSliver = UnsafePointer(packedB)
      if tileRows == tile.mr && columns == tile.nr {
        tile.multiply(kc, aSliver, rowMajor, bSliver, c + ir * ldc, ldc, alpha, beta)
      } else {
        edgeTile(tile, kc: kc, a: aSliver, rowMajor: rowMajor, b: bSliver, c: c + ir * ldc, ldc: ldc,
                 rows: tileRows, columns: columns, alpha: alpha, beta: beta)
      }
      ir += tile.mr
    }
  }

  private static func scale(_ c: UnsafeMutablePointer<Float>, rows: Int, columns: Int, ldc: Int,
                            by beta: Float, context: KernelContext) {
    for i in 0..<rows {
      for j in 0..<columns { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] }
    }
  }

  /// Packs `rows`×`kc` of a stored A starting at (row, column): row-major slivers (contiguous
  /// copies of A's rows) when A is not transposed, k-major ones (contiguous copies of Aᵀ's rows) when it is.
  @inline(__always)
  static func packA(transA: Bool, a: UnsafePointer<Float>, lda: Int, row: Int, column: Int,
                    rows: Int, kc: Int, mr: Int, into out: UnsafeMutablePointer<Float>) -> PackedLayout {
    var ir = 0
    var dst = out
    while ir < rows {
      let live = min(mr, rows - ir)
      if transA && live == mr {
        // One short contiguous run per k (a filter gradient's dyᵀ packs this way): vector moves
        // of four, where a scalar loop took a third of that pass's packing time.
        let first = a + row + ir
        for p in 0..<kc {
          let offset = (column &+ p) &* lda
          copyShortRun(dst + p &* mr, first + offset, mr)
        }
      } else if transA {
        for p in 0..<kc {
          let src = a + (column + p) * lda + row + ir
          for r in 0..<live { dst[p * mr + r] = src[r] }
          for r in live..<mr { dst[p * mr + r] = 0 }
        }
      } else {
        for r in 0..<mr {
          if r < live {
            (dst + r * kc).update(from: a + (row + ir + r) * lda + column, count: kc)
          } else {
            (dst + r * kc).update(repeating: 0, count: kc)
          }
        }
      }
      dst += kc * mr
      ir += mr
    }
    return transA ? .kMajor : .rowMajor
  }

  /// Packs `kc`×`columns` of a stored B starting at (row, column) into NR-wide slivers (`PackB`).
  @inline(__always)
  static func packB(transB: Bool, b: UnsafePointer<Float>, ldb: Int, row: Int, column: Int,
                    kc: Int, columns: Int, nr: Int, into out: UnsafeMutablePointer<Float>) {
    var j = 0
    while j < columns {
      packBSliver(transB: transB, b: b, ldb: ldb, row: row, column: column + j, kc: kc, columns: min(nr, columns - j), nr: nr,
                  into: out + j * kc)
      j += nr
    }
  }

  /// One sliver of `packB`: `out[p*NR + j]`, zero-filling the columns past `columns`.
  @inline(__always)
  private static func packBSliver(transB: Bool, b: UnsafePointer<Float>, ldb: Int, row: Int, column: Int,
                                  kc: Int, columns: Int, nr: Int, into out: UnsafeMutablePointer<Float>) {
    let w = vectorWidth
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
  private static func edgeTile(_ tile: GEMMKernel, kc: Int, a: UnsafePointer<Float>, rowMajor: Bool, b: UnsafePointer<Float>,
                               c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, columns: Int,
                               alpha: Float, beta: Float) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: tile.mr * tile.nr) { scratch in
      let t = scratch.baseAddress!
      tile.multiply(kc, a, rowMajor, b, t, tile.nr, alpha, 0)
      mergeTile(t, ldt: tile.nr, into: c, ldc: ldc, rows: rows, columns: columns, beta: beta)
    }
  }

  /// C[rows × columns] = t + beta · C, for the live corner of a tile computed into scratch.
  @inline(__always)
  static func mergeTile(_ t: UnsafePointer<Float>, ldt: Int, into c: UnsafeMutablePointer<Float>, ldc: Int,
                        rows: Int, columns: Int, beta: Float) {
    for r in 0..<rows {
      for j in 0..<columns {
        let prior = beta == 0 ? 0 : beta * c[r * ldc + j]
        c[r * ldc + j] = t[r * ldt + j] + prior
      }
    }
  }

  /// The register-tiled core: a 6×(2·W) tile of C in 12 vector accumulators, updated with one
  /// broadcast of A and two vector loads of B per k. Twelve accumulators cover the FMA latency on
  /// two pipes and leave registers for the B vectors and the broadcast with 16 ymm registers.
  /// Two loops, one per packed layout of A: a runtime stride in the loop made the compiler spill
  /// accumulators and halved the speed.
  @inline(__always)
  static func microKernel(kc: Int, a: UnsafePointer<Float>, layout: PackedLayout, b: UnsafePointer<Float>,
                          c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
    let w = vectorWidth
    var tile = NarrowTile()
    var bp = b
    if layout == .kMajor {
      var ap = a
      for _ in 0..<kc {
        tile.update(bp.vector(at: 0), bp.vector(at: w)) { ap[$0] }
        ap += 6; bp += 2 * w
      }
    } else {
      var ap = a
      for _ in 0..<kc {
        tile.update(bp.vector(at: 0), bp.vector(at: w)) { ap[$0 &* kc] }
        ap += 1; bp += 2 * w
      }
    }
    tile.store(c, ldc: ldc, alpha: alpha, beta: beta)
  }
}

/// The twelve accumulators of the 6×(2·W) tile, spelled out (an array of vectors would live in
/// memory), shared by the GEMM's micro-kernel and the convolution filter gradient's run tile.
struct NarrowTile {
  var c00 = FloatVector(), c01 = FloatVector(), c10 = FloatVector(), c11 = FloatVector()
  var c20 = FloatVector(), c21 = FloatVector(), c30 = FloatVector(), c31 = FloatVector()
  var c40 = FloatVector(), c41 = FloatVector(), c50 = FloatVector(), c51 = FloatVector()

  /// One k step: row r gains `a(r)` · (b0, b1).
  @inline(__always)
  mutating func update(_ b0: FloatVector, _ b1: FloatVector, _ a: (Int) -> Float) {
    var x = FloatVector(repeating: a(0)); c00.addProduct(x, b0); c01.addProduct(x, b1)
    x = FloatVector(repeating: a(1)); c10.addProduct(x, b0); c11.addProduct(x, b1)
    x = FloatVector(repeating: a(2)); c20.addProduct(x, b0); c21.addProduct(x, b1)
    x = FloatVector(repeating: a(3)); c30.addProduct(x, b0); c31.addProduct(x, b1)
    x = FloatVector(repeating: a(4)); c40.addProduct(x, b0); c41.addProduct(x, b1)
    x = FloatVector(repeating: a(5)); c50.addProduct(x, b0); c51.addProduct(x, b1)
  }

  /// C = alpha · tile + beta · C (C not read when beta is 0).
  @inline(__always)
  func store(_ c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
    Self.row(c00, c01, c, alpha, beta); Self.row(c10, c11, c + ldc, alpha, beta)
    Self.row(c20, c21, c + 2 * ldc, alpha, beta); Self.row(c30, c31, c + 3 * ldc, alpha, beta)
    Self.row(c40, c41, c + 4 * ldc, alpha, beta); Self.row(c50, c51, c + 5 * ldc, alpha, beta)
  }

  /// The live `rows` × `columns` corner only: C = tile + beta · C there (alpha 1).
  @inline(__always)
  func store(_ c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, columns: Int, beta: Float) {
    let nr = 2 * vectorWidth
    if rows == 6 && columns == nr { store(c, ldc: ldc, alpha: 1, beta: beta); return }
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 6 * nr) { scratch in
      store(scratch.baseAddress!, ldc: nr, alpha: 1, beta: 0)
      GEMM.mergeTile(scratch.baseAddress!, ldt: nr, into: c, ldc: ldc, rows: rows, columns: columns, beta: beta)
    }
  }

  @inline(__always)
  private static func row(_ v0: FloatVector, _ v1: FloatVector, _ row: UnsafeMutablePointer<Float>, _ alpha: Float, _ beta: Float) {
    let w = vectorWidth
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

@inline(__always) func roundUp(_ x: Int, _ multiple: Int) -> Int { (x + multiple - 1) / multiple * multiple }
