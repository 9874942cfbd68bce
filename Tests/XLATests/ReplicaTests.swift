import Foundation
import Testing
import Graph
import Model
import Train
import Tensor
@testable import XLA

/// One program over several devices of a host, on XLA:CPU's virtual devices (`cpu_device_count`):
/// the replicated compile and run, the cross-replica mean at the data-parallel boundary, and masks
/// that follow the global example index on every device. Skips, saying so, without the plugin.
@Suite struct ReplicaTests {
  static let devices = 4
  static let client: PJRTClient? = {
    guard let path = PJRTTests.pluginPath else {
      print("skipped: no XLA:CPU PJRT plugin; run Scripts/fetch-pjrt-cpu.sh to run the replica tests")
      return nil
    }
    do { return try PJRTClient(plugin: PJRTPlugin(path: path), options: ["cpu_device_count": Int64(devices)]) } catch {
      Issue.record("the plugin at \(path) did not start with \(devices) devices: \(error)")
      return nil
    }
  }()

  @Test func aCrossReplicaSumRunsOnEveryDevice() throws {
    guard let client = Self.client else { return }
    #expect(client.devices.count == Self.devices)
    let program = """
      module @sum {
        func.func public @main(%x: tensor<3xf32>) -> tensor<3xf32> {
          %s = "stablehlo.all_reduce"(%x) ({
            ^bb0(%a: tensor<f32>, %b: tensor<f32>):
              %c = stablehlo.add %a, %b : tensor<f32>
              stablehlo.return %c : tensor<f32>
          }) {replica_groups = dense<[[0, 1, 2, 3]]> : tensor<1x4xi64>} : (tensor<3xf32>) -> tensor<3xf32>
          return %s : tensor<3xf32>
        }
      }
      """
    let executable = try client.compile(mlir: program, replicas: Self.devices)
    let inputs = (0..<Self.devices).map { r in [Float(r), Float(10 * r), 1] }
    let outputs = try executable.execute(replicated: try inputs.enumerated().map { r, x in [try client.buffer(x, dims: [3], device: r)] })
    for r in 0..<Self.devices { #expect(try outputs[r][0].toHost() == [6, 60, 4], "replica \(r)") }
    #expect(throws: PJRTError.self) { try client.compile(mlir: program, replicas: Self.devices + 1) }
  }

  /// Dropout then the boundary, lowered for 4 replicas of 2 examples: each device's mask is the
  /// one the Swift executor draws for the same rows of the 8-example batch, and every device ends
  /// with the mean over devices.
  @Test func theBoundaryIsTheMeanOverDevicesAndMasksFollowTheGlobalExample() throws {
    guard let client = Self.client else { return }
    let perDevice = 2, width = 5, stream: UInt64 = 3, offset = 16
    func graph(batch: Int) throws -> (Graph, Value, Value, Value) {
      var g = Graph()
      let x = try g.input("x", [batch, width])
      let dropped = try g.dropout(x, keepProbability: 0.5, seed: 77)
      let mean = try g.add(.allReduceMean, [dropped])
      return (g, x, dropped, mean)
    }
    let values = (0..<(Self.devices * perDevice * width)).map { Float($0 % 7) - 2.5 }
    let (whole, wholeX, wholeDropped, _) = try graph(batch: Self.devices * perDevice)
    let executor = try Executor(graph: whole, outputs: [wholeDropped], context: KernelContext(threads: 1))
    executor.randomStream = stream
    executor.exampleOffset = offset
    executor.write(wholeX, values)
    try executor.run()
    let expected = executor.read(wholeDropped)

    let (g, x, dropped, mean) = try graph(batch: perDevice)
    let lowering = StableHLOLowering(graph: g, outputs: [dropped, mean], exampleOffset: offset, replicas: Self.devices)
    #expect(lowering.takesRandomStream)
    let executable = try client.compile(mlir: lowering.module(named: "replicated"), replicas: Self.devices)
    let slice = perDevice * width
    let outputs = try executable.execute(replicated: try (0..<Self.devices).map { r in
      [try client.buffer(Array(values[(r * slice)..<((r + 1) * slice)]), dims: [perDevice, width], device: r),
       try client.buffer(uint64: stream, device: r)]
    })
    var sum = [Float](repeating: 0, count: slice)
    for r in 0..<Self.devices {
      let mine = try outputs[r][0].toHost()
      #expect(mine == Array(expected[(r * slice)..<((r + 1) * slice)]), "replica \(r)'s mask is the executor's for its rows")
      for i in 0..<slice { sum[i] += mine[i] }
    }
    #expect(Set(expected.map { $0 == 0 }).count == 2, "some kept, some dropped")
    for r in 0..<Self.devices {
      let averaged = try outputs[r][1].toHost()
      #expect(zip(averaged, sum).allSatisfy { abs($0 - $1 / Float(Self.devices)) < 1e-6 }, "replica \(r) holds the mean")
    }
  }

  /// The tiny AmoebaNet-D's training step (dropout and drop-path on), one host batch of 32 over 4
  /// devices of 8, against the Swift trainer running the same 32 as 4 micro-batches of 8 (batch
  /// norm over each, gradients averaged — what one process with 4 ghost batch-norm groups does,
  /// bitwise: EquivalenceTests): the same loss and state within one device's tolerance (5e-3 of
  /// each family's largest element). Smaller groups are ill-conditioned, not wrong: at 2 or 4
  /// examples a group one device alone differs from the Swift trainer by 7% and 1.4% (stem
  /// conv's slots), and 4 devices of identical slices equal one device bit for bit.
  @Test func fourDevicesFollowTheSwiftTrainerOverFourMicroBatches() throws {
    guard let client = Self.client else { return }
    var network = NetworkConfig()
    network.numCells = 3; network.reductionSize = 8; network.imageSize = 24; network.useAuxHead = false
    network.numLabelClasses = 10; network.dropConnectKeepProb = 0.8
    var training = TrainingConfig()
    training.trainBatchSize = 32; training.numTrainImages = 3200; training.lr = 0.04; training.numEpochs = 1
    training.microBatchSize = .fixed(8)
    let cpu = try Trainer(network: network, training: training, batchSize: 32, context: KernelContext(threads: 1), seed: 3)
    let xla = try Trainer(network: network, training: training, batchSize: 32, context: KernelContext(threads: 1), seed: 3)
    let images: [Float] = (0..<(32 * 24 * 24 * 3)).map { i in Float(CounterRandom.bits(seed: 1, stream: 0, index: UInt64(i)) % 2001) / 1000 - 1 }
    let labels: [Float] = (0..<32).map { Float($0 % 10) }
    let backend = try XLABackend(client: client, executor: xla.executor, replicas: Self.devices, cache: PJRTTests.cache)
    xla.backend = backend
    #expect(backend.replicas == 4 && backend.name.hasPrefix("XLA:"))
    var worst: [Float] = []
    for step in 1...2 {
      let a = try cpu.step(images: images, labels: labels)
      let b = try xla.step(images: images, labels: labels)
      #expect(abs(a.total - b.total) <= 1e-4 * abs(a.total), "step \(step): loss \(a.total) vs \(b.total)")
      let (difference, tensor) = try XLATrainerTests.compare(cpu, xla)
      worst.append(difference)
      #expect(difference <= 5e-3, "step \(step): \(tensor) differs by \(difference) of its family's largest element")
    }
    print("one host, 4 XLA:CPU devices × 8 examples against the Swift trainer's 4 micro-batches of 8: the whole state after steps 1 and 2 within \(worst) of each family's largest element")
    // A host batch that is not devices × micro-batch is refused by name.
    var other = training
    other.microBatchSize = .fixed(4)
    let wrong = try Trainer(network: network, training: other, batchSize: 32, context: KernelContext(threads: 1), seed: 3)
    wrong.backend = backend
    #expect { _ = try wrong.step(images: images, labels: labels) } throws: { error in
      "\(error)".contains("4 devices") && "\(error)".contains("--micro_batch_size=8")
    }
  }
}
