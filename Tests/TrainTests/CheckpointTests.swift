import Testing
import Foundation
import Data
import Model
import Tensor
@testable import Train
import Checksums

@Suite struct CheckpointFormatTests {
  @Test func crc32cMatchesThePublishedCheckValue() {
    #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    #expect(CRC32C.checksum([]) == 0)
    #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
  }

  @Test func safetensorsRoundTripsAndRejectsTruncation() throws {
    let a: [Float] = [1, -2, 3.5, 0], b: [Float] = [42]
    let bytes = SafeTensors.encode([SafeTensors.Tensor(name: "cell_0/1x1/weights", shape: [1, 1, 2, 2], values: a),
                                    SafeTensors.Tensor(name: "final_layer/FC/biases", shape: [1], values: b)],
                                   metadata: ["global_step": "7"])
    let (tensors, metadata) = try SafeTensors.decode(bytes, file: "t.safetensors")
    #expect(tensors["cell_0/1x1/weights"]?.values == a)
    #expect(tensors["cell_0/1x1/weights"]?.shape == [1, 1, 2, 2])
    #expect(tensors["final_layer/FC/biases"]?.values == b)
    #expect(metadata["global_step"] == "7")
    #expect(throws: TrainError.self) { try SafeTensors.decode(Array(bytes.dropLast(3)), file: "t.safetensors") }
    #expect(throws: TrainError.self) { try SafeTensors.decode(Array(bytes.prefix(5)), file: "t.safetensors") }
    var huge = bytes
    huge[7] = 0x7F
    #expect(throws: TrainError.self) { try SafeTensors.decode(huge, file: "t.safetensors") }
  }
}

@Suite struct CheckpointResumeTests {
  let network: NetworkConfig = {
    var n = NetworkConfig()
    n.numCells = 3; n.reductionSize = 8; n.imageSize = 24; n.useAuxHead = false; n.dropConnectKeepProb = 0.8
    return n
  }()
  let training: TrainingConfig = {
    var t = TrainingConfig()
    t.trainBatchSize = 4; t.numTrainImages = 400; t.lr = 0.05
    return t
  }()

  func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "amoeba-ckpt-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  func run(_ trainer: Trainer, steps: Int, context: KernelContext) throws {
    let batcher = Batcher(dataset: BuiltInDataset(imageSize: 24), split: .train, batchSize: 4, seed: 1)
    let images = UnsafeMutablePointer<Float>.allocateAligned(4 * 24 * 24 * 3), labels = UnsafeMutablePointer<Float>.allocateAligned(4)
    defer { images.deallocate(); labels.deallocate() }
    for _ in 0..<steps {
      _ = try! batcher.fill(batch: trainer.globalStep, images: images, labels: labels, context: context)
      try trainer.computeGradients(images: images, labels: labels)
      try trainer.applyGradients()
    }
  }

  func snapshot(_ trainer: Trainer) -> [[Float]] {
    CheckpointStore.tensors(of: trainer).map { Array(UnsafeBufferPointer(start: $0.pointer, count: $0.shape.elementCount)) }
  }

  @Test func kStepsCheckpointMStepsEqualsKPlusMStraight() throws {
    let context = KernelContext(threads: 2)
    let straight = try Trainer(network: network, training: training, batchSize: 4, context: context, seed: 9)
    try run(straight, steps: 5, context: context)

    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let store = CheckpointStore(directory: directory, keep: 2)
    let config = network.flagValues.merging(training.flagValues) { a, _ in a }
    let first = try Trainer(network: network, training: training, batchSize: 4, context: context, seed: 9)
    try run(first, steps: 3, context: context)
    try store.save(first, config: config)

    let resumed = try Trainer(network: network, training: training, batchSize: 4, context: context, seed: 9)
    let sidecar = try store.restore(into: resumed, config: config, report: { _ in })
    #expect(sidecar?.globalStep == 3)
    #expect(snapshot(resumed) == snapshot(first))
    try run(resumed, steps: 2, context: context)
    #expect(resumed.globalStep == 5)
    #expect(snapshot(resumed) == snapshot(straight))
  }

  @Test func aCorruptOrTruncatedCheckpointIsReportedAndThePreviousOneUsed() throws {
    let context = KernelContext(threads: 2)
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let store = CheckpointStore(directory: directory, keep: 3)
    let config = network.flagValues.merging(training.flagValues) { a, _ in a }
    let trainer = try Trainer(network: network, training: training, batchSize: 4, context: context, seed: 2)
    try run(trainer, steps: 1, context: context)
    try store.save(trainer, config: config)
    let atStep1 = snapshot(trainer)
    try run(trainer, steps: 1, context: context)
    try store.save(trainer, config: config)
    try run(trainer, steps: 1, context: context)
    try store.save(trainer, config: config)
    #expect(store.checkpointSteps() == [3, 2, 1])

    // Step 3: flip a byte; step 2: truncate.
    let path3 = directory + "/model.ckpt-3.safetensors", path2 = directory + "/model.ckpt-2.safetensors"
    var bytes3 = try Data(contentsOf: URL(fileURLWithPath: path3))
    bytes3[bytes3.count - 10] ^= 0x40
    try bytes3.write(to: URL(fileURLWithPath: path3))
    let bytes2 = try Data(contentsOf: URL(fileURLWithPath: path2))
    try bytes2.prefix(bytes2.count / 2).write(to: URL(fileURLWithPath: path2))

    var reports: [String] = []
    let fresh = try Trainer(network: network, training: training, batchSize: 4, context: context, seed: 2)
    let sidecar = try store.restore(into: fresh, config: config, report: { reports.append($0) })
    #expect(sidecar?.globalStep == 1)
    #expect(snapshot(fresh) == atStep1)
    #expect(reports.count == 2)
    #expect(reports[0].contains("model.ckpt-3.safetensors") && reports[0].contains("corrupt"))
    #expect(reports[1].contains("model.ckpt-2.safetensors") && reports[1].contains("truncated"))
  }

  @Test func aCheckpointFromAnotherModelIsRefusedByName() throws {
    let context = KernelContext(threads: 1)
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let store = CheckpointStore(directory: directory)
    let trainer = try Trainer(network: network, training: training, batchSize: 4, context: context)
    try store.save(trainer, config: network.flagValues.merging(training.flagValues) { a, _ in a })
    var other = network.flagValues.merging(training.flagValues) { a, _ in a }
    other["num_cells"] = "6"
    let error = #expect(throws: TrainError.self) { try store.restore(into: trainer, config: other, report: { _ in }) }
    #expect(error?.description.contains("--num_cells=3") == true)
  }

  /// The sidecar keeps the whole genotype: a restore with the same cells under another name (or
  /// an alias) goes on, one with other cells under the same name is refused naming both.
  @Test func aCheckpointRecordsItsGenotypeAndARestoreChecksTheCells() throws {
    let context = KernelContext(threads: 1)
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let store = CheckpointStore(directory: directory)
    let trainer = try Trainer(network: network, training: training, batchSize: 4, context: context)
    try store.save(trainer, config: network.flagValues.merging(training.flagValues) { a, _ in a })
    let sidecar = try JSONDecoder().decode(CheckpointStore.Sidecar.self, from: Data(FileIO.read(directory + "/model.ckpt-0.json")))
    #expect(sidecar.genotype == .amoebaNetD)
    var renamed = network
    renamed.genotype.name = "my_copy"
    var config = renamed.flagValues.merging(training.flagValues) { a, _ in a }
    #expect(config["cell_name"]!.hasPrefix("{"))
    #expect(try store.restore(into: trainer, config: config, report: { _ in })?.globalStep == 0)
    var changed = renamed
    changed.genotype.normal.operations[0] = "3x3"
    config = changed.flagValues.merging(training.flagValues) { a, _ in a }
    let error = #expect(throws: TrainError.self) { try store.restore(into: trainer, config: config, report: { _ in }) }
    #expect(error?.description.contains("written for the genotype amoeba_net_d") == true && error?.description.contains("this run builds my_copy") == true,
            "\(String(describing: error))")
  }

  /// What `amoeba predict` and `amoeba export` read: the newest checkpoint's moving averages by
  /// variable name give an evaluator the logits of one loaded from the trainer's averages, bitwise.
  @Test func theNewestAveragesEvaluateAsTheTrainersAverages() throws {
    let context = KernelContext(threads: 1)
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let store = CheckpointStore(directory: directory)
    let trainer = try Trainer(network: network, training: training, batchSize: 4, context: context, seed: 3)
    try run(trainer, steps: 3, context: context)
    let config = network.flagValues.merging(training.flagValues) { a, _ in a }
    try store.save(trainer, config: config)
    let newest = try store.newestAverages(report: { _ in })
    #expect(newest.step == 3)
    #expect(newest.config["num_cells"] == "3")
    var image = [Float](repeating: 0, count: 24 * 24 * 3)
    _ = BuiltInDataset(imageSize: 24).example(.validation, 5, into: &image)
    let fromTrainer = try Evaluator(network: network, batchSize: 1, context: context)
    try fromTrainer.load(from: trainer)
    let expected = Array(UnsafeBufferPointer(start: try fromTrainer.logits(images: image), count: network.numLabelClasses))
    let fromFile = try Evaluator(network: network, batchSize: 1, context: context)
    try fromFile.load(newest.averages, from: directory)
    let logits = Array(UnsafeBufferPointer(start: try fromFile.logits(images: image), count: network.numLabelClasses))
    #expect(logits == expected)
    // And not merely the live weights: three steps move the averages away from them.
    try fromTrainer.load(from: trainer, useAverages: false)
    #expect(Array(UnsafeBufferPointer(start: try fromTrainer.logits(images: image), count: network.numLabelClasses)) != expected)
    var missing = newest.averages
    missing["final_layer/FC/biases"] = nil
    let error = #expect(throws: TrainError.self) { try fromFile.load(missing, from: directory) }
    #expect(error?.description.contains("final_layer/FC/biases") == true)
  }

  @Test func savingKeepsOnlyTheNewestCheckpoints() throws {
    let context = KernelContext(threads: 1)
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let store = CheckpointStore(directory: directory, keep: 2)
    let trainer = try Trainer(network: network, training: training, batchSize: 4, context: context)
    let config = network.flagValues.merging(training.flagValues) { a, _ in a }
    for step in 1...4 { trainer.setGlobalStep(step); try store.save(trainer, config: config) }
    #expect(store.checkpointSteps() == [4, 3])
    let exported = directory + "/export.safetensors"
    let result = try store.exportAverages(to: exported, report: { _ in })
    #expect(result.step == 4)
    let (tensors, _) = try SafeTensors.decode(try FileIO.read(exported), file: exported)
    #expect(tensors["stem/conv0/weights"] != nil)
    #expect(tensors["stem/conv0_bn/moving_variance"] != nil)
    #expect(tensors.keys.allSatisfy { !$0.contains("RMSProp") && !$0.contains("ExponentialMovingAverage") })
  }
}

@Suite struct CraftedSafeTensorsTests {
  /// A file whose header claims `shape` for one tensor over 8 data bytes.
  func file(shape: String, offsets: String = "[0,8]") -> [UInt8] {
    var header = Array("{\"t\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":\(offsets)}}".utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    return withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) } + header + [UInt8](repeating: 0, count: 8)
  }

  @Test func overflowingShapesAndOffsetsAreErrorsNotTraps() {
    for (shape, offsets) in [("[4611686018427387904,4]", "[0,8]"), ("[9223372036854775807]", "[0,8]"),
                             ("[3037000500,3037000500]", "[0,8]"), ("[2]", "[9223372036854775800,9223372036854775807]"),
                             ("[2]", "[-8,0]"), ("[1000000]", "[0,4000000]")] {
      #expect(throws: TrainError.self) { _ = try SafeTensors.decode(file(shape: shape, offsets: offsets), file: "crafted.safetensors") }
    }
    #expect(throws: Never.self) { _ = try SafeTensors.decode(file(shape: "[2]"), file: "ok.safetensors") }
  }
}
