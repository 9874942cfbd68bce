#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JPEG
import Synchronization
import Tensor

/// ImageNet as `imagenet_to_gcs.py` (or `amoeba data make-fake`) writes it: `train-NNNNN-of-NNNNN` and
/// `validation-NNNNN-of-NNNNN` TFRecord shards of `tf.train.Example`s with `image/encoded` (JPEG) and
/// `image/class/label` (1...1000). Each example is read, decoded and preprocessed on demand.
///
/// The training order of an epoch is the reference's kind of shuffle — the files in a seeded
/// order, then records shuffled within a window of `shuffleBuffer` — computed rather than
/// buffered, so each record is still seen exactly once per epoch and reads stay within a few
/// files at a time.
public final class ImageNetDataset: Dataset {
  public let directory: String
  public let imageSize: Int
  public let classCount: Int
  public let train: TFRecordIndex
  public let validation: TFRecordIndex

  public func damagedRecords(_ split: Split) -> Int { (split == .train ? train : validation).damage.count }
  public let shuffleBuffer: Int
  public let distortion: InceptionPreprocessing.DistortionOptions
  /// Decode large JPEGs at 1/2, 1/4 or 1/8 scale when the crop still covers the output size at
  /// that scale (the pixels then differ slightly from the reference's full-size decode).
  public let downscale: Bool
  /// The full-size IDCT: `.fast` (TensorFlow's default, the reference's pixels) or `.accurate`.
  public let dct: DCTMethod
  let seed: UInt64

  /// ILSVRC-2012's largest pictures have about 20 million pixels; a record claiming far more is
  /// refused before its memory is touched.
  public static let pixelLimit = 1 << 26

  /// Shard names of each split, sorted.
  public static func shards(in directory: String, split: Split) throws(DataError) -> [String] {
    guard let dir = opendir(directory) else {
      throw .missingShards(directory: directory, reason: "cannot open the directory: \(String(cString: strerror(errno)))")
    }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      // Exactly the converter's names, `train-00000-of-01024`: not a `.partial` left by an
      // interrupted `make-fake`, a download's temporary file or a directory.
      guard isShardName(name, split: split) else { continue }
      var info = stat()
      guard stat(directory + "/" + name, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
      names.append(directory + "/" + name)
    }
    return names.sorted()
  }

  /// `<split>-NNNNN-of-NNNNN`.
  static func isShardName(_ name: String, split: Split) -> Bool {
    let parts = name.split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count == 4, parts[0] == split.rawValue, parts[2] == "of" else { return false }
    return [parts[1], parts[3]].allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
  }

  public init(directory: String, imageSize: Int, classCount: Int = 1001, shuffleBuffer: Int = 1024,
              distortion: InceptionPreprocessing.DistortionOptions = .init(), downscale: Bool = false, dct: DCTMethod = .fast,
              seed: UInt64 = 0) throws(DataError) {
    self.directory = directory; self.imageSize = imageSize; self.classCount = classCount
    self.downscale = downscale; self.dct = dct
    self.shuffleBuffer = max(1, shuffleBuffer); self.distortion = distortion; self.seed = seed
    let trainFiles = try Self.shards(in: directory, split: .train)
    let validationFiles = try Self.shards(in: directory, split: .validation)
    guard !trainFiles.isEmpty || !validationFiles.isEmpty else {
      throw .missingShards(directory: directory, reason: "no TFRecord shards named train-NNNNN-of-NNNNN or validation-NNNNN-of-NNNNN (make them with imagenet_to_gcs.py, or `amoeba data make-fake --out \(directory)` for a test set)")
    }
    train = try TFRecordIndex(files: trainFiles)
    validation = try TFRecordIndex(files: validationFiles)
  }

  public func count(_ split: Split) -> Int { index(split).count }

  func index(_ split: Split) -> TFRecordIndex { split == .train ? train : validation }

  public func example(_ split: Split, _ i: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>) throws(DataError) -> Int {
    let records = index(split)
    let bytes = try records.read(i)
    func unusable(_ reason: String) -> DataError { .unusableExample(record: records.describe(i), reason: reason) }
    let example: Example
    do { example = try Example(decoding: bytes) } catch { throw unusable("not a tf.train.Example: \(error)") }
    guard let label = example.int64("image/class/label") else { throw unusable("no image/class/label") }
    guard label >= 0 && label < Int64(classCount) else {
      throw unusable("label \(label) is outside the model's \(classCount) classes (--num_label_classes)")
    }
    guard let jpeg = example.bytes("image/encoded") else { throw unusable("no image/encoded") }
    // The crop is chosen on the full size (from the frame header), then the JPEG is decoded at the
    // smallest scale that still covers it with `imageSize` pixels each way.
    let full: JPEGInfo
    do { full = try jpeg.withUnsafeBytes { (raw) throws(JPEGError) in try JPEG.info(raw) } } catch { throw unusable("\(error)") }
    var draws = InceptionPreprocessing.Draws(seed: seed, stream: UInt64(epoch) << 40 ^ UInt64(i))
    let crop = split == .train && distortion.mode != .center
      ? InceptionPreprocessing.sampleDistortedBoundingBox(width: full.width, height: full.height, options: distortion, draws: &draws)
      : InceptionPreprocessing.centralCrop(width: full.width, height: full.height)
    let scale = downscale ? InceptionPreprocessing.decodeScale(for: crop, size: imageSize) : 1
    let image: JPEGImage
    do { image = try JPEG.decode(jpeg, channels: 3, scale: scale, dct: dct, pixelLimit: ImageNetDataset.pixelLimit) } catch { throw unusable("\(error)") }
    let region = InceptionPreprocessing.scaled(crop, by: scale, width: full.width, height: full.height)
    image.pixels.withUnsafeBufferPointer { p in
      if split == .train {
        InceptionPreprocessing.training(p.baseAddress!, width: image.width, crop: region, size: imageSize,
                                        options: distortion, draws: &draws, out: pixels)
      } else {
        InceptionPreprocessing.evaluation(p.baseAddress!, width: image.width, crop: region, size: imageSize, out: pixels)
      }
    }
    return Int(label)
  }

  /// Files in a seeded order per epoch, then a shuffle within each window of `shuffleBuffer`
  /// consecutive records of that sequence.
  public func shuffled(_ offset: Int, epoch: Int, seed: UInt64) -> Int {
    let n = train.count
    let key = seed &+ UInt64(epoch) &* 0x9E37_79B9
    let window = offset / shuffleBuffer, start = window * shuffleBuffer
    let length = min(shuffleBuffer, n - start)
    let position = start + Batcher.permute(offset - start, count: length, key: key &+ UInt64(window) &* 0xD1B5_4A32_D192_ED03)
    // `position` in the concatenation of the files in this epoch's order: find its file by
    // binary search over the running record counts, computed once per epoch.
    let files = fileOrder(key: key)
    var low = 0, high = files.order.count - 1
    while low < high {
      let middle = (low + high + 1) / 2
      if files.firstPosition[middle] <= position { low = middle } else { high = middle - 1 }
    }
    return train.fileStarts[files.order[low]] + position - files.firstPosition[low]
  }

  /// An epoch's file order and where each file starts in the concatenated sequence.
  struct FileOrder: Sendable {
    let key: UInt64
    let order: [Int]
    let firstPosition: [Int]
  }

  private let lastFileOrder = Mutex<FileOrder?>(nil)

  func fileOrder(key: UInt64) -> FileOrder {
    if let cached = lastFileOrder.withLock({ $0 }), cached.key == key { return cached }
    let count = train.files.count
    let order = (0..<count).map { Batcher.permute($0, count: count, key: key ^ 0x5851_F42D_4C95_7F2D) }
    var firstPosition: [Int] = [], total = 0
    for f in order { firstPosition.append(total); total += train.count(inFile: f) }
    let computed = FileOrder(key: key, order: order, firstPosition: firstPosition)
    lastFileOrder.withLock { $0 = computed }
    return computed
  }
}
