import CLI
import Data

/// `amoeba data inspect FILE…`: per TFRecord file, the record count, the label histogram, the image
/// sizes (read from each JPEG's frame header, not from the record's own fields) and every damaged
/// record or example, by index and offset.
struct DataInspectCommand {
  var files: [String]

  init(arguments: [String]) throws {
    files = arguments.filter { !$0.hasPrefix("--") }
    guard !files.isEmpty, files.count == arguments.count else { throw UsageError("usage: amoeba data inspect FILE...") }
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
            if let jpeg = example.bytes("image/encoded"), let (h, w) = DataInspectCommand.jpegSize(jpeg) {
              sizes["\(w)x\(h)", default: 0] += 1
            } else {
              problems.append("record \(index) at offset \(offset): image/encoded is missing or not a JPEG")
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

  /// Height and width from the first SOF marker of a JPEG, or nil.
  static func jpegSize(_ jpeg: [UInt8]) -> (Int, Int)? {
    guard jpeg.count > 4, jpeg[0] == 0xFF, jpeg[1] == 0xD8 else { return nil }
    var i = 2
    while i + 9 < jpeg.count {
      guard jpeg[i] == 0xFF else { return nil }
      let marker = jpeg[i + 1]
      if marker == 0xFF { i += 1; continue }
      let length = Int(jpeg[i + 2]) << 8 | Int(jpeg[i + 3])
      if (0xC0...0xCF).contains(marker) && ![0xC4, 0xC8, 0xCC].contains(marker) {
        return (Int(jpeg[i + 5]) << 8 | Int(jpeg[i + 6]), Int(jpeg[i + 7]) << 8 | Int(jpeg[i + 8]))
      }
      i += 2 + length
    }
    return nil
  }
}
