/// The ChaCha20 block function (RFC 8439 §2.3), used only as the PRF that gives every ring frame
/// its own Poly1305 key (`poly1305Key`, §2.6) — the construction of ChaCha20-Poly1305, without the
/// encryption (gradients are not secret; they must not be altered).
public enum ChaCha20 {
  /// The 64-byte keystream block for `key` (32 bytes), `counter` and `nonce` (12 bytes).
  public static func block(key: UnsafeRawBufferPointer, counter: UInt32, nonce: UnsafeRawBufferPointer) -> [UInt8] {
    precondition(key.count == 32 && nonce.count == 12, "ChaCha20 takes a 32-byte key and a 12-byte nonce")
    var input = [UInt32](repeating: 0, count: 16)
    input[0] = 0x6170_7865; input[1] = 0x3320_646E; input[2] = 0x7962_2D32; input[3] = 0x6B20_6574
    for i in 0..<8 { input[4 + i] = UInt32(littleEndian: key.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
    input[12] = counter
    for i in 0..<3 { input[13 + i] = UInt32(littleEndian: nonce.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
    var x = input
    @inline(__always) func quarter(_ a: Int, _ b: Int, _ c: Int, _ d: Int) {
      x[a] &+= x[b]; x[d] ^= x[a]; x[d] = x[d] << 16 | x[d] >> 16
      x[c] &+= x[d]; x[b] ^= x[c]; x[b] = x[b] << 12 | x[b] >> 20
      x[a] &+= x[b]; x[d] ^= x[a]; x[d] = x[d] << 8 | x[d] >> 24
      x[c] &+= x[d]; x[b] ^= x[c]; x[b] = x[b] << 7 | x[b] >> 25
    }
    for _ in 0..<10 {
      quarter(0, 4, 8, 12); quarter(1, 5, 9, 13); quarter(2, 6, 10, 14); quarter(3, 7, 11, 15)
      quarter(0, 5, 10, 15); quarter(1, 6, 11, 12); quarter(2, 7, 8, 13); quarter(3, 4, 9, 14)
    }
    var out = [UInt8](repeating: 0, count: 64)
    for i in 0..<16 {
      let word = (x[i] &+ input[i]).littleEndian
      withUnsafeBytes(of: word) { for j in 0..<4 { out[4 * i + j] = $0[j] } }
    }
    return out
  }

  /// The one-time Poly1305 key for `nonce` under `key`: the first 32 bytes of block 0.
  public static func poly1305Key(key: [UInt8], nonce: [UInt8]) -> [UInt8] {
    key.withUnsafeBytes { k in nonce.withUnsafeBytes { n in Array(block(key: k, counter: 0, nonce: n).prefix(32)) } }
  }
}
