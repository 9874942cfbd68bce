import CLI
import Checksums
import Data
import JPEG

/// `amoeba data inspect FILE…`: per TFRecord file, the record count, the label histogram, the image
/// sizes (from decoding each JPEG, not from the record's own fields) and every damaged record,
/// example or JPEG, by index and offset.
struct DataInspectCommand {
  var files: [String]
  /// `--hashes`: also print each image's size and the SHA-256 of its decoded RGB bytes, to compare
  /// with another decoder (TensorFlow's INTEGER_ACCURATE and Pillow give the same bytes).
  var hashes: Bool

  init(arguments: [String]) throws {
    files = arguments.filter { !$0.hasPrefix("--") }
    hashes = arguments.contains("--hashes")
    guard !files.isEmpty, files.count + (hashes ? 1 : 0) == arguments.count else {
      throw UsageError("usage: amoeba data inspect [--hashes] FILE...")
    }
  }

  func run() -> Int32 {
    var damaged = 0
    for file in files {
      var labels: [Int64: Int] = [:], sizes: [String: Int] = [:], count = 0, problems: [String] = []
      do {
        var reader = try TFRecordReader(path: file)
        while true {
          let offset = reader.offset, index = reader.index
          let record: ArraySlice<UInt8>?
          do { record = try reader.next() } catch { problems.append(error.description); break }
          guard let record else { break }
          count += 1
          do {
            let example = try Example(decoding: record)
            if let label = example.int64("image/class/label") { labels[label, default: 0] += 1 } else {
              problems.append("record \(index) at offset \(offset): no image/class/label")
            }
            if let jpeg = example.bytes("image/encoded") {
              do {
                let image = try JPEG.decode(jpeg)
                sizes["\(image.width)x\(image.height)", default: 0] += 1
                if hashes { print("  record \(index): \(image.width)x\(image.height) decoded sha256 \(SHA256.hash(image.pixels).hexString)") }
              } catch {
                problems.append("record \(index) at offset \(offset): image/encoded: \(error)")
              }
            } else {
              problems.append("record \(index) at offset \(offset): no image/encoded")
            }
          } catch {
            problems.append("record \(index) at offset \(offset): not a tf.train.Example: \(error)")
          }
        }
      } catch {
        problems.append(error.description)
      }
      print("\(file): \(count) records")
      print("  labels: " + labels.keys.sorted().map { "\($0):\(labels[$0]!)" }.joined(separator: " "))
      print("  image sizes (w x h): " + sizes.sorted { $0.value > $1.value }.map { "\($0.key)×\($0.value)" }.joined(separator: " "))
      for problem in problems { print("  damaged: \(problem)") }
      damaged += problems.count
    }
    return damaged == 0 ? 0 : 1
  }
}
