#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A baseline JPEG encoder (SOF0, JFIF): RGB as YCbCr with 4:2:0 or 4:4:4 chroma, or grayscale;
/// the IJG quality scaling of the T.81 annex K quantization tables; Huffman tables built for each
/// image from its own symbol counts (T.81 K.2), so no fixed code tables are needed; optional
/// restart markers. Enough to write ImageNet-format fake data that any JPEG reader accepts.
public struct JPEGEncoder: Sendable {
  public enum Subsampling: Sendable { case none, half }   // 4:4:4, 4:2:0

  public var quality: Int
  public var subsampling: Subsampling
  /// MCUs between restart markers; 0 for none.
  public var restartInterval: Int

  public init(quality: Int = 90, subsampling: Subsampling = .half, restartInterval: Int = 0) {
    precondition((1...100).contains(quality), "JPEG quality is 1...100")
    precondition((0...65535).contains(restartInterval), "the restart interval is a 16-bit count of MCUs")
    self.quality = quality; self.subsampling = subsampling; self.restartInterval = restartInterval
  }

  /// T.81 K.1, row-major.
  static let luminanceQuant: [Int] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
  ]
  static let chrominanceQuant: [Int] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
  ] + [Int](repeating: 99, count: 32)

  /// The IJG scaling: quality 50 is the annex table, 100 is all ones.
  func scaled(_ table: [Int]) -> [Int] {
    let scale = quality < 50 ? 5000 / quality : 200 - 2 * quality
    return table.map { min(255, max(1, ($0 * scale + 50) / 100)) }
  }

  /// Encodes `pixels` (`height × width × channels`, channels 3 = RGB or 1 = gray).
  public func encode(_ pixels: [UInt8], width: Int, height: Int, channels: Int) -> [UInt8] {
    precondition(channels == 1 || channels == 3, "channels must be 1 or 3")
    precondition(width > 0 && height > 0 && width < 65536 && height < 65536 && pixels.count == width * height * channels)
    let planes = channels == 1 ? [pixels] : Self.toYCbCr(pixels, count: width * height)
    let hMax = channels == 3 && subsampling == .half ? 2 : 1
    let quant = [scaled(Self.luminanceQuant), scaled(Self.chrominanceQuant)]
    let mcusWide = (width + 8 * hMax - 1) / (8 * hMax), mcusHigh = (height + 8 * hMax - 1) / (8 * hMax)

    // Quantized blocks in scan order, per component.
    var components: [[Int32]] = []
    for (i, plane) in planes.enumerated() {
      let factor = i == 0 ? hMax : 1
      let down = i == 0 || hMax == 1 ? plane : Self.downsample(plane, width: width, height: height)
      let w = i == 0 || hMax == 1 ? width : (width + 1) / 2, h = i == 0 || hMax == 1 ? height : (height + 1) / 2
      var blocks = [Int32]()
      blocks.reserveCapacity(mcusWide * mcusHigh * factor * factor * 64)
      for my in 0..<mcusHigh {
        for mx in 0..<mcusWide {
          for by in 0..<factor {
            for bx in 0..<factor {
              blocks += Self.quantizedBlock(down, width: w, height: h, x0: (mx * factor + bx) * 8, y0: (my * factor + by) * 8,
                                            quant: quant[i == 0 ? 0 : 1])
            }
          }
        }
      }
      components.append(blocks)
    }
    let blocksPerMCU = components.indices.map { $0 == 0 ? hMax * hMax : 1 }

    // First pass: count symbols for each table (0 luminance, 1 chrominance).
    var dcCounts = [[Int]](repeating: [Int](repeating: 0, count: 257), count: 2)
    var acCounts = dcCounts
    walk(components, blocksPerMCU: blocksPerMCU, mcus: mcusWide * mcusHigh) { table, _, symbol, _ in
      dcCounts[table][symbol] += 1
    } ac: { table, symbol, _, _ in
      acCounts[table][symbol] += 1
    } restart: { _ in }
    let tableCount = channels == 3 ? 2 : 1
    let dcCodes = (0..<tableCount).map { HuffmanCode(counts: dcCounts[$0]) }
    let acCodes = (0..<tableCount).map { HuffmanCode(counts: acCounts[$0]) }

    var out = JPEGWriter()
    out.marker(0xD8)
    out.segment(0xE0, [0x4A, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0])  // JFIF 1.01, aspect 1:1
    for t in 0..<tableCount {
      out.segment(0xDB, [UInt8(t)] + naturalOrder.map { UInt8(quant[t][$0]) })
    }
    var frame: [UInt8] = [8, UInt8(height >> 8), UInt8(height & 255), UInt8(width >> 8), UInt8(width & 255), UInt8(channels)]
    for i in 0..<channels {
      frame += [UInt8(i + 1), i == 0 ? UInt8(hMax << 4 | hMax) : 0x11, i == 0 ? 0 : 1]
    }
    out.segment(0xC0, frame)
    for t in 0..<tableCount {
      out.segment(0xC4, [UInt8(t)] + dcCodes[t].bits + dcCodes[t].values)
      out.segment(0xC4, [UInt8(0x10 | t)] + acCodes[t].bits + acCodes[t].values)
    }
    if restartInterval > 0 { out.segment(0xDD, [UInt8(restartInterval >> 8), UInt8(restartInterval & 255)]) }
    var scan: [UInt8] = [UInt8(channels)]
    for i in 0..<channels { scan += [UInt8(i + 1), i == 0 ? 0x00 : 0x11] }
    out.segment(0xDA, scan + [0, 63, 0])

    // Second pass: emit.
    walk(components, blocksPerMCU: blocksPerMCU, mcus: mcusWide * mcusHigh) { table, value, symbol, _ in
      out.bits(dcCodes[table].codes[symbol], dcCodes[table].lengths[symbol])
      if symbol > 0 { out.bits(Self.magnitudeBits(value, symbol), symbol) }
    } ac: { table, symbol, value, size in
      out.bits(acCodes[table].codes[symbol], acCodes[table].lengths[symbol])
      if size > 0 { out.bits(Self.magnitudeBits(value, size), size) }
    } restart: { n in
      out.flushBits()
      out.marker(0xD0 + UInt8(n & 7))
    }
    out.flushBits()
    out.marker(0xD9)
    return out.bytes
  }

  /// Visits every coded symbol in order: DC differences, AC run/size pairs and restart points.
  private func walk(_ components: [[Int32]], blocksPerMCU: [Int], mcus: Int,
                    dc: (_ table: Int, _ value: Int, _ size: Int, _ unused: Int) -> Void,
                    ac: (_ table: Int, _ symbol: Int, _ value: Int, _ size: Int) -> Void,
                    restart: (Int) -> Void) {
    var predictors = [Int](repeating: 0, count: components.count)
    var restarts = 0
    for mcu in 0..<mcus {
      if restartInterval > 0 && mcu > 0 && mcu % restartInterval == 0 {
        restart(restarts); restarts += 1
        for i in predictors.indices { predictors[i] = 0 }
      }
      for (i, blocks) in components.enumerated() {
        let table = i == 0 ? 0 : 1
        for b in 0..<blocksPerMCU[i] {
          let base = (mcu * blocksPerMCU[i] + b) * 64
          let value = Int(blocks[base]) - predictors[i]
          predictors[i] = Int(blocks[base])
          dc(table, value, Self.size(value), 0)
          var run = 0
          for k in 1..<64 {
            let coefficient = Int(blocks[base + naturalOrder[k]])
            if coefficient == 0 { run += 1; continue }
            while run > 15 { ac(table, 0xF0, 0, 0); run -= 16 }
            let size = Self.size(coefficient)
            ac(table, run << 4 | size, coefficient, size)
            run = 0
          }
          if run > 0 { ac(table, 0x00, 0, 0) }
        }
      }
    }
  }

  /// Bits needed for |value| (the JPEG "category").
  static func size(_ value: Int) -> Int {
    var magnitude = abs(value), bits = 0
    while magnitude > 0 { bits += 1; magnitude >>= 1 }
    return bits
  }

  /// The low `size` bits of the value, ones-complemented when negative (T.81 F.1.2.1).
  static func magnitudeBits(_ value: Int, _ size: Int) -> Int {
    (value < 0 ? value - 1 : value) & ((1 << size) - 1)
  }

  /// JFIF YCbCr (CCIR 601 with full range), rounded.
  static func toYCbCr(_ rgb: [UInt8], count: Int) -> [[UInt8]] {
    var y = [UInt8](repeating: 0, count: count), cb = y, cr = y
    for i in 0..<count {
      let r = Double(rgb[3 * i]), g = Double(rgb[3 * i + 1]), b = Double(rgb[3 * i + 2])
      y[i] = UInt8(clamping: Int((0.299 * r + 0.587 * g + 0.114 * b).rounded()))
      cb[i] = UInt8(clamping: Int((-0.168736 * r - 0.331264 * g + 0.5 * b + 128).rounded()))
      cr[i] = UInt8(clamping: Int((0.5 * r - 0.418688 * g - 0.081312 * b + 128).rounded()))
    }
    return [y, cb, cr]
  }

  /// 2×2 box average, the last row and column repeated at odd sizes.
  static func downsample(_ plane: [UInt8], width: Int, height: Int) -> [UInt8] {
    let w = (width + 1) / 2, h = (height + 1) / 2
    var out = [UInt8](repeating: 0, count: w * h)
    for y in 0..<h {
      for x in 0..<w {
        let x0 = 2 * x, y0 = 2 * y, x1 = min(x0 + 1, width - 1), y1 = min(y0 + 1, height - 1)
        let sum = Int(plane[y0 * width + x0]) + Int(plane[y0 * width + x1]) + Int(plane[y1 * width + x0]) + Int(plane[y1 * width + x1])
        out[y * w + x] = UInt8((sum + 2) / 4)
      }
    }
    return out
  }

  static let cosines: [Double] = (0..<64).map { i in
    let u = i / 8, x = i % 8
    return cos(Double(2 * x + 1) * Double(u) * .pi / 16) * (u == 0 ? 1 / 2.0.squareRoot() : 1) / 2
  }

  /// The forward DCT (T.81 A.3.3) of the 8×8 block at (x0, y0), edge samples repeated past the
  /// plane, divided by `quant` and rounded; row-major.
  static func quantizedBlock(_ plane: [UInt8], width: Int, height: Int, x0: Int, y0: Int, quant: [Int]) -> [Int32] {
    var samples = [Double](repeating: 0, count: 64)
    for y in 0..<8 {
      let row = min(y0 + y, height - 1) * width
      for x in 0..<8 { samples[y * 8 + x] = Double(plane[row + min(x0 + x, width - 1)]) - 128 }
    }
    var rows = [Double](repeating: 0, count: 64)
    for y in 0..<8 {
      for u in 0..<8 {
        var s = 0.0
        for x in 0..<8 { s += samples[y * 8 + x] * cosines[u * 8 + x] }
        rows[y * 8 + u] = s
      }
    }
    var out = [Int32](repeating: 0, count: 64)
    for v in 0..<8 {
      for u in 0..<8 {
        var s = 0.0
        for y in 0..<8 { s += rows[y * 8 + u] * cosines[v * 8 + y] }
        out[v * 8 + u] = Int32((s / Double(quant[v * 8 + u])).rounded())
      }
    }
    return out
  }
}

/// A Huffman code built from symbol counts (T.81 K.2): code lengths by repeatedly merging the two
/// rarest, limited to 16 bits, with one reserved symbol so that no code is all ones.
struct HuffmanCode {
  /// Codes per length 1...16, and symbols in code order: the DHT segment's body.
  var bits: [UInt8]
  var values: [UInt8]
  var codes = [Int](repeating: 0, count: 256)
  var lengths = [Int](repeating: 0, count: 256)

  init(counts inputCounts: [Int]) {
    var freq = inputCounts + [Int](repeating: 0, count: 257 - inputCounts.count)
    freq[256] = 1
    var size = [Int](repeating: 0, count: 257)
    var others = [Int](repeating: -1, count: 257)
    while true {
      // The rarest two symbols still in play; ties go to the larger index.
      var v1 = -1, v2 = -1
      for i in 0..<257 where freq[i] > 0 && (v1 < 0 || freq[i] <= freq[v1]) { v1 = i }
      for i in 0..<257 where freq[i] > 0 && i != v1 && (v2 < 0 || freq[i] <= freq[v2]) { v2 = i }
      if v2 < 0 { break }
      freq[v1] += freq[v2]; freq[v2] = 0
      size[v1] += 1
      var i = v1
      while others[i] >= 0 { i = others[i]; size[i] += 1 }
      others[i] = v2
      size[v2] += 1
      i = v2
      while others[i] >= 0 { i = others[i]; size[i] += 1 }
    }
    // 257 symbols can make codes up to 256 bits long before the limiting step.
    var count = [Int](repeating: 0, count: 258)
    for i in 0..<257 where size[i] > 0 { count[size[i]] += 1 }
    // Shorten codes longer than 16 bits (T.81 figure K.3).
    var i = 257
    while i > 16 {
      while count[i] > 0 {
        var j = i - 2
        while count[j] == 0 { j -= 1 }
        count[i] -= 2; count[i - 1] += 1; count[j + 1] += 2; count[j] -= 1
      }
      i -= 1
    }
    // Drop the reserved symbol's code, one of the longest.
    i = 16
    while count[i] == 0 { i -= 1 }
    count[i] -= 1
    bits = (1...16).map { UInt8(count[$0]) }
    var ordered: [UInt8] = []
    for length in 1...257 {
      for symbol in 0..<256 where size[symbol] == length { ordered.append(UInt8(symbol)) }
    }
    values = ordered
    // Canonical codes in that order.
    var code = 0, k = 0
    for length in 1...16 {
      for _ in 0..<count[length] {
        codes[Int(values[k])] = code; lengths[Int(values[k])] = length
        code += 1; k += 1
      }
      code <<= 1
    }
  }
}

/// Bytes and entropy-coded bits, with 0xFF stuffing and 1-bit padding.
struct JPEGWriter {
  var bytes: [UInt8] = []
  var accumulator = 0
  var pending = 0

  mutating func marker(_ code: UInt8) { bytes += [0xFF, code] }

  mutating func segment(_ code: UInt8, _ body: [UInt8]) {
    marker(code)
    bytes += [UInt8((body.count + 2) >> 8), UInt8((body.count + 2) & 255)] + body
  }

  mutating func bits(_ value: Int, _ count: Int) {
    accumulator = (accumulator << count) | (value & ((1 << count) - 1))
    pending += count
    while pending >= 8 {
      let byte = UInt8((accumulator >> (pending - 8)) & 255)
      bytes.append(byte)
      if byte == 0xFF { bytes.append(0) }
      pending -= 8
    }
    accumulator &= (1 << pending) - 1
  }

  mutating func flushBits() {
    if pending > 0 { bits((1 << (8 - pending)) - 1, 8 - pending) }
  }
}
