/// From coefficients to pixels: the IDCT into one plane per component, libjpeg's upsampling
/// ("fancy" triangle filters for 2:1 ratios, replication otherwise) and its YCbCr → RGB tables.
///
/// Scaled output (1/2, 1/4, 1/8) works as libjpeg-turbo's: the luma IDCT produces 4×4, 2×2 or 1×1
/// samples per block, and a subsampled chroma component is given a larger IDCT instead of
/// upsampling where the ratios allow (4:2:0 at 1/2 decodes chroma with the full 8×8 IDCT and needs no
/// upsampling at all); fancy upsampling stays on except at 1/8, as in libjpeg.
extension Decoder {
  func output(channels: Int, scale: Int) throws(JPEGError) -> JPEGImage {
    guard let frame else { throw .corrupt("no frame header") }
    guard scans > 0 else { throw .truncated("no scan") }
    let minimum = 8 / scale
    var planes: [Plane] = []
    for c in frame.components {
      // libjpeg's choice (jdmaster.c): double the component's IDCT size while that replaces a 2:1 upsampling.
      var size = minimum
      while size < 8 && (frame.hMax * minimum) % (c.h * size * 2) == 0 && (frame.vMax * minimum) % (c.v * size * 2) == 0 {
        size *= 2
      }
      let hIn = c.h * size / minimum, vIn = c.v * size / minimum
      guard frame.hMax % hIn == 0, frame.vMax % vIn == 0 else {
        throw .unsupported("sampling factors \(c.h)x\(c.v) of \(frame.hMax)x\(frame.vMax) at scale 1/\(scale)")
      }
      planes.append(Plane(c, frame: frame, quant: try quantTable(c), blockSize: size, hExpand: frame.hMax / hIn,
                          vExpand: frame.vMax / vIn, fancy: minimum > 1))
    }
    let width = (frame.width + scale - 1) / scale, height = (frame.height + scale - 1) / scale
    var pixels = [UInt8](repeating: 0, count: width * height * channels)
    let isRGB = adobeTransform == 0 || (!sawJFIF && adobeTransform == nil && frame.components.map(\.id) == [82, 71, 66])
    pixels.withUnsafeMutableBufferPointer { out in
      let rows = planes.map { _ in UnsafeMutablePointer<UInt8>.allocate(capacity: width + 16) }
      let scratch = UnsafeMutablePointer<Int32>.allocate(capacity: width + 16)
      defer { rows.forEach { $0.deallocate() }; scratch.deallocate() }
      for y in 0..<height {
        let line = out.baseAddress! + y * width * channels
        if planes.count == 1 || channels == 1 {
          // Luminance only: libjpeg's YCbCr → grayscale keeps Y.
          let luma = planes[0].row(y, outWidth: width, into: rows[0], scratch: scratch)
          if channels == 1 {
            line.update(from: luma, count: width)
          } else {
            for x in 0..<width { line[3 * x] = luma[x]; line[3 * x + 1] = luma[x]; line[3 * x + 2] = luma[x] }
          }
          continue
        }
        let a = planes[0].row(y, outWidth: width, into: rows[0], scratch: scratch)
        let b = planes[1].row(y, outWidth: width, into: rows[1], scratch: scratch)
        let c = planes[2].row(y, outWidth: width, into: rows[2], scratch: scratch)
        if isRGB {
          for x in 0..<width { line[3 * x] = a[x]; line[3 * x + 1] = b[x]; line[3 * x + 2] = c[x] }
        } else {
          ColorConversion.ycbcrToRGB(y: a, cb: b, cr: c, out: line, count: width)
        }
      }
    }
    return JPEGImage(width: width, height: height, channels: channels, pixels: pixels)
  }
}

/// One component's samples after the IDCT, at its own (possibly subsampled) resolution.
final class Plane {
  let samples: UnsafeMutablePointer<UInt8>
  let stride: Int
  /// Samples the component really has; the upsampling filters clamp to these, as libjpeg's
  /// context rows and edge columns do.
  let width: Int, height: Int
  /// How many output pixels each sample covers across and down.
  let hExpand: Int, vExpand: Int
  /// libjpeg's triangle filters for 2:1 ratios (off at 1/8 scale), else replication.
  let fancy: Bool

  /// `blockSize` samples across and down per 8×8 block of coefficients: 8, or 4, 2, 1 when scaled.
  init(_ c: Component, frame: Frame, quant: [Int32], blockSize: Int, hExpand: Int, vExpand: Int, fancy: Bool) {
    stride = c.blocksPerLine * blockSize
    // libjpeg's downsampled_width/height: the real samples at this IDCT size.
    width = (frame.width * c.h * blockSize + frame.hMax * 8 - 1) / (frame.hMax * 8)
    height = (frame.height * c.v * blockSize + frame.vMax * 8 - 1) / (frame.vMax * 8)
    self.hExpand = hExpand; self.vExpand = vExpand; self.fancy = fancy
    let blocksWide = (c.width + 7) / 8, blocksHigh = (c.height + 7) / 8
    samples = .allocate(capacity: stride * blocksHigh * blockSize)
    quant.withUnsafeBufferPointer { q in
      for by in 0..<blocksHigh {
        for bx in 0..<blocksWide {
          let block = c.coefficients + (by * c.blocksPerLine + bx) * 64
          let out = samples + by * blockSize * stride + bx * blockSize
          switch blockSize {
          case 8: IDCT.islow(block, q.baseAddress!, out, stride: stride)
          case 4: ScaledIDCT.idct4x4(block, q.baseAddress!, out, stride: stride)
          case 2: ScaledIDCT.idct2x2(block, q.baseAddress!, out, stride: stride)
          default: ScaledIDCT.idct1x1(block, q.baseAddress!, out)
          }
        }
      }
    }
  }

  deinit { samples.deallocate() }

  /// Output row `y` at full resolution, `outWidth` samples: the plane's own row when the
  /// component is not subsampled, else the upsampled row written to `buffer`.
  func row(_ y: Int, outWidth: Int, into buffer: UnsafeMutablePointer<UInt8>, scratch: UnsafeMutablePointer<Int32>) -> UnsafePointer<UInt8> {
    switch (hExpand, vExpand) {
    case (1, 1):
      return UnsafePointer(samples + y * stride)
    case (2, 1) where fancy && width > 2:
      Upsampling.h2v1(samples + y * stride, width: width, out: buffer)
    case (1, 2) where fancy:
      let (near, far, lower) = rowsForVertical(y)
      Upsampling.h1v2(near, far, lower: lower, width: width, out: buffer)
    case (2, 2) where fancy && width > 2:
      let (near, far, lower) = rowsForVertical(y)
      Upsampling.h2v2(near, far, lower: lower, width: width, scratch: scratch, out: buffer)
    default:
      let source = samples + (y / vExpand) * stride
      for x in 0..<outWidth { buffer[x] = source[x / hExpand] }
    }
    return UnsafePointer(buffer)
  }

  /// For a 2:1 vertical ratio: the nearest sample row and the next nearest (above for the upper
  /// output row, below for the lower), the image's first and last rows standing in for their
  /// missing neighbours.
  @inline(__always)
  private func rowsForVertical(_ y: Int) -> (UnsafePointer<UInt8>, UnsafePointer<UInt8>, Bool) {
    let r = y >> 1, lower = y & 1 == 1
    let other = lower ? min(r + 1, height - 1) : max(r - 1, 0)
    return (UnsafePointer(samples + r * stride), UnsafePointer(samples + other * stride), lower)
  }
}

/// libjpeg-turbo's fancy upsampling (`jdsample.c`): each output sample is the 3:1 blend of its
/// nearest and next-nearest input samples, with rounding biases that alternate so that the
/// errors do not accumulate in one direction.
enum Upsampling {
  static func h2v1(_ input: UnsafePointer<UInt8>, width: Int, out: UnsafeMutablePointer<UInt8>) {
    out[0] = input[0]
    out[1] = UInt8((Int(input[0]) * 3 + Int(input[1]) + 2) >> 2)
    for x in 1..<(width - 1) {
      let here = Int(input[x]) * 3
      out[2 * x] = UInt8((here + Int(input[x - 1]) + 1) >> 2)
      out[2 * x + 1] = UInt8((here + Int(input[x + 1]) + 2) >> 2)
    }
    let last = Int(input[width - 1])
    out[2 * width - 2] = UInt8((last * 3 + Int(input[width - 2]) + 1) >> 2)
    out[2 * width - 1] = UInt8(last)
  }

  static func h1v2(_ near: UnsafePointer<UInt8>, _ far: UnsafePointer<UInt8>, lower: Bool, width: Int, out: UnsafeMutablePointer<UInt8>) {
    let bias = lower ? 2 : 1
    for x in 0..<width { out[x] = UInt8((Int(near[x]) * 3 + Int(far[x]) + bias) >> 2) }
  }

  static func h2v2(_ near: UnsafePointer<UInt8>, _ far: UnsafePointer<UInt8>, lower: Bool, width: Int,
                   scratch: UnsafeMutablePointer<Int32>, out: UnsafeMutablePointer<UInt8>) {
    _ = lower   // the vertical blend is the same for both output rows; only the far row differs
    for x in 0..<width { scratch[x] = Int32(near[x]) * 3 + Int32(far[x]) }
    out[0] = UInt8((scratch[0] * 4 + 8) >> 4)
    out[1] = UInt8((scratch[0] * 3 + scratch[1] + 7) >> 4)
    for x in 1..<(width - 1) {
      let here = scratch[x] * 3
      out[2 * x] = UInt8((here + scratch[x - 1] + 8) >> 4)
      out[2 * x + 1] = UInt8((here + scratch[x + 1] + 7) >> 4)
    }
    let last = scratch[width - 1]
    out[2 * width - 2] = UInt8((last * 3 + scratch[width - 2] + 8) >> 4)
    out[2 * width - 1] = UInt8((last * 4 + 7) >> 4)
  }
}

/// libjpeg's YCbCr → RGB (`jdcolor.c`): JFIF's full-range equations in 16-bit fixed point, with
/// the same per-value tables and rounding.
enum ColorConversion {
  static let scaleBits = 16
  static func fix(_ x: Double) -> Int { Int(x * Double(1 << scaleBits) + 0.5) }

  struct Tables: @unchecked Sendable {
    let crToR: UnsafeMutablePointer<Int32>, cbToB: UnsafeMutablePointer<Int32>
    let crToG: UnsafeMutablePointer<Int32>, cbToG: UnsafeMutablePointer<Int32>
  }

  static let tables: Tables = {
    let t = Tables(crToR: .allocate(capacity: 256), cbToB: .allocate(capacity: 256),
                   crToG: .allocate(capacity: 256), cbToG: .allocate(capacity: 256))
    let half = 1 << (scaleBits - 1)
    for i in 0..<256 {
      let x = i - 128
      t.crToR[i] = Int32((fix(1.40200) * x + half) >> scaleBits)
      t.cbToB[i] = Int32((fix(1.77200) * x + half) >> scaleBits)
      t.crToG[i] = Int32(-fix(0.71414) * x)
      t.cbToG[i] = Int32(-fix(0.34414) * x + half)
    }
    return t
  }()

  static func ycbcrToRGB(y: UnsafePointer<UInt8>, cb: UnsafePointer<UInt8>, cr: UnsafePointer<UInt8>,
                         out: UnsafeMutablePointer<UInt8>, count: Int) {
    let t = tables
    for x in 0..<count {
      let luma = Int32(y[x]), b = Int(cb[x]), r = Int(cr[x])
      out[3 * x] = UInt8(clamping: luma + t.crToR[r])
      out[3 * x + 1] = UInt8(clamping: luma + ((t.cbToG[b] + t.crToG[r]) >> Int32(scaleBits)))
      out[3 * x + 2] = UInt8(clamping: luma + t.cbToB[b])
    }
  }
}
