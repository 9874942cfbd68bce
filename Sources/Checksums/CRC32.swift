/// CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320) as PNG, zip and gzip use it; one byte per
/// step (it guards PNG chunks, which are read once).
public enum CRC32 {
  static let table: [UInt32] = (0..<256).map { n in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
    return c
  }

  /// Continues `crc` (0 to start) over `bytes`.
  public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var c = ~crc
    table.withUnsafeBufferPointer { t in
      for byte in bytes { c = t[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
    }
    return ~c
  }

  public static func checksum(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { update(0, $0) } }
}

/// Adler-32 (RFC 1950), the zlib stream's check of its uncompressed bytes.
public enum Adler32 {
  public static func update(_ adler: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var a = adler & 0xFFFF, b = adler >> 16
    var i = 0
    while i < bytes.count {
      // 5552 bytes is the most that cannot overflow 32 bits before the reduction.
      let end = min(bytes.count, i + 5552)
      while i < end { a &+= UInt32(bytes[i]); b &+= a; i += 1 }
      a %= 65521; b %= 65521
    }
    return b << 16 | a
  }

  public static func checksum(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { update(1, $0) } }
}
