#if canImport(Glibc)
import Glibc
#endif
import CLI
import Data
import JPEG
import PNG
import Model
import Tensor
import Train

/// `amoeba predict --model_dir D [--data_dir DIR | --synsets FILE [--metadata FILE]] [--top 5]
/// IMAGE.JPEG…`: each image's most likely classes, with their probabilities and names, from the
/// moving-average weights of D's newest checkpoint — the weights evaluation uses, built with the
/// model flags the checkpoint records — after the evaluation preprocessing (central crop 0.875,
/// bilinear resize to --image_size, scale to [−1, 1]).
///
/// Names: `--synsets` (imagenet_to_gcs.py's synsets file: label k is line k) with `--metadata`
/// (imagenet_metadata.txt) for the words; or `--data_dir`, whose records carry each label's synset;
/// without either, the built-in dataset's names for a 10-class model, else the label alone.
struct PredictCommand {
  var modelDir: String
  var dataDir: String
  var synsets: String
  var metadata: String
  var top: Int
  var dct: DCTMethod
  var threads: Int
  var images: [String]

  init(arguments: [String]) throws {
    // Every flag here takes a value, so `--name value` pairs come off first and the rest are images.
    var flagArguments: [String] = [], images: [String] = []
    var i = 0
    while i < arguments.count {
      let argument = arguments[i]
      if argument == "--help" || argument == "-h" || (argument.hasPrefix("--") && argument.contains("=")) {
        flagArguments.append(argument)
      } else if argument.hasPrefix("--") {
        guard i + 1 < arguments.count else { throw UsageError("\(argument) needs a value") }
        flagArguments.append(argument + "=" + arguments[i + 1])
        i += 1
      } else {
        images.append(argument)
      }
      i += 1
    }
    self.images = images
    var flags = try Flags(flagArguments)
    modelDir = flags.string("model_dir", default: "")
    dataDir = flags.string("data_dir", default: "")
    synsets = flags.string("synsets", default: "")
    metadata = flags.string("metadata", default: "")
    top = try flags.int("top", default: 5)
    let method = flags.string("dct_method", default: "INTEGER_FAST")
    threads = try flags.int("threads", default: ThreadPool.onlineCores)
    try flags.finish()
    guard method == "INTEGER_FAST" || method == "INTEGER_ACCURATE" else {
      throw UsageError("--dct_method must be INTEGER_FAST (TensorFlow's default) or INTEGER_ACCURATE, got '\(method)'")
    }
    dct = method == "INTEGER_FAST" ? .fast : .accurate
    guard !modelDir.isEmpty, !images.isEmpty else { throw UsageError("predict needs --model_dir DIR and one or more JPEG files") }
    guard top >= 1 else { throw UsageError("--top must be at least 1, got \(top)") }
  }

  func run() throws -> Int32 {
    let newest = try CheckpointStore(directory: modelDir).newestAverages(report: { print("warning: \($0)") })
    // The checkpoint records every model flag; the model is built from them, not from this command line.
    var recorded = try Flags(newest.config.sorted { $0.key < $1.key }.map { "--\($0.key)=\($0.value)" })
    let network = try recorded.networkConfig()
    let names: ClassNames
    if !synsets.isEmpty {
      names = try ClassNames(synsetsFile: synsets, metadataFile: metadata.isEmpty ? nil : metadata)
    } else if !dataDir.isEmpty {
      names = try ClassNames(shardsIn: dataDir, classCount: network.numLabelClasses)
    } else if network.numLabelClasses == BuiltInDataset.classNames.count {
      names = ClassNames(names: BuiltInDataset.classNames)
    } else {
      names = ClassNames()
    }
    let evaluator = try Evaluator(network: network, batchSize: 1, context: KernelContext(threads: threads))
    try evaluator.load(newest.averages, from: "\(modelDir) (step \(newest.step))")
    print("\(modelDir): step \(newest.step), \(network.cellName) num_cells=\(network.numCells) reduction_size=\(network.reductionSize) image_size=\(network.imageSize), \(network.numLabelClasses) classes (moving-average weights)")
    let size = network.imageSize, classes = network.numLabelClasses
    var pixels = [Float](repeating: 0, count: size * size * 3)
    var failed = 0
    for path in images {
      let image: JPEGImage
      do {
        let bytes = try FileIO.read(path)
        if PNG.isPNG(bytes) {
          let png = try PNG.decode(bytes, pixelLimit: ImageNetDataset.pixelLimit)
          image = JPEGImage(width: png.width, height: png.height, channels: 3, pixels: png.pixels)
        } else {
          image = try JPEG.decode(bytes, channels: 3, dct: dct, pixelLimit: ImageNetDataset.pixelLimit)
        }
      } catch {
        printError("amoeba predict: \(path): \(error) (a JPEG or PNG file is expected)")
        failed += 1
        continue
      }
      let crop = InceptionPreprocessing.centralCrop(width: image.width, height: image.height)
      image.pixels.withUnsafeBufferPointer { p in
        InceptionPreprocessing.evaluation(p.baseAddress!, width: image.width, crop: crop, size: size, out: &pixels)
      }
      let logits = try evaluator.logits(images: pixels)
      // Softmax in Double: the probabilities printed sum to 1 over all classes.
      let largest = (0..<classes).map { Double(logits[$0]) }.max()!
      let exps = (0..<classes).map { Glibc.exp(Double(logits[$0]) - largest) }
      let total = exps.reduce(0, +)
      let ranked = (0..<classes).sorted { exps[$0] > exps[$1] || (exps[$0] == exps[$1] && $0 < $1) }.prefix(top)
      print("\(path) (\(image.width)x\(image.height)):")
      for (rank, label) in ranked.enumerated() {
        print("  \(rank + 1). \(format(exps[label] / total, 4))  \(names.describe(label))")
      }
    }
    return failed == 0 ? 0 : ExitStatus.failure
  }
}
