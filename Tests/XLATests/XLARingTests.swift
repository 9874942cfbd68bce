import Foundation
import Synchronization
import Testing
import Collective
import Model
import Tensor
import Train
@testable import XLA

final class Box<T>: @unchecked Sendable { let value: T; init(_ value: T) { self.value = value } }

/// Two workers on XLA:CPU averaging over a real TCP ring — the two programs with the ring between
/// them — against the same two workers on the Swift executor.
@Suite struct XLARingTests {
  /// Each rank's whole state after `steps` steps on its own half of a batch.
  static func run(onXLA: Bool, steps: Int, devices: Int = 1) throws -> (names: [String], states: [Int: [[Float]]]) {
    let listeners = try (0..<2).map { _ in Box(try TCPListener(host: "127.0.0.1")) }
    let addresses = listeners.map(\.value.address)
    let results = Mutex<[Int: [[Float]]]>([:]), failures = Mutex<[String]>([]), names = Mutex<[String]>([])
    let done = DispatchSemaphore(value: 0)
    for rank in 0..<2 {
      Thread {
        do {
          var network = NetworkConfig()
          network.numCells = 3; network.reductionSize = 8; network.imageSize = 24; network.useAuxHead = false
          network.numLabelClasses = 10; network.dropConnectKeepProb = 0.8
          var training = TrainingConfig()
          // Several devices per worker: 8 examples each (smaller batch-norm groups are ill-conditioned:
          // ReplicaTests), as micro-batches on the Swift side.
          let batch = devices == 1 ? 4 : 8 * devices
          training.trainBatchSize = 2 * batch; training.numTrainImages = 200 * batch; training.lr = 0.04
          if devices > 1 { training.microBatchSize = .fixed(8) }
          // Ranks' masks keyed on their global examples, as on a cluster. (The 1-device comparison keeps
          // offset 0 on both ranks, as calibrated; the 2 x 2 one with offset 0 on both ranks was 0.2 apart
          // — not understood yet, with masks off 4.9e-3.)
          let trainer = try Trainer(network: network, training: training, batchSize: batch, context: KernelContext(threads: 1), seed: 3,
                                    exampleOffset: devices == 1 ? 0 : rank * batch)
          if onXLA, devices == 1, let client = PJRTTests.client {
            trainer.backend = try XLABackend(client: client, executor: trainer.executor, averagesOverWorkers: true)
          } else if onXLA, let path = PJRTTests.pluginPath {
            let client = try PJRTClient(plugin: PJRTPlugin(path: path), options: ["cpu_device_count": Int64(devices)])
            trainer.backend = try XLABackend(client: client, executor: trainer.executor, averagesOverWorkers: true, replicas: devices)
          }
          trainer.attach(ring: Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: listeners[rank].value, timeout: 120)))
          defer { trainer.detach() }
          let all = devices == 1 ? XLATrainerTests.images : XLARingTests.images(2 * batch)
          let images = Array(all[(rank * batch * 24 * 24 * 3)..<((rank + 1) * batch * 24 * 24 * 3)])
          let labels = (0..<batch).map { Float((rank * batch + $0) % 10) }
          for _ in 0..<steps { try trainer.step(images: images, labels: labels) }
          try trainer.synchronizeHostState()
          let tensors = CheckpointStore.tensors(of: trainer)
          let state = tensors.map { Array(UnsafeBufferPointer(start: $0.pointer, count: $0.shape.elementCount)) }
          results.withLock { $0[rank] = state }
          names.withLock { $0 = tensors.map(\.name) }
        } catch { failures.withLock { $0.append("rank \(rank): \(error)") } }
        done.signal()
      }.start()
    }
    done.wait(); done.wait()
    let failed = failures.withLock { $0 }
    #expect(failed.isEmpty, "\(failed)")
    return (names.withLock { $0 }, results.withLock { $0 })
  }

  static func images(_ count: Int) -> [Float] {
    (0..<(count * 24 * 24 * 3)).map { i in Float(CounterRandom.bits(seed: 1, stream: 0, index: UInt64(i)) % 2001) / 1000 - 1 }
  }

  /// Hosts × devices: 2 workers of 2 XLA:CPU devices each (the mean over a worker's devices in its
  /// first program, one copy per worker round the TCP ring, the update on every device) against
  /// 2 Swift workers of 2 micro-batches each — 4 batch-norm groups of 8 either way.
  @Test func twoWorkersOfTwoDevicesFollowTwoSwiftWorkersOfTwoMicroBatches() throws {
    guard PJRTTests.client != nil else { return }
    let cpu = try XLARingTests.run(onXLA: false, steps: 2, devices: 2), xla = try XLARingTests.run(onXLA: true, steps: 2, devices: 2)
    guard let c = cpu.states[0], let x = xla.states[0], let x1 = xla.states[1] else { return }
    let (worst, tensor) = XLATrainerTests.compare(names: cpu.names, c, x)
    #expect(worst <= 1e-2, "rank 0's \(tensor) on 2 devices differs from the Swift rank's by \(worst) of its family's largest element")
    let weights = cpu.names.prefix { !$0.hasSuffix("/RMSProp") && !$0.hasSuffix("/ExponentialMovingAverage") }.count
    #expect(Array(x.prefix(weights)) == Array(x1.prefix(weights)), "the XLA ranks' weights differ")
    print("2 workers x 2 XLA:CPU devices over a TCP ring, 2 steps: rank 0's whole state within \(worst) of 2 Swift workers' of 2 micro-batches (\(tensor)); both ranks' weights identical")
  }

  @Test func twoWorkersOnXLAFollowTwoWorkersOnTheSwiftExecutor() throws {
    guard PJRTTests.client != nil else { return }
    let cpu = try XLARingTests.run(onXLA: false, steps: 2), xla = try XLARingTests.run(onXLA: true, steps: 2)
    guard let c = cpu.states[0], let x = xla.states[0], let x1 = xla.states[1] else { return }
    let (worst, tensor) = XLATrainerTests.compare(names: cpu.names, c, x)
    // As in XLATrainerTests, the first conv's gradient (and so its slots) is where the two
    // backends' summation orders part most; with 4 images per worker its batch norms cancel more.
    #expect(worst <= 1e-2, "rank 0's \(tensor) on XLA differs from the Swift rank's by \(worst) of its family's largest element")
    // Averaged gradients keep the ranks' weights (the first tensors of the state) identical.
    let weights = cpu.names.prefix { !$0.hasSuffix("/RMSProp") && !$0.hasSuffix("/ExponentialMovingAverage") }.count
    let sameWeights = Array(x.prefix(weights)) == Array(x1.prefix(weights))
    #expect(sameWeights, "the XLA ranks' weights differ")
    print("2 workers on XLA:CPU over a TCP ring, 2 steps: rank 0's whole state within \(worst) of the Swift ranks' (\(tensor)); both ranks' \(weights) weight tensors identical")
  }
}
