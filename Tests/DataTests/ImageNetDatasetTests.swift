import Testing
import Foundation
import Tensor
@testable import Data
import JPEG
import PNG
import Synchronization

/// A fresh directory of `amoeba data make-fake` shards.
func makeFakeImageNet(trainImages: Int = 60, validationImages: Int = 12, trainShards: Int = 3, imageSize: Int = 16) throws -> String {
  let directory = NSTemporaryDirectory() + "amoeba-imagenet-\(UUID().uuidString)"
  var fake = FakeImageNet()
  fake.trainImages = trainImages; fake.validationImages = validationImages
  fake.trainShards = trainShards; fake.validationShards = 1; fake.imageSize = imageSize
  _ = try fake.write(to: directory, pool: ThreadPool(threadCount: 2))
  return directory
}

struct ImageNetDatasetTests {
  @Test func fakeShardsHaveTheConverterLayoutAndReadBack() throws {
    let directory = try makeFakeImageNet()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let files = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    #expect(files == ["train-00000-of-00003", "train-00001-of-00003", "train-00002-of-00003", "validation-00000-of-00001"])
    var reader = try TFRecordReader(path: directory + "/train-00001-of-00003")
    let example = try Example(decoding: try reader.next()!)
    #expect(example.string("image/format") == "JPEG" && example.string("image/colorspace") == "RGB" && example.int64("image/channels") == 3)
    let label = try #require(example.int64("image/class/label"))
    #expect((1...10).contains(label) && example.string("image/class/synset")!.hasPrefix("n"))
    let image = try JPEG.decode(example.bytes("image/encoded")!)
    #expect(Int64(image.width) == example.int64("image/width") && Int64(image.height) == example.int64("image/height"))

    let data = try ImageNetDataset(directory: directory, imageSize: 16)
    #expect(data.count(.train) == 60 && data.count(.validation) == 12 && data.train.damage.isEmpty)
    var pixels = [Float](repeating: .nan, count: 16 * 16 * 3)
    for i in 0..<12 {
      let label = try pixels.withUnsafeMutableBufferPointer { try data.example(.validation, i, epoch: 0, into: $0.baseAddress!) }
      #expect((1...10).contains(label))
      #expect(pixels.allSatisfy { $0 >= -1 && $0 <= 1 })
    }
  }

  /// `--train_preprocessing=center` trains on exactly the evaluation's pixels; crop_flip keeps at
  /// least half of each picture and adds no colour shift; inception differs from both.
  @Test func trainingPreprocessingSwitches() throws {
    let directory = try makeFakeImageNet(trainImages: 20)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    func pixels(_ mode: InceptionPreprocessing.Mode, _ split: Split, _ i: Int) throws -> [Float] {
      let data = try ImageNetDataset(directory: directory, imageSize: 16, distortion: .init(mode: mode))
      var out = [Float](repeating: .nan, count: 16 * 16 * 3)
      _ = try out.withUnsafeMutableBufferPointer { try data.example(split, i, epoch: 1, into: $0.baseAddress!) }
      return out
    }
    // The same record read as a training example (center) and through the evaluation path.
    let data = try ImageNetDataset(directory: directory, imageSize: 16, distortion: .init(mode: .center))
    var evaluation = [Float](repeating: .nan, count: 16 * 16 * 3), training = evaluation
    _ = try training.withUnsafeMutableBufferPointer { try data.example(.train, 3, epoch: 1, into: $0.baseAddress!) }
    let example = try Example(decoding: try data.train.read(3))
    let picture = try JPEG.decode(example.bytes("image/encoded")!, dct: .fast)
    var expected = [Float](repeating: .nan, count: 16 * 16 * 3)
    picture.pixels.withUnsafeBufferPointer { p in
      InceptionPreprocessing.evaluation(p.baseAddress!, width: picture.width, height: picture.height, size: 16, out: &expected)
    }
    #expect(training == expected)
    #expect(try pixels(.inception, .train, 3) != training && pixels(.cropFlip, .train, 3) != training)
    _ = try evaluation.withUnsafeMutableBufferPointer { try data.example(.validation, 0, epoch: 0, into: $0.baseAddress!) }
    #expect(evaluation == (try pixels(.inception, .validation, 0)), "validation never depends on the training switch")
    var draws = InceptionPreprocessing.Draws(seed: 1, stream: 2)
    for _ in 0..<200 {
      let crop = InceptionPreprocessing.sampleDistortedBoundingBox(width: 80, height: 60, options: .init(mode: .cropFlip), draws: &draws)
      #expect(crop.width * crop.height * 2 >= 80 * 60 - 80 - 60, "a crop of at least half the area (to the pixel)")
    }
  }

  @Test func everyRecordOncePerEpochAcrossShardsAndADifferentOrderEachEpoch() throws {
    let directory = try makeFakeImageNet(trainImages: 50)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let data = try ImageNetDataset(directory: directory, imageSize: 16, shuffleBuffer: 8)
    var epochs: [[Int]] = []
    for epoch in 0..<2 {
      var seen: [Int] = []
      for shard in 0..<3 {
        let batcher = Batcher(dataset: data, split: .train, batchSize: 1, shard: shard, shardCount: 3, seed: 4)
        for p in stride(from: shard, to: 50, by: 3) { seen.append(batcher.example(at: epoch * 50 + p).index) }
      }
      #expect(seen.sorted() == Array(0..<50), "epoch \(epoch)")
      epochs.append(seen)
    }
    #expect(epochs[0] != epochs[1])
    // Windows of the shuffle buffer keep reads local: 8 consecutive positions span at most 2 files
    // (plus one when a window crosses a file boundary).
    let order = (0..<50).map { data.shuffled($0, epoch: 0, seed: 4) }
    for start in stride(from: 0, to: 48, by: 8) {
      let files = Set(order[start..<start + 8].map { data.train.locations[$0].file })
      #expect(files.count <= 3)
    }
  }

  @Test func badRecordsAreSkippedAndCountedOrFatal() throws {
    let directory = try makeFakeImageNet(trainImages: 20, trainShards: 1)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    // Damage the data of record 3 after indexing-by-header still succeeds: a data CRC mismatch.
    let path = directory + "/train-00000-of-00001"
    var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    let clean = try ImageNetDataset(directory: directory, imageSize: 16)
    let victim = clean.train.locations[3]
    bytes[Int(victim.offset) + 12 + 40] ^= 0xFF
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    let data = try ImageNetDataset(directory: directory, imageSize: 16)
    #expect(throws: DataError.self) { try data.train.read(3) }

    let images = UnsafeMutablePointer<Float>.allocateAligned(20 * 16 * 16 * 3), labels = UnsafeMutablePointer<Float>.allocateAligned(20)
    defer { images.deallocate(); labels.deallocate() }
    let skip = Batcher(dataset: data, split: .train, batchSize: 20, seed: 1)
    let report = try skip.fill(batch: 0, images: images, labels: labels, pool: ThreadPool(threadCount: 2))
    #expect(report.skipped == 1)
    let message = report.firstError?.description ?? ""
    #expect(message.contains("train-00000-of-00001") && message.contains("record 3") && message.contains("CRC"), "\(message)")
    #expect((0..<20).allSatisfy { (1...10).contains(Int(labels[$0])) })

    let fail = Batcher(dataset: data, split: .train, batchSize: 20, seed: 1, onBadRecord: .fail)
    #expect(throws: DataError.self) { try fail.fill(batch: 0, images: images, labels: labels, pool: ThreadPool(threadCount: 2)) }
  }

  @Test func truncatedShardKeepsItsGoodRecordsAndNamesTheDamage() throws {
    let directory = try makeFakeImageNet(trainImages: 10, trainShards: 1)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let path = directory + "/train-00000-of-00001"
    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: path))
    let data = try ImageNetDataset(directory: directory, imageSize: 16)
    #expect(data.count(.train) == 9)
    #expect(data.train.damage.count == 1 && data.train.damage[0].description.contains("record 9"))
  }

  @Test func aDirectoryWithoutShardsIsNamed() throws {
    let empty = NSTemporaryDirectory() + "amoeba-empty-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: empty) }
    do {
      _ = try ImageNetDataset(directory: empty, imageSize: 16)
      Issue.record("no error")
    } catch {
      #expect(error.description.contains("train-NNNNN-of-NNNNN") && error.description.contains("make-fake"))
    }
  }

  @Test func downscaledDecodingGivesNearlyTheSamePixels() throws {
    // 60–80-pixel pictures for a 16-pixel model: the central crop allows decoding at 1/2 or 1/4.
    let directory = try makeFakeImageNet(trainImages: 6, validationImages: 6, trainShards: 1, imageSize: 64)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let exact = try ImageNetDataset(directory: directory, imageSize: 16)
    let fast = try ImageNetDataset(directory: directory, imageSize: 16, downscale: true)
    var a = [Float](repeating: 0, count: 16 * 16 * 3), b = a
    for split in [Split.train, .validation] {
      for i in 0..<6 {
        let la = try a.withUnsafeMutableBufferPointer { try exact.example(split, i, epoch: 1, into: $0.baseAddress!) }
        let lb = try b.withUnsafeMutableBufferPointer { try fast.example(split, i, epoch: 1, into: $0.baseAddress!) }
        #expect(la == lb)
        let mean = zip(a, b).map { abs($0 - $1) }.reduce(0, +) / Float(a.count)
        // The same crop and jitter; only the resampling differs: TensorFlow's bilinear resize
        // point-samples the full-size pixel noise of these pictures, the 1/k decode has averaged it
        // (values span [−1, 1]; a crop 4 pixels short gives up to 0.35).
        #expect(mean < 0.15, "\(split) \(i): mean difference \(mean)")
      }
    }
    #expect(InceptionPreprocessing.decodeScale(for: .init(x: 0, y: 0, width: 437, height: 328), size: 32) == 8)
    #expect(InceptionPreprocessing.decodeScale(for: .init(x: 0, y: 0, width: 437, height: 328), size: 224) == 1)
    #expect(InceptionPreprocessing.decodeScale(for: .init(x: 0, y: 0, width: 500, height: 130), size: 64) == 2)
    #expect(InceptionPreprocessing.scaled(.init(x: 5, y: 3, width: 10, height: 7), by: 4, width: 21, height: 13)
            == .init(x: 1, y: 0, width: 3, height: 3))
  }

  @Test func descriptorCacheKeepsFilesInUseOpenAndClosesIdleOnes() throws {
    let directory = try makeFakeImageNet(trainImages: 12, validationImages: 4, trainShards: 4)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let paths = try ImageNetDataset.shards(in: directory, split: .train)
    let cache = DescriptorCache(capacity: 2)
    let held = try cache.acquire(0, path: paths[0])
    for f in 1..<4 { _ = try cache.acquire(f, path: paths[f]); cache.release(f) }
    // File 0 is still in use: never closed for the others, so its descriptor still reads file 0.
    var byte: UInt8 = 1
    #expect(pread(held, &byte, 1, 0) == 1)
    var info = stat(), other = stat()
    #expect(fstat(held, &info) == 0 && stat(paths[0], &other) == 0 && info.st_ino == other.st_ino)
    cache.release(0)
    // Reads from several threads through a cache smaller than the file count (so files are closed
    // and reopened while others read) give the same records.
    let index = try TFRecordIndex(files: paths, openFiles: 2)
    let first = try (0..<index.count).map { try index.read($0) }
    let pool = ThreadPool(threadCount: 3)
    let mismatches = UnsafeMutablePointer<Int>.allocate(capacity: 48)
    defer { mismatches.deallocate() }
    pool.parallelFor(48) { i, _ in
      mismatches[i] = (try? index.read(i % index.count)) == first[i % index.count] ? 0 : 1
    }
    #expect((0..<48).map { mismatches[$0] }.reduce(0, +) == 0)
  }

  @Test func onlyTheConvertersShardNamesAreRead() {
    #expect(ImageNetDataset.isShardName("train-00000-of-01024", split: .train))
    #expect(ImageNetDataset.isShardName("validation-00127-of-00128", split: .validation))
    for name in ["train-00000-of-01024.partial", "train-00000-of-01024.gstmp", "train-0001.tfrecord", "train-x-of-2",
                 "validation-00000-of-00001", "train--of-1"] {
      #expect(!ImageNetDataset.isShardName(name, split: .train), "\(name)")
    }
  }

  @Test func aPrefetcherAskedForOneBufferStillRunsAhead() throws {
    let data = BuiltInDataset(imageSize: 8, trainCount: 64, validationCount: 8)
    let prefetcher = Prefetcher(batcher: Batcher(dataset: data, split: .train, batchSize: 4), firstBatch: 0, depth: 1, threads: 1)
    defer { prefetcher.shutDown() }
    #expect(prefetcher.depth == 2)
    for b in 0..<5 { #expect(try prefetcher.next(timeout: 30).number == b) }
  }

  @Test func prefetcherGivesTheSameBatchesInOrderAsDirectFills() throws {
    let directory = try makeFakeImageNet(trainImages: 40)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let data = try ImageNetDataset(directory: directory, imageSize: 16)
    let batcher = Batcher(dataset: data, split: .train, batchSize: 4, seed: 2)
    let prefetcher = Prefetcher(batcher: batcher, firstBatch: 5, depth: 3, threads: 2)
    defer { prefetcher.shutDown() }
    let count = 4 * 16 * 16 * 3
    let images = UnsafeMutablePointer<Float>.allocateAligned(count), labels = UnsafeMutablePointer<Float>.allocateAligned(4)
    defer { images.deallocate(); labels.deallocate() }
    for b in 5..<17 {  // past the end of the first epoch (10 batches)
      let batch = try prefetcher.next(timeout: 60)
      #expect(batch.number == b)
      _ = try batcher.fill(batch: b, images: images, labels: labels, pool: ThreadPool(threadCount: 1))
      #expect(Array(UnsafeBufferPointer(start: batch.images, count: count)) == Array(UnsafeBufferPointer(start: images, count: count)))
      #expect(Array(UnsafeBufferPointer(start: batch.labels, count: 4)) == Array(UnsafeBufferPointer(start: labels, count: 4)))
    }
  }
}

/// `amoeba data convert`: ImageNet's JPEG folders into imagenet_to_gcs.py's shards.
@Suite struct ImageNetConverterTests {
  /// ImageNet's own layout of `FakeImageNet`'s pictures (`make-fake --raw_dir`).
  func rawImageNet(train: Int, validation: Int) throws -> (directory: String, synsetOfValidation: [String]) {
    let directory = NSTemporaryDirectory() + "amoeba-raw-\(UUID().uuidString)"
    var fake = FakeImageNet()
    fake.imageSize = 16; fake.trainImages = train; fake.validationImages = validation
    try fake.writeRaw(to: directory)
    let labels = try String(contentsOfFile: directory + "/synset_labels.txt", encoding: .utf8).split(separator: "\n").map(String.init)
    return (directory, labels)
  }

  @Test func convertsResumesAndNamesWhatItLeavesOut() throws {
    let (raw, validationSynsets) = try rawImageNet(train: 30, validation: 9)
    let out = raw + "-shards"
    defer { try? FileManager.default.removeItem(atPath: raw); try? FileManager.default.removeItem(atPath: out) }
    try FileManager.default.createDirectory(atPath: raw + "/train/n00000003", withIntermediateDirectories: true)
    try Data("not a picture".utf8).write(to: URL(fileURLWithPath: raw + "/train/n00000003/n00000003_broken.JPEG"))
    // A CMYK JPEG, as 22 of ImageNet's are: converted to an RGB JPEG.
    try FileManager.default.copyItem(atPath: CMYKJPEGTests.fixtures.appendingPathComponent("cmyk-444.jpg").path,
                                     toPath: raw + "/train/n00000003/n00000003_cmyk.JPEG")
    // A PNG named .JPEG, as ImageNet's n02105855_2933.JPEG: converted to an RGB JPEG.
    try FileManager.default.copyItem(atPath: PNGTests.fixtures.appendingPathComponent("rgba8-interlaced.png").path,
                                     toPath: raw + "/train/n00000003/n00000003_png.JPEG")
    var converter = ImageNetConverter(rawDirectory: raw, outDirectory: out)
    converter.trainShards = 4; converter.validationShards = 2
    let named = Mutex<[String]>([])
    let left = try converter.run(threads: 2, report: { _ in }, skipped: { line in named.withLock { $0.append(line) } })
    #expect(left == 1 && named.withLock { $0 }.first?.contains("n00000003_broken.JPEG") == true)

    // imagenet_to_gcs.py's layout: ceil(33/4) = 9 files per training shard, ceil(9/2) = 5 per validation shard.
    let names = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
    #expect(names == ["train-00000-of-00004", "train-00001-of-00004", "train-00002-of-00004", "train-00003-of-00004",
                      "validation-00000-of-00002", "validation-00001-of-00002"])
    let data = try ImageNetDataset(directory: out, imageSize: 16)
    #expect(data.count(.train) == 32 && data.count(.validation) == 9)
    // Labels: each synset's place, from 1, among all synsets of both splits, sorted.
    let synsets = Set(validationSynsets + (try FileManager.default.contentsOfDirectory(atPath: raw + "/train"))).sorted()
    let labels = Dictionary(uniqueKeysWithValues: synsets.enumerated().map { ($1, $0 + 1) })
    for i in 0..<9 {
      let example = try Example(decoding: try data.validation.read(i))
      #expect(example.string("image/class/synset") == validationSynsets[i], "validation in sorted file order with the labels file's synsets")
      #expect(example.int64("image/class/label").map(Int.init) == labels[validationSynsets[i]])
      #expect(example.string("image/filename") == "FAKE_val_0000\(i).JPEG" && example.string("image/colorspace") == "RGB")
      let image = try JPEG.decode(example.bytes("image/encoded")!)
      #expect(Int64(image.width) == example.int64("image/width") && Int64(image.height) == example.int64("image/height"))
    }
    var seen = Set<String>()
    for i in 0..<32 {
      let example = try Example(decoding: try data.train.read(i))
      if example.string("image/filename") == "n00000003_png.JPEG" {
        let image = try JPEG.decode(example.bytes("image/encoded")!)
        let png = try PNG.decode(try Array(Data(contentsOf: PNGTests.fixtures.appendingPathComponent("rgba8-interlaced.png"))))
        #expect(image.width == 33 && image.height == 21 && example.int64("image/width") == 33 && example.string("image/format") == "JPEG")
        // Quality 100 at 4:2:0 loses this noisy fixture's chroma detail: TensorFlow's own
        // encode_jpeg(quality=100) then decode_jpeg is 10.9 levels off on average; ours as close.
        let error = Double(zip(image.pixels, png.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +)) / Double(image.pixels.count)
        #expect(error < 12, "mean error \(error) levels")
      }
      if example.string("image/filename") == "n00000003_cmyk.JPEG" {
        let info = try JPEG.info(example.bytes("image/encoded")!)
        #expect(info.components == 3 && info.width == 37 && info.height == 29 && example.int64("image/width") == 37)
      }
      let synset = example.string("image/class/synset")!
      #expect(example.string("image/filename")!.hasPrefix(synset + "_") && example.int64("image/class/label").map(Int.init) == labels[synset])
      seen.insert(example.string("image/filename")!)
    }
    #expect(seen.count == 32 && seen.contains("n00000003_cmyk.JPEG") && seen.contains("n00000003_png.JPEG"))

    // An interrupted run: one shard missing. The rerun writes only it, byte for byte as before.
    let before = try Data(contentsOf: URL(fileURLWithPath: out + "/train-00002-of-00004"))
    try FileManager.default.removeItem(atPath: out + "/train-00002-of-00004")
    let reports = Mutex<[ImageNetConverter.Progress]>([])
    _ = try converter.run(threads: 2, report: { p in reports.withLock { $0.append(p) } }, skipped: { _ in })
    #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/train-00002-of-00004")) == before)
    #expect(reports.withLock { $0 }.filter { $0.split == .train }.map(\.skippedShards).max() == 3)
  }
}
