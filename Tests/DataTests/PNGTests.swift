import Foundation
import Testing
import Checksums
import PNG

/// PNGs of every colour type and bit depth, interlaced or not, every filter, stored and compressed
/// deflate blocks (Tests/DataTests/Fixtures/png/make.py: Pillow, optipng and Python's zlib wrote
/// them), decoded to RGB exactly as TensorFlow 2.21's `decode_png(channels: 3)` does.
@Suite struct PNGTests {
  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/png")
  static let expected: [(file: String, width: Int, height: Int, sha256: String)] = [
    ("gray1.png", 27, 13, "733f968037122a9264b1d98e38187eb838551e39d66f3781ab76a65ac2f0ca36"),
    ("gray16.png", 23, 11, "5ac69cce4c207516ab3971f98a61749aaa4b765df53b4b40d908be3f1c6587d7"),
    ("gray2.png", 35, 20, "fc39e5f10c3ef9c07a2e3c75c7d6f4558dfb64687004b3f399b655aff44e1518"),
    ("la8-interlaced.png", 29, 19, "1e9baef47398f0b6887adb993215e084be0c8558802d0eb22edff10115ba8edc"),
    ("palette4-interlaced.png", 30, 17, "3ad8d9c17263432ab7b67b4ee1c85c440442e276b1524feeed203b20c3f2f279"),
    ("palette4.png", 30, 17, "3ad8d9c17263432ab7b67b4ee1c85c440442e276b1524feeed203b20c3f2f279"),
    ("rgb16-stored.png", 19, 12, "bc37e16c70c7cbe42c9d075f8024e232521e74d2a95c1e3f386d0bdceab9d52d"),
    ("rgb16.png", 19, 12, "7f0754dc031d02cbdd4601b722c185cb0013cff2841934953e86dc0108150f55"),
    ("rgb8.png", 61, 47, "870908d466ad2e68a031ef1b5155a5261f8306957349725deb72c3580335d9b7"),
    ("rgba8-interlaced.png", 33, 21, "9a5bcb6fb5db68f6adc1a4f740fa3ad3a8d1e183a164808925bde61c78b330e5"),
  ]

  static func fixture(_ name: String) throws -> [UInt8] { try Array(Data(contentsOf: fixtures.appendingPathComponent(name))) }

  @Test func everyKindDecodesToTensorFlowsPixels() throws {
    for (file, width, height, sha256) in Self.expected {
      let image = try PNG.decode(try Self.fixture(file))
      #expect(image.width == width && image.height == height, "\(file)")
      #expect(SHA256.hash(image.pixels).hexString == sha256, "\(file)")
    }
  }

  @Test func checksumsAreTheStandardOnes() {
    // The check values of the CRC catalogue and RFC 1950's definition, on "123456789".
    #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    #expect(Adler32.checksum(Array("123456789".utf8)) == 0x091E_01DE)
  }

  @Test func damagedPNGsAreNamedNeverACrash() throws {
    let bytes = try Self.fixture("rgb8.png")
    #expect(throws: PNGError.self) { try PNG.decode(Array(bytes[..<(bytes.count / 2)])) }
    // A flipped byte in the image data: the chunk's CRC names it.
    var damaged = bytes
    damaged[200] ^= 0x10
    #expect { try PNG.decode(damaged) } throws: { error in "\(error)".contains("IDAT") && "\(error)".contains("CRC") }
    // With its CRC made right again, the same damage reaches the inflater and the filters: an
    // error or an image, whichever byte it is, never a trap.
    let compressed = try Self.fixture("gray2.png")
    for i in stride(from: 41, to: compressed.count - 16, by: 1) {
      var mutated = compressed
      mutated[i] ^= 0xA5
      Self.fixCRCs(&mutated)
      _ = try? PNG.decode(mutated)
    }
  }

  /// Recomputes every chunk's CRC, so a mutation is seen by what lies past the CRC check.
  static func fixCRCs(_ bytes: inout [UInt8]) {
    var p = 8
    while p + 12 <= bytes.count {
      let length = Int(bytes[p]) << 24 | Int(bytes[p + 1]) << 16 | Int(bytes[p + 2]) << 8 | Int(bytes[p + 3])
      guard length < bytes.count, p + 12 + length <= bytes.count else { return }
      let crc = Array(bytes[(p + 4)..<(p + 8 + length)]).withUnsafeBytes { CRC32.update(0, $0) }
      for k in 0..<4 { bytes[p + 8 + length + k] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * k)) }
      p += 12 + length
    }
  }
}
