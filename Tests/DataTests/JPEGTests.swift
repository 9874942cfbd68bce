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
        let image = try JPEG.decode(bytes, scale: [1, 1, 2, 4, 8][i % 5], pixelLimit: 1 << 20)
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
    // A 4-component (CMYK) frame header with nothing after it: the data's end is named.
    #expect(throws: JPEGError.self) { try JPEG.decode([0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x14, 8, 0, 1, 0, 1, 4, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 4, 0x11, 0]) }
  }
}

/// TensorFlow 2.21's `decode_jpeg(ratio: 2|4|8, dct_method: "INTEGER_ACCURATE")` (libjpeg-turbo
/// 2.1.4) on every fixture, from `Scripts/peers/tf_decode_hashes.py --ratio R` on 2026-11-27.
struct ScaledFixture {
  let file: String, index: Int, scale: Int, width: Int, height: Int, sha256: String
  static let all: [ScaledFixture] = [
    ScaledFixture(file: "train-00000-of-00002", index: 0, scale: 2, width: 128, height: 85, sha256: "adef80d64f7e3bee1c88637fdcb1b2dc9fc8748e4ada8f7ac59d3789e2bd8236"),
    ScaledFixture(file: "train-00000-of-00002", index: 1, scale: 2, width: 128, height: 86, sha256: "069c72930caa065e04c24c231a97263d0eb462dec5a083e7482aaa7020d4a13b"),
    ScaledFixture(file: "train-00000-of-00002", index: 2, scale: 2, width: 128, height: 128, sha256: "f9f600fc4954cb08f657f4d723b94a21daf088400b9dd54f61b8f057bee2229d"),
    ScaledFixture(file: "train-00000-of-00002", index: 3, scale: 2, width: 128, height: 86, sha256: "f38e7fbeb38281eb40d44e885eff4969a4d5d8a4afa193a561be568eb9199987"),
    ScaledFixture(file: "train-00000-of-00002", index: 4, scale: 2, width: 128, height: 128, sha256: "0fd3a9c2ab2f7b4d391eb3547e456734ad7ce4f5e96770392316a14fd6581609"),
    ScaledFixture(file: "train-00000-of-00002", index: 5, scale: 2, width: 128, height: 112, sha256: "5ed985ab8317f3d367c5be1b98ad144d6d7847508eb44c48abf4db4437a2b18b"),
    ScaledFixture(file: "train-00000-of-00002", index: 6, scale: 2, width: 128, height: 128, sha256: "36ae0061602accb66c9605ada0434681664a2b3b35ec7685e6d5e5e45a3cf55d"),
    ScaledFixture(file: "train-00000-of-00002", index: 7, scale: 2, width: 128, height: 101, sha256: "18c0f1d2885598209235e085678551234e277c1268d167f65ca36b92fd874801"),
    ScaledFixture(file: "train-00000-of-00002", index: 8, scale: 2, width: 128, height: 92, sha256: "3a132603d921676209a608143ee5e17197d23c6f0db91a246f60a85a6b231635"),
    ScaledFixture(file: "train-00001-of-00002", index: 0, scale: 2, width: 128, height: 128, sha256: "de91eb25ee9987b226d85a2087fad5f2bbe60dabc957a99ebfdfc2472a2712da"),
    ScaledFixture(file: "train-00001-of-00002", index: 1, scale: 2, width: 93, height: 128, sha256: "61f143a3204d8d0f44d2b0c31e5bda3b9571b3804d3b75b8468d273b35bed639"),
    ScaledFixture(file: "train-00001-of-00002", index: 2, scale: 2, width: 76, height: 95, sha256: "b233d15311f22b038c6509d841b99b3201f7669acba80828690d2d7c84a434cc"),
    ScaledFixture(file: "train-00001-of-00002", index: 3, scale: 2, width: 27, height: 19, sha256: "670a292211154f51158c4cebb65dcbe94a4d5d8adc1492a92aaa98c641436dfa"),
    ScaledFixture(file: "train-00001-of-00002", index: 4, scale: 2, width: 49, height: 66, sha256: "0f905d175ed37539373c2f8278a283b8acf6ee7be323f85aed92ce352396fa3c"),
    ScaledFixture(file: "train-00001-of-00002", index: 5, scale: 2, width: 128, height: 96, sha256: "362e8274a6385cf0de6dc1ee0020d234519ffcb0a511f7ca0e3f89d9e8244fbb"),
    ScaledFixture(file: "train-00001-of-00002", index: 6, scale: 2, width: 72, height: 101, sha256: "9efe8c3a718a6d30188036f136ce2853ae5b5ee86c8992c68f9948f6d1e0d0b1"),
    ScaledFixture(file: "train-00001-of-00002", index: 7, scale: 2, width: 117, height: 89, sha256: "826dde505a91b15f7f45ecba2c7c4bc6db44fa676329d599ed7fabea4419f762"),
    ScaledFixture(file: "validation-00000-of-00001", index: 0, scale: 2, width: 115, height: 125, sha256: "485f876972789d705e03842ee535cebf0980e51cc864c02b57ee918fba59e39c"),
    ScaledFixture(file: "validation-00000-of-00001", index: 1, scale: 2, width: 128, height: 49, sha256: "7e75eb079310e4336b7e02803f2c116b4ef40aa5f208667ec81201c01d959d67"),
    ScaledFixture(file: "validation-00000-of-00001", index: 2, scale: 2, width: 128, height: 99, sha256: "a6ce1d7fd3d91e653966efc80da9023a6eded6daf8febbd3791cd0168970a499"),
    ScaledFixture(file: "validation-00000-of-00001", index: 3, scale: 2, width: 128, height: 75, sha256: "0df2734aac15b00b405f3459eb64e7b055b48806eff7f5b17e51415e0d5601c7"),
    ScaledFixture(file: "validation-00000-of-00001", index: 4, scale: 2, width: 128, height: 128, sha256: "394a42050bb630b10ea8c84759f7217513c6104a94a56d07c0037076a311e0f3"),
    ScaledFixture(file: "validation-00000-of-00001", index: 5, scale: 2, width: 85, height: 114, sha256: "11aad85495040eb70a418fdebed5c7e4d7b6943a3fe8921f827b45db42bfd4ed"),
    ScaledFixture(file: "validation-00000-of-00001", index: 6, scale: 2, width: 126, height: 128, sha256: "88fce590efa8902c8a0b14d65607717c2ca57de7f063717c9f1aecf60c4154d5"),
    ScaledFixture(file: "train-00000-of-00002", index: 0, scale: 4, width: 64, height: 43, sha256: "8ce0b4e6788711c4b6826d7cd1c6fd4f22d915ce8e80405d4cb29a07c5156fd2"),
    ScaledFixture(file: "train-00000-of-00002", index: 1, scale: 4, width: 64, height: 43, sha256: "f34389f1c4f1274d6972a4d0c940423fe0b7f665b6cd89d6801836fbd9c100b3"),
    ScaledFixture(file: "train-00000-of-00002", index: 2, scale: 4, width: 64, height: 64, sha256: "9bb1eda737fe633dc3bddeb1dbbe1f213a3fc1e55a5fdedfe72ea9e9b65d41ca"),
    ScaledFixture(file: "train-00000-of-00002", index: 3, scale: 4, width: 64, height: 43, sha256: "e984ce8f7474d3e4d1c7e21fdff0fadc24ac9747edaf078726e1239ec214788b"),
    ScaledFixture(file: "train-00000-of-00002", index: 4, scale: 4, width: 64, height: 64, sha256: "4e63dcc4cfa1f8ab93e9835bbd6ecf5ebf377aa69d728da8fb364ce4cff8f402"),
    ScaledFixture(file: "train-00000-of-00002", index: 5, scale: 4, width: 64, height: 56, sha256: "67ccd73f97fa575160bb301c1f9d79dbd92fb4b7d120f1332088a51371679b99"),
    ScaledFixture(file: "train-00000-of-00002", index: 6, scale: 4, width: 64, height: 64, sha256: "bd5ca0fba963191d902352deadd1ac950a1d84d8fc2af3ba75a9b390c13dd686"),
    ScaledFixture(file: "train-00000-of-00002", index: 7, scale: 4, width: 64, height: 51, sha256: "a6f607358385193b8aa18da52cd1c08c870c2e96a443a60b7b8733d9d9b89511"),
    ScaledFixture(file: "train-00000-of-00002", index: 8, scale: 4, width: 64, height: 46, sha256: "8113da0ae0d1407cf1b23e0e17844eaf334204167c5cd91a92811c6e69c27d15"),
    ScaledFixture(file: "train-00001-of-00002", index: 0, scale: 4, width: 64, height: 64, sha256: "905c060c2eecbeb39e0faa3fa05bcf4b87f5410f8ef27e5d933e99e386fa4750"),
    ScaledFixture(file: "train-00001-of-00002", index: 1, scale: 4, width: 47, height: 64, sha256: "06ad14ae0532ccb00d6bbf93146b3407a5a4460cebd5336de142e9f0a846e52a"),
    ScaledFixture(file: "train-00001-of-00002", index: 2, scale: 4, width: 38, height: 48, sha256: "aa178069f6f93875fa3c51097a27b8506971a375808cfcb98102e82d149822c0"),
    ScaledFixture(file: "train-00001-of-00002", index: 3, scale: 4, width: 14, height: 10, sha256: "ba19964f5e6c539c6bc448e0bdaec98975dfc5edcf1def9123c767ad9b4e1973"),
    ScaledFixture(file: "train-00001-of-00002", index: 4, scale: 4, width: 25, height: 33, sha256: "51e985ef311790c1a9b92a7d29d507cb72438c9fbd9873b2322f37691a376de9"),
    ScaledFixture(file: "train-00001-of-00002", index: 5, scale: 4, width: 64, height: 48, sha256: "3abd72221a22ebd2eaa73f8e757caae3622b70f633bcd0a6cc77a92f37ea5c44"),
    ScaledFixture(file: "train-00001-of-00002", index: 6, scale: 4, width: 36, height: 51, sha256: "c41f69d535a9f76d77bc90339a373ab025b73d2dbc9f0cbdeb43aeb97697d4a3"),
    ScaledFixture(file: "train-00001-of-00002", index: 7, scale: 4, width: 59, height: 45, sha256: "9c1b9e5b935caa89aaf2f29262b21cea3259da6d804ede69b0bd2e0b0a925807"),
    ScaledFixture(file: "validation-00000-of-00001", index: 0, scale: 4, width: 58, height: 63, sha256: "e4f6e0d1edb947c5474cb654de7d7591a0d44600878ec3815ec654df0cde69ef"),
    ScaledFixture(file: "validation-00000-of-00001", index: 1, scale: 4, width: 64, height: 25, sha256: "4432b43b56e537099b3819cb2f563f9232c99a86622533370c6520a93380d199"),
    ScaledFixture(file: "validation-00000-of-00001", index: 2, scale: 4, width: 64, height: 50, sha256: "bda27b77e800cc6968d2b0139fc633dd88ba171dc89ca69d4e21e277d4c0018d"),
    ScaledFixture(file: "validation-00000-of-00001", index: 3, scale: 4, width: 64, height: 38, sha256: "6eeda4ba637182eab1af301d246d65fd36a73d90b5eef0d9ddca29a22bd331c1"),
    ScaledFixture(file: "validation-00000-of-00001", index: 4, scale: 4, width: 64, height: 64, sha256: "0159dd8044da575050ecbfd8e037878c120ccacd3e65e5aa211f74c0b1b78f41"),
    ScaledFixture(file: "validation-00000-of-00001", index: 5, scale: 4, width: 43, height: 57, sha256: "a6a2c35ea1f5534d7bcc5123db2e976ae54fffa6ede9208bf942ec484730b05a"),
    ScaledFixture(file: "validation-00000-of-00001", index: 6, scale: 4, width: 63, height: 64, sha256: "bc6cee00a933f35599a1cc8db502e626ac9f117586d5a366efe4f222c972977d"),
    ScaledFixture(file: "train-00000-of-00002", index: 0, scale: 8, width: 32, height: 22, sha256: "216231ffa3c3dc2d12d00cd488b38f986ce412379fb19a16f4f38aa95511b0f0"),
    ScaledFixture(file: "train-00000-of-00002", index: 1, scale: 8, width: 32, height: 22, sha256: "a5ae8ce96147a7fbb3bd3b867f9c621e2c8c4ec1a9bb720b2e9448ef30757286"),
    ScaledFixture(file: "train-00000-of-00002", index: 2, scale: 8, width: 32, height: 32, sha256: "c37d187d8cfef5a9487f868e3066e4f5cee69ac32d353715ae4ec2491810c19f"),
    ScaledFixture(file: "train-00000-of-00002", index: 3, scale: 8, width: 32, height: 22, sha256: "d0a0bd0d78c3dcd6c3ca6b8b3085d7b1f8cfa971331efc6944f6e9b8dd1f4c06"),
    ScaledFixture(file: "train-00000-of-00002", index: 4, scale: 8, width: 32, height: 32, sha256: "6b2b291379f28fdeaabe3d691695b818705750e6cf77cf279bcc664b1e492cdc"),
    ScaledFixture(file: "train-00000-of-00002", index: 5, scale: 8, width: 32, height: 28, sha256: "f13b80b0e78ce507c7a74f105dde9ba81320a55deafa5f9805cb35823bdb25a4"),
    ScaledFixture(file: "train-00000-of-00002", index: 6, scale: 8, width: 32, height: 32, sha256: "e32db64733c55bb06b546111e9b114fa8f5beb3450fa8e3307cb394123be8914"),
    ScaledFixture(file: "train-00000-of-00002", index: 7, scale: 8, width: 32, height: 26, sha256: "0ad7588dfeae65501b9be576ea6cdc5d8c78bbe2f8bcb0779f860feb877f957d"),
    ScaledFixture(file: "train-00000-of-00002", index: 8, scale: 8, width: 32, height: 23, sha256: "f3403da0177d893916d107ca36d86bcf8baf20d3eb32780bdedf0e86c30ac1ef"),
    ScaledFixture(file: "train-00001-of-00002", index: 0, scale: 8, width: 32, height: 32, sha256: "b02fda1f3073e613d58838118028915e1108426a6f1f8bb204d7bfde725c91af"),
    ScaledFixture(file: "train-00001-of-00002", index: 1, scale: 8, width: 24, height: 32, sha256: "22d0e7833144bb77503f7c045cb6ef18c00d75586bd5cc3854dfc2c1e33b6d72"),
    ScaledFixture(file: "train-00001-of-00002", index: 2, scale: 8, width: 19, height: 24, sha256: "bb4f89924ffc226bc24e15ba17398ce0c942d8ada18f46b47607cf460c3ca9d5"),
    ScaledFixture(file: "train-00001-of-00002", index: 3, scale: 8, width: 7, height: 5, sha256: "765e40640ae3af48581c98d410bd495832c91e3ea4b0551d3118a04691ff9266"),
    ScaledFixture(file: "train-00001-of-00002", index: 4, scale: 8, width: 13, height: 17, sha256: "fb68c2740d8996352af3c481ee80228bb072417c71afd833595fe922105860b0"),
    ScaledFixture(file: "train-00001-of-00002", index: 5, scale: 8, width: 32, height: 24, sha256: "9c73df5f3aea2431cab2fb1fd4b333b3536e5e8be2c4e873083c30f2ca1276ff"),
    ScaledFixture(file: "train-00001-of-00002", index: 6, scale: 8, width: 18, height: 26, sha256: "0655733a6001a3b46d7ce5f3cb06e0e823aa8fb61a4005fbcee579fe8a3a5cdf"),
    ScaledFixture(file: "train-00001-of-00002", index: 7, scale: 8, width: 30, height: 23, sha256: "f6d78aad70ed4cedf775d478b7186c2dd62df1006c013d1719e786c22495f0ea"),
    ScaledFixture(file: "validation-00000-of-00001", index: 0, scale: 8, width: 29, height: 32, sha256: "5a054be6e8b305536eeb3d3f62a27b58a3d65d9d8be24fd2b0cdf4f3bbcf3c63"),
    ScaledFixture(file: "validation-00000-of-00001", index: 1, scale: 8, width: 32, height: 13, sha256: "a261ea60d30d96e0e3a87452597df736d077be81a0c5a7bd70855c1105d68002"),
    ScaledFixture(file: "validation-00000-of-00001", index: 2, scale: 8, width: 32, height: 25, sha256: "f65fa47db2098a66c70ffec6d015085b0db50ef271f0d7e4efee40a172821b39"),
    ScaledFixture(file: "validation-00000-of-00001", index: 3, scale: 8, width: 32, height: 19, sha256: "c3e67914cff2b20acb7078ecc1ee4a772277a88469545d6f5f98c94afb34e621"),
    ScaledFixture(file: "validation-00000-of-00001", index: 4, scale: 8, width: 32, height: 32, sha256: "b24203469d729ab3c072789fc34f74f72f64fa25d2df9ec7991c6f683498b5eb"),
    ScaledFixture(file: "validation-00000-of-00001", index: 5, scale: 8, width: 22, height: 29, sha256: "dd29d29db01d6952fda023189b92a0589a64661fe9a7cd4767c1ad5e495d8af6"),
    ScaledFixture(file: "validation-00000-of-00001", index: 6, scale: 8, width: 32, height: 32, sha256: "35c970a96cb3eac4364cea07d26532834f0cb96934298b458178761ea2a15d55"),
  ]
}

@Suite(.enabled(if: testdataPresent, "the TensorFlow fixtures (../shared/testdata or $AMOEBA_TESTDATA) are not here"))
struct ScaledDecodeTests {
  @Test func halfQuarterAndEighthScaleEqualTensorFlowsRatioDecode() throws {
    #expect(ScaledFixture.all.count == 72)
    for expected in ScaledFixture.all {
      let f = JPEGFixture.all.first { $0.file == expected.file && $0.index == expected.index }!
      let image = try JPEG.decode(f.jpeg, scale: expected.scale)
      #expect(image.width == expected.width && image.height == expected.height, "\(f.file) #\(f.index) 1/\(expected.scale)")
      #expect(SHA256.hash(image.pixels).hexString == expected.sha256, "\(f.file) #\(f.index) (\(f.kind)) at 1/\(expected.scale)")
    }
  }

  @Test func scaledIDCTsAgreeWithAFullDecodeShrunk() throws {
    // A smooth picture: the 1/k decode is close to the k×k box average of the full decode.
    let picture = syntheticPicture(width: 64, height: 48)
    let jpeg = JPEGEncoder(quality: 95, subsampling: .none).encode(picture, width: 64, height: 48, channels: 3)
    let full = try JPEG.decode(jpeg)
    for k in [2, 4, 8] {
      let small = try JPEG.decode(jpeg, scale: k)
      #expect(small.width == 64 / k && small.height == 48 / k)
      var worst = 0.0
      for y in 0..<small.height {
        for x in 0..<small.width {
          for c in 0..<3 {
            var sum = 0
            for dy in 0..<k { for dx in 0..<k { sum += Int(full.pixels[((y * k + dy) * 64 + x * k + dx) * 3 + c]) } }
            worst = max(worst, abs(Double(small.pixels[(y * small.width + x) * 3 + c]) - Double(sum) / Double(k * k)))
          }
        }
      }
      #expect(worst < 12, "1/\(k): largest difference from the box average \(worst)")
    }
  }
}

@Suite(.enabled(if: testdataPresent, "the TensorFlow fixtures (../shared/testdata or $AMOEBA_TESTDATA) are not here"))
struct FastIDCTTests {
  @Test func everyFixtureDecodesToTensorFlowsDefaultPixels() throws {
    var exact = 0, worst = 0
    for f in JPEGFixture.all {
      let image = try JPEG.decode(f.jpeg, dct: .fast)
      if SHA256.hash(image.pixels).hexString == f.defaultSHA256 { exact += 1 }
    }
    for (file, index) in [("train-00000-of-00002", 0), ("train-00000-of-00002", 3), ("train-00001-of-00002", 1)] {
      let f = JPEGFixture.all.first { $0.file == file && $0.index == index }!
      let raw = try [UInt8](Data(contentsOf: URL(fileURLWithPath: testdata + "/imagenet-format/decoded/\(file).\(index).default.rgb")))
      let image = try JPEG.decode(f.jpeg, dct: .fast)
      worst = max(worst, zip(image.pixels, raw).map { abs(Int($0) - Int($1)) }.max() ?? 0)
    }
    #expect(exact == 24 && worst == 0, "\(exact) of 24 exact, raw files differ by up to \(worst)")
  }
}

struct JPEGHeaderTests {
  /// A frame header claiming 65535×65535 with 4×4-sampled components: 24 GiB of coefficients.
  static let hugeHeader: [UInt8] = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x03,
                                    0x01, 0x44, 0x00, 0x02, 0x44, 0x00, 0x03, 0x44, 0x00]

  @Test func infoReadsAHugeFrameWithoutAllocatingIt() throws {
    let info = try JPEG.info(JPEGHeaderTests.hugeHeader)
    #expect(info.width == 65535 && info.height == 65535 && info.components == 3)
    #expect(throws: JPEGError.tooLarge(width: 65535, height: 65535, limit: JPEG.defaultPixelLimit)) {
      try JPEG.decode(JPEGHeaderTests.hugeHeader)
    }
  }

  @Test func aDCTableWithASizeAbove15IsRefusedWhenAScanUsesIt() throws {
    let good = JPEGEncoder(quality: 80).encode(syntheticPicture(width: 16, height: 16), width: 16, height: 16, channels: 3)
    // An extra DC table 3 coding symbol 0x21, which no scan uses: decoded as libjpeg does.
    let unused: [UInt8] = [0xFF, 0xC4, 0x00, 0x14, 0x03, 1] + [UInt8](repeating: 0, count: 15) + [0x21]
    _ = try JPEG.decode(Array(good[0..<2]) + unused + Array(good[2...]))
    // The luminance DC table (class 0, id 0) with its first symbol made 0x21: refused.
    var bad = good
    let dht = (0..<(bad.count - 4)).first { bad[$0] == 0xFF && bad[$0 + 1] == 0xC4 && bad[$0 + 4] == 0x00 }!
    bad[dht + 5 + 16] = 0x21
    do {
      _ = try JPEG.decode(bad)
      Issue.record("decoded")
    } catch {
      #expect(error.description.contains("DC Huffman table 0 has symbol 33"), "\(error)")
    }
  }

  @Test func rgbColourSpaceToGrayIsLibjpegsWeightedSum() throws {
    // A 4:4:4 JFIF file turned into one libjpeg reads as RGB: no APP0, component ids 'R' 'G' 'B'.
    let picture = syntheticPicture(width: 24, height: 16)
    var jpeg = JPEGEncoder(quality: 90, subsampling: .none).encode(picture, width: 24, height: 16, channels: 3)
    #expect(jpeg[2] == 0xFF && jpeg[3] == 0xE0)
    jpeg.removeSubrange(2..<(4 + (Int(jpeg[4]) << 8 | Int(jpeg[5]))))
    for marker: UInt8 in [0xC0, 0xDA] {
      let at = (0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == marker }!
      let first = marker == 0xC0 ? at + 10 : at + 5, step = marker == 0xC0 ? 3 : 2
      for (k, id) in [82, 71, 66].enumerated() { jpeg[first + k * step] = UInt8(id) }
    }
    let rgb = try JPEG.decode(jpeg), gray = try JPEG.decode(jpeg, channels: 1)
    for i in 0..<(24 * 16) {
      let expected = (19595 * Int(rgb.pixels[3 * i]) + 38470 * Int(rgb.pixels[3 * i + 1]) + 7471 * Int(rgb.pixels[3 * i + 2]) + 32768) >> 16
      #expect(Int(gray.pixels[i]) == expected)
    }
    // Read as RGB, the planes are the encoder's Y, Cb and Cr: far from the picture's colours.
    #expect(zip(rgb.pixels, picture).contains { abs(Int($0) - Int($1)) > 40 })
  }
}

/// CMYK JPEGs as Pillow (libjpeg-turbo) writes them (Adobe marker, transform 0; 4:4:4 and 4:2:0),
/// and a YCCK one as libjpeg-turbo writes it (transform 2), made from synthetic pixels by the
/// programs in Tests/DataTests/Fixtures/README.md, decoded to RGB
/// exactly as TensorFlow 2.21's `decode_jpeg(channels: 3)` does (SHA-256 of its pixels, both IDCTs).
@Suite struct CMYKJPEGTests {
  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
  static let expected: [(file: String, dct: DCTMethod, sha256: String)] = [
    ("cmyk-444.jpg", .accurate, "b75f24fb011f45058411b1a8599e1edc96913c3e9d540f12b774086399d6d498"),
    ("cmyk-444.jpg", .fast, "751d5cb83b913da0666b76e6280aa225b850095db842ca5cbb5e56e2a11b7e7f"),
    ("cmyk-420.jpg", .accurate, "8c3cf47c902dcf5e35c469e8443819333daa93f4142d1998db2f84517261d870"),
    ("cmyk-420.jpg", .fast, "7eb81a4c3bb453f0d829ae26de3392a2702f7efadbac2f54bc65ce2e06cbddd9"),
    // YCCK (Adobe transform 2) as libjpeg-turbo itself writes it from CMYK pixels: Y and K full size, Cb and Cr 2 x 2.
    ("ycck-420.jpg", .accurate, "ed30937ee1db38cb6aa84e1a0fc51ab84186da63990919a88a5ac72d57dd42b5"),
    ("ycck-420.jpg", .fast, "098251c59b074561328a1d8ab24f40e4f433d123bd61c583ef2a7e18a7ece760"),
  ]

  @Test func cmykDecodesToTensorFlowsRGB() throws {
    for (file, dct, sha256) in CMYKJPEGTests.expected {
      let bytes = try Array(Data(contentsOf: CMYKJPEGTests.fixtures.appendingPathComponent(file)))
      #expect(try JPEG.info(bytes).components == 4)
      let image = try JPEG.decode(bytes, channels: 3, dct: dct)
      #expect(SHA256.hash(image.pixels).hexString == sha256, "\(file) (\(dct))")
      #expect(throws: JPEGError.self) { try JPEG.decode(bytes, channels: 1) }
    }
  }
}

/// Arithmetic-coded JPEGs (SOF9, SOF10; with and without restart markers; grey, 4:4:4, 4:2:0,
/// CMYK), made by libjpeg-turbo's jpegtran from Huffman JPEGs (Tests/DataTests/Fixtures/README.md),
/// decoded exactly as TensorFlow 2.21's `decode_jpeg(channels: 3)` does, both IDCTs.
@Suite struct ArithmeticJPEGTests {
  static let expected: [(file: String, accurate: String, fast: String)] = [
    ("arith-420.jpg", "738c8513e44a78e300c31e2d6be7a4ee94c3d3ae68a75fdb838a7b904c7ffddf",
     "a49b3ba2bc649fc4a6b4455b02635ab3c31db60e3b46e6ef6bc5747f42d2c086"),
    ("arith-420-progressive.jpg", "738c8513e44a78e300c31e2d6be7a4ee94c3d3ae68a75fdb838a7b904c7ffddf",
     "a49b3ba2bc649fc4a6b4455b02635ab3c31db60e3b46e6ef6bc5747f42d2c086"),
    ("arith-gray-restart.jpg", "56db268fa8d61fca9a2b19bf94740b7607169c764f15948aef282f72e6661245",
     "f0ea5608ef727698a099de97d41cb2540d553472b4a51f8ebb6f57d96a391d6c"),
    ("arith-444-progressive-restart.jpg", "096a3f3aeab2dcaf607d943f7cf21fba48d6056fca2191e780c6c9e0d370bf14",
     "2e208c946d04ae9ce19e6649df3a18886970e00c342863a2e33171e67a8f598c"),
    ("arith-cmyk-420.jpg", "8c3cf47c902dcf5e35c469e8443819333daa93f4142d1998db2f84517261d870",
     "7eb81a4c3bb453f0d829ae26de3392a2702f7efadbac2f54bc65ce2e06cbddd9"),
    ("arith-ycck-420.jpg", "ed30937ee1db38cb6aa84e1a0fc51ab84186da63990919a88a5ac72d57dd42b5",
     "098251c59b074561328a1d8ab24f40e4f433d123bd61c583ef2a7e18a7ece760"),
  ]

  static func fixture(_ name: String) throws -> [UInt8] {
    try Array(Data(contentsOf: CMYKJPEGTests.fixtures.appendingPathComponent(name)))
  }

  @Test func arithmeticCodedJPEGsDecodeToTensorFlowsPixels() throws {
    for (file, accurate, fast) in Self.expected {
      let bytes = try Self.fixture(file)
      #expect(SHA256.hash(try JPEG.decode(bytes, dct: .accurate).pixels).hexString == accurate, "\(file) (accurate)")
      #expect(SHA256.hash(try JPEG.decode(bytes, dct: .fast).pixels).hexString == fast, "\(file) (fast)")
    }
  }

  /// A lossless transcode holds the Huffman file's coefficients, so every scale decodes the same.
  @Test func sameCoefficientsAsTheHuffmanSource() throws {
    let huffman = try Self.fixture("huffman-420.jpg")
    for file in ["arith-420.jpg", "arith-420-progressive.jpg"] {
      let bytes = try Self.fixture(file)
      for scale in [1, 2, 4, 8] {
        #expect(try JPEG.decode(bytes, scale: scale) == (try JPEG.decode(huffman, scale: scale)), "\(file) at 1/\(scale)")
      }
      #expect(try JPEG.info(bytes).progressive == file.contains("progressive"))
    }
  }

  /// Cut short or damaged, an arithmetic-coded image is named as such and never traps.
  @Test func damagedArithmeticDataIsAnErrorNotACrash() throws {
    let bytes = try Self.fixture("arith-gray-restart.jpg")
    // Cut in the middle of the entropy-coded data: a missing restart marker or the missing end.
    #expect(throws: JPEGError.self) { try JPEG.decode(Array(bytes[..<(bytes.count / 2)])) }
    // Every byte of the data flipped in turn: an error or an image, never a crash.
    var mutated = bytes
    for i in stride(from: 200, to: bytes.count - 2, by: 3) {
      mutated[i] ^= 0x5A
      _ = try? JPEG.decode(mutated)
      mutated[i] = bytes[i]
    }
  }
}

/// Lossless JPEGs (SOF3) from the project's own encoder (Tests/DataTests/Fixtures/README.md),
/// decoded exactly as libjpeg-turbo 3.2 decodes them (SHA-256 of Pillow 13's pixels): every
/// predictor, a point transform, restart intervals, one scan per component.
@Suite struct LosslessJPEGTests {
  static let expected: [(file: String, channels: Int, sha256: String)] = [
    ("gray-p6-pt2.jpg", 1, "b56aeba2b0a6b8c19a21f168320a7991e3e17eb0602ac19dde47c187c84cd393"),
    ("rgb-p1.jpg", 3, "54ef90fb12c34ce00bb34be3ffaf529d570b0398c81bb9fbe61440b524a8ec7f"),
    ("rgb-p2.jpg", 3, "36e5b8eb94c94e7606399323e387adbf69045785b399efd62f6c8de44e191abe"),
    ("rgb-p3.jpg", 3, "70d88a9d955f05c5bb1b6bd66dc5d74b3964c83eddd556a70c868ae4bd6142d5"),
    ("rgb-p4-restart2.jpg", 3, "0a2a3cff5479247a9df4ed533e30acf0e348f8138709d2297fb6b3edbe3a9a5c"),
    ("rgb-p4.jpg", 3, "91ff4392cc2700df7633d49ec0f744be6be56492d7114c9ca66da6e824e3e923"),
    ("rgb-p5.jpg", 3, "2a2c23d84364066690324d5f0b21addeb466b3ede734ac32dfa8a193d1f1de83"),
    ("rgb-p6.jpg", 3, "1dfdf2accf84d11abd58cadef13fb070e8c6312dca0f425742eb893e54e52981"),
    ("rgb-p7-separate-scans-restart3.jpg", 3, "b3c3dc95b95dbccf978a5e0e382344f7cf65b4ec284bef69741265006aa154d2"),
    ("rgb-p7.jpg", 3, "0217e3c40733ed535bb145ce82c17d7c43b45ff88e6e69abef91d97d6e59a9fe"),
  ]

  static func fixture(_ name: String) throws -> [UInt8] {
    try Array(Data(contentsOf: CMYKJPEGTests.fixtures.appendingPathComponent("lossless").appendingPathComponent(name)))
  }

  @Test func losslessJPEGsDecodeToLibjpegTurbosPixels() throws {
    for (file, channels, sha256) in Self.expected {
      let bytes = try Self.fixture(file)
      #expect(try JPEG.info(bytes).lossless, "\(file)")
      let image = try JPEG.decode(bytes, channels: channels)
      #expect(SHA256.hash(image.pixels).hexString == sha256, "\(file)")
      // The IDCT choice means nothing without a DCT.
      #expect(try JPEG.decode(bytes, channels: channels, dct: .fast) == image, "\(file)")
    }
    // Grey to RGB is an exact copy (libjpeg-turbo refuses even that for lossless images).
    let grey = try JPEG.decode(try Self.fixture("gray-p6-pt2.jpg"), channels: 1)
    #expect(try JPEG.decode(try Self.fixture("gray-p6-pt2.jpg"), channels: 3).pixels == grey.pixels.flatMap { [$0, $0, $0] })
    // A point transform of 2: every sample a multiple of 4.
    #expect(grey.pixels.allSatisfy { $0 % 4 == 0 })
  }

  /// What libjpeg-turbo refuses, refused by name: the lossy colour conversions of a lossless
  /// image, the arithmetic-coded form (SOF11), a scaled decode; damaged data is an error.
  @Test func refusalsAndDamage() throws {
    func message(_ bytes: [UInt8], channels: Int = 3, scale: Int = 1) -> String {
      do { _ = try JPEG.decode(bytes, channels: channels, scale: scale) } catch { return "\(error)" }
      return "decoded"
    }
    #expect(message(try Self.fixture("ycbcr-jfif-p5.jpg")).contains("lossless JPEG in YCbCr"))
    let rgb = try Self.fixture("rgb-p1.jpg")
    #expect(message(rgb, channels: 1).contains("lossless colour JPEG to one channel"))
    #expect(message(rgb, scale: 2).contains("1/2 scale"))
    var sof11 = rgb
    if let at = (1..<sof11.count).first(where: { sof11[$0 - 1] == 0xFF && sof11[$0] == 0xC3 }) { sof11[at] = 0xCB }
    #expect(message(sof11).contains("lossless arithmetic-coded frame (SOF11)"))
    #expect(message(Array(rgb[..<(rgb.count * 2 / 3)])).contains("truncated") || message(Array(rgb[..<(rgb.count * 2 / 3)])).contains("ends"))
    var mutated = try Self.fixture("rgb-p4-restart2.jpg")
    let original = mutated
    for i in stride(from: 40, to: original.count - 2, by: 2) {
      mutated[i] ^= 0x3C
      _ = try? JPEG.decode(mutated)
      mutated[i] = original[i]
    }
  }
}
