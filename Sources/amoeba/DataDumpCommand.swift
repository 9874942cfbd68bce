import CLI
import Data
import Tensor
import Train

/// `amoeba data dump --data_dir D [--split validation] [--image_size 224] [--count N] --out FILE`
/// [data flags]: the first N examples exactly as the model receives them — float32 `[N, S, S, 3]`,
/// little-endian, in the split's order (validation in file order; training in epoch 0's shuffled
/// order, augmented) — and their labels on standard output. For looking at the input, and for
/// comparing it with TensorFlow's (`Scripts/peers/tf_eval_preprocess.py`).
struct DataDumpCommand {
  var data: DataOptions
  var split: Split
  var imageSize: Int
  var count: Int
  var out: String
  var seed: UInt64

  init(flags: Flags) throws {
    var flags = flags
    data = try flags.dataOptions()
    let splitText = flags.string("split", default: "validation")
    guard let split = Split(rawValue: splitText) else { throw UsageError("--split must be train or validation, got '\(splitText)'") }
    self.split = split
    imageSize = try flags.int("image_size", default: 224)
    count = try flags.int("count", default: 16)
    out = flags.string("out", default: "")
    seed = try flags.seed()
    try flags.finish()
    guard data.useData == "real" else { throw UsageError("data dump reads --data_dir") }
    guard !out.isEmpty else { throw UsageError("data dump needs --out FILE") }
    guard count >= 1, imageSize >= 1 else { throw UsageError("--count and --image_size must be at least 1") }
  }

  func run() throws {
    let dataset = try ImageNetDataset(directory: data.dataDir, imageSize: imageSize, shuffleBuffer: data.shuffleBuffer,
                                      downscale: data.jpegDownscale, dct: data.dctMethod, seed: seed)
    let n = min(count, dataset.count(split))
    let pixels = imageSize * imageSize * 3
    var values = [Float](repeating: 0, count: n * pixels)
    let batcher = Batcher(dataset: dataset, split: split, batchSize: 1, seed: seed, onBadRecord: .fail)
    var labels: [Int] = []
    try values.withUnsafeMutableBufferPointer { (buffer) throws in
      for i in 0..<n {
        let (epoch, index) = batcher.example(at: i)
        labels.append(try dataset.example(split, index, epoch: epoch, into: buffer.baseAddress! + i * pixels))
      }
    }
    try FileIO.writeAtomically(values.withUnsafeBytes { Array($0) }, to: out)
    print("wrote \(n) \(split.rawValue) examples of \(imageSize)x\(imageSize)x3 float32 to \(out); labels: \(labels.map(String.init).joined(separator: " "))")
  }
}
