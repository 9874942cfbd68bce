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
                          pixels: Int, kc: Int, into out: UnsafeMutablePointer<Float>) -> GEMM.PackedLayout {
    let mr = GEMMBlocking.mr
    let rows = (pixels + mr - 1) / mr * mr
    withTapSegments(g, kIndex: kIndex, count: kc) { segments in
      var position = PixelPosition(g, pixel: pixel)
      for row in 0..<rows {
        let dst = out + row * kc
        if row < pixels {
          copyWindow(g, x, position, segments, into: dst)
          position.advance(g)
        } else {
          dst.update(repeating: 0, count: kc)
        }
      }
    }
    return .rowMajor
  }

  /// B = im2col (rows = output pixels, columns = k-indices) as one NR-wide k-major sliver, for
  /// the filter gradient: each pixel contributes one contiguous run of channels per tap.
  static func packWindowColumns(_ g: WindowGeometry, input x: UnsafePointer<Float>, pixel: Int, kIndex: Int,
                                pixels: Int, columns: Int, into out: UnsafeMutablePointer<Float>) {
    let nr = GEMMBlocking.nr
    withTapSegments(g, kIndex: kIndex, count: columns) { segments in
      var position = PixelPosition(g, pixel: pixel)
      for q in 0..<pixels {
        let dst = out + q * nr
        copyWindow(g, x, position, segments, into: dst)
        if columns < nr { (dst + columns).update(repeating: 0, count: nr - columns) }
        position.advance(g)
      }
    }
  }

  /// A run of k-indices that are consecutive channels of one filter tap.
  struct TapSegment {
    var offset: Int        // first k-index, relative to the packed block
    var rowOffset: Int     // i·dilationH − padTop
    var columnOffset: Int  // j·dilationW − padLeft
    var channel: Int
    var length: Int
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

  /// Splits k-indices `kIndex..<kIndex+count` into tap segments once per packed block, so the
  /// per-pixel loops do no division.
  @inline(__always)
  static func withTapSegments(_ g: WindowGeometry, kIndex: Int, count: Int,
                              _ body: (UnsafeBufferPointer<TapSegment>) -> Void) {
    let c = g.inC
    withUnsafeTemporaryAllocation(of: TapSegment.self, capacity: count + 1) { buffer in
      var used = 0, k = kIndex
      while k < kIndex + count {
        let tap = k / c, channel = k % c
        let length = min(c - channel, kIndex + count - k)
        buffer[used] = TapSegment(offset: k - kIndex, rowOffset: (tap / g.kw) * g.dilationH - g.padTop,
                                  columnOffset: (tap % g.kw) * g.dilationW - g.padLeft, channel: channel, length: length)
        used += 1
        k += length
      }
      body(UnsafeBufferPointer(rebasing: buffer[..<used]))
    }
  }

  @inline(__always)
  static func copyWindow(_ g: WindowGeometry, _ x: UnsafePointer<Float>, _ p: PixelPosition,
                         _ segments: UnsafeBufferPointer<TapSegment>, into dst: UnsafeMutablePointer<Float>) {
    let top = p.oh * g.strideH, left = p.ow * g.strideW
    let image = x + p.n * g.inH * g.inW * g.inC
    for s in segments {
      let ih = top + s.rowOffset, iw = left + s.columnOffset
      if ih >= 0 && ih < g.inH && iw >= 0 && iw < g.inW {
        (dst + s.offset).update(from: image + (ih * g.inW + iw) * g.inC + s.channel, count: s.length)
      } else {
        (dst + s.offset).update(repeating: 0, count: s.length)
      }
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
