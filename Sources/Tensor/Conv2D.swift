/// Dense 2-D convolution, NHWC input `[N, H, W, C]`, HWIO filter `[kh, kw, C, K]`, output
/// `[N, outH, outW, K]`, with TensorFlow's SAME/VALID padding, per-axis strides and dilation
/// (all in `WindowGeometry`). Forward, gradient with respect to the input and gradient with
/// respect to the filter sit side by side, each with its plain reference twin.
///
/// The fast path is im2col + GEMM: the windows of a chunk of output pixels are copied into rows of
/// a `[pixels, kh·kw·C]` matrix (whose column order equals the HWIO filter's row order), so the
/// convolution becomes one GEMM per chunk. A 1×1 stride-1 convolution needs no copy at all: the
/// NHWC input already is that matrix. Chunks are bounded by `workspaceLimit`, so the scratch memory
/// stays a few MiB whatever the batch and image size.
public enum Conv2D {
  /// Floats of im2col scratch per chunk (8 MiB).
  public static let workspaceLimit = 1 << 21

  /// Scratch floats the fast kernels need for this geometry (0 for a plain 1×1 convolution).
  public static func workspaceElements(_ g: WindowGeometry) -> Int {
    if isPointwise(g) { return 0 }
    let k = g.kh * g.kw * g.inC
    return chunkRows(g) * k
  }

  static func isPointwise(_ g: WindowGeometry) -> Bool {
    g.kh == 1 && g.kw == 1 && g.strideH == 1 && g.strideW == 1 && g.padTop == 0 && g.padLeft == 0
  }

  static func chunkRows(_ g: WindowGeometry) -> Int {
    let k = g.kh * g.kw * g.inC
    return max(1, min(g.outputPixels, workspaceLimit / max(k, 1)))
  }

  // MARK: Reference twins

  public static func forwardReference(_ g: WindowGeometry, input x: UnsafePointer<Float>,
                                      filter w: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>) {
    for n in 0..<g.batch { for oh in 0..<g.outH { for ow in 0..<g.outW { for k in 0..<g.outC {
      var sum = 0.0
      for i in 0..<g.kh { for j in 0..<g.kw {
        let ih = oh * g.strideH - g.padTop + i * g.dilationH
        let iw = ow * g.strideW - g.padLeft + j * g.dilationW
        guard ih >= 0, ih < g.inH, iw >= 0, iw < g.inW else { continue }
        for c in 0..<g.inC {
          sum += Double(x[((n * g.inH + ih) * g.inW + iw) * g.inC + c]) * Double(w[((i * g.kw + j) * g.inC + c) * g.outC + k])
        }
      } }
      y[((n * g.outH + oh) * g.outW + ow) * g.outC + k] = Float(sum)
    } } } }
  }

  public static func backpropInputReference(_ g: WindowGeometry, outputGradient dy: UnsafePointer<Float>,
                                            filter w: UnsafePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>) {
    let sums = UnsafeMutablePointer<Double>.allocate(capacity: g.inputShape.elementCount)
    sums.initialize(repeating: 0, count: g.inputShape.elementCount)
    defer { sums.deallocate() }
    for n in 0..<g.batch { for oh in 0..<g.outH { for ow in 0..<g.outW { for k in 0..<g.outC {
      let d = Double(dy[((n * g.outH + oh) * g.outW + ow) * g.outC + k])
      for i in 0..<g.kh { for j in 0..<g.kw {
        let ih = oh * g.strideH - g.padTop + i * g.dilationH
        let iw = ow * g.strideW - g.padLeft + j * g.dilationW
        guard ih >= 0, ih < g.inH, iw >= 0, iw < g.inW else { continue }
        for c in 0..<g.inC {
          sums[((n * g.inH + ih) * g.inW + iw) * g.inC + c] += d * Double(w[((i * g.kw + j) * g.inC + c) * g.outC + k])
        }
      } }
    } } } }
    for e in 0..<g.inputShape.elementCount { dx[e] = Float(sums[e]) }
  }

  public static func backpropFilterReference(_ g: WindowGeometry, input x: UnsafePointer<Float>,
                                             outputGradient dy: UnsafePointer<Float>, filterGradient dw: UnsafeMutablePointer<Float>) {
    for i in 0..<g.kh { for j in 0..<g.kw { for c in 0..<g.inC { for k in 0..<g.outC {
      var sum = 0.0
      for n in 0..<g.batch { for oh in 0..<g.outH { for ow in 0..<g.outW {
        let ih = oh * g.strideH - g.padTop + i * g.dilationH
        let iw = ow * g.strideW - g.padLeft + j * g.dilationW
        guard ih >= 0, ih < g.inH, iw >= 0, iw < g.inW else { continue }
        sum += Double(x[((n * g.inH + ih) * g.inW + iw) * g.inC + c]) * Double(dy[((n * g.outH + oh) * g.outW + ow) * g.outC + k])
      } } }
      dw[((i * g.kw + j) * g.inC + c) * g.outC + k] = Float(sum)
    } } } }
  }

  // MARK: Fast kernels

  public static func forward(_ g: WindowGeometry, input x: UnsafePointer<Float>, filter w: UnsafePointer<Float>,
                             output y: UnsafeMutablePointer<Float>, workspace: UnsafeMutablePointer<Float>,
                             context: KernelContext) {
    let k = g.kh * g.kw * g.inC
    if isPointwise(g) {
      GEMM.compute(transA: false, transB: false, m: g.outputPixels, n: g.outC, k: k, a: x, lda: k,
                   b: w, ldb: g.outC, c: y, ldc: g.outC, context: context)
      return
    }
    forEachChunk(g) { first, rows in
      im2col(g, input: x, firstRow: first, rows: rows, into: workspace, context: context)
      GEMM.compute(transA: false, transB: false, m: rows, n: g.outC, k: k, a: workspace, lda: k,
                   b: w, ldb: g.outC, c: y + first * g.outC, ldc: g.outC, context: context)
    }
  }

  public static func backpropInput(_ g: WindowGeometry, outputGradient dy: UnsafePointer<Float>,
                                   filter w: UnsafePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>,
                                   workspace: UnsafeMutablePointer<Float>, context: KernelContext) {
    let k = g.kh * g.kw * g.inC
    if isPointwise(g) {
      GEMM.compute(transA: false, transB: true, m: g.outputPixels, n: k, k: g.outC, a: dy, lda: g.outC,
                   b: w, ldb: g.outC, c: dx, ldc: k, context: context)
      return
    }
    Elementwise.fill(dx, count: g.inputShape.elementCount, with: 0, context: context)
    forEachChunk(g) { first, rows in
      GEMM.compute(transA: false, transB: true, m: rows, n: k, k: g.outC, a: dy + first * g.outC, lda: g.outC,
                   b: w, ldb: g.outC, c: workspace, ldc: k, context: context)
      col2imAccumulate(g, columns: workspace, firstRow: first, rows: rows, into: dx, context: context)
    }
  }

  public static func backpropFilter(_ g: WindowGeometry, input x: UnsafePointer<Float>,
                                    outputGradient dy: UnsafePointer<Float>, filterGradient dw: UnsafeMutablePointer<Float>,
                                    workspace: UnsafeMutablePointer<Float>, context: KernelContext) {
    let k = g.kh * g.kw * g.inC
    if isPointwise(g) {
      GEMM.compute(transA: true, transB: false, m: k, n: g.outC, k: g.outputPixels, a: x, lda: k,
                   b: dy, ldb: g.outC, c: dw, ldc: g.outC, context: context)
      return
    }
    forEachChunk(g) { first, rows in
      im2col(g, input: x, firstRow: first, rows: rows, into: workspace, context: context)
      GEMM.compute(transA: true, transB: false, m: k, n: g.outC, k: rows, a: workspace, lda: k,
                   b: dy + first * g.outC, ldb: g.outC, beta: first == 0 ? 0 : 1, c: dw, ldc: g.outC,
                   context: context)
    }
  }

  private static func forEachChunk(_ g: WindowGeometry, _ body: (_ first: Int, _ rows: Int) -> Void) {
    let chunk = chunkRows(g)
    var first = 0
    while first < g.outputPixels {
      body(first, min(chunk, g.outputPixels - first))
      first += chunk
    }
  }

  /// Copies the window of each output pixel in `firstRow..<firstRow+rows` into one row of `col`
  /// (`kh·kw·C` floats, zeros where the window hangs over the padding).
  static func im2col(_ g: WindowGeometry, input x: UnsafePointer<Float>, firstRow: Int, rows: Int,
                     into col: UnsafeMutablePointer<Float>, context: KernelContext) {
    let k = g.kh * g.kw * g.inC, rowsPerTask = 32
    context.pool.parallelFor((rows + rowsPerTask - 1) / rowsPerTask) { task, _ in
      for r in task * rowsPerTask..<min(rows, task * rowsPerTask + rowsPerTask) {
        let pixel = firstRow + r
        let ow = pixel % g.outW, oh = (pixel / g.outW) % g.outH, n = pixel / (g.outW * g.outH)
        var dst = col + r * k
        for i in 0..<g.kh {
          let ih = oh * g.strideH - g.padTop + i * g.dilationH
          for j in 0..<g.kw {
            let iw = ow * g.strideW - g.padLeft + j * g.dilationW
            if ih >= 0 && ih < g.inH && iw >= 0 && iw < g.inW {
              dst.update(from: x + ((n * g.inH + ih) * g.inW + iw) * g.inC, count: g.inC)
            } else {
              dst.update(repeating: 0, count: g.inC)
            }
            dst += g.inC
          }
        }
      }
    }
  }

  /// The adjoint of `im2col`: adds each row of `col` back onto the input pixels its window covers.
  /// Tasks own disjoint channel ranges, so overlapping windows never race and the sum order is fixed.
  static func col2imAccumulate(_ g: WindowGeometry, columns col: UnsafePointer<Float>, firstRow: Int, rows: Int,
                               into dx: UnsafeMutablePointer<Float>, context: KernelContext) {
    let k = g.kh * g.kw * g.inC
    let block = 16
    context.pool.parallelFor((g.inC + block - 1) / block) { task, _ in
      let c0 = task * block, c1 = min(g.inC, c0 + block)
      for r in 0..<rows {
        let pixel = firstRow + r
        let ow = pixel % g.outW, oh = (pixel / g.outW) % g.outH, n = pixel / (g.outW * g.outH)
        var src = col + r * k
        for i in 0..<g.kh {
          let ih = oh * g.strideH - g.padTop + i * g.dilationH
          for j in 0..<g.kw {
            let iw = ow * g.strideW - g.padLeft + j * g.dilationW
            if ih >= 0 && ih < g.inH && iw >= 0 && iw < g.inW {
              let dst = dx + ((n * g.inH + ih) * g.inW + iw) * g.inC
              for c in c0..<c1 { dst[c] += src[c] }
            }
            src += g.inC
          }
        }
      }
    }
  }
}
