/// Dense 2-D convolution, NHWC input `[N, H, W, C]`, HWIO filter `[kh, kw, C, K]`, output
/// `[N, outH, outW, K]`, with TensorFlow's SAME/VALID padding, per-axis strides and dilation
/// (all in `WindowGeometry`). Forward, gradient with respect to the input and gradient with
/// respect to the filter sit side by side, each with its plain reference twin.
///
/// The fast path is implicit im2col + GEMM: the convolution is a GEMM whose A is the `[pixels,
/// kh·kw·C]` matrix of windows (its column order equals the HWIO filter's row order), and the GEMM
/// packs A straight from the image (`Conv2D+Packing.swift`), so that matrix never exists. A 1×1
/// stride-1 convolution is a plain GEMM on the NHWC input. The input gradient of a stride-1
/// convolution is a forward convolution of dy with the flipped filter; with strides it is a GEMM
/// into explicit columns, chunked by `workspaceLimit`, folded back with col2im.
public enum Conv2D {
  /// Floats of im2col scratch per chunk (8 MiB).
  public static let workspaceLimit = 1 << 21

  /// Scratch floats the fast kernels need for this geometry (the most any of the three needs).
  public static func workspaceElements(_ g: WindowGeometry) -> Int {
    if isPointwise(g) { return splitKChunks(g) * g.inC * g.outC }
    let filter = g.kh * g.kw * g.inC * g.outC
    // The filter gradient's dWᵀ, or its split-k partials; the flipped filter; strided columns.
    let gradient = splitKChunks(g) * filter
    if g.strideH == 1 && g.strideW == 1 { return gradient }
    return max(gradient, chunkRows(g) * g.kh * g.kw * g.inC)
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
    if readsRowsDirectly(g, context: context) {
      indirectForward(g, input: x, filter: w, output: y, context: context)
      return
    }
    GEMM.compute(m: g.outputPixels, n: g.outC, k: k, packA: { pixel, kIndex, pixels, kc, out in
      packWindows(g, input: x, pixel: pixel, kIndex: kIndex, pixels: pixels, kc: kc, mr: context.gemm.mr, into: out)
    }, packB: { row, column, kc, columns, out in
      GEMM.packB(transB: false, b: w, ldb: g.outC, row: row, column: column, kc: kc, columns: columns, nr: context.gemm.nr, into: out)
    }, c: y, ldc: g.outC, context: context)
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
    if g.strideH == 1 && g.strideW == 1 {
      flipFilter(g, w, into: workspace, context: context)
      forward(transposedGeometry(g), input: dy, filter: workspace, output: dx, workspace: workspace, context: context)
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
      let chunks = splitKChunks(g)
      if chunks > 1 {
        pointwiseFilterGradientSplitK(g, input: x, outputGradient: dy, filterGradient: dw, chunks: chunks,
                                      partials: workspace, context: context)
      } else {
        GEMM.compute(transA: true, transB: false, m: k, n: g.outC, k: g.outputPixels, a: x, lda: k,
                     b: dy, ldb: g.outC, c: dw, ldc: g.outC, context: context)
      }
      return
    }
    let chunks = splitKChunks(g)
    if chunks > 1 {
      windowFilterGradientSplitK(g, input: x, outputGradient: dy, filterGradient: dw, chunks: chunks, partials: workspace,
                                 context: context)
      return
    }
    // dWᵀ[K_out, k] = dyᵀ · im2col: the windows become the shared, packed-once B operand (one
    // contiguous copy per pixel and sliver), then a small transpose gives the HWIO layout.
    let transposed = workspace
    GEMM.compute(m: g.outC, n: k, k: g.outputPixels, packA: { channel, pixel, channels, kc, out in
      GEMM.packA(transA: true, a: dy, lda: g.outC, row: channel, column: pixel, rows: channels, kc: kc, mr: context.gemm.mr, into: out)
    }, packB: { pixel, kIndex, kc, columns, out in
      packWindowColumns(g, input: x, pixel: pixel, kIndex: kIndex, pixels: kc, columns: columns, nr: context.gemm.nr, into: out)
    }, c: transposed, ldc: k, context: context)
    Elementwise.parallelRanges(k, chunk: 64, context: context) { s, e in
      for row in s..<e { for channel in 0..<g.outC { dw[row * g.outC + channel] = transposed[channel * k + row] } }
    }
  }

  /// Pixels per split-k chunk of a filter gradient.
  static let splitKRows = 4096

  /// How many chunks of pixels a filter gradient is split into: 1 (no split) unless the filter is
  /// small and the pixels many, where one GEMM would spend its time packing (pointwise) or would
  /// have each thread pack the same dy for its share of the filter (windows); the partials
  /// (chunks × filter floats) stay under 4 Mi floats. The count is a multiple of 8, so that pools
  /// of 2, 4 or 8 threads share the chunks evenly, yet it never depends on the pool.
  static func splitKChunks(_ g: WindowGeometry) -> Int {
    let filter = g.kh * g.kw * g.inC * g.outC
    guard filter <= 1 << 16, g.outputPixels >= 4 * splitKRows else { return 1 }
    return min(roundUp((g.outputPixels + splitKRows - 1) / splitKRows, 8), (4 << 20) / filter / 8 * 8)
  }

  /// dW = Σ over chunks of x[chunk]ᵀ · dy[chunk]: each task multiplies one fixed-size chunk of
  /// pixels on its own thread into its partial, then the partials are added in chunk order, so the
  /// bits depend on the chunk size, never on the thread count.
  static func pointwiseFilterGradientSplitK(_ g: WindowGeometry, input x: UnsafePointer<Float>,
                                            outputGradient dy: UnsafePointer<Float>, filterGradient dw: UnsafeMutablePointer<Float>,
                                            chunks: Int, partials: UnsafeMutablePointer<Float>, context: KernelContext) {
    let cin = g.inC, cout = g.outC, filter = cin * cout
    let rowsPerChunk = (g.outputPixels + chunks - 1) / chunks
    context.pool.parallelFor(chunks) { chunk, thread in
      let first = chunk * rowsPerChunk, rows = max(0, min(rowsPerChunk, g.outputPixels - first))
      let xs = x + first * cin, gs = dy + first * cout
      GEMM.serial(m: cin, n: cout, k: rows, packA: { row, column, count, kc, out in
        GEMM.packA(transA: true, a: xs, lda: cin, row: row, column: column, rows: count, kc: kc, mr: context.gemm.mr, into: out)
      }, packB: { row, column, kc, columns, out in
        GEMM.packB(transB: false, b: gs, ldb: cout, row: row, column: column, kc: kc, columns: columns, nr: context.gemm.nr, into: out)
      }, c: partials + chunk * filter, ldc: cout, thread: thread, context: context)
    }
    Elementwise.parallelRanges(filter, chunk: 1024, context: context) { s, e in
      for i in s..<e {
        var sum = partials[i]
        for chunk in 1..<chunks { sum += partials[chunk * filter + i] }
        dw[i] = sum
      }
    }
  }

  /// The windowed filter gradient split the same way: each task computes dWᵀ over one fixed-size
  /// chunk of pixels (a serial GEMM, packing its own dy and windows), then the partials are added
  /// in chunk order while transposing to HWIO, so the bits never depend on the thread count.
  static func windowFilterGradientSplitK(_ g: WindowGeometry, input x: UnsafePointer<Float>,
                                         outputGradient dy: UnsafePointer<Float>, filterGradient dw: UnsafeMutablePointer<Float>,
                                         chunks: Int, partials: UnsafeMutablePointer<Float>, context: KernelContext) {
    let k = g.kh * g.kw * g.inC, cout = g.outC, filter = k * cout
    let rowsPerChunk = (g.outputPixels + chunks - 1) / chunks
    let direct = readsWindowsDirectly(g, tile: context.gemm)
    context.pool.parallelFor(chunks) { chunk, thread in
      let first = chunk * rowsPerChunk, rows = max(0, min(rowsPerChunk, g.outputPixels - first))
      if direct {
        directFilterGradientChunk(g, input: x, outputGradient: dy, first: first, pixels: rows, into: partials + chunk * filter,
                                  thread: thread, context: context)
        return
      }
      let gs = dy + first * cout
      GEMM.serial(m: cout, n: k, k: rows, packA: { channel, pixel, channels, kc, out in
        GEMM.packA(transA: true, a: gs, lda: cout, row: channel, column: pixel, rows: channels, kc: kc, mr: context.gemm.mr, into: out)
      }, packB: { pixel, kIndex, kc, columns, out in
        packWindowColumns(g, input: x, pixel: first + pixel, kIndex: kIndex, pixels: kc, columns: columns, nr: context.gemm.nr, into: out)
      }, c: partials + chunk * filter, ldc: k, thread: thread, context: context)
    }
    Elementwise.parallelRanges(k, chunk: 64, context: context) { s, e in
      for row in s..<e {
        for channel in 0..<cout {
          var sum = partials[channel * k + row]
          for chunk in 1..<chunks { sum += partials[chunk * filter + channel * k + row] }
          dw[row * cout + channel] = sum
        }
      }
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

  /// col2im: adds each row of `col` (one output pixel's window) back onto the input pixels it covers.
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
