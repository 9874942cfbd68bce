#if canImport(Glibc)
import Glibc
#endif
import CLI
import Model
import Train
import XLA

/// `amoeba xla compile --platform tpu --topology v5e:2x4 [model and training flags] [--batch 128] [--local_devices 8] [--precision bfloat16]`:
/// the worker's training step lowered to StableHLO and compiled ahead of time for a device
/// topology that need not be here (libtpu compiles for TPUs on a host without one), or with
/// `--platform cpu` for this host's XLA:CPU. Prints the compile time, the executable's size and
/// the device memory the compiler planned, so a configuration is known to fit before a TPU is paid for.
struct XLACompileCommand {
  var network: NetworkConfig
  var training: TrainingConfig
  var platform: String
  var topology: String
  var batch: Int
  /// Chips (or this host's virtual CPU devices) the one replicated program spans.
  var localDevices: Int
  var plugin: String
  var output: String?
  var precision: StableHLOLowering.Precision

  init(flags: Flags) throws {
    var flags = flags
    network = try flags.networkConfig()
    training = try flags.trainingConfig()
    platform = flags.string("platform", default: "tpu")
    topology = flags.string("topology", default: "v5e:2x2")
    batch = try flags.int("batch", default: 128)
    localDevices = try flags.int("local_devices", default: 1)
    let defaultPlugin = platform == "tpu" ? ".pjrt/libtpu.so" : ".pjrt/xla_cpu_pjrt.so"
    plugin = flags.string("pjrt_plugin", default: defaultPlugin)
    let precisionName = flags.string("precision", default: "float32")
    guard let precision = StableHLOLowering.Precision(rawValue: precisionName) else {
      throw UsageError("--precision must be float32 or bfloat16, got '\(precisionName)'")
    }
    self.precision = precision
    let out = flags.string("out", default: "")
    output = out.isEmpty ? nil : out
    try flags.finish()
    guard ["tpu", "cpu"].contains(platform) else { throw UsageError("--platform must be tpu or cpu, got '\(platform)'") }
    guard batch >= 1 else { throw UsageError("--batch (per device) must be at least 1, got \(batch)") }
    guard (1..<128).contains(localDevices) else { throw UsageError("--local_devices must be 1 to 127, got \(localDevices)") }
    try network.validate()
  }

  func run() throws {
    if platform == "tpu" {
      // Without it libtpu spends minutes asking a cloud metadata server that a non-TPU host lacks.
      setenv("TPU_SKIP_MDS_QUERY", "1", 0)
      // Compiling needs no workers; unset, libtpu logs a failed guess at their names.
      setenv("TPU_WORKER_HOSTNAMES", "localhost", 0)
    }
    guard access(plugin, R_OK) == 0 else {
      throw UsageError("no PJRT plugin at \(plugin): run \(platform == "tpu" ? "Scripts/fetch-libtpu.sh" : "Scripts/fetch-pjrt-cpu.sh") or pass --pjrt_plugin PATH")
    }
    let buildStart = now()
    let step = try TrainingGraph(network: network, training: training, batchSize: batch, fuseBatchNormRelu: false)
    let lowering = XLABackend.wholeStep(graph: step.graph, outputs: [step.totalLoss, step.crossEntropy, step.learningRate],
                                        stateUpdates: step.stateUpdates, randomStreamFromStep: (step.globalStep, 0),
                                        precision: precision, replicas: localDevices)
    let program = lowering.module(named: "train_step")
    let buildSeconds = now() - buildStart
    let loaded = try PJRTPlugin(path: plugin)
    let devices = localDevices > 1 ? ", replicated over \(localDevices) devices (host batch \(batch * localDevices))" : ""
    print("N\(network.numCells)F\(network.reductionSize)@\(network.imageSize) \(network.cellName), per-device batch \(batch)\(devices), \(precision): "
          + "\(step.model.trainableParameterCount) parameters, \(step.graph.nodes.count) nodes, StableHLO \(program.utf8.count / 1024) KiB (built in \(round1(buildSeconds)) s)")
    let started = now()
    let compiled: PJRTCompiledProgram
    let target: String
    if platform == "tpu" {
      let devices = try PJRTTopology(plugin: loaded, name: topology)
      target = "\(devices.platformName) topology \(topology)"
      compiled = try devices.compile(mlir: program, replicas: localDevices)
    } else {
      let client = try PJRTClient(plugin: loaded, options: ["cpu_device_count": Int64(localDevices)])
      target = "XLA:\(client.platformName) on this host"
      compiled = try client.compileUnloaded(mlir: program, replicas: localDevices)
    }
    let seconds = now() - started
    print("compiled for \(target) with \(plugin) (PJRT 0.\(loaded.minorVersion)) in \(round1(seconds)) s: "
          + "serialized executable \(mebibytes(compiled.serialized.count)) MiB"
          + (compiled.generatedCodeBytes.map { ", generated code \(mebibytes($0)) MiB" } ?? ""))
    if let memory = compiled.memory {
      print("device memory planned: arguments \(mebibytes(memory.arguments)) MiB, outputs \(mebibytes(memory.outputs)) MiB "
            + "(\(mebibytes(memory.aliased)) MiB aliased), temporaries \(mebibytes(memory.temporaries)) MiB, "
            + "total \(mebibytes(memory.total)) MiB" + (memory.peak.map { ", peak \(mebibytes($0)) MiB" } ?? ""))
    } else {
      print("device memory: the plugin does not report it")
    }
    if let output {
      try FileIO.writeAtomically(compiled.serialized, to: output)
      print("wrote \(output)")
    }
  }

  func mebibytes(_ bytes: Int) -> Double { round1(Double(bytes) / 1_048_576) }
}
