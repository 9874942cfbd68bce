import Checksums

/// Why a PNG could not be decoded; each case says what was found and where.
public enum PNGError: Error, CustomStringConvertible, Equatable, Sendable {
  case truncated(String)
  case corrupt(String)
  case unsupported(String)
  case tooLarge(width: Int, height: Int, limit: Int)

  public var description: String {
    switch self {
    case let .truncated(what): "truncated PNG: \(what)"
    case let .corrupt(what): "corrupt PNG: \(what)"
    case let .unsupported(what): "unsupported PNG: \(what)"
    case let .tooLarge(width, height, limit): "PNG of \(width)x\(height) pixels exceeds the decoder's limit of \(limit) pixels"
    }
  }
}

/// Decoded PNG pixels as 8-bit RGB, row-major.
public struct PNGImage: Sendable, Equatable {
  public let width: Int, height: Int
  public var pixels: [UInt8]
}

/// A PNG decoder (ISO/IEC 15948) to RGB as TensorFlow's `decode_png(channels: 3)` gives it:
/// every colour type and bit depth, Adam7 interlacing; grey replicated, palettes expanded, alpha
/// and transparency dropped, 16-bit samples cut to their high byte (libpng's strip_16), no gamma.
/// `imagenet_to_gcs.py` decodes its one PNG this way before re-encoding it as a JPEG.
public enum PNG {
  public static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

  public static func isPNG(_ bytes: [UInt8]) -> Bool { bytes.starts(with: signature) }

  struct Header {
    let width: Int, height: Int, bitDepth: Int, colourType: Int, interlaced: Bool
    /// Samples per pixel.
    var channels: Int { [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][colourType]! }
    /// Bytes of one row of `width` pixels, without the filter byte.
    func rowBytes(_ width: Int) -> Int { (width * channels * bitDepth + 7) / 8 }
    /// The filters' byte distance to the corresponding byte of the pixel on the left (at least 1).
    var filterStride: Int { max(1, channels * bitDepth / 8) }
  }

  public static func decode(_ bytes: [UInt8], pixelLimit: Int = 1 << 27) throws(PNGError) -> PNGImage {
    guard isPNG(bytes) else { throw .corrupt("does not start with the PNG signature") }
    var position = 8
    var header: Header?
    var palette: [UInt8] = []
    var data: [UInt8] = []
    var ended = false
    while !ended {
      guard position + 12 <= bytes.count else { throw .truncated("the data ends at offset \(bytes.count) before IEND") }
      let length = Int(bytes[position]) << 24 | Int(bytes[position + 1]) << 16 | Int(bytes[position + 2]) << 8 | Int(bytes[position + 3])
      let typeBytes = bytes[(position + 4)..<(position + 8)]
      let type = String(decoding: typeBytes, as: UTF8.self)
      guard length < 1 << 31, position + 12 + length <= bytes.count else {
        throw .truncated("chunk \(type) at offset \(position) needs \(length) bytes, \(bytes.count - position - 12) left")
      }
      let body = bytes[(position + 8)..<(position + 8 + length)]
      let crcAt = position + 8 + length
      let stored = UInt32(bytes[crcAt]) << 24 | UInt32(bytes[crcAt + 1]) << 16 | UInt32(bytes[crcAt + 2]) << 8 | UInt32(bytes[crcAt + 3])
      let actual = bytes[(position + 4)..<crcAt].withUnsafeBytes { CRC32.update(0, $0) }
      let critical = typeBytes.first! & 0x20 == 0
      // As libpng: a damaged critical chunk is an error, a damaged ancillary one is skipped.
      if stored != actual {
        if critical { throw .corrupt("chunk \(type) at offset \(position) fails its CRC") }
        position = crcAt + 4
        continue
      }
      if header == nil && type != "IHDR" { throw .corrupt("first chunk is \(type), not IHDR") }
      switch type {
      case "IHDR":
        guard header == nil else { throw .corrupt("second IHDR at offset \(position)") }
        header = try readHeader(Array(body), pixelLimit: pixelLimit)
      case "PLTE":
        guard length % 3 == 0, length > 0, length <= 768 else { throw .corrupt("palette of \(length) bytes") }
        palette = Array(body)
      case "IDAT": data += body
      case "IEND": ended = true
      default:
        if critical { throw .unsupported("critical chunk \(type)") }
      }
      position = crcAt + 4
    }
    let h = header!
    if h.colourType == 3 && palette.isEmpty { throw .corrupt("palette image without a PLTE chunk") }
    guard !data.isEmpty else { throw .corrupt("no IDAT chunk") }
    let passes = h.interlaced ? adam7 : [(0, 0, 1, 1)]
    var expected = 0
    for (x0, y0, dx, dy) in passes {
      let w = (h.width - x0 + dx - 1) / dx, rows = (h.height - y0 + dy - 1) / dy
      if w > 0 && rows > 0 { expected += rows * (1 + h.rowBytes(w)) }
    }
    let raw = try Inflate.zlib(data, expectedCount: expected)
    var pixels = [UInt8](repeating: 0, count: h.width * h.height * 3)
    var offset = 0
    for (x0, y0, dx, dy) in passes {
      let w = (h.width - x0 + dx - 1) / dx, rows = (h.height - y0 + dy - 1) / dy
      guard w > 0 && rows > 0 else { continue }
      let rowBytes = h.rowBytes(w)
      var previous = [UInt8](repeating: 0, count: rowBytes), row = previous
      for r in 0..<rows {
        let filter = Int(raw[offset])
        for i in 0..<rowBytes { row[i] = raw[offset + 1 + i] }
        offset += 1 + rowBytes
        try unfilter(&row, previous: previous, filter: filter, stride: h.filterStride, at: "row \(r)")
        try store(row, header: h, palette: palette, y: y0 + r * dy, x0: x0, dx: dx, count: w, into: &pixels)
        swap(&row, &previous)
      }
    }
    return PNGImage(width: h.width, height: h.height, pixels: pixels)
  }

  /// The seven passes of Adam7: first column and row, column and row step.
  static let adam7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]

  static func readHeader(_ b: [UInt8], pixelLimit: Int) throws(PNGError) -> Header {
    guard b.count == 13 else { throw .corrupt("IHDR of \(b.count) bytes") }
    func word(_ i: Int) -> Int { Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3]) }
    let width = word(0), height = word(4), depth = Int(b[8]), type = Int(b[9])
    guard width > 0, height > 0 else { throw .corrupt("size \(width)x\(height)") }
    guard width <= pixelLimit / height else { throw .tooLarge(width: width, height: height, limit: pixelLimit) }
    let depths: [Int: [Int]] = [0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16]]
    guard let allowed = depths[type] else { throw .corrupt("colour type \(type)") }
    guard allowed.contains(depth) else { throw .corrupt("bit depth \(depth) for colour type \(type)") }
    guard b[10] == 0, b[11] == 0 else { throw .unsupported("compression method \(b[10]), filter method \(b[11])") }
    guard b[12] <= 1 else { throw .corrupt("interlace method \(b[12])") }
    return Header(width: width, height: height, bitDepth: depth, colourType: type, interlaced: b[12] == 1)
  }

  /// Undoes a row's filter in place (PNG 9.2), `previous` being the unfiltered row above (zeros
  /// for a pass's first row).
  static func unfilter(_ row: inout [UInt8], previous: [UInt8], filter: Int, stride: Int, at: String) throws(PNGError) {
    let n = row.count
    switch filter {
    case 0: break
    case 1: for i in stride..<max(stride, n) { row[i] &+= row[i - stride] }
    case 2: for i in 0..<n { row[i] &+= previous[i] }
    case 3:
      for i in 0..<n {
        let left = i >= stride ? Int(row[i - stride]) : 0
        row[i] &+= UInt8((left + Int(previous[i])) / 2)
      }
    case 4:
      for i in 0..<n {
        let a = i >= stride ? Int(row[i - stride]) : 0, b = Int(previous[i]), c = i >= stride ? Int(previous[i - stride]) : 0
        let p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
        row[i] &+= UInt8(pa <= pb && pa <= pc ? a : pb <= pc ? b : c)
      }
    default: throw .corrupt("filter type \(filter) in \(at)")
    }
  }

  /// One unfiltered row's pixels into the RGB image at columns x0, x0 + dx, …
  static func store(_ row: [UInt8], header h: Header, palette: [UInt8], y: Int, x0: Int, dx: Int, count: Int,
                    into pixels: inout [UInt8]) throws(PNGError) {
    let depth = h.bitDepth, bytesPerSample = depth == 16 ? 2 : 1
    // Sample j of the row as 8 bits: the high byte at 16 bits, the value itself below 8 (an index
    // stays an index), scaled to 0–255 for grey.
    func sample(_ j: Int) -> Int {
      if depth >= 8 { return Int(row[j * bytesPerSample]) }
      let bit = j * depth
      return Int(row[bit / 8] >> (8 - depth - bit % 8)) & ((1 << depth) - 1)
    }
    let greyScale = depth < 8 ? 255 / ((1 << depth) - 1) : 1
    for i in 0..<count {
      let o = (y * h.width + x0 + i * dx) * 3
      switch h.colourType {
      case 0, 4:
        let g = UInt8(sample(i * h.channels) * greyScale)
        pixels[o] = g; pixels[o + 1] = g; pixels[o + 2] = g
      case 3:
        let index = sample(i)
        guard index * 3 + 2 < palette.count else { throw .corrupt("palette index \(index) of \(palette.count / 3) entries in row \(y)") }
        pixels[o] = palette[index * 3]; pixels[o + 1] = palette[index * 3 + 1]; pixels[o + 2] = palette[index * 3 + 2]
      default:
        let s = i * h.channels
        pixels[o] = UInt8(sample(s)); pixels[o + 1] = UInt8(sample(s + 1)); pixels[o + 2] = UInt8(sample(s + 2))
      }
    }
  }
}
