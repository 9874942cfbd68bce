/// Seeded byte-level mutations of valid inputs, the kinds that find parser bugs: flipped and
/// overwritten bytes, boundary integers over length fields, truncations, cut, repeated and spliced
/// ranges. The same seed gives the same inputs, so a failure can be replayed by its index.
public struct Mutator {
  private var state: UInt64

  public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

  /// SplitMix64.
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  public mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }

  static let boundaries: [UInt64] = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
                                     0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, UInt64.max]

  /// `seed` with one to four mutations; `other` is spliced in now and then.
  public mutating func mutate(_ seed: [UInt8], other: [UInt8] = []) -> [UInt8] {
    var bytes = seed
    for _ in 0...below(4) {
      switch below(9) {
      case 0 where !bytes.isEmpty: bytes[below(bytes.count)] ^= UInt8(truncatingIfNeeded: 1 << below(8))
      case 1 where !bytes.isEmpty: bytes[below(bytes.count)] = UInt8(truncatingIfNeeded: next())
      case 2 where !bytes.isEmpty:  // a boundary integer over a 1-, 2-, 4- or 8-byte field, either byte order
        let width = [1, 2, 4, 8][below(4)], at = below(bytes.count)
        let value = Mutator.boundaries[below(Mutator.boundaries.count)]
        let big = below(2) == 0
        for i in 0..<width where at + i < bytes.count {
          let shift = big ? 8 * (width - 1 - i) : 8 * i
          bytes[at + i] = UInt8(truncatingIfNeeded: value >> UInt64(shift))
        }
      case 3: bytes.removeLast(below(bytes.count + 1))
      case 4 where !bytes.isEmpty:
        let start = below(bytes.count), length = 1 + below(32)
        bytes.removeSubrange(start..<min(bytes.count, start + length))
      case 5 where !bytes.isEmpty:
        let start = below(bytes.count), length = 1 + below(64)
        bytes.insert(contentsOf: bytes[start..<min(bytes.count, start + length)], at: below(bytes.count + 1))
      case 6 where !other.isEmpty:
        let start = below(other.count), length = 1 + below(64)
        bytes.insert(contentsOf: other[start..<min(other.count, start + length)], at: below(bytes.count + 1))
      case 7: bytes.insert(UInt8(truncatingIfNeeded: next()), at: below(bytes.count + 1))
      default: if !bytes.isEmpty { bytes[below(bytes.count)] = [0x00, 0xFF, 0x22, 0x7B, 0x5B, 0x2C][below(6)] }
      }
    }
    return bytes
  }
}
