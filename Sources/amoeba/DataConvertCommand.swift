import CLI
import Data
import Synchronization
import Tensor

/// `amoeba data convert --raw_data_dir D --out DIR [--train_shards 1024] [--validation_shards 128]
/// [--threads N]`: ImageNet's JPEG folders into the shards `imagenet_to_gcs.py` writes (see
/// `ImageNetConverter`), shards in parallel, with a progress line and ETA; run it again after an
/// interruption and it writes only the shards still missing.
struct DataConvertCommand {
  var converter: ImageNetConverter
  var threads: Int

  init(flags: Flags) throws {
    var flags = flags
    let raw = flags.string("raw_data_dir", default: "")
    let out = flags.string("out", default: "")
    converter = ImageNetConverter(rawDirectory: raw, outDirectory: out)
    converter.trainShards = try flags.int("train_shards", default: 1024)
    converter.validationShards = try flags.int("validation_shards", default: 128)
    converter.seed = try flags.seed()
    threads = try flags.int("threads", default: ThreadPool.onlineCores)
    try flags.finish()
    guard !raw.isEmpty, !out.isEmpty else {
      throw UsageError("data convert needs --raw_data_dir DIR (train/<synset>/*.JPEG, validation/*.JPEG, synset_labels.txt) and --out DIR")
    }
    guard converter.trainShards >= 1, converter.validationShards >= 1, threads >= 1 else {
      throw UsageError("--train_shards, --validation_shards and --threads must be at least 1")
    }
  }

  func run() throws -> Int32 {
    let started = now()
    let lastLine = Mutex<Double>(0)
    let left = try converter.run(threads: threads, report: { p in
      let t = now()
      let due = lastLine.withLock { last in
        guard t - last >= 1 || p.shardsDone == p.shards else { return false }
        last = t
        return true
      }
      guard due else { return }
      let rate = Double(p.imagesConverted) / max(t - started, 1e-9)
      let eta = p.imagesDone == p.images ? 0 : rate > 0 ? Double(p.images - p.imagesDone) / rate : .infinity
      print("\(p.split.rawValue): \(p.shardsDone)/\(p.shards) shards, \(p.imagesDone)/\(p.images) images, \(format(rate, 1)) images/s, eta \(duration(eta))"
            + (p.skippedShards > 0 ? " (\(p.skippedShards) already there)" : ""))
    }, skipped: { printError("warning: \($0)") })
    print("wrote \(converter.outDirectory) in \(duration(now() - started))" + (left > 0 ? "; \(left) files left out (named above)" : ""))
    return left > 0 ? ExitStatus.failure : 0
  }
}
