#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Decoded pixels, row-major and interleaved: RGB when `channels` is 3, luminance when it is 1.
public struct JPEGImage: Sendable, Equatable {
  public let width: Int
  public let height: Int
  public let channels: Int
  public var pixels: [UInt8]

  public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
    self.width = width; self.height = height; self.channels = channels; self.pixels = pixels
  }
}

/// Which inverse DCT the full-size decode uses — TensorFlow's `dct_method`.
public enum DCTMethod: String, Sendable {
  /// libjpeg's `JDCT_ISLOW` (`INTEGER_ACCURATE`): Pillow's and this decoder's default.
  case accurate
  /// libjpeg's `JDCT_IFAST`: TensorFlow's default, and so the reference's pixels.
  case fast
}

/// What the frame header says, without decoding the image.
public struct JPEGInfo: Sendable, Equatable {
  public let width: Int
  public let height: Int
  public let components: Int
  public let progressive: Bool
  /// Lossless (SOF3): decoded here and by libjpeg-turbo 3, refused by TensorFlow 2.21.
  public let lossless: Bool
}

/// A baseline, extended, progressive and lossless JPEG decoder, Huffman or arithmetic-coded (ITU T.81; lossless Huffman only, as libjpeg-turbo),
/// that reproduces libjpeg-turbo's output with `JDCT_ISLOW` and fancy upsampling — TensorFlow's `dct_method='INTEGER_ACCURATE'`
/// and Pillow's default — bit for bit on the fixtures.
///
/// Coefficients of every scan are kept per component; after the last scan each block goes through
/// the accurate integer IDCT into a component plane, and the planes are upsampled and converted to
/// RGB row by row.
public enum JPEG {
  /// Images above this many pixels are refused before anything is allocated for them.
  public static let defaultPixelLimit = 1 << 27
  /// Scans allowed in one image (libjpeg-turbo's TurboJPEG API offers the same guard, off by default).
  public static let maxScans = 1000

  /// Decodes `bytes` to RGB (`channels: 3`, grayscale replicated) or luminance (`channels: 1`).
  /// `scale` 2, 4 or 8 decodes at 1/2, 1/4 or 1/8 of the size in the DCT domain (each side rounded
  /// up), much faster than decoding and then shrinking — TensorFlow's `decode_jpeg(ratio:)`.
  public static func decode(_ bytes: UnsafeRawBufferPointer, channels: Int = 3, scale: Int = 1, dct: DCTMethod = .accurate,
                            pixelLimit: Int = defaultPixelLimit) throws(JPEGError) -> JPEGImage {
    precondition(channels == 1 || channels == 3, "channels must be 1 or 3")
    precondition([1, 2, 4, 8].contains(scale), "scale must be 1, 2, 4 or 8")
    guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count > 0 else {
      throw .truncated("no bytes")
    }
    var decoder = Decoder(base: base, count: bytes.count, pixelLimit: pixelLimit)
    try decoder.run(stopAfterFrameHeader: false)
    return try decoder.output(channels: channels, scale: scale, dct: dct)
  }

  public static func decode(_ bytes: [UInt8], channels: Int = 3, scale: Int = 1, dct: DCTMethod = .accurate,
                            pixelLimit: Int = defaultPixelLimit) throws(JPEGError) -> JPEGImage {
    let result: Result<JPEGImage, JPEGError> = bytes.withUnsafeBytes { raw in
      Result { () throws(JPEGError) in try decode(raw, channels: channels, scale: scale, dct: dct, pixelLimit: pixelLimit) }
    }
    return try result.get()
  }

  /// The frame header's size and component count.
  public static func info(_ bytes: UnsafeRawBufferPointer) throws(JPEGError) -> JPEGInfo {
    guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count > 0 else {
      throw .truncated("no bytes")
    }
    var decoder = Decoder(base: base, count: bytes.count, pixelLimit: Int.max)
    try decoder.run(stopAfterFrameHeader: true)
    guard let frame = decoder.frame else { throw .corrupt("no frame header") }
    return JPEGInfo(width: frame.width, height: frame.height, components: frame.components.count,
                    progressive: frame.progressive, lossless: frame.lossless)
  }

  public static func info(_ bytes: [UInt8]) throws(JPEGError) -> JPEGInfo {
    let result: Result<JPEGInfo, JPEGError> = bytes.withUnsafeBytes { raw in
      Result { () throws(JPEGError) in try info(raw) }
    }
    return try result.get()
  }
}

/// One colour component of the frame and its coefficient blocks (natural order, zero-filled
/// up to whole MCUs).
final class Component {
  let id: Int
  let h: Int, v: Int
  let quantTable: Int
  /// Samples the component really has (T.81 A.1.1), before the MCU padding.
  let width: Int, height: Int
  let blocksPerLine: Int, blocksPerColumn: Int
  private var storage: UnsafeMutablePointer<Int16>?
  /// A lossless frame's reconstructed samples (modulo 2^16, before the point transform).
  private var sampleStorage: UnsafeMutablePointer<UInt16>?
  var dcTable = 0, acTable = 0
  /// The point transform of the lossless scan that decoded this component.
  var pointTransform = 0

  init(id: Int, h: Int, v: Int, quantTable: Int, width: Int, height: Int, blocksPerLine: Int, blocksPerColumn: Int) {
    self.id = id; self.h = h; self.v = v; self.quantTable = quantTable
    self.width = width; self.height = height
    self.blocksPerLine = blocksPerLine; self.blocksPerColumn = blocksPerColumn
  }

  /// The coefficient blocks, allocated at the first scan (never for `JPEG.info`). calloc: a large
  /// image's zero pages cost nothing until a scan writes them, so a corrupt header that claims a
  /// huge frame fails on its data before it can use the memory.
  func coefficients() throws(JPEGError) -> UnsafeMutablePointer<Int16> {
    if let storage { return storage }
    let count = blocksPerLine * blocksPerColumn * 64
    guard let memory = calloc(count, 2) else {
      throw .outOfMemory(bytes: count * 2)
    }
    storage = memory.bindMemory(to: Int16.self, capacity: count)
    return storage!
  }

  /// A lossless component's samples, `width` × `height`, zero until a scan writes them.
  func losslessSamples() throws(JPEGError) -> UnsafeMutablePointer<UInt16> {
    if let sampleStorage { return sampleStorage }
    guard let memory = calloc(width * height, 2) else { throw .outOfMemory(bytes: width * height * 2) }
    sampleStorage = memory.bindMemory(to: UInt16.self, capacity: width * height)
    return sampleStorage!
  }

  deinit { free(storage); free(sampleStorage) }
}

struct Frame {
  let width: Int, height: Int
  let progressive: Bool
  /// Arithmetic (SOF9, SOF10) rather than Huffman coding.
  let arithmetic: Bool
  /// Lossless (SOF3): predicted samples, no DCT.
  let lossless: Bool
  /// Bits per sample (8: the one precision decoded; the lossless predictor's start depends on it).
  let precision: Int
  let components: [Component]
  let hMax: Int, vMax: Int
  let mcusPerLine: Int, mcusPerColumn: Int
}

/// Zigzag position → natural (row-major) position.
let naturalOrder: [Int] = [
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
  12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
  35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
  58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]

struct Decoder {
  let base: UnsafePointer<UInt8>
  let count: Int
  let pixelLimit: Int
  var position = 0
  /// Dequantization tables in natural order.
  var quantTables: [[Int32]?] = [nil, nil, nil, nil]
  var dcTables: [HuffmanTable?] = [nil, nil, nil, nil]
  var acTables: [HuffmanTable?] = [nil, nil, nil, nil]
  var frame: Frame?
  var arithmeticConditioning = ArithmeticConditioning()
  var restartInterval = 0
  var adobeTransform: Int?
  var sawJFIF = false
  var scans = 0

  init(base: UnsafePointer<UInt8>, count: Int, pixelLimit: Int) {
    self.base = base; self.count = count; self.pixelLimit = pixelLimit
  }

  func byte(_ at: Int) -> Int { Int(base[at]) }
  func word(_ at: Int) -> Int { Int(base[at]) << 8 | Int(base[at + 1]) }

  mutating func run(stopAfterFrameHeader: Bool) throws(JPEGError) {
    guard count >= 2, base[0] == 0xFF, base[1] == 0xD8 else { throw .corrupt("does not start with SOI (FF D8)") }
    position = 2
    while true {
      let marker = try nextMarker()
      switch marker {
      case 0xD9:
        guard frame != nil, scans > 0 else { throw .truncated("EOI before any scan") }
        return
      case 0xD0...0xD7, 0x01:
        continue   // stray restart marker or TEM: no segment
      default: break
      }
      guard position + 2 <= count else { throw .truncated("marker FF \(hex(marker)) at offset \(position - 2) without a length") }
      let length = word(position)
      guard length >= 2 else { throw .corrupt("segment FF \(hex(marker)) at offset \(position - 2) has length \(length)") }
      guard position + length <= count else {
        throw .truncated("segment FF \(hex(marker)) at offset \(position - 2) needs \(length) bytes, \(count - position) left")
      }
      let start = position + 2, end = position + length
      position = end
      switch marker {
      case 0xC0, 0xC1, 0xC2, 0xC9, 0xCA:
        guard frame == nil else { throw .corrupt("second frame header at offset \(start - 4)") }
        try readFrame(start, end, progressive: marker == 0xC2 || marker == 0xCA, arithmetic: marker >= 0xC9, lossless: false)
        if stopAfterFrameHeader { return }
      case 0xC3:
        guard frame == nil else { throw .corrupt("second frame header at offset \(start - 4)") }
        try readFrame(start, end, progressive: false, arithmetic: false, lossless: true)
        if stopAfterFrameHeader { return }
      case 0xC5...0xC7, 0xCB, 0xCD...0xCF:
        // As libjpeg-turbo: no hierarchical JPEG, and no arithmetic-coded lossless one.
        let kind = marker == 0xCB ? "lossless arithmetic-coded" : "differential (hierarchical)"
        throw .unsupported("\(kind) frame (SOF\(marker - 0xC0)), which libjpeg-turbo does not decode either; re-encode as a baseline or progressive JPEG")
      case 0xC4: try readHuffmanTables(start, end)
      case 0xCC: try readArithmeticConditioning(start, end)
      case 0xDB: try readQuantTables(start, end)
      case 0xDD:
        guard length == 4 else { throw .corrupt("DRI segment of length \(length)") }
        restartInterval = word(start)
      case 0xDA:
        guard frame != nil else { throw .corrupt("scan before the frame header") }
        // A progressive JPEG needs about ten scans; thousands can only be an attempt to make the
        // decoder pass over the image again and again.
        guard scans < JPEG.maxScans else { throw .unsupported("more than \(JPEG.maxScans) scans") }
        try readScan(start, end)
        scans += 1
      case 0xEE:
        // Adobe APP14: "Adobe", version, flags0, flags1, transform.
        if length >= 14, base[start] == 0x41, base[start + 1] == 0x64, base[start + 2] == 0x6F,
           base[start + 3] == 0x62, base[start + 4] == 0x65 {
          adobeTransform = byte(start + 11)
        }
      case 0xE0:
        if length >= 16, base[start] == 0x4A, base[start + 1] == 0x46, base[start + 2] == 0x49,
           base[start + 3] == 0x46, base[start + 4] == 0 { sawJFIF = true }
      case 0xDC: continue   // DNL: the frame height was given; ignored as libjpeg does
      default: continue     // APPn, COM and anything else with a length: skipped
      }
    }
  }

  /// Skips to the next marker and returns its code; fill bytes (FF FF …) are allowed.
  /// Stuffed bytes (FF 00) left over from entropy-coded data are passed over.
  mutating func nextMarker() throws(JPEGError) -> Int {
    while position < count {
      if base[position] != 0xFF { position += 1; continue }
      while position < count && base[position] == 0xFF { position += 1 }
      if position < count && base[position] != 0 {
        position += 1
        return byte(position - 1)
      }
      position += 1
    }
    if frame != nil && scans > 0 { throw .truncated("no EOI marker after the last scan") }
    throw .truncated("the data ends at offset \(count) before the image")
  }

  mutating func readFrame(_ start: Int, _ end: Int, progressive: Bool, arithmetic: Bool, lossless: Bool) throws(JPEGError) {
    guard end - start >= 6 else { throw .corrupt("frame header too short") }
    let precision = byte(start)
    guard precision == 8 else { throw .unsupported("\(precision)-bit samples; only 8-bit JPEGs are decoded") }
    let height = word(start + 1), width = word(start + 3), n = byte(start + 5)
    guard width > 0 else { throw .corrupt("frame width is 0") }
    guard height > 0 else { throw .unsupported("frame height 0 (height given by a DNL marker)") }
    guard n == 1 || n == 3 || n == 4 else {
      throw .unsupported("\(n)-component JPEG; only grayscale, 3-component and CMYK/YCCK images are decoded")
    }
    guard end - start == 6 + 3 * n else { throw .corrupt("frame header length does not match \(n) components") }
    guard width * height <= pixelLimit else { throw .tooLarge(width: width, height: height, limit: pixelLimit) }
    var specs: [(id: Int, h: Int, v: Int, tq: Int)] = []
    for i in 0..<n {
      let o = start + 6 + 3 * i
      let h = byte(o + 1) >> 4, v = byte(o + 1) & 15, tq = byte(o + 2)
      guard (1...4).contains(h), (1...4).contains(v) else { throw .corrupt("component \(i) sampling factors \(h)x\(v)") }
      guard tq < 4 else { throw .corrupt("component \(i) quantization table \(tq)") }
      specs.append((byte(o), h, v, tq))
    }
    let hMax = specs.map(\.h).max()!, vMax = specs.map(\.v).max()!
    if lossless, hMax > 1 || vMax > 1 {
      throw .unsupported("lossless JPEG with subsampled components (\(specs.map { "\($0.h)x\($0.v)" }.joined(separator: ", ")))")
    }
    for s in specs where hMax % s.h != 0 || vMax % s.v != 0 {
      throw .unsupported("fractional sampling factors \(s.h)x\(s.v) of \(hMax)x\(vMax)")
    }
    let mcusPerLine = (width + 8 * hMax - 1) / (8 * hMax)
    let mcusPerColumn = (height + 8 * vMax - 1) / (8 * vMax)
    let components = specs.map { s in
      Component(id: s.id, h: s.h, v: s.v, quantTable: s.tq,
                width: (width * s.h + hMax - 1) / hMax, height: (height * s.v + vMax - 1) / vMax,
                blocksPerLine: mcusPerLine * s.h, blocksPerColumn: mcusPerColumn * s.v)
    }
    frame = Frame(width: width, height: height, progressive: progressive, arithmetic: arithmetic, lossless: lossless,
                  precision: precision, components: components,
                  hMax: hMax, vMax: vMax, mcusPerLine: mcusPerLine, mcusPerColumn: mcusPerColumn)
  }

  mutating func readQuantTables(_ start: Int, _ end: Int) throws(JPEGError) {
    var o = start
    while o < end {
      let precision = byte(o) >> 4, id = byte(o) & 15
      guard id < 4, precision <= 1 else { throw .corrupt("quantization table \(id) with precision \(precision)") }
      let size = precision == 0 ? 64 : 128
      guard o + 1 + size <= end else { throw .corrupt("quantization table \(id) runs past its segment") }
      var table = [Int32](repeating: 0, count: 64)
      for k in 0..<64 {
        table[naturalOrder[k]] = Int32(precision == 0 ? byte(o + 1 + k) : word(o + 1 + 2 * k))
      }
      quantTables[id] = table
      o += 1 + size
    }
  }

  mutating func readHuffmanTables(_ start: Int, _ end: Int) throws(JPEGError) {
    var o = start
    while o < end {
      guard o + 17 <= end else { throw .corrupt("Huffman table header runs past its segment") }
      let tableClass = byte(o) >> 4, id = byte(o) & 15
      guard tableClass <= 1, id < 4 else { throw .corrupt("Huffman table class \(tableClass) id \(id)") }
      let counts = (0..<16).map { byte(o + 1 + $0) }
      let total = counts.reduce(0, +)
      guard o + 17 + total <= end else { throw .corrupt("Huffman table \(id) runs past its segment") }
      let values = (0..<total).map { base[o + 17 + $0] }
      let table = try HuffmanTable(counts: counts, values: values)
      if tableClass == 0 { dcTables[id] = table } else { acTables[id] = table }
      o += 17 + total
    }
  }

  mutating func readScan(_ start: Int, _ end: Int) throws(JPEGError) {
    let frame = frame!
    let n = byte(start)
    guard (1...4).contains(n), end - start == 4 + 2 * n else { throw .corrupt("scan header for \(n) components") }
    var components: [Component] = []
    for i in 0..<n {
      let id = byte(start + 1 + 2 * i), tables = byte(start + 2 + 2 * i)
      guard let c = frame.components.first(where: { $0.id == id }) else {
        throw .corrupt("scan names component \(id), which the frame does not have")
      }
      guard !components.contains(where: { $0 === c }) else { throw .corrupt("scan names component \(id) twice") }
      c.dcTable = tables >> 4; c.acTable = tables & 15
      guard c.dcTable < 4, c.acTable < 4 else {
        throw .corrupt("scan selects \(frame.arithmetic ? "conditioning" : "Huffman") table \(tables)")
      }
      components.append(c)
    }
    let o = start + 1 + 2 * n
    let ss = byte(o), se = byte(o + 1), ah = byte(o + 2) >> 4, al = byte(o + 2) & 15
    let scan = Scan(components: components, ss: ss, se: se, ah: ah, al: al)
    if frame.lossless { return try decodeLosslessScan(scan, frame: frame) }
    if frame.progressive {
      guard ss <= se, se <= 63, al <= 13, ah <= 13 else { throw .corrupt("progressive scan Ss=\(ss) Se=\(se) Ah=\(ah) Al=\(al)") }
      guard (ss == 0) == (se == 0) else { throw .corrupt("progressive scan mixes DC and AC (Ss=\(ss) Se=\(se))") }
      guard ss == 0 || n == 1 else { throw .corrupt("progressive AC scan with \(n) components") }
    } else {
      guard ss == 0, se == 63 else {
        // libjpeg accepts and ignores other values in sequential scans; so do we.
        return try decodeScan(Scan(components: components, ss: 0, se: 63, ah: 0, al: 0), frame: frame)
      }
    }
    try decodeScan(scan, frame: frame)
  }

  mutating func decodeScan(_ scan: Scan, frame: Frame) throws(JPEGError) {
    if frame.arithmetic { try decodeArithmeticScan(scan, frame: frame) } else { try decodeHuffmanScan(scan, frame: frame) }
  }

  func quantTable(_ c: Component) throws(JPEGError) -> [Int32] {
    guard let table = quantTables[c.quantTable] else { throw .corrupt("component \(c.id) uses undefined quantization table \(c.quantTable)") }
    return table
  }
}

func hex(_ value: Int) -> String {
  let digits = Array("0123456789ABCDEF")
  return String([digits[(value >> 4) & 15], digits[value & 15]])
}
