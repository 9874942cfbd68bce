/// From coefficients to pixels: the IDCT into one plane per component, libjpeg's upsampling
/// ("fancy" triangle filters for 2:1 ratios, replication otherwise) and its YCbCr → RGB tables.
///
/// Scaled output (1/2, 1/4, 1/8) works as libjpeg-turbo's: the luma IDCT produces 4×4, 2×2 or 1×1
/// samples per block, and a subsampled chroma component is given a larger IDCT instead of
/// upsampling where the ratios allow (4:2:0 at 1/2 decodes chroma with the full 8×8 IDCT and needs no
/// upsampling at all); fancy upsampling stays on except at 1/8, as in libjpeg.
extension Decoder {
  func output(channels: Int, scale: Int, dct: DCTMethod) throws(JPEGError) -> JPEGImage {
    guard let frame else { throw .corrupt("no frame header") }
    guard scans > 0 else { throw .truncated("no scan") }
    let minimum = 8 / scale
    // libjpeg picks the colour space from the markers: JFIF means YCbCr; else Adobe's transform
    // flag; else component ids 'R', 'G', 'B'.
    // A lossless frame without either marker is RGB whatever its ids (libjpeg-turbo 3's guess).
    let isRGB = !sawJFIF && (adobeTransform == 0
                             || (adobeTransform == nil && (frame.lossless || frame.components.map(\.id) == [82, 71, 66])))
    // Four components: CMYK, or YCCK when Adobe's transform says 2 (or anything but 0), as libjpeg reads them.
    let isYCCK = frame.components.count == 4 && adobeTransform != nil && adobeTransform != 0
    if frame.components.count == 4 && channels == 1 {
      throw .unsupported("a CMYK/YCCK JPEG to one channel (libjpeg has no such conversion; decode to RGB)")
    }
    // Grayscale output from YCbCr needs only Y: skip the chroma planes.
    let needed = channels == 1 && !isRGB ? Array(frame.components.prefix(1)) : frame.components
    var planes: [Plane] = []
    if frame.lossless {
      // libjpeg-turbo ignores a scale for lossless frames; a caller asking for one gets an error, not a surprise size.
      guard scale == 1 else { throw .unsupported("a lossless JPEG at 1/\(scale) scale (no DCT to scale in)") }
      // libjpeg-turbo allows no lossy colour conversion of a lossless image (jdcolor.c); grey
      // to RGB, an exact copy, is the one it refuses and this decoder does.
      let n = frame.components.count
      if (n == 3 && !isRGB) || (n == 4 && isYCCK) {
        throw .unsupported("a lossless JPEG in \(n == 3 ? "YCbCr" : "YCCK"), whose conversion to RGB would lose its exactness (libjpeg-turbo refuses it too); re-encode it as RGB")
      }
      if channels == 1 && n != 1 {
        throw .unsupported("a lossless colour JPEG to one channel (libjpeg-turbo refuses the lossy conversion); decode to RGB")
      }
      planes = try needed.map { (c) throws(JPEGError) -> Plane in try Plane(lossless: c) }
    }
    for c in needed where !frame.lossless {
      // libjpeg's choice (jdmaster.c): double the component's IDCT size while that replaces a 2:1 upsampling.
      var size = minimum
      while size < 8 && (frame.hMax * minimum) % (c.h * size * 2) == 0 && (frame.vMax * minimum) % (c.v * size * 2) == 0 {
        size *= 2
      }
      let hIn = c.h * size / minimum, vIn = c.v * size / minimum
      guard frame.hMax % hIn == 0, frame.vMax % vIn == 0 else {
        throw .unsupported("sampling factors \(c.h)x\(c.v) of \(frame.hMax)x\(frame.vMax) at scale 1/\(scale)")
      }
      planes.append(try Plane(c, frame: frame, quant: try quantTable(c), blockSize: size, dct: dct, hExpand: frame.hMax / hIn,
                          vExpand: frame.vMax / vIn, fancy: minimum > 1))
    }
    let width = (frame.width + scale - 1) / scale, height = (frame.height + scale - 1) / scale
    var pixels = [UInt8](repeating: 0, count: width * height * channels)
    pixels.withUnsafeMutableBufferPointer { out in
      let rows = planes.map { _ in UnsafeMutablePointer<UInt8>.allocate(capacity: width + 16) }
      let scratch = UnsafeMutablePointer<Int32>.allocate(capacity: width + 16)
      defer { rows.forEach { $0.deallocate() }; scratch.deallocate() }
      for y in 0..<height {
        let line = out.baseAddress! + y * width * channels
        if planes.count == 1 {
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
        if planes.count == 4 {
          let k = planes[3].row(y, outWidth: width, into: rows[3], scratch: scratch)
          ColorConversion.cmykToRGB(a, b, c, k, ycck: isYCCK, adobe: adobeTransform != nil, out: line, count: width)
        } else if channels == 1 {
          // RGB → gray as libjpeg's rgb_gray_convert: 0.299 R + 0.587 G + 0.114 B in 16-bit fixed point.
          for x in 0..<width {
            line[x] = UInt8((19595 * Int32(a[x]) + 38470 * Int32(b[x]) + 7471 * Int32(c[x]) + 32768) >> 16)
          }
        } else if isRGB {
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

  /// Samples already made (a lossless frame's), full size; the plane owns them.
  init(samples: UnsafeMutablePointer<UInt8>, stride: Int, width: Int, height: Int) {
    self.samples = samples; self.stride = stride; self.width = width; self.height = height
    hExpand = 1; vExpand = 1; fancy = false
  }

  /// `blockSize` samples across and down per 8×8 block of coefficients: 8, or 4, 2, 1 when scaled.
  init(_ c: Component, frame: Frame, quant: [Int32], blockSize: Int, dct: DCTMethod, hExpand: Int, vExpand: Int, fancy: Bool) throws(JPEGError) {
    let coefficients = try c.coefficients()
    stride = c.blocksPerLine * blockSize
    // libjpeg's downsampled_width/height: the real samples at this IDCT size.
    width = (frame.width * c.h * blockSize + frame.hMax * 8 - 1) / (frame.hMax * 8)
    height = (frame.height * c.v * blockSize + frame.vMax * 8 - 1) / (frame.vMax * 8)
    self.hExpand = hExpand; self.vExpand = vExpand; self.fancy = fancy
    let blocksWide = (c.width + 7) / 8, blocksHigh = (c.height + 7) / 8
    samples = .allocate(capacity: stride * blocksHigh * blockSize)
    // The fast IDCT dequantizes with the table pre-multiplied by its scale factors.
    let table = blockSize == 8 && dct == .fast ? FastIDCT.multipliers(quant) : quant
    table.withUnsafeBufferPointer { q in
      for by in 0..<blocksHigh {
        for bx in 0..<blocksWide {
          let block = coefficients + (by * c.blocksPerLine + bx) * 64
          let out = samples + by * blockSize * stride + bx * blockSize
          switch blockSize {
          case 8 where dct == .fast: FastIDCT.idct(block, q.baseAddress!, out, stride: stride)
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
  /// Sixteen samples widened for arithmetic (also used by the colour conversion).
  @inline(__always) static func bytes(_ p: UnsafePointer<UInt8>) -> SIMD16<Int32> {
    Lanes.widen(UnsafeRawPointer(p).loadUnaligned(as: SIMD16<UInt8>.self))
  }
  @inline(__always) static func words(_ p: UnsafePointer<Int32>) -> SIMD16<Int32> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Int32>.self)
  }
  /// Output samples 2x and 2x + 1 for sixteen x at once.
  @inline(__always) static func store(even: SIMD16<Int32>, odd: SIMD16<Int32>, _ out: UnsafeMutablePointer<UInt8>) {
    let e = Lanes.narrow(even), o = Lanes.narrow(odd)
    let low = SIMD16<UInt8>(e[0], o[0], e[1], o[1], e[2], o[2], e[3], o[3], e[4], o[4], e[5], o[5], e[6], o[6], e[7], o[7])
    let high = SIMD16<UInt8>(e[8], o[8], e[9], o[9], e[10], o[10], e[11], o[11], e[12], o[12], e[13], o[13], e[14], o[14], e[15], o[15])
    UnsafeMutableRawPointer(out).storeBytes(of: low, as: SIMD16<UInt8>.self)
    UnsafeMutableRawPointer(out + 16).storeBytes(of: high, as: SIMD16<UInt8>.self)
  }

  static func h2v1(_ input: UnsafePointer<UInt8>, width: Int, out: UnsafeMutablePointer<UInt8>) {
    out[0] = input[0]
    out[1] = UInt8((Int(input[0]) * 3 + Int(input[1]) + 2) >> 2)
    var x = 1
    while x + 16 <= width - 1 {
      let here = bytes(input + x) &* 3
      store(even: (here &+ bytes(input + x - 1) &+ 1) &>> 2, odd: (here &+ bytes(input + x + 1) &+ 2) &>> 2, out + 2 * x)
      x += 16
    }
    while x < width - 1 {
      let here = Int(input[x]) * 3
      out[2 * x] = UInt8((here + Int(input[x - 1]) + 1) >> 2)
      out[2 * x + 1] = UInt8((here + Int(input[x + 1]) + 2) >> 2)
      x += 1
    }
    let last = Int(input[width - 1])
    out[2 * width - 2] = UInt8((last * 3 + Int(input[width - 2]) + 1) >> 2)
    out[2 * width - 1] = UInt8(last)
  }

  static func h1v2(_ near: UnsafePointer<UInt8>, _ far: UnsafePointer<UInt8>, lower: Bool, width: Int, out: UnsafeMutablePointer<UInt8>) {
    let bias = lower ? 2 : 1
    for x in 0..<width { out[x] = UInt8((Int(near[x]) * 3 + Int(far[x]) + bias) >> 2) }
  }

  /// The vertical 3:1 blend first (`scratch`, as libjpeg's column sums), then the horizontal one.
  static func h2v2(_ near: UnsafePointer<UInt8>, _ far: UnsafePointer<UInt8>, lower: Bool, width: Int,
                   scratch: UnsafeMutablePointer<Int32>, out: UnsafeMutablePointer<UInt8>) {
    _ = lower   // the vertical blend is the same for both output rows; only the far row differs
    var x = 0
    while x + 16 <= width {
      UnsafeMutableRawPointer(scratch + x).storeBytes(of: bytes(near + x) &* 3 &+ bytes(far + x), as: SIMD16<Int32>.self)
      x += 16
    }
    while x < width { scratch[x] = Int32(near[x]) * 3 + Int32(far[x]); x += 1 }
    out[0] = UInt8((scratch[0] * 4 + 8) >> 4)
    out[1] = UInt8((scratch[0] * 3 + scratch[1] + 7) >> 4)
    x = 1
    while x + 16 <= width - 1 {
      let here = words(scratch + x) &* 3
      store(even: (here &+ words(scratch + x - 1) &+ 8) &>> 4, odd: (here &+ words(scratch + x + 1) &+ 7) &>> 4, out + 2 * x)
      x += 16
    }
    while x < width - 1 {
      let here = scratch[x] * 3
      out[2 * x] = UInt8((here + scratch[x - 1] + 8) >> 4)
      out[2 * x + 1] = UInt8((here + scratch[x + 1] + 7) >> 4)
      x += 1
    }
    let last = scratch[width - 1]
    out[2 * width - 2] = UInt8((last * 3 + scratch[width - 2] + 8) >> 4)
    out[2 * width - 1] = UInt8((last * 4 + 7) >> 4)
  }
}

/// libjpeg's YCbCr → RGB (`jdcolor.c`): JFIF's full-range equations in 16-bit fixed point with
/// libjpeg's rounding. libjpeg reads them from per-value tables; the same integer expressions are
/// computed here sixteen pixels at a time, which gives the same values.
enum ColorConversion {
  static let scaleBits: Int32 = 16
  static func fix(_ x: Double) -> Int32 { Int32(x * 65536 + 0.5) }
  static let crToR = fix(1.40200), cbToB = fix(1.77200), crToG = -fix(0.71414), cbToG = -fix(0.34414)
  static let half: Int32 = 1 << 15

  static func ycbcrToRGB(y: UnsafePointer<UInt8>, cb: UnsafePointer<UInt8>, cr: UnsafePointer<UInt8>,
                         out: UnsafeMutablePointer<UInt8>, count: Int) {
    let kR = crToR, kB = cbToB, kGr = crToG, kGb = cbToG
    var x = 0
    while x + 16 <= count {
      let luma = Upsampling.bytes(y + x), b = Upsampling.bytes(cb + x) &- 128, r = Upsampling.bytes(cr + x) &- 128
      let red = luma &+ ((r &* kR &+ half) &>> scaleBits)
      let green = luma &+ ((b &* kGb &+ r &* kGr &+ half) &>> scaleBits)
      let blue = luma &+ ((b &* kB &+ half) &>> scaleBits)
      let r8 = Lanes.clampedBytes(red), g8 = Lanes.clampedBytes(green), b8 = Lanes.clampedBytes(blue)
      RGB.interleave(r8, g8, b8, into: out + 3 * x)
      x += 16
    }
    while x < count {
      let luma = Int32(y[x]), b = Int32(cb[x]) - 128, r = Int32(cr[x]) - 128
      out[3 * x] = UInt8(clamping: luma + ((r * kR + half) >> scaleBits))
      out[3 * x + 1] = UInt8(clamping: luma + ((b * kGb + r * kGr + half) >> scaleBits))
      out[3 * x + 2] = UInt8(clamping: luma + ((b * kB + half) >> scaleBits))
      x += 1
    }
  }

  /// Four components to RGB as TensorFlow's `decode_jpeg(channels: 3)` does after libjpeg: YCCK
  /// first becomes CMYK (C, M, Y = 255 − the YCbCr → RGB of Y, Cb, Cr; K kept, libjpeg's
  /// ycck_cmyk_convert); then R = C·K / 255 when an Adobe marker was seen (Adobe writes CMYK
  /// inverted), else (255 − C)(255 − K) / 255, integer division, likewise G and B.
  static func cmykToRGB(_ c0: UnsafePointer<UInt8>, _ c1: UnsafePointer<UInt8>, _ c2: UnsafePointer<UInt8>, _ k: UnsafePointer<UInt8>,
                        ycck: Bool, adobe: Bool, out: UnsafeMutablePointer<UInt8>, count: Int) {
    let rgb = UnsafeMutablePointer<UInt8>.allocate(capacity: 3 * count + 48)
    defer { rgb.deallocate() }
    if ycck { ycbcrToRGB(y: c0, cb: c1, cr: c2, out: rgb, count: count) }
    for x in 0..<count {
      let kx = Int(k[x])
      for ch in 0..<3 {
        let value = ycck ? 255 - Int(rgb[3 * x + ch]) : Int((ch == 0 ? c0 : ch == 1 ? c1 : c2)[x])
        out[3 * x + ch] = UInt8(adobe ? value * kx / 255 : (255 - value) * (255 - kx) / 255)
      }
    }
  }
}

/// Three planes of 16 bytes to 48 interleaved bytes, written as three 16-byte stores (byte-wise
/// stores of extracted lanes cost more than all the arithmetic before them).
enum RGB {
  @inline(__always)
  static func interleave(_ r: SIMD16<UInt8>, _ g: SIMD16<UInt8>, _ b: SIMD16<UInt8>, into out: UnsafeMutablePointer<UInt8>) {
    let first = SIMD16<UInt8>(r[0], g[0], b[0], r[1], g[1], b[1], r[2], g[2], b[2], r[3], g[3], b[3], r[4], g[4], b[4], r[5])
    let second = SIMD16<UInt8>(g[5], b[5], r[6], g[6], b[6], r[7], g[7], b[7], r[8], g[8], b[8], r[9], g[9], b[9], r[10], g[10])
    let third = SIMD16<UInt8>(b[10], r[11], g[11], b[11], r[12], g[12], b[12], r[13], g[13], b[13], r[14], g[14], b[14], r[15], g[15], b[15])
    let raw = UnsafeMutableRawPointer(out)
    raw.storeBytes(of: first, as: SIMD16<UInt8>.self)
    (raw + 16).storeBytes(of: second, as: SIMD16<UInt8>.self)
    (raw + 32).storeBytes(of: third, as: SIMD16<UInt8>.self)
  }
}
