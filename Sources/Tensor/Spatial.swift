/// Spatial slicing and padding of NHWC tensors: the pair `stablehlo.slice` / `stablehlo.pad`, each
/// the other's gradient.
///
/// `slice` reads `y[n, oh, ow, c] = x[n, top + oh·strideH, left + ow·strideW, c]`; it is the
/// subsample of factorized reduction (`x[:, ::2, ::2, :]`) and the one-pixel crop of its shifted path.
/// `pad` writes x into a zero tensor at `(top, left)` with `interior` zeros between neighbours;
/// with interior 0 it is the one-pixel pad of factorized reduction, with interior s−1 it scatters the
/// gradient of a stride-s slice.
public struct SpatialWindow: Hashable, Sendable {
  public var top: Int, left: Int
  public var strideH: Int, strideW: Int
  public init(top: Int, left: Int, strideH: Int = 1, strideW: Int = 1) {
    self.top = top; self.left = left; self.strideH = strideH; self.strideW = strideW
  }
}

public enum Spatial {
  /// `x`: `[N, inH, inW, C]`, `y`: `[N, outH, outW, C]`.
  public static func slice(_ x: UnsafePointer<Float>, batch: Int, inH: Int, inW: Int, channels: Int,
                           window: SpatialWindow, outH: Int, outW: Int,
                           into y: UnsafeMutablePointer<Float>, context: KernelContext) {
    context.pool.parallelFor(batch * outH) { row, _ in
      let n = row / outH, oh = row % outH
      let ih = window.top + oh * window.strideH
      for ow in 0..<outW {
        let iw = window.left + ow * window.strideW
        (y + (row * outW + ow) * channels).update(from: x + ((n * inH + ih) * inW + iw) * channels, count: channels)
      }
    }
  }

  /// The adjoint of `slice`: `y` (`[N, outH, outW, C]`) is zero except where `x`
  /// (`[N, inH, inW, C]`) lands at `(top + h·strideH, left + w·strideW)`.
  public static func pad(_ x: UnsafePointer<Float>, batch: Int, inH: Int, inW: Int, channels: Int,
                         window: SpatialWindow, outH: Int, outW: Int,
                         into y: UnsafeMutablePointer<Float>, context: KernelContext) {
    context.pool.parallelFor(batch * outH) { row, _ in
      let n = row / outH, oh = row % outH
      let dst = y + row * outW * channels
      dst.update(repeating: 0, count: outW * channels)
      let offset = oh - window.top
      guard offset >= 0, offset % window.strideH == 0, offset / window.strideH < inH else { return }
      let ih = offset / window.strideH
      for iw in 0..<inW {
        let ow = window.left + iw * window.strideW
        guard ow < outW else { break }
        (dst + ow * channels).update(from: x + ((n * inH + ih) * inW + iw) * channels, count: channels)
      }
    }
  }
}
