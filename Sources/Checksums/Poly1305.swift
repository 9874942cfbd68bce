/// Poly1305 (RFC 8439 §2.5): a one-time authenticator, 16-byte tags, the MAC of the ring's frames.
/// Unlike HMAC-SHA256 it costs a few multiplications per 16 bytes, so it can keep up with a
/// gradient stream. Each key (r, s) must authenticate one message only: the ring derives a fresh
/// one per frame (`FrameKeys`). Limbs of 44, 44 and 42 bits with 128-bit products, as
/// poly1305-donna-64 lays them out. Tested against the RFC's vectors.
public struct Poly1305 {
  private var r0: UInt64, r1: UInt64, r2: UInt64
  private var s1: UInt64, s2: UInt64
  private var h0: UInt64 = 0, h1: UInt64 = 0, h2: UInt64 = 0
  private var pad0: UInt64, pad1: UInt64
  private var buffer: (UInt64, UInt64) = (0, 0)
  private var buffered = 0

  static let mask44: UInt64 = 0xFFF_FFFF_FFFF
  static let mask42: UInt64 = 0x3FF_FFFF_FFFF

  /// `key`: 32 bytes, r then s.
  public init(key: UnsafeRawBufferPointer) {
    precondition(key.count == 32, "a Poly1305 key is 32 bytes")
    let t0 = UInt64(littleEndian: key.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
    let t1 = UInt64(littleEndian: key.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    // r clamped as the RFC requires.
    r0 = t0 & 0xFFC_0FFF_FFFF
    r1 = ((t0 >> 44) | (t1 << 20)) & 0xFFF_FFC0_FFFF
    r2 = (t1 >> 24) & 0x00F_FFFF_FC0F
    s1 = r1 * (5 << 2)
    s2 = r2 * (5 << 2)
    pad0 = UInt64(littleEndian: key.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
    pad1 = UInt64(littleEndian: key.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
  }

  public init(key: [UInt8]) { self = key.withUnsafeBytes { Poly1305(key: $0) } }

  @inline(__always)
  private mutating func block(_ t0: UInt64, _ t1: UInt64, hibit: UInt64) {
    h0 &+= t0 & Poly1305.mask44
    h1 &+= ((t0 >> 44) | (t1 << 20)) & Poly1305.mask44
    h2 &+= (((t1 >> 24)) & Poly1305.mask42) | hibit
    let d0 = UInt128(h0) * UInt128(r0) + UInt128(h1) * UInt128(s2) + UInt128(h2) * UInt128(s1)
    var d1 = UInt128(h0) * UInt128(r1) + UInt128(h1) * UInt128(r0) + UInt128(h2) * UInt128(s2)
    var d2 = UInt128(h0) * UInt128(r2) + UInt128(h1) * UInt128(r1) + UInt128(h2) * UInt128(r0)
    d1 += d0 >> 44
    h0 = UInt64(truncatingIfNeeded: d0) & Poly1305.mask44
    d2 += d1 >> 44
    h1 = UInt64(truncatingIfNeeded: d1) & Poly1305.mask44
    let carry = UInt64(truncatingIfNeeded: d2 >> 42)
    h2 = UInt64(truncatingIfNeeded: d2) & Poly1305.mask42
    h0 &+= carry &* 5
    h1 &+= h0 >> 44
    h0 &= Poly1305.mask44
  }

  public mutating func update(_ bytes: UnsafeRawBufferPointer) {
    var offset = 0
    let count = bytes.count
    if buffered > 0 {
      withUnsafeMutableBytes(of: &buffer) { b in
        while buffered < 16 && offset < count { b[buffered] = bytes[offset]; buffered += 1; offset += 1 }
      }
      guard buffered == 16 else { return }
      block(UInt64(littleEndian: buffer.0), UInt64(littleEndian: buffer.1), hibit: 1 << 40)
      buffered = 0
    }
    while count - offset >= 16 {
      block(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)),
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)), hibit: 1 << 40)
      offset += 16
    }
    if offset < count {
      buffer = (0, 0)
      withUnsafeMutableBytes(of: &buffer) { b in
        while offset < count { b[buffered] = bytes[offset]; buffered += 1; offset += 1 }
      }
    }
  }

  public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

  /// The 16-byte tag.
  public mutating func finalize() -> (UInt64, UInt64) {
    if buffered > 0 {
      withUnsafeMutableBytes(of: &buffer) { b in
        b[buffered] = 1
        for i in (buffered + 1)..<16 { b[i] = 0 }
      }
      block(UInt64(littleEndian: buffer.0), UInt64(littleEndian: buffer.1), hibit: 0)
      buffered = 0
    }
    var c = h1 >> 44; h1 &= Poly1305.mask44
    h2 &+= c; c = h2 >> 42; h2 &= Poly1305.mask42
    h0 &+= c &* 5; c = h0 >> 44; h0 &= Poly1305.mask44
    h1 &+= c; c = h1 >> 44; h1 &= Poly1305.mask44
    h2 &+= c; c = h2 >> 42; h2 &= Poly1305.mask42
    h0 &+= c &* 5; c = h0 >> 44; h0 &= Poly1305.mask44
    h1 &+= c
    // h − p, kept when it does not go below zero.
    var g0 = h0 &+ 5; c = g0 >> 44; g0 &= Poly1305.mask44
    var g1 = h1 &+ c; c = g1 >> 44; g1 &= Poly1305.mask44
    let g2 = h2 &+ c &- (1 << 42)
    let keep = (g2 >> 63) &- 1  // all ones when g2 did not borrow
    h0 = (h0 & ~keep) | (g0 & keep)
    h1 = (h1 & ~keep) | (g1 & keep)
    h2 = (h2 & ~keep) | (g2 & keep)
    // + s
    h0 &+= pad0 & Poly1305.mask44; c = h0 >> 44; h0 &= Poly1305.mask44
    h1 &+= (((pad0 >> 44) | (pad1 << 20)) & Poly1305.mask44) &+ c; c = h1 >> 44; h1 &= Poly1305.mask44
    h2 &+= ((pad1 >> 24) & Poly1305.mask42) &+ c; h2 &= Poly1305.mask42
    return ((h0 | (h1 << 44)).littleEndian, ((h1 >> 20) | (h2 << 24)).littleEndian)
  }

  public mutating func tag() -> [UInt8] {
    var t = finalize()
    return withUnsafeBytes(of: &t) { Array($0) }
  }
}
