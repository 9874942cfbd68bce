#if canImport(Glibc)
import Glibc
#endif
import CLI
import Graph
import Model
import Tensor
import XLA

/// `amoeba bench xla --preset tiny|bench-small [--steps N] [--pjrt_plugin PATH]`: one training
/// step's forward pass, loss and every gradient (dropout and drop-path on) on XLA:CPU through PJRT
/// against the Swift executor, on the same graph and inputs: compile time, then median seconds per
/// step — XLA executing on device-resident inputs, with and without copying the gradients back to
/// the host (where the ring needs them), and the Swift executor (BN+ReLU fused, as the trainer runs it).
struct XLABenchmark {
  var network = NetworkConfig()
  var batch: Int
  var preset: String
  var steps: Int
  var threads: Int
  var plugin: String

  init(flags: Flags) throws {
    var flags = flags
    preset = flags.string("preset", default: "tiny")
    steps = try flags.int("steps", default: 5)
    threads = try flags.int("threads", default: ThreadPool.onlineCores)
    plugin = flags.string("pjrt_plugin", default: ".pjrt/xla_cpu_pjrt.so")
    try flags.finish()
    (network, batch) = try TrainBenchmark.preset(preset)
    // The loss here is the main head's only: an aux head would be an unused branch.
    network.useAuxHead = false
    network.dropConnectKeepProb = 0.7
    guard steps >= 2 else { throw UsageError("--steps must be at least 2") }
  }

  func run() throws {
    let model = try AmoebaNet(config: network, batchSize: batch, mode: .training)
    var g = model.graph
    let labels = try g.input("labels", [batch])
    let loss = try g.softmaxCrossEntropy(logits: model.logits, labels: labels, labelSmoothing: 0.1, name: "softmax_loss")
    let trainable = model.parameters.filter(\.isTrainable).map { $0.value! }
    var plain = g
    let gradients = try plain.gradients(of: loss, withRespectTo: trainable)
    let (fusedGraph, map) = try g.fusingBatchNormRelu()
    var fused = fusedGraph
    let fusedGradients = try fused.gradients(of: map[loss]!, withRespectTo: trainable.map { map[$0]! })

    let lowering = StableHLOLowering(graph: plain, outputs: [loss] + gradients)
    let leaves = lowering.arguments
    let values = leaves.enumerated().map { k, leaf -> [Float] in
      if leaf == labels { return (0..<batch).map { Float($0 % network.numLabelClasses) } }
      if leaf == model.dropPathKeepProbability { return [0.85] }
      return (0..<plain.shape(leaf).elementCount).map { i in
        Float(CounterRandom.bits(seed: 1, stream: UInt64(k), index: UInt64(i)) % 2001) / 20_000 - 0.05
      }
    }
    let stream: UInt64 = 12345

    // Swift executor, as the trainer runs it.
    let executor = try Executor(graph: fused, outputs: [map[loss]!] + fusedGradients, context: KernelContext(threads: threads))
    for (leaf, data) in zip(leaves, values) { executor.write(map[leaf]!, data) }
    executor.randomStream = stream
    let swiftSeconds = try median { try executor.run() }

    // XLA:CPU.
    let client = try PJRTClient(plugin: PJRTPlugin(path: plugin), options: ["cpu_device_count": 1])
    let program = lowering.module(named: "train_step")
    let compileStart = now()
    let executable = try client.compile(mlir: program)
    let compileSeconds = now() - compileStart
    let arguments = try zip(leaves, values).map { leaf, data in try client.buffer(data, dims: plain.shape(leaf).dims) }
      + [try client.buffer(uint64: stream)]
    let executeSeconds = try median { _ = try executable.execute(arguments) }
    let withCopySeconds = try median { for output in try executable.execute(arguments) { _ = try output.toHost() } }
    let xlaLoss = try executable.execute(arguments)[0].toHost()[0]

    print("machine: \(machineDescription()); \(threads) threads for the Swift executor; XLA:CPU plugin \(plugin) (PJRT 0.\(client.plugin.minorVersion))")
    print("preset \(preset): \(model.trainableParameterCount) parameters, batch \(batch), \(plain.nodes.count) nodes, StableHLO \(program.utf8.count / 1024) KiB; loss \(executor.read(map[loss]!)[0]) (Swift) vs \(xlaLoss) (XLA)")
    print("XLA compile \(round1(compileSeconds)) s")
    print("forward + loss + gradients, median of \(steps) steps:")
    print("  Swift executor          \(round1(swiftSeconds * 1e3)) ms  \(round1(Double(batch) / swiftSeconds)) images/s")
    print("  XLA:CPU execute         \(round1(executeSeconds * 1e3)) ms  \(round1(Double(batch) / executeSeconds)) images/s")
    print("  XLA:CPU + gradients out \(round1(withCopySeconds * 1e3)) ms  \(round1(Double(batch) / withCopySeconds)) images/s")
  }

  func median(_ body: () throws -> Void) throws -> Double {
    try body()
    var times: [Double] = []
    for _ in 0..<steps {
      let start = now()
      try body()
      times.append(now() - start)
    }
    times.sort()
    return times[times.count / 2]
  }
}
