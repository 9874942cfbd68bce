/// Depthwise 2-D convolution with channel multiplier 1: NHWC input `[N, H, W, C]`, filter
/// `[kh, kw, C]` (TensorFlow's `[kh, kw, C, 1]` without the unit axis), output `[N, outH, outW, C]`.
/// Every channel has its own kh×kw filter, so the fast kernels vectorise over channels (contiguous
/// in NHWC) and keep one vector accumulator per output pixel.
public enum DepthwiseConv2D {
  /// Scratch floats: per-image partial filter gradients, summed in image order.
  public static func workspaceElements(_ g: WindowGeometry) -> Int { g.batch * g.kh * g.kw * g.inC }

  // MARK: Reference twins

  public static func forwardReference(_ g: WindowGeometry, input x: UnsafePointer<Float>, filter w: UnsafePointer<Float>,
                                      output y: UnsafeMutablePointer<Float>) {
    for n in 0..<g.batch { for oh in 0..<g.outH { for ow in 0..<g.outW { for c in 0..<g.inC {
      var sum = 0.0
      Pooling.forEachTapIndexed(g, oh: oh, ow: ow) { i, j, ih, iw in
        sum += Double(x[((n * g.inH + ih) * g.inW + iw) * g.inC + c]) * Double(w[(i * g.kw + j) * g.inC + c])
      }
      y[((n * g.outH + oh) * g.outW + ow) * g.inC + c] = Float(sum)
    } } } }
  }

  public static func backpropInputReference(_ g: WindowGeometry, outputGradient dy: UnsafePointer<Float>,
                                            filter w: UnsafePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>) {
    dx.update(repeating: 0, count: g.inputShape.elementCount)
    for n in 0..<g.batch { for oh in 0..<g.outH { for ow in 0..<g.outW { for c in 0..<g.inC {
      let d = dy[((n * g.outH + oh) * g.outW + ow) * g.inC + c]
      Pooling.forEachTapIndexed(g, oh: oh, ow: ow) { i, j, ih, iw in
        dx[((n * g.inH + ih) * g.inW + iw) * g.inC + c] += d * w[(i * g.kw + j) * g.inC + c]
      }
    } } } }
  }

  public static func backpropFilterReference(_ g: WindowGeometry, input x: UnsafePointer<Float>,
                                             outputGradient dy: UnsafePointer<Float>, filterGradient dw: UnsafeMutablePointer<Float>) {
    let count = g.kh * g.kw * g.inC
    let sums = UnsafeMutablePointer<Double>.allocate(capacity: count)
    sums.initialize(repeating: 0, count: count)
    defer { sums.deallocate() }
    for n in 0..<g.batch { for oh in 0..<g.outH { for ow in 0..<g.outW { for c in 0..<g.inC {
      let d = Double(dy[((n * g.outH + oh) * g.outW + ow) * g.inC + c])
      Pooling.forEachTapIndexed(g, oh: oh, ow: ow) { i, j, ih, iw in
        sums[(i * g.kw + j) * g.inC + c] += d * Double(x[((n * g.inH + ih) * g.inW + iw) * g.inC + c])
      }
    } } } }
    for e in 0..<count { dw[e] = Float(sums[e]) }
  }

  // MARK: Fast kernels

  public static func forward(_ g: WindowGeometry, input x: UnsafePointer<Float>, filter w: UnsafePointer<Float>,
                             output y: UnsafeMutablePointer<Float>, context: KernelContext) {
    let c = g.inC, width = vectorWidth, vectorEnd = c - c % width
    context.pool.parallelFor(g.batch * g.outH) { row, _ in
      let n = row / g.outH, oh = row % g.outH
      for ow in 0..<g.outW {
        let out = y + (row * g.outW + ow) * c
        var c0 = 0
        while c0 < vectorEnd {
          var acc = FloatVector()
          Pooling.forEachTapIndexed(g, oh: oh, ow: ow) { i, j, ih, iw in
            let src = UnsafePointer(x + ((n * g.inH + ih) * g.inW + iw) * c + c0)
            acc.addProduct(src.vector(at: 0), UnsafePointer(w + (i * g.kw + j) * c + c0).vector(at: 0))
          }
          out.storeVector(acc, at: c0)
          c0 += width
        }
        for ch in vectorEnd..<c {
          var acc: Float = 0
          Pooling.forEachTapIndexed(g, oh: oh, ow: ow) { i, j, ih, iw in
            acc += x[((n * g.inH + ih) * g.inW + iw) * c + ch] * w[(i * g.kw + j) * c + ch]
          }
          out[ch] = acc
        }
      }
    }
  }

  /// Scatters each output gradient back through its window; images are independent, so one task per image.
  public static func backpropInput(_ g: WindowGeometry, outputGradient dy: UnsafePointer<Float>, filter w: UnsafePointer<Float>,
                                   inputGradient dx: UnsafeMutablePointer<Float>, context: KernelContext) {
    let c = g.inC, width = vectorWidth, vectorEnd = c - c % width
    context.pool.parallelFor(g.batch) { n, _ in
      (dx + n * g.inH * g.inW * c).update(repeating: 0, count: g.inH * g.inW * c)
      for oh in 0..<g.outH { for ow in 0..<g.outW {
        let grad = dy + ((n * g.outH + oh) * g.outW + ow) * c
        Pooling.forEachTapIndexed(g, oh: oh, ow: ow) { i, j, ih, iw in
          let dst = dx + ((n * g.inH + ih) * g.inW + iw) * c
          let filter = UnsafePointer(w + (i * g.kw + j) * c)
          var c0 = 0
          while c0 < vectorEnd {
            var v = dst.vector(at: c0)
            v.addProduct(grad.vector(at: c0), filter.vector(at: c0))
            dst.storeVector(v, at: c0)
            c0 += width
          }
          for ch in vectorEnd..<c { dst[ch] += grad[ch] * filter[ch] }
        }
      } }
    }
  }

  /// Per-image partial filter gradients into the workspace, then their sum in image order.
  public static func backpropFilter(_ g: WindowGeometry, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                    filterGradient dw: UnsafeMutablePointer<Float>, workspace: UnsafeMutablePointer<Float>,
                                    context: KernelContext) {
    let c = g.inC, width = vectorWidth, vectorEnd = c - c % width, taps = g.kh * g.kw * c
    context.pool.parallelFor(g.batch) { n, _ in
      let partial = workspace + n * taps
      partial.update(repeating: 0, count: taps)
      for oh in 0..<g.outH { for ow in 0..<g.outW {
        let grad = dy + ((n * g.outH + oh) * g.outW + ow) * c
        Pooling.forEachTapIndexed(g, oh: oh, ow: ow) { i, j, ih, iw in
          let src = UnsafePointer(x + ((n * g.inH + ih) * g.inW + iw) * c)
          let dst = partial + (i * g.kw + j) * c
          var c0 = 0
          while c0 < vectorEnd {
            var v = dst.vector(at: c0)
            v.addProduct(grad.vector(at: c0), src.vector(at: c0))
            dst.storeVector(v, at: c0)
            c0 += width
          }
          for ch in vectorEnd..<c { dst[ch] += grad[ch] * src[ch] }
        }
      } }
    }
    Elementwise.parallelRanges(taps, chunk: 256, context: context) { s, e in
      for t in s..<e {
        var sum = workspace[t]
        for n in 1..<max(g.batch, 1) { sum += workspace[n * taps + t] }
        dw[t] = sum
      }
    }
  }
}

extension Pooling {
  /// Like `forEachTap`, also passing the window offsets (i, j) for indexing the filter.
  @inline(__always)
  static func forEachTapIndexed(_ g: WindowGeometry, oh: Int, ow: Int, _ body: (Int, Int, Int, Int) -> Void) {
    for i in 0..<g.kh {
      let ih = oh * g.strideH - g.padTop + i * g.dilationH
      guard ih >= 0 && ih < g.inH else { continue }
      for j in 0..<g.kw {
        let iw = ow * g.strideW - g.padLeft + j * g.dilationW
        guard iw >= 0 && iw < g.inW else { continue }
        body(i, j, ih, iw)
      }
    }
  }
}
