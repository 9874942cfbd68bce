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

  public static func maxPoolGrad(_ g: WindowGeometry, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                 inputGradient dx: UnsafeMutablePointer<Float>, context: KernelContext) {
    let c = g.inC
    context.pool.parallelFor(g.batch) { n, _ in
      (dx + n * g.inH * g.inW * c).update(repeating: 0, count: g.inH * g.inW * c)
      for oh in 0..<g.outH { for ow in 0..<g.outW {
        let grad = dy + ((n * g.outH + oh) * g.outW + ow) * c
        for ch in 0..<c {
          var best = -Float.infinity, bestIndex = -1
          forEachTap(g, oh: oh, ow: ow) { ih, iw in
            let index = ((n * g.inH + ih) * g.inW + iw) * c + ch
            if x[index] > best || bestIndex < 0 { best = x[index]; bestIndex = index }
          }
          dx[bestIndex] += grad[ch]
        }
      } }
    }
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
