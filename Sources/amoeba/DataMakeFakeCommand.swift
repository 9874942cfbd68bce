import CLI
import Data
import Tensor

/// `amoeba data make-fake --out DIR --train_shards N --validation_shards M --images K
/// --image_size S [--jpeg_dir D]`: ImageNet-format TFRecord shards with real JPEGs (see
/// `FakeImageNet`), with `--jpeg_dir` the validation pictures as files too, and with `--raw_dir`
/// all of them in ImageNet's own layout (the input of `amoeba data convert`).
struct DataMakeFakeCommand {
  var out: String
  var fake = FakeImageNet()
  var threads: Int

  init(flags: Flags) throws {
    var flags = flags
    out = flags.string("out", default: "")
    fake.trainShards = try flags.int("train_shards", default: 2)
    fake.validationShards = try flags.int("validation_shards", default: 1)
    fake.trainImages = try flags.int("images", default: 1000)
    fake.validationImages = try flags.int("validation_images", default: max(fake.validationShards, fake.trainImages / 5))
    fake.imageSize = try flags.int("image_size", default: 64)
    fake.quality = try flags.int("quality", default: 90)
    fake.seed = try flags.seed(default: 2018)
    let jpegs = flags.string("jpeg_dir", default: "")
    fake.jpegDirectory = jpegs.isEmpty ? nil : jpegs
    let raw = flags.string("raw_dir", default: "")
    fake.rawDirectory = raw.isEmpty ? nil : raw
    threads = try flags.int("threads", default: ThreadPool.onlineCores)
    try flags.finish()
    guard !out.isEmpty else { throw UsageError("data make-fake needs --out DIR") }
    guard threads >= 1 else { throw UsageError("--threads must be at least 1") }
    guard fake.trainShards >= 0, fake.validationShards >= 0, fake.trainShards + fake.validationShards > 0 else {
      throw UsageError("--train_shards and --validation_shards must be at least 0, and not both 0")
    }
    guard fake.trainImages >= fake.trainShards, fake.validationImages >= fake.validationShards else {
      throw UsageError("--images (\(fake.trainImages)) and --validation_images (\(fake.validationImages)) must be at least the shard counts")
    }
    guard fake.imageSize >= 8 && fake.imageSize <= 4096 else { throw UsageError("--image_size must be in 8...4096") }
    guard (1...100).contains(fake.quality) else { throw UsageError("--quality must be in 1...100") }
  }

  func run() throws {
    let written = try fake.write(to: out, pool: ThreadPool(threadCount: threads))
    print("wrote \(fake.trainImages) training and \(fake.validationImages) validation images (\(max(8, fake.imageSize * 5 / 4 - fake.imageSize * 5 / 4 / 4))–\(fake.imageSize * 5 / 4) pixels a side, labels 1...\(BuiltInDataset.classNames.count)) in \(written.count) shards:")
    for path in written { print("  \(path)") }
  }
}
