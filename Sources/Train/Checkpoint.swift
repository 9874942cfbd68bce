import Checksums
import Foundation
import Model
import Tensor

/// Checkpoints in `--model_dir`: `model.ckpt-<step>.safetensors` (every trainable parameter,
/// optimizer slot, moving statistic and moving average, under the reference's variable names) and
/// its sidecar `model.ckpt-<step>.json` (global step, configuration, data position, seed, and the
/// CRC-32C and size of the tensor file).
///
/// The sidecar is written last: a checkpoint exists once its sidecar does, and both files are
/// written atomically (`FileIO.writeAtomically`), so a crash mid-save leaves the previous checkpoints
/// intact. Restore walks checkpoints from the newest, reports each that is truncated or corrupt by
/// name, and uses the newest good one.
public struct CheckpointStore {
  public let directory: String
  /// Newest checkpoints kept; older ones are deleted after a successful save.
  public let keep: Int

  public init(directory: String, keep: Int = 5) {
    self.directory = directory
    self.keep = max(1, keep)
  }

  public struct Sidecar: Codable, Equatable, Sendable {
    public var format = "amoeba-checkpoint"
    public var version = 1
    public var globalStep: Int
    public var tensorsFile: String
    public var tensorsBytes: Int
    public var tensorsCRC32C: UInt32
    public var seed: UInt64
    /// Examples the job consumed so far (the batchers' position in the global sequence).
    public var dataPosition: Int
    public var config: [String: String]
    /// The whole genotype the network was built from (a restore checks the cells, whatever the
    /// name); nil in a sidecar from before it was kept, where --cell_name is compared instead.
    public var genotype: Genotype?

    public init(globalStep: Int, tensorsFile: String, tensorsBytes: Int, tensorsCRC32C: UInt32, seed: UInt64,
                dataPosition: Int, config: [String: String], genotype: Genotype? = nil) {
      self.globalStep = globalStep; self.tensorsFile = tensorsFile; self.tensorsBytes = tensorsBytes
      self.tensorsCRC32C = tensorsCRC32C; self.seed = seed; self.dataPosition = dataPosition; self.config = config
      self.genotype = genotype
    }
  }

  /// Writes a checkpoint of the trainer's full state and prunes old ones. Returns the sidecar path.
  @discardableResult
  public func save(_ trainer: Trainer, config: [String: String]) throws(TrainError) -> String {
    try FileIO.makeDirectory(directory)
    let step = trainer.globalStep
    let base = "model.ckpt-\(step)"
    do { try trainer.synchronizeHostState() } catch {
      throw .checkpoint("\(base): could not copy the training state from the device: \(error)")
    }
    let tensors = CheckpointStore.tensors(of: trainer)
    let bytes = SafeTensors.encode(tensors.map { ($0.name, $0.shape, UnsafePointer($0.pointer)) },
                                   metadata: ["global_step": String(step), "format": "amoeba"])
    try FileIO.writeAtomically(bytes, to: path(base + ".safetensors"))
    let sidecar = Sidecar(globalStep: step, tensorsFile: base + ".safetensors", tensorsBytes: bytes.count,
                          tensorsCRC32C: CRC32C.checksum(bytes), seed: trainer.seed,
                          dataPosition: step * trainer.training.trainBatchSize, config: config, genotype: trainer.network.genotype)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    guard let json = try? encoder.encode(sidecar) else { throw .checkpoint("\(base).json: could not encode the sidecar") }
    try FileIO.writeAtomically(Array(json), to: path(base + ".json"))
    prune()
    return path(base + ".json")
  }

  /// Steps that have a sidecar, newest first.
  public func checkpointSteps() -> [Int] {
    FileIO.list(directory).compactMap { name -> Int? in
      guard name.hasPrefix("model.ckpt-"), name.hasSuffix(".json") else { return nil }
      return Int(name.dropFirst("model.ckpt-".count).dropLast(".json".count))
    }.sorted(by: >)
  }

  /// Restores the newest valid checkpoint into `trainer`. Returns its sidecar, or nil when the
  /// directory has no checkpoint. Each damaged checkpoint is reported through `report` and skipped;
  /// if every one is damaged, that is an error naming them.
  public func restore(into trainer: Trainer, config: [String: String], report: (String) -> Void) throws(TrainError) -> Sidecar? {
    let steps = checkpointSteps()
    if steps.isEmpty { return nil }
    var problems: [String] = []
    for step in steps {
      do {
        let sidecar = try load(step: step, config: config, into: trainer)
        return sidecar
      } catch {
        problems.append(error.description)
        report("skipping checkpoint \(step): \(error.description)")
      }
    }
    throw .checkpoint("no usable checkpoint in \(directory): " + problems.joined(separator: "; "))
  }

  /// Checkpoint `step`'s sidecar and tensors, after the size and CRC-32C the sidecar records are
  /// checked (and, when `config` is given, the model flags it was written with).
  func readVerified(step: Int, config: [String: String]?) throws(TrainError)
    -> (sidecar: Sidecar, tensors: [String: SafeTensors.Tensor], tensorsPath: String) {
    let sidecarPath = path("model.ckpt-\(step).json")
    guard let sidecar = try? JSONDecoder().decode(Sidecar.self, from: Data(try FileIO.read(sidecarPath))),
          sidecar.format == "amoeba-checkpoint" else {
      throw .checkpoint("\(sidecarPath) is not a readable checkpoint sidecar")
    }
    if let config {
      let run = config["cell_name"].flatMap { try? Genotype.resolve($0) } ?? .amoebaNetD
      if let written = sidecar.genotype ?? sidecar.config["cell_name"].flatMap({ try? Genotype.resolve($0) }), !written.sameCells(as: run) {
        throw .checkpoint("\(sidecarPath) was written for the genotype \(written.name) (\(written.json)), this run builds \(run.name) (\(run.json)); use another --model_dir or the same --cell_name")
      }
      for key in CheckpointStore.modelKeys where sidecar.config[key] != config[key] {
        throw .checkpoint("\(sidecarPath) was written with --\(key)=\(sidecar.config[key] ?? "?"), this run has --\(key)=\(config[key] ?? "?"); use another --model_dir or the same flags")
      }
    }
    let tensorsPath = path(sidecar.tensorsFile)
    let bytes = try FileIO.read(tensorsPath)
    guard bytes.count == sidecar.tensorsBytes else {
      throw .checkpoint("\(tensorsPath) has \(bytes.count) bytes, the sidecar says \(sidecar.tensorsBytes): truncated")
    }
    guard CRC32C.checksum(bytes) == sidecar.tensorsCRC32C else {
      throw .checkpoint("\(tensorsPath): CRC-32C mismatch, the file is corrupt")
    }
    return (sidecar, try SafeTensors.decode(bytes, file: tensorsPath).tensors, tensorsPath)
  }

  /// The newest checkpoint that reads back whole (size, CRC, model flags), without loading it;
  /// each damaged one is reported and skipped. Nil when there is none.
  public func newestValidStep(config: [String: String], report: (String) -> Void) -> Int? {
    for step in checkpointSteps() {
      do { _ = try readVerified(step: step, config: config); return step } catch { report("skipping checkpoint \(step): \(error.description)") }
    }
    return nil
  }

  /// Removes what a crash mid-save leaves behind: temporaries of `FileIO.writeAtomically` and tensor
  /// files whose sidecar was never written. Returns the names removed. Call before anyone saves.
  public func removeLeftovers() -> [String] {
    let names = FileIO.list(directory)
    let sidecars = Set(names.filter { $0.hasPrefix("model.ckpt-") && $0.hasSuffix(".json") })
    var removed: [String] = []
    for name in names where name.hasPrefix("model.ckpt-") {
      let temporary = name.contains(".tmp-")
      let orphan = name.hasSuffix(".safetensors") && !sidecars.contains(String(name.dropLast(".safetensors".count)) + ".json")
      if temporary || orphan {
        FileIO.remove(path(name))
        removed.append(name)
      }
    }
    return removed
  }

  public func load(step: Int, config: [String: String], into trainer: Trainer) throws(TrainError) -> Sidecar {
    let (sidecar, tensors, tensorsPath) = try readVerified(step: step, config: config)
    let targets = CheckpointStore.tensors(of: trainer)
    for target in targets {
      guard let tensor = tensors[target.name], tensor.shape == target.shape else {
        throw .checkpoint("\(tensorsPath) lacks \(target.name) \(target.shape) or has another shape")
      }
    }
    for target in targets { target.pointer.update(from: tensors[target.name]!.values, count: target.shape.elementCount) }
    trainer.setGlobalStep(sidecar.globalStep)
    return sidecar
  }

  /// The model flags a checkpoint must agree with to be restored (besides its genotype, compared by the cells).
  static let modelKeys = ["num_cells", "reduction_size", "stem_reduction_size", "image_size",
                          "num_label_classes", "use_aux_head", "aux_scaling", "optimizer"]

  /// Every tensor of the trainer's state, in a fixed order: parameters, then the tensor store.
  public static func tensors(of trainer: Trainer) -> [(name: String, shape: Shape, pointer: UnsafeMutablePointer<Float>)] {
    var list = trainer.trainable.indices.map { (trainer.trainable[$0].name, trainer.trainable[$0].shape, trainer.parameterPointer($0)) }
    list += trainer.state.entries.map { ($0.name, $0.shape, $0.pointer) }
    return list
  }

  func prune() {
    for step in checkpointSteps().dropFirst(keep) {
      FileIO.remove(path("model.ckpt-\(step).json"))
      FileIO.remove(path("model.ckpt-\(step).safetensors"))
    }
  }

  func path(_ name: String) -> String { directory + "/" + name }
}

extension CheckpointStore {
  /// The moving averages of the newest checkpoint that reads back whole — every trainable variable's
  /// and batch-norm statistic's, under the variable's own name (`cell_0/1x1/weights`,
  /// `cell_0/beginning_bn/moving_mean`, …): the weights evaluation uses. Damaged checkpoints are
  /// reported and skipped.
  public func newestAverages(report: (String) -> Void) throws(TrainError)
    -> (step: Int, config: [String: String], averages: [String: SafeTensors.Tensor]) {
    for step in checkpointSteps() {
      let read: (sidecar: Sidecar, tensors: [String: SafeTensors.Tensor], tensorsPath: String)
      do { read = try readVerified(step: step, config: nil) } catch { report(error.description); continue }
      let suffix = "/ExponentialMovingAverage"
      var averages: [String: SafeTensors.Tensor] = [:]
      for tensor in read.tensors.values where tensor.name.hasSuffix(suffix) {
        let name = String(tensor.name.dropLast(suffix.count))
        averages[name] = SafeTensors.Tensor(name: name, shape: tensor.shape, values: tensor.values)
      }
      return (step, read.sidecar.config, averages)
    }
    throw .checkpoint("no valid checkpoint in \(directory)")
  }

  /// Writes `newestAverages` as a safetensors file, sorted by name. Optimizer slots are left out.
  public func exportAverages(to file: String, report: (String) -> Void) throws(TrainError) -> (count: Int, step: Int) {
    let newest = try newestAverages(report: report)
    let selected = newest.averages.values.sorted { $0.name < $1.name }
    let output = SafeTensors.encode(selected, metadata: ["global_step": String(newest.step), "weights": "exponential moving averages"])
    try FileIO.writeAtomically(output, to: file)
    return (selected.count, newest.step)
  }
}
