import Testing
@testable import Checksums

@Suite struct SHA256Tests {
  @Test func fipsVectors() {
    #expect(SHA256.hash(Array("abc".utf8)).hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(SHA256.hash([]).hexString == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)).hexString
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    var h = SHA256()
    for _ in 0..<1000 { h.update([UInt8](repeating: 0x61, count: 1000)) }
    #expect(h.finalize().hexString == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
  }

  @Test func rfc4231Vectors() {
    // Test case 1.
    #expect(HMACSHA256.authenticationCode(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8)).hexString
            == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    // Test case 2.
    #expect(HMACSHA256.authenticationCode(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8)).hexString
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    // Test case 6: a key longer than the block.
    #expect(HMACSHA256.authenticationCode(key: [UInt8](repeating: 0xaa, count: 131),
                                          message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)).hexString
            == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    #expect(HMACSHA256.constantTimeEqual([1, 2, 3], [1, 2, 3]))
    #expect(!HMACSHA256.constantTimeEqual([1, 2, 3], [1, 2, 4]))
  }
}

@Suite struct CRC32CTests {
  @Test func publishedCheckValues() {
    #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
  }
}

@Suite struct KeyDerivationTests {
  @Test func hkdfRFC5869CaseOne() {
    let prk = HKDF.extract(salt: Array(0x00...0x0c), inputKey: [UInt8](repeating: 0x0b, count: 22))
    #expect(prk.hexString == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    #expect(HKDF.expand(key: prk, info: Array(0xf0...0xf9), count: 42).hexString
            == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
  }

  @Test func pbkdf2AgreesWithPythonsHashlib() {
    // hashlib.pbkdf2_hmac('sha256', b'passwd', b'salt', 1, 64) (also RFC 7914's vector) and a second case.
    #expect(PBKDF2.derive(password: Array("passwd".utf8), salt: Array("salt".utf8), iterations: 1, count: 64).hexString
            == "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783")
    #expect(PBKDF2.derive(password: Array("job-token".utf8), salt: Array("amoeba".utf8), iterations: 100, count: 32).hexString
            == "3720776d3deae35ae75ecc2a5171194850973b8ca2ef3012b64fd8330c59d2f7")
  }

  @Test func secureRandomFillsEveryByte() throws {
    let a = try SecureRandom.bytes(64), b = try SecureRandom.bytes(64)
    #expect(a.count == 64 && a != b)
    // 64 random bytes all zero has probability 2⁻⁵¹²: a failed read that left the buffer untouched.
    #expect(a.contains { $0 != 0 })
  }
}

@Suite struct Poly1305Tests {
  func bytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = [], chars = Array(hex.filter { $0.isHexDigit })
    while chars.count >= 2 { out.append(UInt8(String(chars[0..<2]), radix: 16)!); chars.removeFirst(2) }
    return out
  }

  @Test func rfc8439Vectors() {
    // §2.5.2.
    var p = Poly1305(key: bytes("85:d6:be:78:57:55:6d:33:7f:44:52:fe:42:d5:06:a8:01:03:80:8a:fb:0d:b2:fd:4a:bf:f6:af:41:49:f5:1b"))
    p.update(Array("Cryptographic Forum Research Group".utf8))
    #expect(p.tag().hexString == "a8061dc1305136c6c22b8baf0c0127a9")
    // Appendix A.3 test vector 1: all-zero key and message.
    var zero = Poly1305(key: [UInt8](repeating: 0, count: 32))
    zero.update([UInt8](repeating: 0, count: 64))
    #expect(zero.tag().hexString == "00000000000000000000000000000000")
    // A.3 vectors 5, 6 and 8: carries through every limb, the tag's wrap mod 2¹²⁸, h reaching p.
    var v5 = Poly1305(key: bytes("02" + String(repeating: "00", count: 31)))
    v5.update(bytes("ffffffffffffffffffffffffffffffff"))
    #expect(v5.tag().hexString == "03000000000000000000000000000000")
    var v6 = Poly1305(key: bytes("02" + String(repeating: "00", count: 15) + "ffffffffffffffffffffffffffffffff"))
    v6.update(bytes("02000000000000000000000000000000"))
    #expect(v6.tag().hexString == "03000000000000000000000000000000")
    var v8 = Poly1305(key: bytes("01" + String(repeating: "00", count: 31)))
    v8.update(bytes("ffffffffffffffffffffffffffffffff fbfefefefefefefefefefefefefefefe 01010101010101010101010101010101"))
    #expect(v8.tag().hexString == "00000000000000000000000000000000")
  }

  @Test func anySplitOfTheInputGivesTheSameTag() {
    let key = (0..<32).map { UInt8($0 &* 7 &+ 3) }
    let message = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 3) }
    var whole = Poly1305(key: key)
    whole.update(message)
    let expected = whole.tag()
    for cut in [1, 15, 16, 17, 333, 999] {
      var parts = Poly1305(key: key)
      parts.update(Array(message[..<cut])); parts.update(Array(message[cut...]))
      #expect(parts.tag() == expected, "cut at \(cut)")
    }
    var other = Poly1305(key: key)
    var changed = message; changed[500] ^= 1
    other.update(changed)
    #expect(other.tag() != expected)
  }
}

@Suite struct ChaCha20Tests {
  @Test func rfc8439BlockAndPoly1305KeyGeneration() {
    // §2.3.2 (also what Python's cryptography 48 gives for the same key, counter and nonce).
    let key = [UInt8](0..<32), nonce: [UInt8] = [0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0]
    let block = key.withUnsafeBytes { k in nonce.withUnsafeBytes { ChaCha20.block(key: k, counter: 1, nonce: $0) } }
    #expect(block.hexString == "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4ed2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e")
    // §2.6.2.
    #expect(ChaCha20.poly1305Key(key: Array(0x80...0x9f), nonce: [0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]).hexString
            == "8ad5a08b905f81cc815040274ab29471a833b637e3fd0da508dbb8e2fdd1a646")
  }
}
