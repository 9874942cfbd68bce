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
