#if canImport(Glibc)
import Glibc
#endif
import Data
import Model
import Train

extension Flags {
  /// The job token: `--job_token`, `--job_token_file`, or the `AMOEBA_JOB_TOKEN` environment variable.
  /// Returns nil when none is given.
  public mutating func jobToken() throws -> String? {
    if has("job_token") { return string("job_token", default: "") }
    if has("job_token_file") {
      let path = string("job_token_file", default: "")
      guard let file = fopen(path, "r") else { throw UsageError("--job_token_file \(path): \(String(cString: strerror(errno)))") }
      defer { fclose(file) }
      var buffer = [CChar](repeating: 0, count: 4096)
      guard fgets(&buffer, 4096, file) != nil else { throw UsageError("--job_token_file \(path) is empty") }
      return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).trimmingCharacters(in: " \n\r\t")
    }
    if let env = getenv("AMOEBA_JOB_TOKEN") { return String(cString: env) }
    return nil
  }

  /// Flags of the reference's command line that concern TPUs or Google Cloud: accepted so the seed's
  /// command lines run unchanged, and reported as ignored.
  public mutating func ignoredReferenceFlags() -> [String] {
    ["tpu", "tpu_name", "master", "gcp_project", "tpu_zone", "use_tpu", "use_bp16", "num_shards", "enable_hostcall",
     "transpose_enabled", "distributed_group_size", "export_dir", "export_to_tpu", "eval_timeout"].filter { has($0) }
  }

  /// Model, training, data and communication flags for a training job, the built-in dataset's sizes filled in.
  public mutating func trainingJob() throws -> (network: NetworkConfig, training: TrainingConfig, config: [String: String]) {
    let network = try networkConfig()
    var training = try trainingConfig()
    let data = try dataOptions()
    let communication = try communicationOptions()
    let seed = try self.seed()
    let modelDir = string("model_dir", default: "")
    // The coordinator opens --data_dir only to count the records (workers read it themselves), and
    // not at all when both counts are given: it may run where the data is not mounted.
    if data.useData != "real" || !has("num_train_images") || !has("num_eval_images") {
      do {
        _ = try data.dataset(network: network, training: &training, trainImagesGiven: has("num_train_images"),
                             evalImagesGiven: has("num_eval_images"), seed: seed)
      } catch let error as UsageError where data.useData == "real" {
        throw UsageError("\(error.message); if the data is only on the workers, give --num_train_images and --num_eval_images")
      }
    }
    // Checked here so a coordinator refuses a model no worker can build, instead of every worker failing on it.
    try network.validate()
    try training.validate()
    var config = network.flagValues.merging(training.flagValues) { a, _ in a }
    config.merge(data.flagValues) { a, _ in a }
    config.merge(communication.flagValues) { a, _ in a }
    config["seed"] = String(seed)
    if !modelDir.isEmpty { config["model_dir"] = modelDir }
    return (network, training, config)
  }
}

/// A job token file: one line, readable by its owner only.
public enum TokenFile {
  public static func write(_ token: String, to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw UsageError("--job_token_file \(path): cannot create it: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let line = Array((token + "\n").utf8)
    guard line.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == line.count else {
      throw UsageError("--job_token_file \(path): could not write the token: \(String(cString: strerror(errno)))")
    }
  }
}
