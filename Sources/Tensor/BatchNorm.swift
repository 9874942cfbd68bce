/// Batch normalisation over the rows of an NHWC tensor seen as `[rows = N·H·W, C]`.
///
///     training:  mean, variance = batch moments per channel (biased variance)
///     both:      y = (x − mean) · γ / √(variance + ε) + β
///     gradient:  dβ = Σ dy,  dγ = Σ dy·x̂,  dx = γ/√(var+ε) · (dy − dβ/rows − x̂·dγ/rows)
///
/// These are `stablehlo.batch_norm_training`, `batch_norm_inference` and `batch_norm_grad`.
/// With `relu`, the forward writes max(0, y) and the gradient masks dy with the fused output
/// (dy where y > 0): the BN → ReLU pair of NASNet's bottlenecks in one pass each way, without the
/// intermediate tensor.
/// Per-channel sums are taken in fixed 256-row chunks (partials in the workspace), then combined
/// in chunk order in Double, so the bits never depend on the thread count; the variance uses a
/// second pass over x − mean rather than E[x²] − mean², which loses precision on large activations.
public enum BatchNorm {
  static let rowsPerChunk = 256

  /// Scratch floats for the training forward and the gradient.
  public static func workspaceElements(rows: Int, channels: Int) -> Int {
    max(2 * chunks(rows), 3) * channels
  }

  static func chunks(_ rows: Int) -> Int { max(1, (rows + rowsPerChunk - 1) / rowsPerChunk) }

  public static func training(_ x: UnsafePointer<Float>, rows: Int, channels: Int, gamma: UnsafePointer<Float>,
                              beta: UnsafePointer<Float>, epsilon: Float, relu: Bool = false, output y: UnsafeMutablePointer<Float>,
                              mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>,
                              workspace: UnsafeMutablePointer<Float>, context: KernelContext) {
    let c = channels
    channelSums(rows: rows, channels: c, workspace: workspace, context: context) { r, partial in
      let row = x + r * c
      for ch in 0..<c { partial[ch] += row[ch] }
    }
    combine(workspace, rows: rows, channels: c, scale: 1 / Double(rows), into: mean)
    channelSums(rows: rows, channels: c, workspace: workspace, context: context) { r, partial in
      let row = x + r * c
      for ch in 0..<c { let d = row[ch] - mean[ch]; partial[ch] += d * d }
    }
    combine(workspace, rows: rows, channels: c, scale: 1 / Double(rows), into: variance)
    inference(x, rows: rows, channels: c, gamma: gamma, beta: beta, mean: mean, variance: variance,
              epsilon: epsilon, relu: relu, output: y, workspace: workspace, context: context)
  }

  /// Normalises with given statistics. Uses `2·C` floats of workspace for the folded scale and shift.
  public static func inference(_ x: UnsafePointer<Float>, rows: Int, channels: Int, gamma: UnsafePointer<Float>,
                               beta: UnsafePointer<Float>, mean: UnsafePointer<Float>, variance: UnsafePointer<Float>,
                               epsilon: Float, relu: Bool = false, output y: UnsafeMutablePointer<Float>,
                               workspace: UnsafeMutablePointer<Float>, context: KernelContext) {
    let c = channels
    let scale = workspace, shift = workspace + c
    for ch in 0..<c {
      scale[ch] = gamma[ch] / (variance[ch] + epsilon).squareRoot()
      shift[ch] = beta[ch] - mean[ch] * scale[ch]
    }
    Elementwise.parallelRanges(rows, chunk: rowsPerChunk, context: context) { s, e in
      for r in s..<e {
        let src = x + r * c, dst = y + r * c
        if relu {
          for ch in 0..<c { dst[ch] = max(src[ch] * scale[ch] + shift[ch], 0) }
        } else {
          for ch in 0..<c { dst[ch] = src[ch] * scale[ch] + shift[ch] }
        }
      }
    }
  }

  public static func gradient(_ dy: UnsafePointer<Float>, input x: UnsafePointer<Float>, rows: Int, channels: Int,
                              gamma: UnsafePointer<Float>, mean: UnsafePointer<Float>, variance: UnsafePointer<Float>,
                              epsilon: Float, reluOutput: UnsafePointer<Float>? = nil, inputGradient dx: UnsafeMutablePointer<Float>,
                              gammaGradient dgamma: UnsafeMutablePointer<Float>, betaGradient dbeta: UnsafeMutablePointer<Float>,
                              workspace: UnsafeMutablePointer<Float>, context: KernelContext) {
    let c = channels
    // dβ and Σ dy·(x − mean) in one pass: partials of the two sums side by side, 2C per chunk.
    let n = chunks(rows)
    Elementwise.parallelRanges(rows, chunk: rowsPerChunk, context: context) { s, _ in
      let partial = workspace + (s / rowsPerChunk) * 2 * c
      partial.update(repeating: 0, count: 2 * c)
      for r in s..<min(rows, s + rowsPerChunk) {
        let g = dy + r * c, v = x + r * c, out = reluOutput.map { $0 + r * c }
        var ch = 0
        while ch + vectorWidth <= c {
          let d = out.map { keepWherePositive(g.vector(at: ch), $0.vector(at: ch)) } ?? g.vector(at: ch)
          partial.storeVector(partial.vector(at: ch) + d, at: ch)
          var centered = partial.vector(at: c + ch)
          centered.addProduct(d, v.vector(at: ch) - mean.vector(at: ch))
          partial.storeVector(centered, at: c + ch)
          ch += vectorWidth
        }
        while ch < c {
          let d = out.map { $0[ch] > 0 ? g[ch] : 0 } ?? g[ch]
          partial[ch] += d
          partial[c + ch].addProduct(d, v[ch] - mean[ch])
          ch += 1
        }
      }
    }
    for ch in 0..<c {
      var sumDy = 0.0, sumDyCentered = 0.0
      for t in 0..<n {
        sumDy += Double(workspace[t * 2 * c + ch])
        sumDyCentered += Double(workspace[t * 2 * c + c + ch])
      }
      let invStd = 1 / (Double(variance[ch]) + Double(epsilon)).squareRoot()
      dbeta[ch] = Float(sumDy)
      dgamma[ch] = Float(sumDyCentered * invStd)
    }
    // Folded per-channel coefficients: dx = a·dy + b·(x − mean) + k. Stored after the partials' start
    // (the partials are consumed above).
    let a = workspace, b = workspace + c, k = workspace + 2 * c
    for ch in 0..<c {
      let invStd = 1 / (variance[ch] + epsilon).squareRoot()
      let scale = gamma[ch] * invStd
      a[ch] = scale
      b[ch] = -scale * invStd * dgamma[ch] / Float(rows)
      k[ch] = -scale * dbeta[ch] / Float(rows)
    }
    Elementwise.parallelRanges(rows, chunk: rowsPerChunk, context: context) { s, e in
      for r in s..<e {
        let g = dy + r * c, v = x + r * c, d = dx + r * c, out = reluOutput.map { $0 + r * c }
        var ch = 0
        while ch + vectorWidth <= c {
          let masked = out.map { keepWherePositive(g.vector(at: ch), $0.vector(at: ch)) } ?? g.vector(at: ch)
          var sum = b.vector(at: ch) * (v.vector(at: ch) - mean.vector(at: ch)) + k.vector(at: ch)
          sum.addProduct(a.vector(at: ch), masked)
          d.storeVector(sum, at: ch)
          ch += vectorWidth
        }
        while ch < c {
          let masked = out.map { $0[ch] > 0 ? g[ch] : 0 } ?? g[ch]
          d[ch] = (b[ch] * (v[ch] - mean[ch]) + k[ch]).addingProduct(a[ch], masked)
          ch += 1
        }
      }
    }
  }

  /// Per-chunk partial sums of `body` into `workspace` (`chunks × C`).
  @inline(__always)
  private static func channelSums(rows: Int, channels: Int, workspace: UnsafeMutablePointer<Float>,
                                  context: KernelContext, _ body: (Int, UnsafeMutablePointer<Float>) -> Void) {
    Elementwise.parallelRanges(rows, chunk: rowsPerChunk, context: context) { s, e in
      let partial = workspace + (s / rowsPerChunk) * channels
      partial.update(repeating: 0, count: channels)
      for r in s..<e { body(r, partial) }
    }
  }

  private static func combine(_ workspace: UnsafeMutablePointer<Float>, rows: Int, channels: Int, scale: Double,
                              into out: UnsafeMutablePointer<Float>) {
    for ch in 0..<channels {
      var total = 0.0
      for t in 0..<chunks(rows) { total += Double(workspace[t * channels + ch]) }
      out[ch] = Float(total * scale)
    }
  }
}
