import Checksums

/// zlib (RFC 1950) around DEFLATE (RFC 1951): what a PNG's IDAT chunks hold. Written for
/// correctness and bounded work on hostile input rather than speed: PNGs are rare in the data
/// this project reads (ImageNet has one, named .JPEG).
public enum Inflate {
  /// Decompresses a zlib stream whose output must be exactly `expectedCount` bytes (a PNG knows
  /// its size from the header), checking the Adler-32 trailer.
  public static func zlib(_ bytes: [UInt8], expectedCount: Int) throws(PNGError) -> [UInt8] {
    guard bytes.count >= 6 else { throw .truncated("zlib stream of \(bytes.count) bytes") }
    let cmf = Int(bytes[0]), flags = Int(bytes[1])
    guard cmf & 15 == 8, cmf >> 4 <= 7, (cmf << 8 | flags) % 31 == 0 else {
      throw .corrupt("not a zlib deflate stream (header \(cmf), \(flags))")
    }
    guard flags & 0x20 == 0 else { throw .corrupt("zlib stream wants a preset dictionary") }
    var reader = BitReader(bytes: bytes, position: 2)
    let out = try inflate(&reader, limit: expectedCount)
    guard out.count == expectedCount else {
      throw .truncated("image data decompresses to \(out.count) bytes, the header needs \(expectedCount)")
    }
    reader.alignToByte()
    let p = reader.position
    guard p + 4 <= bytes.count else { throw .truncated("zlib stream ends before its Adler-32 check") }
    let stored = UInt32(bytes[p]) << 24 | UInt32(bytes[p + 1]) << 16 | UInt32(bytes[p + 2]) << 8 | UInt32(bytes[p + 3])
    let actual = out.withUnsafeBytes { Adler32.update(1, $0) }
    guard stored == actual else { throw .corrupt("image data fails its Adler-32 check") }
    return out
  }

  /// Raw DEFLATE blocks until the final one; more than `limit` bytes of output is an error.
  static func inflate(_ reader: inout BitReader, limit: Int) throws(PNGError) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(limit)
    var final = false
    while !final {
      final = try reader.bits(1) == 1
      switch try reader.bits(2) {
      case 0:
        reader.alignToByte()
        let length = try reader.bits(16), complement = try reader.bits(16)
        guard length ^ complement == 0xFFFF else { throw .corrupt("stored block length \(length) does not match its complement") }
        guard out.count + length <= limit else { throw .corrupt("image data decompresses to more than the header's \(limit) bytes") }
        out.append(contentsOf: try reader.bytes(length))
      case 1:
        try inflateBlock(&reader, &out, limit: limit, literals: HuffmanCode.fixedLiterals, distances: HuffmanCode.fixedDistances)
      case 2:
        let (literals, distances) = try readDynamicCodes(&reader)
        try inflateBlock(&reader, &out, limit: limit, literals: literals, distances: distances)
      default:
        throw .corrupt("deflate block of the reserved type 3")
      }
    }
    return out
  }

  static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
  static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
  static let distanceBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
                             2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
  static let distanceExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

  static func inflateBlock(_ reader: inout BitReader, _ out: inout [UInt8], limit: Int,
                           literals: HuffmanCode, distances: HuffmanCode) throws(PNGError) {
    while true {
      let symbol = try literals.decode(&reader)
      if symbol < 256 {
        guard out.count < limit else { throw .corrupt("image data decompresses to more than the header's \(limit) bytes") }
        out.append(UInt8(symbol))
        continue
      }
      if symbol == 256 { return }
      let l = symbol - 257
      guard l < lengthBase.count else { throw .corrupt("deflate length code \(symbol)") }
      let length = lengthBase[l] + (try reader.bits(lengthExtra[l]))
      let d = try distances.decode(&reader)
      guard d < distanceBase.count else { throw .corrupt("deflate distance code \(d)") }
      let distance = distanceBase[d] + (try reader.bits(distanceExtra[d]))
      guard distance <= out.count else { throw .corrupt("deflate distance \(distance) reaches before the start of the data") }
      guard out.count + length <= limit else { throw .corrupt("image data decompresses to more than the header's \(limit) bytes") }
      // Byte by byte: a copy may overlap what it writes (distance < length repeats a pattern).
      let start = out.count - distance
      for i in 0..<length { out.append(out[start + i]) }
    }
  }

  /// The order in which a dynamic block sends its code-length code's lengths (RFC 1951 3.2.7).
  static let codeLengthOrder = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

  static func readDynamicCodes(_ reader: inout BitReader) throws(PNGError) -> (HuffmanCode, HuffmanCode) {
    let literalCount = try reader.bits(5) + 257, distanceCount = try reader.bits(5) + 1, lengthCount = try reader.bits(4) + 4
    guard literalCount <= 286, distanceCount <= 30 else { throw .corrupt("deflate block with \(literalCount) literal and \(distanceCount) distance codes") }
    var codeLengths = [Int](repeating: 0, count: 19)
    for i in 0..<lengthCount { codeLengths[codeLengthOrder[i]] = try reader.bits(3) }
    let lengthCode = try HuffmanCode(lengths: codeLengths)
    var lengths: [Int] = []
    lengths.reserveCapacity(literalCount + distanceCount)
    while lengths.count < literalCount + distanceCount {
      let symbol = try lengthCode.decode(&reader)
      switch symbol {
      case 0...15: lengths.append(symbol)
      case 16:
        guard let previous = lengths.last else { throw .corrupt("deflate code lengths repeat before the first") }
        lengths += repeatElement(previous, count: 3 + (try reader.bits(2)))
      case 17: lengths += repeatElement(0, count: 3 + (try reader.bits(3)))
      default: lengths += repeatElement(0, count: 11 + (try reader.bits(7)))
      }
    }
    guard lengths.count == literalCount + distanceCount else { throw .corrupt("deflate code lengths run past their count") }
    guard lengths[256] > 0 else { throw .corrupt("deflate block without an end-of-block code") }
    return (try HuffmanCode(lengths: Array(lengths[..<literalCount])), try HuffmanCode(lengths: Array(lengths[literalCount...])))
  }
}

/// A canonical Huffman code (RFC 1951 3.2.2) from its code lengths, decoded by walking the
/// lengths: at each length the codes of that length form one contiguous range.
struct HuffmanCode {
  /// Codes of each length 0...15.
  var counts = [Int](repeating: 0, count: 16)
  /// Symbols in code order.
  var symbols: [Int] = []

  init(lengths: [Int]) throws(PNGError) {
    for l in lengths { counts[l] += 1 }
    counts[0] = 0
    // More codes of a length than the lengths above leave room for is not a prefix code.
    var room = 1
    for l in 1...15 {
      room = room * 2 - counts[l]
      guard room >= 0 else { throw .corrupt("deflate code lengths over-subscribe the code") }
    }
    for l in 1...15 { for (symbol, length) in lengths.enumerated() where length == l { symbols.append(symbol) } }
  }

  func decode(_ reader: inout BitReader) throws(PNGError) -> Int {
    var code = 0, first = 0, index = 0
    for l in 1...15 {
      code |= try reader.bits(1)
      let n = counts[l]
      if code - first < n { return symbols[index + code - first] }
      index += n; first = (first + n) << 1; code <<= 1
    }
    throw .corrupt("invalid deflate code")
  }

  static let fixedLiterals = try! HuffmanCode(lengths: (0..<288).map { $0 < 144 ? 8 : $0 < 256 ? 9 : $0 < 280 ? 7 : 8 })
  static let fixedDistances = try! HuffmanCode(lengths: [Int](repeating: 5, count: 30))
}

/// Bits least significant first, as DEFLATE packs them.
struct BitReader {
  let bytes: [UInt8]
  var position: Int
  var buffer = 0, count = 0

  init(bytes: [UInt8], position: Int) { self.bytes = bytes; self.position = position }

  mutating func bits(_ n: Int) throws(PNGError) -> Int {
    while count < n {
      guard position < bytes.count else { throw .truncated("image data ends inside a deflate block") }
      buffer |= Int(bytes[position]) << count
      position += 1; count += 8
    }
    let value = buffer & ((1 << n) - 1)
    buffer >>= n; count -= n
    return value
  }

  mutating func alignToByte() {
    // Whole bytes still buffered go back to the stream.
    position -= count / 8
    buffer = 0; count = 0
  }

  mutating func bytes(_ n: Int) throws(PNGError) -> ArraySlice<UInt8> {
    guard position + n <= bytes.count else { throw .truncated("stored deflate block runs past the data") }
    defer { position += n }
    return bytes[position..<(position + n)]
  }
}
