/// Implicit im2col: packing functions that hand the GEMM its A blocks straight from the NHWC image.
///
/// The im2col matrix of a convolution has one row per output pixel and one column per filter
/// k-index (`(i·kw + j)·C + c`, the HWIO filter's row order). Writing it out costs kh·kw times the
/// input in memory traffic; these packers read the window elements directly into the GEMM's packed
/// MR-slivers instead.
extension Conv2D {
  /// A = im2col (rows = output pixels, columns = k-indices), for the forward pass, in row-major
  /// slivers: each pixel's window is a run of contiguous channel copies.
  static func packWindows(_ g: WindowGeometry, input x: UnsafePointer<Float>, pixel: Int, kIndex: Int,
                          pixels: Int, kc: Int, mr: Int, into out: UnsafeMutablePointer<Float>) -> GEMM.PackedLayout {
    let rows = (pixels + mr - 1) / mr * mr
    let start = TapCursor(g, kIndex: kIndex)
    var position = PixelPosition(g, pixel: pixel)
    for row in 0..<rows {
      let dst = out + row * kc
      if row < pixels {
        copyWindow(g, x, position, start, count: kc, into: dst)
        position.advance(g)
      } else {
        dst.update(repeating: 0, count: kc)
      }
    }
    return .rowMajor
  }

  /// B = im2col (rows = output pixels, columns = k-indices) as NR-wide k-major slivers, for the
  /// filter gradient. Each pixel's window is walked once for the whole span of slivers, its
  /// channel runs cut at sliver boundaries: walking it once per sliver spent more time finding
  /// the runs than copying 16 floats from them.
  static func packWindowColumns(_ g: WindowGeometry, input x: UnsafePointer<Float>, pixel: Int, kIndex: Int,
                                pixels: Int, columns: Int, nr: Int, into out: UnsafeMutablePointer<Float>) {
    let start = TapCursor(g, kIndex: kIndex)
    let sliverStride = pixels * nr, ragged = columns % nr
    var position = PixelPosition(g, pixel: pixel)
    for q in 0..<pixels {
      // Runs arrive in k order, so the sliver and the place in it are advanced, never divided for.
      var sliver = out + q * nr, inSliver = 0
      forEachRun(g, x, position, start, count: columns) { _, source, length in
        var done = 0
        while done < length {
          let take = min(nr - inSliver, length - done)
          if let source { copyShortRun(sliver + inSliver, source + done, take) } else { (sliver + inSliver).update(repeating: 0, count: take) }
          done += take; inSliver += take
          if inSliver == nr { inSliver = 0; sliver += sliverStride }
        }
      }
      if ragged != 0 { (sliver + ragged).update(repeating: 0, count: nr - ragged) }
      position.advance(g)
    }
  }

  /// Where k-index `kIndex` falls in the filter: tap (i, j) and channel. Built with one division
  /// per packed block; the per-pixel loops then walk taps by increments.
  struct TapCursor {
    var i: Int, j: Int, channel: Int
    init(_ g: WindowGeometry, kIndex: Int) {
      let tap = kIndex / g.inC
      i = tap / g.kw; j = tap % g.kw; channel = kIndex % g.inC
    }
  }

  /// The output pixel a packer is at, advanced without divisions.
  struct PixelPosition {
    var n: Int, oh: Int, ow: Int
    init(_ g: WindowGeometry, pixel: Int) {
      ow = pixel % g.outW; oh = (pixel / g.outW) % g.outH; n = pixel / (g.outW * g.outH)
    }
    @inline(__always) mutating func advance(_ g: WindowGeometry) {
      ow += 1
      if ow == g.outW { ow = 0; oh += 1; if oh == g.outH { oh = 0; n += 1 } }
    }
  }

  /// Copies k-indices `start..<start+count` of output pixel `p`'s window: one contiguous run of
  /// channels per tap, zeros where the tap falls in the padding.
  @inline(__always)
  static func copyWindow(_ g: WindowGeometry, _ x: UnsafePointer<Float>, _ p: PixelPosition, _ start: TapCursor,
                         count: Int, into dst: UnsafeMutablePointer<Float>) {
    forEachRun(g, x, p, start, count: count) { offset, source, length in
      if let source { (dst + offset).update(from: source, count: length) } else { (dst + offset).update(repeating: 0, count: length) }
    }
  }

  /// Walks k-indices `start..<start+count` of output pixel `p`'s window as runs of contiguous
  /// channels, one per tap: `body(offset, source, length)`, `source` nil where the tap falls in the padding.
  @inline(__always)
  static func forEachRun(_ g: WindowGeometry, _ x: UnsafePointer<Float>, _ p: PixelPosition, _ start: TapCursor, count: Int,
                         _ body: (_ offset: Int, _ source: UnsafePointer<Float>?, _ length: Int) -> Void) {
    let image = x + p.n * g.inH * g.inW * g.inC
    let top = p.oh * g.strideH - g.padTop, left = p.ow * g.strideW - g.padLeft
    var i = start.i, j = start.j, channel = start.channel, offset = 0
    while offset < count {
      let length = min(g.inC - channel, count - offset)
      let ih = top + i * g.dilationH, iw = left + j * g.dilationW
      body(offset, ih >= 0 && ih < g.inH && iw >= 0 && iw < g.inW ? image + (ih * g.inW + iw) * g.inC + channel : nil, length)
      offset += length
      channel = 0
      j += 1
      if j == g.kw { j = 0; i += 1 }
    }
  }

  /// The geometry and filter that turn a stride-1 input gradient into a forward convolution:
  /// dx = conv(dy, W′) with W′[i′, j′, k, c] = W[kh−1−i′, kw−1−j′, c, k] and the padding mirrored
  /// (pad′ = (k−1)·dilation − pad), so the fast forward path serves the backward pass too.
  static func transposedGeometry(_ g: WindowGeometry) -> WindowGeometry {
    var t = g
    t.inH = g.outH; t.inW = g.outW; t.inC = g.outC
    t.outH = g.inH; t.outW = g.inW; t.outC = g.inC
    t.padTop = (g.kh - 1) * g.dilationH - g.padTop
    t.padLeft = (g.kw - 1) * g.dilationW - g.padLeft
    return t
  }

  static func flipFilter(_ g: WindowGeometry, _ w: UnsafePointer<Float>, into flipped: UnsafeMutablePointer<Float>,
                         context: KernelContext) {
    let taps = g.kh * g.kw
    context.pool.parallelFor(taps) { tap, _ in
      let i = tap / g.kw, j = tap % g.kw
      let src = w + tap * g.inC * g.outC
      let dst = flipped + ((g.kh - 1 - i) * g.kw + (g.kw - 1 - j)) * g.outC * g.inC
      for c in 0..<g.inC { for k in 0..<g.outC { dst[k * g.inC + c] = src[c * g.outC + k] } }
    }
  }
}
