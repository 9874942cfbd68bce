import Foundation
import Synchronization
import Testing
import Collective
import Model
import Tensor
import Train
@testable import XLA

final class Box<T>: @unchecked Sendable { let value: T; init(_ value: T) { self.value = value } }
final class Counter: Sendable { let value = Atomic<Int>(0) }

/// Two workers on XLA:CPU averaging over a real TCP ring — the two programs with the ring between
/// them — against the same two workers on the Swift executor.
@Suite struct XLARingTests {
  /// Each rank's whole state after `steps` steps on its own `batch` of the global batch
  /// (`workers` × `batch` examples): `microBatch` splits a rank's batch (batch-norm groups); on
  /// XLA, `devices` replicas each take one micro-batch. `rankOffsets`: masks keyed on the ranks'
  /// global examples, as on a cluster. (The 1-device comparison keeps offset 0 on both ranks, as
  /// calibrated; the 2 x 2 one with offset 0 on both ranks was 0.2 apart — not understood yet,
  /// with masks off 4.9e-3.)
  /// `bucketBytes`: the gradient buckets' size (and, on XLA, one first-half program per bucket).
  static func run(onXLA: Bool, steps: Int, workers: Int = 2, batch: Int, microBatch: Int? = nil, devices: Int = 1,
                  rankOffsets: Bool, bucketBytes: Int = 25 << 20, segments: Counter? = nil) throws -> (names: [String], states: [Int: [[Float]]]) {
    let listeners = try (0..<workers).map { _ in Box(try TCPListener(host: "127.0.0.1")) }
    let addresses = listeners.map(\.value.address)
    let results = Mutex<[Int: [[Float]]]>([:]), failures = Mutex<[String]>([]), names = Mutex<[String]>([])
    let done = DispatchSemaphore(value: 0)
    for rank in 0..<workers {
      Thread {
        do {
          var network = NetworkConfig()
          network.numCells = 3; network.reductionSize = 8; network.imageSize = 24; network.useAuxHead = false
          network.numLabelClasses = 10; network.dropConnectKeepProb = 0.8
          var training = TrainingConfig()
          training.trainBatchSize = workers * batch; training.numTrainImages = 100 * workers * batch; training.lr = 0.04
          if let microBatch { training.microBatchSize = .fixed(microBatch) }
          let trainer = try Trainer(network: network, training: training, batchSize: batch, context: KernelContext(threads: 1), seed: 3,
                                    exampleOffset: rankOffsets ? rank * batch : 0)
          let groups = trainer.gradientBuckets(bucketBytes: bucketBytes)
          segments?.value.store(groups.count, ordering: .relaxed)
          if onXLA, devices == 1, let client = PJRTTests.client {
            trainer.backend = try XLABackend(client: client, executor: trainer.executor, averagesOverWorkers: true, gradientGroups: groups)
          } else if onXLA, let path = PJRTTests.pluginPath {
            let client = try PJRTClient(plugin: PJRTPlugin(path: path), options: ["cpu_device_count": Int64(devices)])
            trainer.backend = try XLABackend(client: client, executor: trainer.executor, averagesOverWorkers: true, gradientGroups: groups,
                                             replicas: devices)
          }
          if workers > 1 {
            trainer.attach(ring: Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: listeners[rank].value, timeout: 120)),
                           bucketBytes: bucketBytes)
          }
          defer { trainer.detach() }
          let all = XLARingTests.images(workers * batch)
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
    for _ in 0..<workers { done.wait() }
    let failed = failures.withLock { $0 }
    #expect(failed.isEmpty, "\(failed)")
    return (names.withLock { $0 }, results.withLock { $0 })
  }

  static func images(_ count: Int) -> [Float] {
    (0..<(count * 24 * 24 * 3)).map { i in Float(CounterRandom.bits(seed: 1, stream: 0, index: UInt64(i)) % 2001) / 1000 - 1 }
  }

  /// Hosts × devices: 2 workers of 2 XLA:CPU devices each (the mean over a worker's devices in its
  /// first program, one copy per worker round the TCP ring, the update on every device) against
  /// the same 4 batch-norm groups of 8 on the Swift executor three ways — 2 workers of 2
  /// micro-batches, 4 single-device workers, and one process of 4 micro-batches (ghost batch norm).
  /// The Swift three agree to rounding (gradients summed in other orders); XLA:CPU is within 1e-2
  /// of each family's largest element (its summation orders differ more: XLATrainerTests).
  @Test func twoWorkersOfTwoDevicesFollowFourSwiftWorkersAndOneProcessOfFourGroups() throws {
    guard PJRTTests.client != nil else { return }
    let xla = try XLARingTests.run(onXLA: true, steps: 2, batch: 16, microBatch: 8, devices: 2, rankOffsets: true)
    // Batch-norm moving statistics (and their averages) are each group's own: a rank keeps its last
    // group's, so each is compared with the XLA rank whose last device saw the same 8 examples
    // (groups 0-3 are examples 0-7, …, 24-31; XLA rank r's last device holds group 2r + 1).
    // Everything else is the same on every rank.
    let references: [(name: String, run: (names: [String], states: [Int: [[Float]]]), statisticsRank: Int, xlaRank: Int)] = [
      ("2 Swift workers of 2 micro-batches", try XLARingTests.run(onXLA: false, steps: 2, batch: 16, microBatch: 8, rankOffsets: true), 0, 0),
      ("4 single-device Swift workers", try XLARingTests.run(onXLA: false, steps: 2, workers: 4, batch: 8, rankOffsets: true), 1, 0),
      ("one Swift process of 4 micro-batches", try XLARingTests.run(onXLA: false, steps: 2, workers: 1, batch: 32, microBatch: 8, rankOffsets: true), 0, 1),
    ]
    guard let x0 = xla.states[0], let x1 = xla.states[1] else { return }
    let weights = xla.names.prefix { !$0.hasSuffix("/RMSProp") && !$0.hasSuffix("/ExponentialMovingAverage") }.count
    #expect(Array(x0.prefix(weights)) == Array(x1.prefix(weights)), "the XLA ranks' weights differ")
    let isStatistic = xla.names.map { $0.contains("moving_mean") || $0.contains("moving_variance") }
    func view(_ states: [Int: [[Float]]], statisticsRank: Int) -> [[Float]]? {
      guard let base = states[0], let statistics = states[statisticsRank] else { return nil }
      return base.indices.map { isStatistic[$0] ? statistics[$0] : base[$0] }
    }
    // The first reference seen as each XLA rank sees it: group 1's statistics for rank 0, group 3's for rank 1.
    let byXLARank = [0: view(references[0].run.states, statisticsRank: 0), 1: view(references[0].run.states, statisticsRank: 1)]
    for reference in references {
      guard let c = view(reference.run.states, statisticsRank: reference.statisticsRank), let x = xla.states[reference.xlaRank],
            let first = byXLARank[reference.xlaRank] ?? nil else { Issue.record("\(reference.name): a rank's state is missing"); continue }
      let (worst, tensor) = XLATrainerTests.compare(names: reference.run.names, c, x)
      #expect(worst <= 1e-2, "XLA rank \(reference.xlaRank)'s \(tensor) on 2 x 2 devices differs from \(reference.name)'s by \(worst) of its family's largest element")
      let (apart, apartTensor) = XLATrainerTests.compare(names: reference.run.names, first, c)
      #expect(apart <= 1e-4, "\(reference.name) and \(references[0].name) differ by \(apart) (\(apartTensor))")
      print("2 workers x 2 XLA:CPU devices over a TCP ring, 2 steps: XLA rank \(reference.xlaRank)'s whole state within \(worst) of \(reference.name) (\(tensor)); \(reference.name) within \(apart) of \(references[0].name)")
    }
  }

  /// Two XLA workers over a TCP ring against two Swift workers, with the first half as one
  /// program and as one program per gradient bucket (all launched at once, each bucket to the
  /// ring as its program ends). Bucket sizes change nothing on the Swift side but the grouping.
  @Test func twoWorkersOnXLAFollowTwoSwiftWorkersInOneProgramOrOnePerBucket() throws {
    guard PJRTTests.client != nil else { return }
    let segments = Counter()
    let cpu = try XLARingTests.run(onXLA: false, steps: 2, batch: 4, rankOffsets: false)
    let whole = try XLARingTests.run(onXLA: true, steps: 2, batch: 4, rankOffsets: false)
    let split = try XLARingTests.run(onXLA: true, steps: 2, batch: 4, rankOffsets: false, bucketBytes: 40_000, segments: segments)
    let programs = segments.value.load(ordering: .relaxed)
    #expect(programs >= 3, "only \(programs) buckets")
    guard let c = cpu.states[0], let w = whole.states[0], let w1 = whole.states[1], let s = split.states[0], let s1 = split.states[1] else { return }
    // As in XLATrainerTests, the first conv's gradient (and so its slots) is where the two
    // backends' summation orders part most; with 4 images per worker its batch norms cancel more.
    let (worst, tensor) = XLATrainerTests.compare(names: cpu.names, c, w)
    #expect(worst <= 1e-2, "rank 0's \(tensor) on XLA differs from the Swift rank's by \(worst) of its family's largest element")
    let (apart, apartTensor) = XLATrainerTests.compare(names: cpu.names, w, s)
    #expect(apart <= 1e-3, "\(programs) programs differ from one by \(apart) (\(apartTensor))")
    // Averaged gradients keep the ranks' weights (the first tensors of the state) identical.
    let weights = cpu.names.prefix { !$0.hasSuffix("/RMSProp") && !$0.hasSuffix("/ExponentialMovingAverage") }.count
    #expect(Array(w.prefix(weights)) == Array(w1.prefix(weights)) && Array(s.prefix(weights)) == Array(s1.prefix(weights)), "the XLA ranks' weights differ")
    print("2 workers on XLA:CPU over a TCP ring, 2 steps: rank 0's whole state within \(worst) of the Swift ranks' (\(tensor)); with backward in \(programs) programs (one per bucket) within \(apart) of one program; both ranks' \(weights) weight tensors identical")
  }
}
