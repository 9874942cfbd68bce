#if canImport(Glibc)
import Glibc
#endif
import CLI
import Data
import Model
import Tensor
import Train
import XLA

/// `amoeba bench train --preset bench-small|tiny [--device cpu|xla_cpu]`: training images/s
/// (forward, backward, optimizer, moving averages: the whole step) of AmoebaNet-D on fake data, and
/// the process's peak RSS; with `--device xla_cpu` the same step as one XLA program through PJRT,
/// its state on the device, and the compile time.
/// bench-small: num_cells 6, reduction_size 64, image_size 128, batch 32, aux head, 1001 classes.
/// tiny: num_cells 3, reduction_size 16, image_size 32, batch 64, 10 classes, no aux head.
struct TrainBenchmark {
  var network = NetworkConfig()
  var training = TrainingConfig()
  var preset: String
  var steps: Int
  var threads: Int
  var profile: Bool
  var device: Accelerator
  var plugin: String?

  init(flags: Flags) throws {
    var flags = flags
    preset = flags.string("preset", default: "tiny")
    steps = try flags.int("steps", default: 10)
    threads = try flags.int("threads", default: ThreadPool.onlineCores)
    profile = try flags.bool("profile")
    let deviceName = flags.string("device", default: "cpu")
    plugin = flags.has("pjrt_plugin") ? flags.string("pjrt_plugin", default: "") : nil
    try flags.finish()
    guard let device = Accelerator(rawValue: deviceName) else { throw UsageError("--device must be cpu, xla_cpu, gpu or tpu, got '\(deviceName)'") }
    if let missing = device.missingHardware() { throw UsageError(missing) }
    self.device = device
    (network, training.trainBatchSize) = try TrainBenchmark.preset(preset)
    training.numTrainImages = 1_281_167
    guard steps >= 2 else { throw UsageError("--steps must be at least 2") }
  }

  /// The benchmark networks and their batch sizes.
  static func preset(_ name: String) throws -> (NetworkConfig, batch: Int) {
    var network = NetworkConfig()
    switch name {
    case "bench-small":
      network.numCells = 6; network.reductionSize = 64; network.imageSize = 128; network.useAuxHead = true
      network.numLabelClasses = 1001
      return (network, 32)
    case "tiny":
      network.numCells = 3; network.reductionSize = 16; network.imageSize = 32; network.useAuxHead = false
      network.numLabelClasses = 10
      return (network, 64)
    default:
      throw UsageError("--preset must be bench-small or tiny, got '\(name)'")
    }
  }

  func run() throws {
    let context = KernelContext(threads: threads)
    let trainer = try Trainer(network: network, training: training, batchSize: training.trainBatchSize, context: context,
                              fuseBatchNormRelu: device == .cpu)
    let data = FakeDataset(imageSize: network.imageSize, classCount: network.numLabelClasses)
    let batcher = Batcher(dataset: data, split: .train, batchSize: training.trainBatchSize)
    let pixels = network.imageSize * network.imageSize * 3
    let images = UnsafeMutablePointer<Float>.allocateAligned(training.trainBatchSize * pixels)
    let labels = UnsafeMutablePointer<Float>.allocateAligned(training.trainBatchSize)
    defer { images.deallocate(); labels.deallocate() }
    _ = try batcher.fill(batch: 0, images: images, labels: labels, context: context)
    var compiled = ""
    if device != .cpu {
      guard let path = plugin ?? device.defaultPluginPath else { throw UsageError("no PJRT plugin for --device \(device.rawValue): \(device.installHint)") }
      let client = try PJRTClient(plugin: PJRTPlugin(path: path), options: device.clientOptions())
      let backend = try XLABackend(client: client, executor: trainer.executor)
      trainer.backend = backend
      compiled = "; the step compiled for \(backend.name) in \(round1(backend.compileSeconds)) s"
    }
    var times: [Double] = []
    trainer.executor.profiling = profile
    for _ in 0..<steps {
      let start = now()
      try trainer.step(images: images, labels: labels)
      times.append(now() - start)
    }
    times.removeFirst()  // the first step touches every page of the arena
    times.sort()
    let median = times[times.count / 2], best = times[0]
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    print("machine: \(machineDescription()); \(threads) threads" + compiled)
    print("preset \(preset): \(trainer.model.trainableParameterCount) parameters, batch \(training.trainBatchSize), memory plan \(round1(Double(trainer.executor.plan.plannedPeakBytes) / 1_048_576)) MiB")
    if profile {
      let byOp = trainer.executor.secondsByOp()
      let total = byOp.reduce(0) { $0 + $1.seconds }
      print("profile (each node's fastest run; sum \(round1(total * 1e3)) ms):")
      for entry in byOp.prefix(14) {
        print(pad("  " + entry.op, 36) + pad("\(entry.count)x", 7) + pad(String(round1(entry.seconds * 1e3)) + " ms", 12) + String(round1(100 * entry.seconds / total)) + "%")
      }
      print("slowest nodes:")
      let g = trainer.executor.graph
      for (index, seconds) in trainer.executor.scheduledSeconds.enumerated().sorted(by: { $0.element > $1.element }).prefix(10) {
        let node = g.nodes[trainer.executor.executedNodes[index]]
        print("  " + pad(String(round1(seconds * 1e3)) + " ms", 10) + pad(node.op.name, 24) + node.inputs.map { g.shape($0).description }.joined(separator: " "))
      }
    }
    print("images/s median \(round1(Double(training.trainBatchSize) / median)) best \(round1(Double(training.trainBatchSize) / best)) over \(times.count) steps; peak RSS \(round1(Double(usage.ru_maxrss) / 1024)) MiB")
  }
}
