#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JPEG
import Tensor

/// Writes a small ImageNet in the exact layout of `imagenet_to_gcs.py` — `train-00000-of-0000N`,
/// `validation-…`, `tf.train.Example`s with a real JPEG and every feature the converter writes —
/// for smoke tests of the real input path, like the reference's `fake_imagenet`. The pictures are
/// the built-in dataset's ten learnable classes (labels 1...10), drawn larger than the model's
/// input and cut to varying sizes and aspect ratios so that the crop and resize have work to do.
public struct FakeImageNet: Sendable {
  public var trainShards = 2
  public var validationShards = 1
  public var trainImages = 1000
  public var validationImages = 200
  public var imageSize = 64
  public var quality = 90
  public var seed: UInt64 = 2018
  /// Where to write each validation image also as a plain JPEG file under its `image/filename`
  /// (nil: not at all) — pictures for `amoeba predict`.
  public var jpegDirectory: String?
  /// Where to write the same pictures as ImageNet ships (nil: not at all): `train/<synset>/*.JPEG`,
  /// `validation/*.JPEG` and `synset_labels.txt` — the input of `amoeba data convert`.
  public var rawDirectory: String?

  public init() {}

  /// Returns the paths written.
  public func write(to directory: String, pool: ThreadPool) throws(DataError) -> [String] {
    if mkdir(directory, 0o755) != 0 && errno != EEXIST {
      throw .io(file: directory, reason: "cannot create the directory: \(String(cString: strerror(errno)))")
    }
    var written: [String] = []
    for (split, shards, images) in [(Split.train, trainShards, trainImages), (.validation, validationShards, validationImages)] where shards > 0 {
      for shard in 0..<shards {
        let range = (images * shard / shards)..<(images * (shard + 1) / shards)
        let records = UnsafeMutablePointer<[UInt8]>.allocate(capacity: range.count)
        records.initialize(repeating: [], count: range.count)
        defer { records.deinitialize(count: range.count); records.deallocate() }
        pool.parallelFor(range.count) { i, _ in records[i] = record(split, range.lowerBound + i).example }
        let name = "\(directory)/\(split.rawValue)-\(Self.digits(shard))-of-\(Self.digits(shards))"
        try Self.writeAtomically(TFRecord.encode(Array(UnsafeBufferPointer(start: records, count: range.count))), to: name)
        written.append(name)
      }
    }
    if let rawDirectory { try writeRaw(to: rawDirectory) }
    if let jpegDirectory, validationShards > 0 {
      if mkdir(jpegDirectory, 0o755) != 0 && errno != EEXIST {
        throw .io(file: jpegDirectory, reason: "cannot create the directory: \(String(cString: strerror(errno)))")
      }
      for index in 0..<validationImages {
        let (_, jpeg, name) = record(.validation, index)
        try Self.writeAtomically(jpeg, to: jpegDirectory + "/" + name)
      }
      written.append(jpegDirectory + "/FAKE_val_*.JPEG")
    }
    return written
  }

  func writeRaw(to directory: String) throws(DataError) {
    func makeDirectory(_ path: String) throws(DataError) {
      if mkdir(path, 0o755) != 0 && errno != EEXIST { throw .io(file: path, reason: "cannot create the directory: \(String(cString: strerror(errno)))") }
    }
    try makeDirectory(directory)
    try makeDirectory(directory + "/train")
    try makeDirectory(directory + "/validation")
    for index in 0..<trainImages {
      let (_, jpeg, name) = record(.train, index)
      let synset = String(name.prefix { $0 != "_" })
      try makeDirectory("\(directory)/train/\(synset)")
      try Self.writeAtomically(jpeg, to: "\(directory)/train/\(synset)/\(name)")
    }
    var labels: [String] = []
    for index in 0..<validationImages {
      let (example, jpeg, name) = record(.validation, index)
      try Self.writeAtomically(jpeg, to: "\(directory)/validation/\(name)")
      let parsed = try? Example(decoding: example)
      labels.append(parsed?.bytes("image/class/synset").map { String(decoding: $0, as: UTF8.self) } ?? "")
    }
    // One synset per validation file, in sorted file-name order (the names sort as the indices do).
    try Self.writeAtomically(Array((labels.joined(separator: "\n") + "\n").utf8), to: directory + "/synset_labels.txt")
  }

  static func digits(_ n: Int) -> String {
    let s = String(n)
    return String(repeating: "0", count: max(0, 5 - s.count)) + s
  }

  /// One serialized `tf.train.Example`, its JPEG and its file name.
  func record(_ split: Split, _ index: Int) -> (example: [UInt8], jpeg: [UInt8], name: String) {
    let drawn = imageSize * 5 / 4
    let source = BuiltInDataset(imageSize: drawn, seed: seed)
    var floats = [Float](repeating: 0, count: drawn * drawn * 3)
    let label = floats.withUnsafeMutableBufferPointer { source.example(split, index, into: $0.baseAddress!) } + 1
    var draws = InceptionPreprocessing.Draws(seed: seed, stream: split == .train ? 101 : 102)
    draws.index = UInt64(index) * 4
    let width = max(8, drawn - draws.below(drawn / 4 + 1)), height = max(8, drawn - draws.below(drawn / 4 + 1))
    var pixels = [UInt8](repeating: 0, count: width * height * 3)
    for y in 0..<height {
      for x in 0..<width {
        for c in 0..<3 {
          pixels[(y * width + x) * 3 + c] = UInt8(clamping: Int(((floats[(y * drawn + x) * 3 + c] + 1) * 127.5).rounded()))
        }
      }
    }
    let jpeg = JPEGEncoder(quality: quality).encode(pixels, width: width, height: height, channels: 3)
    let synset = "n" + String(repeating: "0", count: max(0, 8 - String(label).count)) + String(label)
    let name = split == .train ? "\(synset)_\(index).JPEG" : "FAKE_val_\(Self.digits(index)).JPEG"
    func bytes(_ s: String) -> Example.Feature { .bytes([Array(s.utf8)]) }
    let example = Example(features: [
      "image/encoded": .bytes([jpeg]), "image/format": bytes("JPEG"),
      "image/class/label": .int64s([Int64(label)]), "image/class/synset": bytes(synset),
      "image/height": .int64s([Int64(height)]), "image/width": .int64s([Int64(width)]),
      "image/colorspace": bytes("RGB"), "image/channels": .int64s([3]), "image/filename": bytes(name),
    ]).encoded()
    return (example, jpeg, name)
  }

  static func writeAtomically(_ bytes: [UInt8], to path: String) throws(DataError) {
    let temporary = path + ".partial"
    guard let f = fopen(temporary, "wb") else { throw .io(file: temporary, reason: String(cString: strerror(errno))) }
    let n = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    let closed = fclose(f)
    guard n == bytes.count, closed == 0 else { throw .io(file: temporary, reason: "write failed: \(String(cString: strerror(errno)))") }
    guard rename(temporary, path) == 0 else { throw .io(file: path, reason: "rename failed: \(String(cString: strerror(errno)))") }
  }
}
