import Testing
import Foundation
import Checksums
@testable import Data
@testable import JPEG

/// The 24 fixture JPEGs with what TensorFlow 2.21 decoded from them (`expected.json`).
struct JPEGFixture {
  let file: String, index: Int, kind: String, height: Int, width: Int
  let accurateSHA256: String, defaultSHA256: String
  let jpeg: [UInt8]

  static let all: [JPEGFixture] = {
    guard testdataPresent else { return [] }
    struct Record: Decodable {
      let file: String, index: Int, kind: String, height: Int, width: Int
      let decoded_accurate_sha256: String, decoded_sha256: String
    }
    struct Root: Decodable { let records: [Record] }
    guard let json = try? Data(contentsOf: URL(fileURLWithPath: testdata + "/imagenet-format/expected.json")),
          let root = try? JSONDecoder().decode(Root.self, from: json) else { return [] }
    var shards: [String: [[UInt8]]] = [:]
    return root.records.map { r in
      if shards[r.file] == nil { shards[r.file] = readAll(testdata + "/imagenet-format/" + r.file).records }
      let example = try! Example(decoding: shards[r.file]![r.index])
      return JPEGFixture(file: r.file, index: r.index, kind: r.kind, height: r.height, width: r.width,
                         accurateSHA256: r.decoded_accurate_sha256, defaultSHA256: r.decoded_sha256,
                         jpeg: example.bytes("image/encoded")!)
    }
  }()
}

@Suite(.enabled(if: testdataPresent, "the TensorFlow fixtures (../shared/testdata or $AMOEBA_TESTDATA) are not here"))
struct JPEGDecoderTests {
  @Test func everyFixtureDecodesToTensorFlowsAccuratePixels() throws {
    #expect(JPEGFixture.all.count == 24)
    for f in JPEGFixture.all {
      let image = try JPEG.decode(f.jpeg)
      #expect(image.width == f.width && image.height == f.height, "\(f.file) #\(f.index)")
      #expect(SHA256.hash(image.pixels).hexString == f.accurateSHA256, "\(f.file) #\(f.index) (\(f.kind))")
    }
  }

  @Test func rawPixelFilesAgreeExactly() throws {
    for (file, index) in [("train-00000-of-00002", 0), ("train-00000-of-00002", 3), ("train-00001-of-00002", 1)] {
      let f = JPEGFixture.all.first { $0.file == file && $0.index == index }!
      let raw = try [UInt8](Data(contentsOf: URL(fileURLWithPath: testdata + "/imagenet-format/decoded/\(file).\(index).accurate.rgb")))
      let image = try JPEG.decode(f.jpeg)
      #expect(image.pixels.count == raw.count)
      let worst = zip(image.pixels, raw).map { abs(Int($0) - Int($1)) }.max() ?? 0
      #expect(worst == 0, "\(file) #\(index): max difference \(worst)")
    }
  }
}

/// A smooth colour picture with some texture, so every DCT band carries something.
func syntheticPicture(width: Int, height: Int, channels: Int = 3, seed: Int = 1) -> [UInt8] {
  var pixels = [UInt8](repeating: 0, count: width * height * channels)
  for y in 0..<height {
    for x in 0..<width {
      for c in 0..<channels {
        let fx = Double(x) / Double(width), fy = Double(y) / Double(height)
        let v = 128 + 90 * sin(6.0 * fx + Double(c + seed)) * cos(4.0 * fy - Double(c)) + 20 * sin(Double(x * y) * 0.37)
        pixels[(y * width + x) * channels + c] = UInt8(clamping: Int(v))
      }
    }
  }
  return pixels
}

struct JPEGEncoderTests {
  @Test(arguments: [(37, 53, 3, JPEGEncoder.Subsampling.half, 0), (64, 48, 3, .none, 0), (17, 9, 1, .half, 0),
                    (101, 67, 3, .half, 3), (40, 33, 3, .none, 7), (1, 1, 3, .half, 0), (250, 3, 1, .none, 2)])
  func encodedPicturesDecodeCloseToTheOriginal(width: Int, height: Int, channels: Int, subsampling: JPEGEncoder.Subsampling, restart: Int) throws {
    let picture = syntheticPicture(width: width, height: height, channels: channels)
    let jpeg = JPEGEncoder(quality: 95, subsampling: subsampling, restartInterval: restart)
      .encode(picture, width: width, height: height, channels: channels)
    let info = try JPEG.info(jpeg)
    #expect(info.width == width && info.height == height && info.components == channels)
    let image = try JPEG.decode(jpeg, channels: channels)
    #expect(image.width == width && image.height == height)
    var squared = 0.0
    for (a, b) in zip(image.pixels, picture) { squared += Double((Int(a) - Int(b)) * (Int(a) - Int(b))) }
    let psnr = 10 * log10(255 * 255 / max(squared / Double(picture.count), 1e-9))
    // Quality 95 keeps photographs above ~35 dB; chroma subsampling of this texture costs some.
    #expect(psnr > (subsampling == .half && channels == 3 ? 28 : 35), "PSNR \(psnr) dB")
  }

  @Test func grayscaleJPEGIsThreeEqualChannelsOrOneLuminanceChannel() throws {
    let picture = syntheticPicture(width: 23, height: 19, channels: 1)
    let jpeg = JPEGEncoder(quality: 90).encode(picture, width: 23, height: 19, channels: 1)
    let rgb = try JPEG.decode(jpeg, channels: 3), gray = try JPEG.decode(jpeg, channels: 1)
    #expect(rgb.pixels.count == 23 * 19 * 3 && gray.pixels.count == 23 * 19)
    for i in 0..<(23 * 19) {
      #expect(rgb.pixels[3 * i] == gray.pixels[i] && rgb.pixels[3 * i + 1] == gray.pixels[i] && rgb.pixels[3 * i + 2] == gray.pixels[i])
    }
  }

  @Test func huffmanCodesAreAPrefixCodeOfAtMostSixteenBits() {
    // Skewed counts (powers of two) force lengths past 16 before the limiting step.
    var counts = [Int](repeating: 0, count: 256)
    for i in 0..<40 { counts[i] = 1 << min(i, 30) }
    let code = HuffmanCode(counts: counts)
    let used = (0..<40).map { (code.codes[$0], code.lengths[$0]) }
    #expect(used.allSatisfy { $0.1 >= 1 && $0.1 <= 16 })
    for (i, a) in used.enumerated() {
      #expect(a.0 != (1 << a.1) - 1, "an all-ones code")
      for b in used[(i + 1)...] {
        let (short, long) = a.1 <= b.1 ? (a, b) : (b, a)
        #expect(long.0 >> (long.1 - short.1) != short.0, "a code is a prefix of another")
      }
    }
  }
}

struct IDCTTests {
  @Test func integerIDCTIsWithinOneLevelOfTheDefinition() {
    var state: UInt64 = 12345
    func next() -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(state >> 33) }
    let quant = (0..<64).map { Int32(1 + $0 % 7) }
    var worst = 0
    for trial in 0..<300 {
      var coefficients = [Int16](repeating: 0, count: 64)
      let nonzero = trial % 10 == 0 ? 64 : 1 + next() % 12
      for _ in 0..<nonzero { coefficients[next() % 64] = Int16(next() % 161 - 80) }
      coefficients[0] = Int16(next() % 401 - 200)
      var fast = [UInt8](repeating: 0, count: 64)
      quant.withUnsafeBufferPointer { q in IDCT.islow(coefficients, q.baseAddress!, &fast, stride: 8) }
      let reference = IDCT.reference(coefficients, quant)
      worst = max(worst, zip(fast, reference).map { abs(Int($0) - Int($1)) }.max()!)
    }
    #expect(worst <= 1, "largest difference \(worst)")
  }
}

/// Mutated JPEGs — flipped bytes, truncations, forged markers and segment lengths, cut and
/// repeated chunks — must decode or throw, never trap, hang or allocate without bound. 10⁴ inputs
/// here; `AMOEBA_FUZZ_ITERATIONS=1000000 swift test -c release --filter JPEGFuzz` for a longer run.
struct JPEGFuzzTests {
  static let seeds: [[UInt8]] = {
    var seeds = [
      JPEGEncoder(quality: 80).encode(syntheticPicture(width: 21, height: 13), width: 21, height: 13, channels: 3),
      JPEGEncoder(quality: 60, subsampling: .none, restartInterval: 2).encode(syntheticPicture(width: 17, height: 9), width: 17, height: 9, channels: 3),
      JPEGEncoder(quality: 95, restartInterval: 1).encode(syntheticPicture(width: 16, height: 16, channels: 1), width: 16, height: 16, channels: 1),
    ]
    // The fixtures' smallest progressive, restart-marker and Exif images.
    for f in JPEGFixture.all where ["progressive", "restart", "gray1"].contains(f.kind) || f.jpeg.count < 3000 {
      if !seeds.contains(where: { $0.count == f.jpeg.count }) { seeds.append(f.jpeg) }
    }
    return seeds
  }()

  @Test func mutatedJPEGsNeverCrash() {
    let iterations = Int(ProcessInfo.processInfo.environment["AMOEBA_FUZZ_ITERATIONS"] ?? "") ?? 10_000
    var state: UInt64 = 0x1234_5678
    func random(_ n: Int) -> Int {
      state = state &* 6364136223846793005 &+ 1442695040888963407
      return Int((state >> 33) % UInt64(max(n, 1)))
    }
    var decoded = 0, refused = 0
    for i in 0..<iterations {
      // Small seeds most of the time; the larger fixtures now and then, cut short more often.
      let seed = i % 10 < 7 ? JPEGFuzzTests.seeds[i % 3] : JPEGFuzzTests.seeds[random(JPEGFuzzTests.seeds.count)]
      var bytes = seed
      for _ in 0...random(3) {
        guard !bytes.isEmpty else { break }
        switch random(7) {
        case 0: bytes[random(bytes.count)] ^= UInt8(1 + random(255))
        case 1: bytes.removeLast(random(bytes.count))
        case 2: bytes[random(bytes.count)] = 0xFF
        case 3 where bytes.count >= 2:  // a marker where the data or a header was
          let at = random(bytes.count - 1)
          bytes[at] = 0xFF; bytes[at + 1] = UInt8([0xC0, 0xC2, 0xC4, 0xD0, 0xD9, 0xDA, 0xDB, 0xDD][random(8)])
        case 3: bytes.append(0xD9)
        case 4:  // a segment length or a header field in the first few hundred bytes
          let at = random(min(bytes.count, 700)); bytes[at] = UInt8(random(256))
        case 5:
          let start = random(bytes.count), length = random(64)
          bytes.removeSubrange(start..<min(bytes.count, start + length))
        default:
          let start = random(bytes.count), length = random(64)
          bytes.insert(contentsOf: bytes[start..<min(bytes.count, start + length)], at: random(bytes.count))
        }
      }
      do {
        let image = try JPEG.decode(bytes, pixelLimit: 1 << 20)
        #expect(image.pixels.count == image.width * image.height * 3)
        decoded += 1
      } catch {
        refused += 1
      }
    }
    #expect(decoded + refused == iterations)
    // Both outcomes happen: mutations in the entropy data often still decode.
    #expect(decoded > iterations / 50 && refused > iterations / 50, "decoded \(decoded), refused \(refused)")
  }

  @Test func truncatedAndEmptyInputsNameTheProblem() throws {
    let jpeg = JPEGFuzzTests.seeds[0]
    #expect(throws: JPEGError.self) { try JPEG.decode([UInt8]()) }
    #expect(throws: JPEGError.truncated("no EOI marker after the last scan")) { try JPEG.decode(Array(jpeg.prefix(jpeg.count - 2))) }
    do {
      _ = try JPEG.decode(Array(jpeg.prefix(jpeg.count / 2)))
      Issue.record("a JPEG cut in half decoded")
    } catch {
      #expect(error.description.contains("truncated"), "\(error)")
    }
    #expect(throws: JPEGError.self) { try JPEG.decode([0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 8, 0, 1, 0, 1, 4, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 4, 0x11, 0]) }
    do {
      _ = try JPEG.decode([0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x14, 8, 0, 1, 0, 1, 4, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 4, 0x11, 0])
    } catch {
      #expect(error.description.contains("CMYK"), "\(error)")
    }
  }
}
