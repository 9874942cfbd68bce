/// Max and average pooling over NHWC windows (`WindowGeometry` with `outC == inC`), forward and
/// gradient. Average pooling divides by the number of window elements inside the input, so SAME
/// padding never averages in zeros (TensorFlow's rule). Max pooling's gradient goes to the first
/// maximum in window order, as TensorFlow's MaxPoolGrad does.
///
/// One implementation each: the loops run over channels innermost (contiguous in NHWC) and are
/// vectorised by the compiler; forward splits by output row, gradients by image (windows of one
/// image overlap, images never do).
public enum Pooling {
  public static func maxPool(_ g: WindowGeometry, input x: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>,
                             context: KernelContext) {
    let c = g.inC
    context.pool.parallelFor(g.batch * g.outH) { row, _ in
      let n = row / g.outH, oh = row % g.outH
      for ow in 0..<g.outW {
        let out = y + (row * g.outW + ow) * c
        out.update(repeating: -.infinity, count: c)
        forEachTap(g, oh: oh, ow: ow) { ih, iw in
          let src = x + ((n * g.inH + ih) * g.inW + iw) * c
          for ch in 0..<c { out[ch] = max(out[ch], src[ch]) }
        }
      }
    }
  }

  /// Recomputes each window's maximum, then walks the taps in order giving the gradient to the
  /// first tap that equals it, per channel: vectorised over channels with a mask of the channels
  /// still unassigned.
  public static func maxPoolGrad(_ g: WindowGeometry, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                 inputGradient dx: UnsafeMutablePointer<Float>, context: KernelContext) {
    let c = g.inC, width = vectorWidth, vectorEnd = c - c % width
    context.pool.parallelFor(g.batch) { n, _ in
      let image = x + n * g.inH * g.inW * c, gradient = dx + n * g.inH * g.inW * c
      gradient.update(repeating: 0, count: g.inH * g.inW * c)
      for oh in 0..<g.outH { for ow in 0..<g.outW {
        let grad = dy + ((n * g.outH + oh) * g.outW + ow) * c
        let taps = tapRange(g, oh: oh, ow: ow)
        var c0 = 0
        while c0 < vectorEnd {
          var maximum = FloatVector(repeating: -.infinity)
          for ih in taps.rows { for iw in taps.columns {
            let v = UnsafePointer(image + (ih * g.inW + iw) * c + c0).vector(at: 0)
            maximum = maximum.replacing(with: v, where: v .> maximum)
          } }
          // Lane masks as integer bits (all ones / zero): the generic SIMD select is a per-lane loop.
          var unassigned = FloatVector.MaskStorage(repeating: -1)
          let value = unsafeBitCast(grad.vector(at: c0), to: FloatVector.MaskStorage.self)
          for ih in taps.rows { for iw in taps.columns {
            let offset = (ih * g.inW + iw) * c + c0
            let first = unassigned & (UnsafePointer(image + offset).vector(at: 0) .== maximum)._storage
            gradient.storeVector(gradient.vector(at: offset) + unsafeBitCast(value & first, to: FloatVector.self), at: offset)
            unassigned &= ~first
          } }
          c0 += width
        }
        for ch in vectorEnd..<c {
          var best = -Float.infinity, bestOffset = -1
          forEachTap(g, oh: oh, ow: ow) { ih, iw in
            let offset = (ih * g.inW + iw) * c + ch
            if image[offset] > best || bestOffset < 0 { best = image[offset]; bestOffset = offset }
          }
          gradient[bestOffset] += grad[ch]
        }
      } }
    }
  }

  /// Reference twin of `maxPoolGrad`: one channel at a time, scalar.
  public static func maxPoolGradReference(_ g: WindowGeometry, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                          inputGradient dx: UnsafeMutablePointer<Float>) {
    let c = g.inC
    dx.update(repeating: 0, count: g.inputShape.elementCount)
    for n in 0..<g.batch { for oh in 0..<g.outH { for ow in 0..<g.outW { for ch in 0..<c {
      var best = -Float.infinity, bestIndex = -1
      forEachTap(g, oh: oh, ow: ow) { ih, iw in
        let index = ((n * g.inH + ih) * g.inW + iw) * c + ch
        if x[index] > best || bestIndex < 0 { best = x[index]; bestIndex = index }
      }
      dx[bestIndex] += dy[((n * g.outH + oh) * g.outW + ow) * c + ch]
    } } } }
  }

  public static func avgPool(_ g: WindowGeometry, input x: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>,
                             context: KernelContext) {
    let c = g.inC
    context.pool.parallelFor(g.batch * g.outH) { row, _ in
      let n = row / g.outH, oh = row % g.outH
      for ow in 0..<g.outW {
        let out = y + (row * g.outW + ow) * c
        out.update(repeating: 0, count: c)
        var taps = 0
        forEachTap(g, oh: oh, ow: ow) { ih, iw in
          let src = x + ((n * g.inH + ih) * g.inW + iw) * c
          for ch in 0..<c { out[ch] += src[ch] }
          taps += 1
        }
        let inverse = 1 / Float(taps)
        for ch in 0..<c { out[ch] *= inverse }
      }
    }
  }

  public static func avgPoolGrad(_ g: WindowGeometry, outputGradient dy: UnsafePointer<Float>,
                                 inputGradient dx: UnsafeMutablePointer<Float>, context: KernelContext) {
    let c = g.inC
    context.pool.parallelFor(g.batch) { n, _ in
      (dx + n * g.inH * g.inW * c).update(repeating: 0, count: g.inH * g.inW * c)
      for oh in 0..<g.outH { for ow in 0..<g.outW {
        var taps = 0
        forEachTap(g, oh: oh, ow: ow) { _, _ in taps += 1 }
        let inverse = 1 / Float(taps)
        let grad = dy + ((n * g.outH + oh) * g.outW + ow) * c
        forEachTap(g, oh: oh, ow: ow) { ih, iw in
          let dst = dx + ((n * g.inH + ih) * g.inW + iw) * c
          for ch in 0..<c { dst[ch] += grad[ch] * inverse }
        }
      } }
    }
  }

  /// The input rows and columns of output pixel (oh, ow)'s window that lie inside the input
  /// (stride-1 ranges: only for windows without dilation).
  @inline(__always)
  static func tapRange(_ g: WindowGeometry, oh: Int, ow: Int) -> (rows: Range<Int>, columns: Range<Int>) {
    let top = oh * g.strideH - g.padTop, left = ow * g.strideW - g.padLeft
    return (max(top, 0)..<min(top + g.kh, g.inH), max(left, 0)..<min(left + g.kw, g.inW))
  }

  /// Calls `body(ih, iw)` for every window position of output pixel (oh, ow) inside the input.
  @inline(__always)
  static func forEachTap(_ g: WindowGeometry, oh: Int, ow: Int, _ body: (Int, Int) -> Void) {
    for i in 0..<g.kh {
      let ih = oh * g.strideH - g.padTop + i * g.dilationH
      guard ih >= 0 && ih < g.inH else { continue }
      for j in 0..<g.kw {
        let iw = ow * g.strideW - g.padLeft + j * g.dilationW
        guard iw >= 0 && iw < g.inW else { continue }
        body(ih, iw)
      }
    }
  }
}
