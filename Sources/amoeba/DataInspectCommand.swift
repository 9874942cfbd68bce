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

  /// `--scale 2|4|8`: decode at that fraction of the size (DCT-domain downscaling).
  var scale = 1
  /// `--dct=fast`: libjpeg's fast IDCT (TensorFlow's default) instead of the accurate one.
  var dct = DCTMethod.accurate

  init(arguments: [String]) throws {
    if arguments.contains("--help") || arguments.contains("-h") {
      throw HelpRequested(listing: [("hashes", "false"), ("scale", "1"), ("dct", "accurate")])
    }
    var rest = arguments
    if let i = rest.firstIndex(where: { $0 == "--scale" || $0.hasPrefix("--scale=") }) {
      let text = rest[i].hasPrefix("--scale=") ? String(rest[i].dropFirst(8)) : (i + 1 < rest.count ? rest[i + 1] : "")
      guard let value = Int(text), [1, 2, 4, 8].contains(value) else { throw UsageError("--scale must be 1, 2, 4 or 8") }
      scale = value
      rest.removeSubrange(i...(rest[i].hasPrefix("--scale=") ? i : i + 1))
    }
    if let i = rest.firstIndex(of: "--dct=fast") {
      dct = .fast
      rest.remove(at: i)
    }
    files = rest.filter { !$0.hasPrefix("--") }
    hashes = rest.contains("--hashes")
    guard !files.isEmpty, files.count + (hashes ? 1 : 0) == rest.count else {
      throw UsageError("usage: amoeba data inspect [--hashes [--scale 2|4|8] [--dct=fast]] FILE...")
    }
  }

  func run() -> Int32 {
    var damagedInAll = 0
    for file in files {
      var labels: [Int64: Int] = [:], sizes: [String: Int] = [:], count = 0, problems: [String] = [], damaged = 0
      do {
        // The index follows the framing (each length checked by its CRC) so a record whose data is
        // damaged is reported and the records after it are still read.
        let index = try TFRecordIndex(files: [file])
        for i in 0..<index.count {
          count += 1
          let before = problems.count
          defer { if problems.count > before { damaged += 1 } }
          let record: [UInt8]
          do { record = try index.read(i) } catch { problems.append(error.description); continue }
          let name = index.location(i)
          do {
            let example = try Example(decoding: record)
            if let label = example.int64("image/class/label") { labels[label, default: 0] += 1 } else {
              problems.append("\(name): no image/class/label")
            }
            if let jpeg = example.bytes("image/encoded") {
              do {
                let image = try JPEG.decode(jpeg, scale: scale, dct: dct)
                sizes["\(image.width)x\(image.height)", default: 0] += 1
                if hashes { print("  record \(i): \(image.width)x\(image.height) decoded sha256 \(SHA256.hash(image.pixels).hexString)") }
              } catch {
                problems.append("\(name): image/encoded: \(error)")
              }
            } else {
              problems.append("\(name): no image/encoded")
            }
          } catch {
            problems.append("\(name): not a tf.train.Example: \(error)")
          }
        }
        // A damaged header ends what can be read of the file: the rest is one damaged tail.
        problems += index.damage.map(\.description)
        damaged += index.damage.count
      } catch {
        problems.append(error.description)
        damaged += 1
      }
      print("\(file): \(count) records" + (damaged == 0 ? "" : ", \(damaged) damaged"))
      print("  labels: " + labels.keys.sorted().map { "\($0):\(labels[$0]!)" }.joined(separator: " "))
      print("  image sizes (w x h): " + sizes.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key)×\($0.value)" }.joined(separator: " "))
      for problem in problems { print("  damaged: \(problem)") }
      damagedInAll += damaged
    }
    return damagedInAll == 0 ? 0 : 1
  }
}
