#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JPEG
import PNG
import Synchronization
import Tensor

/// ImageNet as it ships (`train/<synset>/*.JPEG`, `validation/*.JPEG` and `synset_labels.txt`, one
/// synset per validation file in sorted name order) into the TFRecord shards `imagenet_to_gcs.py`
/// writes: `train-00000-of-01024` … and `validation-00000-of-00128`, each record a
/// `tf.train.Example` with its nine features (the JPEG bytes as they are, height and width of the
/// decoded picture, colorspace `RGB`, channels 3, label = the synset's place in the sorted synsets
/// from 1, synset, format `JPEG`, the file's base name), ceil(N / shards) files per shard in order.
///
/// Where it departs: the script means to shuffle the training files (with `random.seed(0)`) but
/// shuffles a copy, so its order is whatever the file system lists; here the sorted paths are
/// shuffled with a fixed seed, so two runs write the same shards. Every file is decoded first
/// (the script decodes too, for the size); one that does not decode is named and left out instead
/// of stopping the run. A CMYK or YCCK JPEG (the script's list of 22 names) is re-encoded as an RGB
/// JPEG at quality 100, 4:2:0, as the script has TensorFlow do — found by its frame header, not by
/// name; our encoder's bytes are not TensorFlow's, the pixels it starts from are. So is the PNG
/// named .JPEG (found by its signature, decoded as TensorFlow's decode_png does), and a lossless
/// JPEG (SOF3), which TensorFlow 2.21 cannot decode (the script would stop on it). A shard is
/// written to a temporary name and renamed, so an interrupted run resumes at the first shard that
/// is missing.
public struct ImageNetConverter: Sendable {
  public struct Source: Sendable {
    public let path: String
    public let synset: String
  }

  public struct Progress: Sendable {
    public let split: Split
    public let shardsDone: Int, shards: Int
    public let imagesDone: Int, images: Int
    /// Images read and written by this run (not in shards that were already there).
    public let imagesConverted: Int
    public let skippedShards: Int
  }

  public let rawDirectory: String
  public let outDirectory: String
  public var trainShards = 1024
  public var validationShards = 128
  public var seed: UInt64 = 0

  public init(rawDirectory: String, outDirectory: String) {
    self.rawDirectory = rawDirectory
    self.outDirectory = outDirectory
  }

  /// Training files (shuffled) and validation files (sorted, with their synsets from the labels
  /// file), and the label of each synset.
  public func sources() throws(DataError) -> (train: [Source], validation: [Source], labels: [String: Int]) {
    let trainDirectory = rawDirectory + "/train", validationDirectory = rawDirectory + "/validation"
    var train: [Source] = []
    for synset in try ImageNetConverter.list(trainDirectory).sorted() where ImageNetConverter.isDirectory(trainDirectory + "/" + synset) {
      for file in try ImageNetConverter.list(trainDirectory + "/" + synset).sorted() where file.hasSuffix(".JPEG") {
        train.append(Source(path: "\(trainDirectory)/\(synset)/\(file)", synset: synset))
      }
    }
    guard !train.isEmpty else {
      throw .missingShards(directory: trainDirectory, reason: "no <synset>/*.JPEG files (the layout is train/n01440764/n01440764_10026.JPEG)")
    }
    // A seeded Fisher–Yates shuffle: classes spread over the shards, the same order every run.
    for i in stride(from: train.count - 1, to: 0, by: -1) {
      let j = Int(CounterRandom.uniform(seed: seed, stream: 0x696D_6167_656E_6574, index: UInt64(i)) * Float(i + 1))
      train.swapAt(i, min(j, i))
    }
    var validation: [Source] = []
    if ImageNetConverter.isDirectory(validationDirectory) {
      let files = try ImageNetConverter.list(validationDirectory).filter { $0.hasSuffix(".JPEG") }.sorted()
      let labelsFile = rawDirectory + "/synset_labels.txt"
      let synsets = try ClassNames.lines(labelsFile).filter { !$0.isEmpty }
      guard synsets.count == files.count else {
        throw .io(file: labelsFile, reason: "has \(synsets.count) synsets for the \(files.count) files in \(validationDirectory) (one line per file, in sorted file-name order)")
      }
      validation = zip(files, synsets).map { Source(path: "\(validationDirectory)/\($0)", synset: $1) }
    }
    let all = Set(train.map(\.synset) + validation.map(\.synset)).sorted()
    var labels: [String: Int] = [:]
    for (k, synset) in all.enumerated() { labels[synset] = k + 1 }
    return (train, validation, labels)
  }

  /// Writes every shard not already in `outDirectory`; `report` hears each finished shard and each
  /// file left out. Returns the files left out.
  public func run(threads: Int, report: @Sendable (Progress) -> Void, skipped: @Sendable (String) -> Void) throws(DataError) -> Int {
    if mkdir(outDirectory, 0o755) != 0 && errno != EEXIST {
      throw .io(file: outDirectory, reason: "cannot create the directory: \(String(cString: strerror(errno)))")
    }
    let (train, validation, labels) = try sources()
    let left = Atomic<Int>(0)
    for (split, files, shards) in [(Split.train, train, trainShards), (.validation, validation, validationShards)] where !files.isEmpty {
      let chunk = (files.count + shards - 1) / shards
      let done = Atomic<Int>(0), imagesDone = Atomic<Int>(0), converted = Atomic<Int>(0), existing = Atomic<Int>(0)
      let failure = Mutex<DataError?>(nil)
      let pool = ThreadPool(threadCount: max(1, threads))
      pool.parallelFor(shards) { shard, _ in
        let name = "\(outDirectory)/\(split.rawValue)-\(FakeImageNet.digits(shard))-of-\(FakeImageNet.digits(shards))"
        let range = min(shard * chunk, files.count)..<min((shard + 1) * chunk, files.count)
        if access(name, F_OK) == 0 {
          existing.add(1, ordering: .relaxed)
        } else {
          defer { converted.add(range.count, ordering: .relaxed) }
          var records: [[UInt8]] = []
          for source in files[range] {
            switch ImageNetConverter.record(source, label: labels[source.synset]!) {
            case let .success(record): records.append(record)
            case let .failure(reason): left.add(1, ordering: .relaxed); skipped("\(source.path): \(reason); left out")
            }
          }
          do throws(DataError) { try FakeImageNet.writeAtomically(TFRecord.encode(records), to: name) } catch {
            failure.withLock { if $0 == nil { $0 = error } }
          }
        }
        let finished = done.add(1, ordering: .relaxed).newValue
        let images = imagesDone.add(range.count, ordering: .relaxed).newValue
        report(Progress(split: split, shardsDone: finished, shards: shards, imagesDone: images, images: files.count,
                        imagesConverted: converted.load(ordering: .relaxed), skippedShards: existing.load(ordering: .relaxed)))
      }
      if let error = failure.withLock({ $0 }) { throw error }
    }
    return left.load(ordering: .relaxed)
  }

  /// One file as its record, or why it cannot be one.
  static func record(_ source: Source, label: Int) -> Result<[UInt8], ConversionFailure> {
    let bytes: [UInt8]
    do { bytes = try readFile(source.path) } catch { return .failure(ConversionFailure("\(error)")) }
    var encoded = bytes
    let image: JPEGImage
    do {
      if PNG.isPNG(bytes) {
        // The script's png_to_jpeg: decode_png(channels=3), then encode_jpeg(quality=100).
        let png = try PNG.decode(bytes, pixelLimit: ImageNetDataset.pixelLimit)
        image = JPEGImage(width: png.width, height: png.height, channels: 3, pixels: png.pixels)
        encoded = JPEGEncoder(quality: 100, subsampling: .half).encode(png.pixels, width: png.width, height: png.height, channels: 3)
      } else {
        // The CMYK → RGB decode with TensorFlow's default IDCT, as the script's cmyk_to_rgb runs it.
        // A lossless JPEG, which TensorFlow cannot read, is re-encoded the same way.
        let info = try JPEG.info(bytes)
        let fourComponents = info.components == 4
        image = try JPEG.decode(bytes, channels: 3, dct: fourComponents ? .fast : .accurate, pixelLimit: ImageNetDataset.pixelLimit)
        if fourComponents || info.lossless {
          encoded = JPEGEncoder(quality: 100, subsampling: .half).encode(image.pixels, width: image.width, height: image.height, channels: 3)
        }
      }
    } catch {
      return .failure(ConversionFailure("\(error)"))
    }
    func text(_ s: String) -> Example.Feature { .bytes([Array(s.utf8)]) }
    let base = source.path.split(separator: "/").last.map(String.init) ?? source.path
    return .success(Example(features: [
      "image/height": .int64s([Int64(image.height)]), "image/width": .int64s([Int64(image.width)]),
      "image/colorspace": text("RGB"), "image/channels": .int64s([3]),
      "image/class/label": .int64s([Int64(label)]), "image/class/synset": text(source.synset),
      "image/format": text("JPEG"), "image/filename": text(base), "image/encoded": .bytes([encoded]),
    ]).encoded())
  }

  struct ConversionFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
  }

  static func list(_ directory: String) throws(DataError) -> [String] {
    guard let handle = opendir(directory) else { throw .io(file: directory, reason: "cannot be listed: \(String(cString: strerror(errno)))") }
    defer { closedir(handle) }
    var names: [String] = []
    while let entry = readdir(handle) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in String(cString: raw.bindMemory(to: CChar.self).baseAddress!) }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }

  static func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
  }

  static func readFile(_ path: String) throws(DataError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .io(file: path, reason: "cannot be opened: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
      if n < 0 && errno == EINTR { continue }
      guard n >= 0 else { throw .io(file: path, reason: "read failed: \(String(cString: strerror(errno)))") }
      if n == 0 { break }
      bytes += chunk[0..<n]
    }
    return bytes
  }
}
