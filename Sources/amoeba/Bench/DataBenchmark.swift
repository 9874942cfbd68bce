import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CLI
import Data
import JPEG
import Tensor
import Train

/// `amoeba bench data [--fixtures DIR] [--out DIR] [--repeats N] [--image_size 224] [--images 64]`:
///
/// 1. JPEG decode, one thread: MB/s of JPEG bytes and images/s over the fixture JPEGs and over
///    photos of ImageNet's typical size (500×375: four fixture pictures at their own resolution in
///    the quadrants, encoded at quality 90 by `JPEGEncoder`), or over `--photos DIR`'s JPEGs, made
///    by another encoder (`Scripts/peers/make_photos.py`). `--out DIR` keeps the JPEGs so that
///    `Scripts/peers/pillow_decode_bench.py DIR` times Pillow on the same files.
/// 2. The training pipeline (read, CRC, parse, decode, distorted crop, resize, flip, colour) at
///    `--image_size` on 1 and 2 threads, in images/s.
struct DataBenchmark {
  var fixtures: String
  var out: String
  var repeats: Int
  var imageSize: Int
  var images: Int
  var photoDirectory: String

  init(flags: Flags) throws {
    var flags = flags
    fixtures = flags.string("fixtures", default: "../shared/testdata/imagenet-format")
    out = flags.string("out", default: "")
    repeats = try flags.int("repeats", default: 5)
    imageSize = try flags.int("image_size", default: 224)
    images = try flags.int("images", default: 64)
    photoDirectory = flags.string("photos", default: "")
    try flags.finish()
  }

  func run() throws {
    print("bench data on \(machineDescription())")
    let fixtureJPEGs = try readFixtures()
    let photos: [[UInt8]], photoSet: String
    if photoDirectory.isEmpty {
      photos = makePhotos(from: fixtureJPEGs, count: images)
      photoSet = "\(photos.count), 500x375 q90 4:2:0"
      guard !photos.isEmpty else { throw UsageError("no fixture picture is at least 150 pixels a side to build the 500x375 photos from") }
    } else {
      photos = try readPhotos(photoDirectory)
      photoSet = "\(photos.count) from \(photoDirectory)"
    }
    if !out.isEmpty {
      try FileIO.makeDirectory(out)
      for (i, jpeg) in fixtureJPEGs.enumerated() { try FileIO.writeAtomically(jpeg, to: "\(out)/fixture-\(i).jpg") }
      for (i, jpeg) in photos.enumerated() { try FileIO.writeAtomically(jpeg, to: "\(out)/photo-\(i).jpg") }
      print("wrote \(fixtureJPEGs.count) fixture and \(photos.count) photo JPEGs to \(out)")
    }
    print("decode (1 thread, median of \(repeats)):")
    for (name, set) in [("fixtures (\(fixtureJPEGs.count), 37x53 to 256x256)", fixtureJPEGs), ("photos (\(photoSet))", photos)] {
      let bytes = set.reduce(0) { $0 + $1.count }
      let failures = set.filter { (try? JPEG.decode($0)) == nil }.count
      guard failures == 0 else { throw UsageError("\(failures) of the \(name) JPEGs do not decode") }
      let seconds = medianSeconds(repeats: repeats) {
        for jpeg in set { _ = try? JPEG.decode(jpeg) }
      }
      print("  \(name): \(format(Double(bytes) / seconds / 1e6, 1)) MB/s, \(format(Double(set.count) / seconds, 1)) images/s")
    }
    let fast = medianSeconds(repeats: repeats) { for jpeg in photos { _ = try? JPEG.decode(jpeg, dct: .fast) } }
    print("  photos with the fast IDCT (TensorFlow's default): \(format(Double(photos.count) / fast, 1)) images/s")
    for scale in [2, 4, 8] {
      let seconds = medianSeconds(repeats: repeats) { for jpeg in photos { _ = try? JPEG.decode(jpeg, scale: scale) } }
      print("  photos at 1/\(scale) scale: \(format(Double(photos.count) / seconds, 1)) images/s")
    }

    // The pipeline over a shard of the photos.
    let directory = "/tmp/amoeba-bench-data-\(getpid())"
    _ = mkdir(directory, 0o755)
    defer { for name in ["train-00000-of-00001", "validation-00000-of-00001"] { unlink("\(directory)/\(name)") }; rmdir(directory) }
    let records = photos.enumerated().map { i, jpeg in
      Example(features: ["image/encoded": .bytes([jpeg]), "image/class/label": .int64s([Int64(1 + i % 1000)])]).encoded()
    }
    try FileIO.writeAtomically(TFRecord.encode(records), to: "\(directory)/train-00000-of-00001")
    try FileIO.writeAtomically(TFRecord.encode(Array(records.prefix(1))), to: "\(directory)/validation-00000-of-00001")
    let batch = photos.count
    let pixels = UnsafeMutablePointer<Float>.allocateAligned(batch * imageSize * imageSize * 3), labels = UnsafeMutablePointer<Float>.allocateAligned(batch)
    defer { pixels.deallocate(); labels.deallocate() }
    print("training pipeline at \(imageSize)x\(imageSize) (read, CRC, parse, decode, crop, resize, flip, colour), median of \(repeats):")
    for downscale in [false, true] {
      let dataset = try ImageNetDataset(directory: directory, imageSize: imageSize, downscale: downscale)
      for threads in [1, 2] {
        let pool = ThreadPool(threadCount: threads)
        let batcher = Batcher(dataset: dataset, split: .train, batchSize: batch)
        var epoch = 0
        // One checked pass first: a pipeline that fails must not be timed as a fast one.
        let report = try batcher.fill(batch: 0, images: pixels, labels: labels, pool: pool)
        guard report.skipped == 0 else { throw UsageError("the pipeline skipped \(report.skipped) records: \(report.firstError!)") }
        let seconds = medianSeconds(repeats: repeats) {
          _ = try? batcher.fill(batch: epoch, images: pixels, labels: labels, pool: pool)
          epoch += 1
        }
        print("  \(threads) thread\(threads == 1 ? "" : "s")\(downscale ? ", --jpeg_downscale" : ""): \(format(Double(batch) / seconds, 1)) images/s")
      }
    }
  }

  func readFixtures() throws -> [[UInt8]] {
    var jpegs: [[UInt8]] = []
    for file in ["train-00000-of-00002", "train-00001-of-00002", "validation-00000-of-00001"] {
      var reader = try TFRecordReader(path: "\(fixtures)/\(file)")
      while let record = try reader.next() {
        if let jpeg = try Example(decoding: record).bytes("image/encoded") { jpegs.append(jpeg) }
      }
    }
    guard !jpegs.isEmpty else { throw UsageError("no JPEGs in \(fixtures); pass --fixtures DIR (the testdata's imagenet-format)") }
    return jpegs
  }

  /// Every .jpg/.jpeg file in `directory`, in name order.
  private func readPhotos(_ directory: String) throws -> [[UInt8]] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
      throw UsageError("--photos \(directory): cannot list the directory; give a folder of JPEG files (Scripts/peers/make_photos.py makes one)")
    }
    let jpegs = names.filter { $0.lowercased().hasSuffix(".jpg") || $0.lowercased().hasSuffix(".jpeg") }.sorted()
    guard !jpegs.isEmpty else { throw UsageError("--photos \(directory): no .jpg or .jpeg files there") }
    return try jpegs.map { try FileIO.read("\(directory)/\($0)") }
  }

  /// 500×375 photos: four fixture pictures at their own resolution (so the detail per pixel is a
  /// photograph's, not an upscaled one's) in the quadrants, encoded at quality 90.
  func makePhotos(from jpegs: [[UInt8]], count: Int) -> [[UInt8]] {
    let sources = jpegs.compactMap { try? JPEG.decode($0) }.filter { $0.width >= 150 && $0.height >= 150 }
    guard !sources.isEmpty else { return [] }
    return (0..<count).map { i in
      var pixels = [UInt8](repeating: 0, count: 500 * 375 * 3)
      for y in 0..<375 {
        for x in 0..<500 {
          let source = sources[(i + (y >= 188 ? 2 : 0) + (x >= 250 ? 1 : 0)) % sources.count]
          let sx = min(x % 250 + i % 7, source.width - 1), sy = min(y % 188 + i % 5, source.height - 1)
          for c in 0..<3 { pixels[(y * 500 + x) * 3 + c] = source.pixels[(sy * source.width + sx) * 3 + c] }
        }
      }
      return JPEGEncoder(quality: 90).encode(pixels, width: 500, height: 375, channels: 3)
    }
  }
}
