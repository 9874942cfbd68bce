import Data
import JPEG
import Model
import Tensor
import Train

/// Where the examples come from, as flags: `--use_data=builtin|fake|real`, `--data_dir` (ImageNet
/// TFRecord shards; implies real), `--on_bad_record=skip|fail`, and the input pipeline's
/// `--input_threads`, `--prefetch_batches`, `--shuffle_buffer`, `--jpeg_downscale` and `--dct_method`.
public struct DataOptions: Sendable {
  public var useData: String
  public var dataDir: String
  public var onBadRecord: BadRecordPolicy
  public var inputThreads: Int
  public var prefetchBatches: Int
  public var shuffleBuffer: Int
  /// `--jpeg_downscale`: decode large JPEGs at 1/2, 1/4 or 1/8 when the crop allows (faster; the
  /// reference always decodes at full size, so this is off by default).
  public var jpegDownscale: Bool
  /// `--dct_method=INTEGER_FAST|INTEGER_ACCURATE`, TensorFlow's names. The default is TensorFlow's,
  /// which the reference's `decode_jpeg` used, so the pixels match the reference run's.
  public var dctMethod: DCTMethod
  /// `--train_preprocessing=inception|crop_flip|center` (`InceptionPreprocessing.Mode`).
  public var trainPreprocessing: InceptionPreprocessing.Mode

  /// The flags a worker needs to rebuild the same dataset.
  public var flagValues: [String: String] {
    var values = ["use_data": useData, "on_bad_record": onBadRecord.rawValue, "shuffle_buffer": String(shuffleBuffer),
                  "input_threads": String(inputThreads), "prefetch_batches": String(prefetchBatches),
                  "jpeg_downscale": String(jpegDownscale),
                  "dct_method": dctMethod == .fast ? "INTEGER_FAST" : "INTEGER_ACCURATE",
                  "train_preprocessing": trainPreprocessing.rawValue]
    if !dataDir.isEmpty { values["data_dir"] = dataDir }
    return values
  }

  /// The dataset, with `--num_train_images` and `--num_eval_images` filled from it where they were
  /// not given (the built-in set's sizes, or the records counted in `--data_dir`).
  public func dataset(network: NetworkConfig, training: inout TrainingConfig, trainImagesGiven: Bool, evalImagesGiven: Bool,
                      seed: UInt64) throws -> any Dataset {
    switch useData {
    case "builtin":
      let probe = BuiltInDataset(imageSize: network.imageSize)
      if !trainImagesGiven { training.numTrainImages = probe.trainCount }
      if !evalImagesGiven { training.numEvalImages = probe.validationCount }
      // Like ImageNet's labels inside the reference's 1001 logits, the 10 built-in classes use the
      // first 10 of --num_label_classes (default 1001).
      guard network.numLabelClasses >= probe.classCount else {
        throw UsageError("--use_data=builtin has \(probe.classCount) classes; --num_label_classes must be at least \(probe.classCount)")
      }
      return BuiltInDataset(imageSize: network.imageSize, trainCount: training.numTrainImages, validationCount: training.numEvalImages)
    case "fake":
      return FakeDataset(imageSize: network.imageSize, classCount: network.numLabelClasses, trainCount: training.numTrainImages,
                         validationCount: training.numEvalImages)
    case "real":
      guard !dataDir.isEmpty else { throw UsageError("--use_data=real needs --data_dir with train-NNNNN-of-NNNNN and validation-NNNNN-of-NNNNN TFRecord shards") }
      guard !dataDir.contains("://") else {
        throw UsageError("--data_dir \(dataDir): only local or mounted directories are read; copy the shards first (e.g. gsutil -m cp -r \(dataDir) /data/imagenet) or mount the bucket (gcsfuse)")
      }
      let data: ImageNetDataset
      do {
        data = try ImageNetDataset(directory: dataDir, imageSize: network.imageSize, classCount: network.numLabelClasses,
                                   shuffleBuffer: shuffleBuffer, distortion: .init(mode: trainPreprocessing),
                                   downscale: jpegDownscale, dct: dctMethod, seed: seed)
      } catch {
        throw UsageError("--data_dir \(error)")
      }
      for damage in data.train.damage + data.validation.damage { print("warning: \(damage) (the records after it are skipped)") }
      if !trainImagesGiven { training.numTrainImages = data.count(.train) }
      if !evalImagesGiven { training.numEvalImages = data.count(.validation) }
      guard data.count(.train) > 0 || training.mode == "eval" else { throw UsageError("--data_dir \(dataDir) has no training records") }
      return data
    default:
      throw UsageError("--use_data must be builtin, fake or real, got '\(useData)'")
    }
  }
}

extension Flags {
  public mutating func dataOptions() throws -> DataOptions {
    let dataDir = string("data_dir", default: "")
    let useData = string("use_data", default: dataDir.isEmpty ? "builtin" : "real")
    let policy = string("on_bad_record", default: "skip")
    guard let onBadRecord = BadRecordPolicy(rawValue: policy) else {
      throw UsageError("--on_bad_record must be skip or fail, got '\(policy)'")
    }
    let dct = string("dct_method", default: "INTEGER_FAST")
    guard dct == "INTEGER_FAST" || dct == "INTEGER_ACCURATE" else {
      throw UsageError("--dct_method must be INTEGER_FAST (TensorFlow's default) or INTEGER_ACCURATE, got '\(dct)'")
    }
    let preprocessing = string("train_preprocessing", default: InceptionPreprocessing.Mode.inception.rawValue)
    guard let mode = InceptionPreprocessing.Mode(rawValue: preprocessing) else {
      throw UsageError("--train_preprocessing must be \(InceptionPreprocessing.Mode.allCases.map(\.rawValue).joined(separator: ", ")), got '\(preprocessing)'")
    }
    let options = DataOptions(useData: useData, dataDir: dataDir, onBadRecord: onBadRecord,
                              inputThreads: try int("input_threads", default: min(4, ThreadPool.onlineCores)),
                              prefetchBatches: try int("prefetch_batches", default: 2),
                              shuffleBuffer: try int("shuffle_buffer", default: 1024),
                              jpegDownscale: try bool("jpeg_downscale", default: false),
                              dctMethod: dct == "INTEGER_FAST" ? .fast : .accurate, trainPreprocessing: mode)
    guard options.inputThreads >= 1 else { throw UsageError("--input_threads must be at least 1") }
    guard options.prefetchBatches >= 1 else { throw UsageError("--prefetch_batches must be at least 1") }
    guard options.shuffleBuffer >= 1 else { throw UsageError("--shuffle_buffer must be at least 1") }
    return options
  }
}
