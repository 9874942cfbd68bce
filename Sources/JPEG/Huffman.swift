/// A Huffman table from a DHT segment (ITU T.81 annex C), with an 11-bit lookahead so that most
/// symbols decode with one table read; longer codes walk the canonical per-length ranges.
final class HuffmanTable: @unchecked Sendable {
  static let lookaheadBits = 11
  /// No codes at all: every lookup misses and decoding reports an invalid code.
  static let empty = try! HuffmanTable(counts: [Int](repeating: 0, count: 16), values: [])
  /// For AC tables: `value << 16 | run << 8 | bits` when an 11-bit window holds a code *and* its
  /// magnitude bits (`bits` in all), so the common small coefficient takes one read;
  /// `endOfBlock | bits` for the end-of-block code; 0 otherwise. (For a DC table the same entries
  /// read as `difference << 16 | bits`.)
  let fastAC: UnsafeMutablePointer<Int32>
  static let endOfBlock: Int32 = 1 << 12
  /// `length << 8 | symbol` for codes of at most `lookaheadBits` bits, 0 where the code is longer.
  let lookup: UnsafeMutablePointer<UInt16>
  /// Largest code of each length 1...16 (−1 if none); index 17 is a sentinel above every code.
  let maxCode: UnsafeMutablePointer<Int32>
  /// Add to a code of length l to find its symbol's index.
  let valueOffset: UnsafeMutablePointer<Int32>
  let symbols: UnsafeMutablePointer<UInt8>
  /// The largest symbol the table codes (nil when it codes none).
  let largestSymbol: Int?

  /// `counts[l - 1]` codes of length l, then `values` in code order, as in the DHT segment.
  init(counts: [Int], values: [UInt8]) throws(JPEGError) {
    // Validate before allocating: a throwing initializer does not run deinit.
    guard counts.count == 16, values.count == counts.reduce(0, +), values.count <= 256 else {
      throw .corrupt("Huffman table with \(values.count) symbols")
    }
    // A prefix code has at most 2^length codes of each length.
    var codes = 0
    for length in 1...16 {
      codes += counts[length - 1]
      guard codes <= 1 << length else { throw .corrupt("Huffman table has more codes than fit in \(length) bits") }
      codes <<= 1
    }
    lookup = .allocate(capacity: 1 << HuffmanTable.lookaheadBits)
    lookup.initialize(repeating: 0, count: 1 << HuffmanTable.lookaheadBits)
    maxCode = .allocate(capacity: 18)
    maxCode.initialize(repeating: -1, count: 18)
    maxCode[17] = Int32.max
    valueOffset = .allocate(capacity: 18)
    valueOffset.initialize(repeating: 0, count: 18)
    symbols = .allocate(capacity: 256)
    symbols.initialize(repeating: 0, count: 256)
    fastAC = .allocate(capacity: 1 << HuffmanTable.lookaheadBits)
    fastAC.initialize(repeating: 0, count: 1 << HuffmanTable.lookaheadBits)
    for (i, v) in values.enumerated() { symbols[i] = v }
    largestSymbol = values.max().map(Int.init)
    var code: Int32 = 0, index: Int32 = 0
    for length in 1...16 {
      let n = Int32(counts[length - 1])
      if n > 0 {
        valueOffset[length] = index - code
        for _ in 0..<n {
          if length <= HuffmanTable.lookaheadBits {
            let shift = HuffmanTable.lookaheadBits - length
            let entry = UInt16(length << 8) | UInt16(symbols[Int(index)])
            for fill in 0..<(1 << shift) { lookup[(Int(code) << shift) | fill] = entry }
          }
          code += 1; index += 1
        }
        maxCode[length] = code - 1
      }
      code <<= 1
    }
    let bits = HuffmanTable.lookaheadBits
    for window in 0..<(1 << bits) {
      let entry = Int(lookup[window])
      guard entry != 0 else { continue }
      let length = entry >> 8, symbol = entry & 0xFF, run = symbol >> 4, size = symbol & 15
      if symbol == 0 { fastAC[window] = HuffmanTable.endOfBlock | Int32(length); continue }
      guard size > 0, length + size <= bits else { continue }
      let magnitude = (window >> (bits - length - size)) & ((1 << size) - 1)
      let value = magnitude < (1 << (size - 1)) ? magnitude - (1 << size) + 1 : magnitude
      fastAC[window] = Int32(value) << 16 | Int32(run << 8 | (length + size))
    }
  }

  deinit {
    lookup.deallocate(); maxCode.deallocate(); valueOffset.deallocate(); symbols.deallocate(); fastAC.deallocate()
  }

  /// The table's memory as plain pointers, for the decoding loops (no reference counting there;
  /// the decoder keeps the table alive).
  var view: HuffmanView { HuffmanView(lookup: lookup, maxCode: maxCode, valueOffset: valueOffset, symbols: symbols, fastAC: fastAC) }
}

struct HuffmanView {
  let lookup: UnsafeMutablePointer<UInt16>
  let maxCode: UnsafeMutablePointer<Int32>
  let valueOffset: UnsafeMutablePointer<Int32>
  let symbols: UnsafeMutablePointer<UInt8>
  let fastAC: UnsafeMutablePointer<Int32>
}

/// Reads the entropy-coded segment MSB first, removing the 0x00 stuffed after each 0xFF. At a
/// marker or the end of the data it feeds zero bits, as libjpeg does, and remembers how many: a
/// scan that consumed any of them was truncated.
struct BitReader {
  let base: UnsafePointer<UInt8>
  let end: Int
  var position: Int
  /// Valid bits, left-aligned.
  var buffer: UInt64 = 0
  var count = 0
  /// Zero bits appended past the real data; they sit at the bottom of `buffer`.
  var padding = 0

  init(base: UnsafePointer<UInt8>, end: Int, position: Int) {
    self.base = base; self.end = end; self.position = position
  }

  /// True once the decoder has used bits that were not in the file.
  var overran: Bool { count < padding }

  @inline(__always) mutating func fill() {
    // Fast path: the next 8 bytes hold no 0xFF (so no stuffing and no marker) — take as many
    // whole bytes as fit at once.
    if padding == 0 && position + 8 <= end {
      let word = UInt64(bigEndian: UnsafeRawPointer(base + position).loadUnaligned(as: UInt64.self))
      let inverted = ~word
      // A byte of `inverted` is zero where `word` had 0xFF.
      if (inverted &- 0x0101_0101_0101_0101) & ~inverted & 0x8080_8080_8080_8080 == 0 {
        let take = (64 - count) / 8
        buffer |= (word >> UInt64(64 - take * 8)) << UInt64(64 - count - take * 8)
        position += take
        count += take * 8
        return
      }
    }
    while count <= 56 {
      var byte: UInt64 = 0
      if position < end && padding == 0 {
        let b = base[position]
        if b != 0xFF {
          position += 1; byte = UInt64(b)
        } else if position + 1 < end && base[position + 1] == 0x00 {
          position += 2; byte = 0xFF
        } else {
          padding += 8   // a marker: stay on it
        }
      } else {
        padding += 8
      }
      buffer |= byte << UInt64(56 - count)
      count += 8
    }
  }

  @inline(__always) mutating func bits(_ n: Int) -> Int {
    if count < n { fill() }
    let value = Int(buffer >> UInt64(64 - n))
    buffer <<= UInt64(n); count -= n
    return value
  }

  @inline(__always) mutating func bit() -> Int {
    if count < 1 { fill() }
    let value = Int(buffer >> 63)
    buffer <<= 1; count -= 1
    return value
  }

  /// `n` bits as a signed coefficient (T.81 F.2.2.1 EXTEND).
  @inline(__always) mutating func signed(_ n: Int) -> Int {
    if n == 0 { return 0 }
    let v = bits(n)
    return v < (1 << (n - 1)) ? v - (1 << n) + 1 : v
  }

  /// The next `lookaheadBits` bits without consuming them.
  @inline(__always) mutating func peek() -> Int {
    if count < 16 { fill() }
    return Int(buffer >> UInt64(64 - HuffmanTable.lookaheadBits))
  }

  @inline(__always) mutating func skip(_ n: Int) {
    buffer <<= UInt64(n); count -= n
  }

  @inline(__always) mutating func decode(_ table: HuffmanView) throws(JPEGError) -> Int {
    if count < 16 { fill() }
    let entry = table.lookup[Int(buffer >> UInt64(64 - HuffmanTable.lookaheadBits))]
    if entry != 0 {
      let length = Int(entry >> 8)
      buffer <<= UInt64(length); count -= length
      return Int(entry & 0xFF)
    }
    var length = HuffmanTable.lookaheadBits + 1
    while length <= 16 {
      let code = Int32(truncatingIfNeeded: buffer >> UInt64(64 - length))
      if code <= table.maxCode[length] {
        buffer <<= UInt64(length); count -= length
        return Int(table.symbols[Int(code + table.valueOffset[length])])
      }
      length += 1
    }
    throw .corrupt("invalid Huffman code")
  }

  /// Drops the bits left in the current byte and any padding, for a restart marker or a new scan.
  mutating func reset() {
    buffer = 0; count = 0; padding = 0
  }
}
