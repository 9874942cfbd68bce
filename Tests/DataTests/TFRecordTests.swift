import Testing
import Foundation
import Checksums
@testable import Data

/// The fixtures written by TensorFlow 2.21 (read their README): `$AMOEBA_TESTDATA`, else
/// `../shared/testdata` beside the checkout, else `/work/shared/testdata`.
let testdata: String = {
  var url = URL(fileURLWithPath: #filePath)
  for _ in 0..<4 { url.deleteLastPathComponent() }  // Tests/DataTests/<file> → the checkout's parent
  let candidates = [ProcessInfo.processInfo.environment["AMOEBA_TESTDATA"], url.appendingPathComponent("shared/testdata").path,
                    "/work/shared/testdata"].compactMap { $0 }
  return candidates.first { FileManager.default.fileExists(atPath: $0 + "/tfrecord-corrupt/intact.tfrecord") } ?? candidates[1]
}()
let testdataPresent = FileManager.default.fileExists(atPath: testdata + "/tfrecord-corrupt/intact.tfrecord")

func readAll(_ path: String) -> (records: [[UInt8]], error: DataError?) {
  var records: [[UInt8]] = []
  do {
    var reader = try TFRecordReader(path: path)
    while let record = try reader.next() { records.append(Array(record)) }
    return (records, nil)
  } catch {
    return (records, error)
  }
}

@Suite(.enabled(if: testdataPresent, "the TensorFlow fixtures (../shared/testdata or $AMOEBA_TESTDATA) are not here"))
struct TFRecordTests {
  let corrupt = testdata + "/tfrecord-corrupt/"

  @Test func intactFileGivesThreeRecordsAndACleanEnd() {
    let (records, error) = readAll(corrupt + "intact.tfrecord")
    #expect(records.count == 3 && records.allSatisfy { $0.count == 1363 })
    #expect(error == nil)
  }

  @Test func dataCRCMismatchReturnsOneRecordThenNamesRecordOne() {
    let (records, error) = readAll(corrupt + "data-crc-mismatch.tfrecord")
    #expect(records.count == 1)
    guard case let .corruptRecord(file, index, offset, reason)? = error else { Issue.record("no error"); return }
    #expect(file.hasSuffix("data-crc-mismatch.tfrecord") && index == 1 && offset == 1379)
    #expect(reason.contains("data CRC mismatch") && reason.contains("1391"))
  }

  @Test func truncatedFinalRecordReturnsTwoRecordsThenNamesRecordTwo() {
    let (records, error) = readAll(corrupt + "truncated-final-record.tfrecord")
    #expect(records.count == 2)
    guard case let .corruptRecord(_, index, offset, reason)? = error else { Issue.record("no error"); return }
    #expect(index == 2 && offset == 2758 && reason.contains("truncated record"))
  }

  @Test func lengthCRCMismatchIsCaughtBeforeTheLengthIsUsed() {
    let (records, error) = readAll(corrupt + "length-crc-mismatch.tfrecord")
    #expect(records.count == 1)
    guard case let .corruptRecord(_, index, offset, reason)? = error else { Issue.record("no error"); return }
    #expect(index == 1 && offset == 1379 && reason.contains("length CRC mismatch"))
  }

  @Test func truncatedHeaderNeverYieldsAThirdRecord() {
    let (records, error) = readAll(corrupt + "truncated-header.tfrecord")
    #expect(records.count == 2)
    guard case let .corruptRecord(_, index, offset, reason)? = error else { Issue.record("expected a truncated-header error"); return }
    #expect(index == 2 && offset == 2758 && reason.contains("truncated header"))
  }

  @Test func writerOutputReadsBack() throws {
    let records: [[UInt8]] = [[], [1, 2, 3], [UInt8](repeating: 7, count: 10_000)]
    var reader = TFRecordReader(bytes: TFRecord.encode(records), name: "memory")
    var back: [[UInt8]] = []
    while let record = try reader.next() { back.append(Array(record)) }
    #expect(back == records)
    // The intact fixture re-encodes byte for byte.
    let intact = [UInt8](try Data(contentsOf: URL(fileURLWithPath: corrupt + "intact.tfrecord")))
    #expect(TFRecord.encode(readAll(corrupt + "intact.tfrecord").records) == intact)
  }
}

@Suite struct ExampleTests {
  struct Expected: Decodable {
    let file: String, index: Int, filename: String, label: Int, synset: String, text: String, height: Int, width: Int
    let encoded_sha256: String
  }

  @Test(.enabled(if: testdataPresent, "the TensorFlow fixtures are not here"))
  func imagenetShardsDecodeToTheReferenceFeatures() throws {
    let json = try Data(contentsOf: URL(fileURLWithPath: testdata + "/imagenet-format/expected.json"))
    struct Root: Decodable { let files: [String: Int]; let records: [Expected] }
    let root = try JSONDecoder().decode(Root.self, from: json)
    #expect(root.records.count == 24)
    for (file, count) in root.files {
      let (records, error) = readAll(testdata + "/imagenet-format/" + file)
      #expect(error == nil)
      #expect(records.count == count, "\(file)")
      for expected in root.records where expected.file == file {
        let example = try Example(decoding: records[expected.index])
        #expect(example.int64("image/class/label") == Int64(expected.label))
        #expect(example.string("image/filename") == expected.filename)
        #expect(example.string("image/class/synset") == expected.synset)
        #expect(example.string("image/class/text") == expected.text)
        #expect(example.int64("image/height") == Int64(expected.height) && example.int64("image/width") == Int64(expected.width))
        let jpeg = example.bytes("image/encoded") ?? []
        #expect(jpeg.prefix(2) == [0xFF, 0xD8])
        #expect(SHA256.hash(jpeg).hexString == expected.encoded_sha256)
      }
    }
  }

  @Test func encodingRoundTripsAndUnpackedNumbersAndUnknownFieldsAreRead() throws {
    let example = Example(features: ["image/class/label": .int64s([968, -1]), "weights": .floats([0.5, -2]),
                                     "image/encoded": .bytes([[0xFF, 0xD8, 0xFF], []])])
    #expect(try Example(decoding: example.encoded()) == example)
    // Int64List with one unpacked value, then an unknown varint field 9 in the Example.
    let feature: [UInt8] = [0x1A, 0x03, 0x08, 0x96, 0x01]  // int64_list { value: 150 } unpacked
    let key = Array("n".utf8)
    let entry: [UInt8] = [0x0A, UInt8(key.count)] + key + [0x12, UInt8(feature.count)] + feature
    let features: [UInt8] = [0x0A, UInt8(entry.count)] + entry
    let message: [UInt8] = [0x48, 0x05, 0x0A, UInt8(features.count)] + features
    #expect(try Example(decoding: message).int64("n") == 150)
  }

  @Test func malformedBytesAreErrorsNotCrashes() {
    var state: UInt64 = 12345
    var failures = 0
    let good = Example(features: ["a": .bytes([[1, 2, 3]]), "b": .int64s([1, 2])]).encoded()
    for _ in 0..<2000 {
      var bytes = good
      state = state &* 6364136223846793005 &+ 1442695040888963407
      let position = Int(state >> 33) % bytes.count
      bytes[position] ^= UInt8(truncatingIfNeeded: state >> 13) | 1
      if (try? Example(decoding: bytes)) == nil { failures += 1 }
      _ = try? Example(decoding: Array(bytes.prefix(position)))
    }
    #expect(failures > 0)
  }
}
