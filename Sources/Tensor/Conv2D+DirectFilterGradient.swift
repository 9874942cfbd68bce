/// The filter gradient with the windows read straight from the image instead of packed.
///
/// dWᵀ = dyᵀ · im2col: packing im2col (one 16-float copy per pixel, tap and sliver) cost a third
/// of that pass, where the forward pass's packing costs a tenth. But a sliver of 16 im2col columns
/// lies inside one tap when C_in is a multiple of 16, and then its row for pixel p is 16
/// contiguous floats of the image; along an output row the pixels whose tap falls inside the
/// image are consecutive and their rows are a fixed stride apart. So the tile reads B from the
/// image through a short list of such runs (`Run`), skipping the pixels in the padding, whose
/// contributions are zero. The k order and KC steps are the packed path's.
extension Conv2D {
  /// Whether the direct path applies: the 6×16 tile (its B rows are two `FloatVector`s of 8) and
  /// slivers that never straddle two taps.
  static func readsWindowsDirectly(_ g: WindowGeometry, tile: GEMMKernel) -> Bool {
    tile.variant == .narrow && tile.nr == 2 * vectorWidth && g.inC % tile.nr == 0
  }

  /// Consecutive pixels of one output row whose tap lies inside the image: `count` k steps from
  /// pixel `pixel` (relative to the packed A block), B's rows from `b` a fixed stride apart.
  struct Run {
    var pixel: Int
    var count: Int
    var b: UnsafePointer<Float>
  }

  /// One chunk's dWᵀ (`outC` × k, row stride k) over `pixels` pixels from `first`, on this thread.
  static func directFilterGradientChunk(_ g: WindowGeometry, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                        first: Int, pixels: Int, into c: UnsafeMutablePointer<Float>, thread: Int,
                                        context: KernelContext) {
    let tile = context.gemm, mr = tile.mr, nr = tile.nr
    let k = g.kh * g.kw * g.inC, cout = g.outC
    guard pixels > 0 else { c.update(repeating: 0, count: cout * k); return }
    let packedA = context.packedA(thread: thread)
    let kcStep = context.blocking.kcStep(pixels)
    // At most one run per output row the kc pixels touch, per tap.
    let maxRuns = kcStep / max(g.outW, 1) + 2
    withUnsafeTemporaryAllocation(of: Run.self, capacity: maxRuns) { runs in
      var pc = 0
      while pc < pixels {
        let kc = min(kcStep, pixels - pc)
        let beta: Float = pc == 0 ? 0 : 1
        // dyᵀ in blocks of at most MC channels (the packed-A scratch holds MC × KC).
        var rowBlock = 0
        while rowBlock < cout {
          let blockRows = min(context.blocking.mc, cout - rowBlock)
          _ = GEMM.packA(transA: true, a: dy + (first + pc) * cout, lda: cout, row: rowBlock, column: 0, rows: blockRows, kc: kc,
                         mr: mr, into: packedA)
          for i in 0..<g.kh {
            for j in 0..<g.kw {
              let count = collectRuns(g, x, tap: (i, j), firstPixel: first + pc, pixels: kc, into: runs.baseAddress!)
              let tapColumn = (i * g.kw + j) * g.inC
              var c0 = 0
              while c0 < g.inC {
                var ir = 0
                while ir < blockRows {
                  runTile(a: packedA + ir * kc, runs: runs.baseAddress!, count: count, column: c0, bStride: g.strideW * g.inC,
                          c: c + (rowBlock + ir) * k + tapColumn + c0, ldc: k, rows: min(mr, blockRows - ir), beta: beta)
                  ir += mr
                }
                c0 += nr
              }
            }
          }
          rowBlock += blockRows
        }
        pc += kc
      }
    }
  }

  /// The runs of pixels `firstPixel..<firstPixel+pixels` whose tap (i, j) lies inside the image.
  static func collectRuns(_ g: WindowGeometry, _ x: UnsafePointer<Float>, tap: (Int, Int), firstPixel: Int, pixels: Int,
                          into runs: UnsafeMutablePointer<Run>) -> Int {
    var count = 0, done = 0
    var position = PixelPosition(g, pixel: firstPixel)
    // Output columns whose tap column falls inside the image: iw = ow·sW − padLeft + j·dW in [0, inW).
    let offsetW = tap.1 * g.dilationW - g.padLeft
    let lowW = offsetW >= 0 ? 0 : (-offsetW + g.strideW - 1) / g.strideW
    let highW = min(g.outW, g.inW - offsetW <= 0 ? 0 : (g.inW - offsetW + g.strideW - 1) / g.strideW)
    while done < pixels {
      let inRow = min(g.outW - position.ow, pixels - done)
      let ih = position.oh * g.strideH - g.padTop + tap.0 * g.dilationH
      if ih >= 0 && ih < g.inH {
        let start = max(position.ow, lowW), end = min(position.ow + inRow, highW)
        if start < end {
          let iw = start * g.strideW + offsetW
          runs[count] = Run(pixel: done + start - position.ow, count: end - start,
                            b: x + ((position.n * g.inH + ih) * g.inW + iw) * g.inC)
          count += 1
        }
      }
      done += inRow
      position.ow += inRow
      if position.ow == g.outW { position.ow = 0; position.oh += 1; if position.oh == g.outH { position.oh = 0; position.n += 1 } }
    }
    return count
  }

  /// The 6×16 tile (`NarrowTile`) over runs: A k-major (`a[p*6 + r]`), B's row for pixel p of a
  /// run at `run.b + column + (p − run.pixel)·bStride`; the first `rows` rows of C are written
  /// (A's last sliver is zero-padded past them). Its own function, and the inner loop a
  /// `repeat` (a run has at least one pixel): inlined into the loops around it, or with a `for`
  /// over a range that may be empty, the register allocator spilled five accumulators in the
  /// inner loop (filter gradient 85 → 63 GFLOP/s).
  @inline(never)
  static func runTile(a: UnsafeMutablePointer<Float>, runs: UnsafePointer<Run>, count: Int, column: Int, bStride: Int,
                      c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, beta: Float) {
    let w = vectorWidth
    var tile = NarrowTile()
    for r in 0..<count {
      let run = runs[r]
      var ap = UnsafePointer(a + run.pixel &* 6), bp = run.b + column, left = run.count
      repeat {
        tile.update(bp.vector(at: 0), bp.vector(at: w)) { ap[$0] }
        ap += 6; bp += bStride; left &-= 1
      } while left > 0
    }
    tile.store(c, ldc: ldc, rows: rows, columns: 2 * w, beta: beta)
  }
}
