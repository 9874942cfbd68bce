/// The forward pass with the 6×16 tile reading its A rows straight from the image.
///
/// Packing im2col rows (a window's channel runs copied per pixel, block and KC step) is the
/// forward pass's overhead over a plain GEMM: with C_out = 64 each packed row is reused by only
/// four B slivers. A row of A within one tap is a run of contiguous image channels, so the tile
/// can instead take, per tap segment of the KC range, six pointers (one per output pixel of the
/// sliver; a zero row where the tap falls in the padding) — an indirection buffer, as XNNPACK's
/// indirect convolution has. The k order and KC steps are the packed path's.
extension Conv2D {
  /// One tap's share of a KC range: `length` k-indices from channel `channel` of tap (i, j).
  struct TapSegment {
    var i: Int, j: Int, channel: Int, length: Int
  }

  /// Whether the indirect path applies: the 6×16 tile, a window (1×1 stride-1 is a plain GEMM),
  /// and the whole packed filter within the context's shared B scratch.
  static func readsRowsDirectly(_ g: WindowGeometry, context: KernelContext) -> Bool {
    let tile = context.gemm
    return tile.variant == .narrow && tile.nr == 2 * vectorWidth && !isPointwise(g)
      && g.kh * g.kw * g.inC * roundUp(g.outC, tile.nr) <= context.blocking.packedBElements
  }

  static func indirectForward(_ g: WindowGeometry, input x: UnsafePointer<Float>, filter w: UnsafePointer<Float>,
                              output y: UnsafeMutablePointer<Float>, context: KernelContext) {
    let mr = context.gemm.mr, nr = context.gemm.nr, threads = context.threadCount
    let k = g.kh * g.kw * g.inC, n = g.outC, m = g.outputPixels
    let paddedN = roundUp(n, nr), slivers = paddedN / nr
    let kcStep = context.blocking.kcStep(k), steps = (k + kcStep - 1) / kcStep
    // The filter once, as every KC step's slivers: step s at packedB + s·kcStep·paddedN.
    let packedB = context.packedB
    context.pool.parallelFor(steps) { step, _ in
      let pc = step * kcStep
      GEMM.packB(transB: false, b: w, ldb: n, row: pc, column: 0, kc: min(kcStep, k - pc), columns: n, nr: nr,
                 into: packedB + pc * paddedN)
    }
    // The indirection buffer lives on the stack: at most 8192 pointers (64 KiB) a block, which
    // caps the block's rows only for very thin inputs (many taps per KC range).
    let maxSegments = kcStep / max(g.inC, 1) + 2
    let mc = context.blocking.rowBlock(m: m, threads: threads, mr: mr, cap: max(mr, 8192 / (maxSegments * mr) * mr))
    let blocks = (m + mc - 1) / mc
    context.pool.parallelFor(blocks) { block, _ in
      let first = block * mc, rows = min(mc, m - first), aSlivers = (rows + mr - 1) / mr
      withUnsafeTemporaryAllocation(of: Float.self, capacity: g.inC) { zeros in
        zeros.initialize(repeating: 0)
        withUnsafeTemporaryAllocation(of: TapSegment.self, capacity: maxSegments) { segments in
          withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: aSlivers * mr * maxSegments) { pointers in
            var pc = 0
            while pc < k {
              let kc = min(kcStep, k - pc)
              let count = tapSegments(g, from: pc, count: kc, into: segments.baseAddress!)
              fillPointers(g, x, firstPixel: first, rows: rows, mr: mr, segments: segments.baseAddress!, count: count,
                           zeros: UnsafePointer(zeros.baseAddress!), into: pointers.baseAddress!)
              let beta: Float = pc == 0 ? 0 : 1
              for sliver in 0..<slivers {
                let b = UnsafePointer(packedB + pc * paddedN + sliver * kc * nr)
                let columns = min(nr, n - sliver * nr)
                for a in 0..<aSlivers {
                  let live = min(mr, rows - a * mr)
                  let c = y + (first + a * mr) * n + sliver * nr
                  indirectTile(pointers: UnsafePointer(pointers.baseAddress! + a * mr * count), segments: segments.baseAddress!,
                               count: count, b: b, c: c, ldc: n, rows: live, columns: columns, beta: beta)
                }
              }
              pc += kc
            }
          }
        }
      }
    }
  }

  /// The taps (and channel ranges within them) that k-indices `from..<from+count` cover.
  static func tapSegments(_ g: WindowGeometry, from: Int, count: Int, into segments: UnsafeMutablePointer<TapSegment>) -> Int {
    var cursor = TapCursor(g, kIndex: from), done = 0, n = 0
    while done < count {
      let length = min(g.inC - cursor.channel, count - done)
      segments[n] = TapSegment(i: cursor.i, j: cursor.j, channel: cursor.channel, length: length)
      n += 1; done += length
      cursor.channel = 0
      cursor.j += 1
      if cursor.j == g.kw { cursor.j = 0; cursor.i += 1 }
    }
    return n
  }

  /// For each sliver of `mr` pixels and each segment, the `mr` row pointers (sliver-major, then
  /// segment, then row); rows past the block and taps in the padding point at `zeros`.
  static func fillPointers(_ g: WindowGeometry, _ x: UnsafePointer<Float>, firstPixel: Int, rows: Int, mr: Int,
                           segments: UnsafePointer<TapSegment>, count: Int, zeros: UnsafePointer<Float>,
                           into pointers: UnsafeMutablePointer<UnsafePointer<Float>>) {
    var position = PixelPosition(g, pixel: firstPixel)
    let aSlivers = (rows + mr - 1) / mr
    for row in 0..<aSlivers * mr {
      let sliver = row / mr, r = row % mr
      let base = pointers + sliver * mr * count + r
      if row >= rows {
        for s in 0..<count { base[s * mr] = zeros }
        continue
      }
      let image = x + position.n * g.inH * g.inW * g.inC
      let top = position.oh * g.strideH - g.padTop, left = position.ow * g.strideW - g.padLeft
      for s in 0..<count {
        let segment = segments[s]
        let ih = top + segment.i * g.dilationH, iw = left + segment.j * g.dilationW
        base[s * mr] = ih >= 0 && ih < g.inH && iw >= 0 && iw < g.inW ? image + (ih * g.inW + iw) * g.inC + segment.channel : zeros
      }
      position.advance(g)
    }
  }

  /// C[rows × columns] (+)= the six pointed-at rows · B over the segments, B packed k-major
  /// (`b[p*16 + j]`) across all of them. Its own function with a `repeat` inner loop (a segment
  /// has at least one k-index), as `runTile`, for the same reason.
  @inline(never)
  static func indirectTile(pointers: UnsafePointer<UnsafePointer<Float>>, segments: UnsafePointer<TapSegment>, count: Int,
                           b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, columns: Int, beta: Float) {
    let w = vectorWidth, nr = 2 * w
    var tile = NarrowTile()
    var bp = b
    for s in 0..<count {
      let p = pointers + s * 6
      let a0 = p[0], a1 = p[1], a2 = p[2], a3 = p[3], a4 = p[4], a5 = p[5]
      var q = 0
      repeat {
        tile.update(bp.vector(at: 0), bp.vector(at: w)) { r in
          (r == 0 ? a0 : r == 1 ? a1 : r == 2 ? a2 : r == 3 ? a3 : r == 4 ? a4 : a5)[q]
        }
        bp += nr; q &+= 1
      } while q < segments[s].length
    }
    tile.store(c, ldc: ldc, rows: rows, columns: columns, beta: beta)
  }
}
