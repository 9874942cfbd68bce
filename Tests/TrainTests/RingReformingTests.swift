import Testing
import Foundation
import Synchronization
import Collective
import Data
import Model
import Tensor
@testable import Train

/// The pieces in-memory recovery is made of, in one process: rings formed again over the
/// survivors with a new membership generation, trainers detached from the old ring and attached
/// to the new one, and a replacement's whole training state handed over from a survivor through
/// the ring, bitwise — 3 ranks, then 2 (one lost), then 3 again (a replacement).
@Suite struct RingReformingTests {
  static func trainer(seed: UInt64) throws -> Trainer {
    var network = NetworkConfig()
    network.numCells = 3; network.reductionSize = 8; network.imageSize = 24; network.useAuxHead = false
    var training = TrainingConfig()
    training.trainBatchSize = 12; training.numTrainImages = 1200; training.lr = 0.05
    return try Trainer(network: network, training: training, batchSize: 4, context: KernelContext(threads: 1), seed: seed)
  }

  static func batch(shard: Int, shards: Int, step: Int) -> ([Float], [Float]) {
    let batcher = Batcher(dataset: BuiltInDataset(imageSize: 24), split: .train, batchSize: 4, shard: shard, shardCount: shards, seed: 3)
    let images = UnsafeMutablePointer<Float>.allocateAligned(4 * 24 * 24 * 3), labels = UnsafeMutablePointer<Float>.allocateAligned(4)
    defer { images.deallocate(); labels.deallocate() }
    _ = try! batcher.fill(batch: step, images: images, labels: labels, context: KernelContext(threads: 1))
    return (Array(UnsafeBufferPointer(start: images, count: 4 * 24 * 24 * 3)), Array(UnsafeBufferPointer(start: labels, count: 4)))
  }

  /// Attached to `ring` for `steps` steps on shard `rank` of `size`, then detached.
  static func train(_ ring: Ring, _ trainer: Trainer, rank: Int, size: Int, steps: Range<Int>) throws {
    trainer.attach(ring: ring, bucketBytes: 64 << 10, firstBucketBytes: 4 << 10)
    defer { trainer.detach() }
    for step in steps {
      let (images, labels) = batch(shard: rank, shards: size, step: step)
      try trainer.step(images: images, labels: labels)
    }
  }

  static func state(_ trainer: Trainer) -> [[Float]] {
    CheckpointStore.tensors(of: trainer).map { Array(UnsafeBufferPointer(start: $0.pointer, count: $0.shape.elementCount)) }
  }

  /// What averaged gradients keep equal on every rank: all but the batch-norm moving statistics
  /// (and their averages), which follow each rank's own batches.
  static func shared(_ trainer: Trainer) -> [[Float]] {
    CheckpointStore.tensors(of: trainer).filter { !$0.name.contains("moving_mean") && !$0.name.contains("moving_variance") }
      .map { Array(UnsafeBufferPointer(start: $0.pointer, count: $0.shape.elementCount)) }
  }

  /// Runs `body(rank, ring)` for every trainer on a fresh ring of generation `generation`, one thread each.
  static func onRing(_ trainers: [Trainer], generation: UInt32, _ body: @escaping @Sendable (Int, Ring, Trainer) throws -> Void) throws {
    let listeners = try trainers.map { _ in Shared(try TCPListener(host: "127.0.0.1")) }
    let addresses = listeners.map(\.value.address)
    let failures = Mutex<[String]>([])
    let done = DispatchSemaphore(value: 0)
    let shared = trainers.map { Shared($0) }
    for rank in trainers.indices {
      Thread {
        do {
          let links = try TCPRing(rank: rank, addresses: addresses, listener: listeners[rank].value, generation: generation, timeout: 30)
          defer { links.close() }
          try body(rank, Ring(links: links), shared[rank].value)
        } catch { failures.withLock { $0.append("rank \(rank) of generation \(generation): \(error)") } }
        done.signal()
      }.start()
    }
    for _ in trainers { done.wait() }
    let failed = failures.withLock { $0 }
    #expect(failed.isEmpty, "\(failed)")
  }

  @Test func threeRanksThenTwoThenThreeKeepTrainingAndAReplacementGetsTheStateBitwise() throws {
    let survivors = try [RingReformingTests.trainer(seed: 11), RingReformingTests.trainer(seed: 11)]
    let lost = try RingReformingTests.trainer(seed: 11)
    // Generation 1: three ranks, two steps.
    try RingReformingTests.onRing(survivors + [lost], generation: 1) { rank, ring, trainer in
      try RingReformingTests.train(ring, trainer, rank: rank, size: 3, steps: 0..<2)
    }
    let afterThree = survivors.map(RingReformingTests.shared)
    #expect(afterThree[0] == afterThree[1] && afterThree[0] == RingReformingTests.shared(lost), "three ranks diverged")
    // Rank 2 is lost. Generation 2: the two survivors re-form and go on from their own state.
    try RingReformingTests.onRing(survivors, generation: 2) { rank, ring, trainer in
      try RingReformingTests.train(ring, trainer, rank: rank, size: 2, steps: 2..<4)
    }
    let afterTwo = survivors.map(RingReformingTests.shared)
    #expect(afterTwo[0] == afterTwo[1], "the survivors diverged")
    #expect(afterTwo[0] != afterThree[0], "the survivors did not train")
    let rank0 = RingReformingTests.state(survivors[0])
    #expect(survivors.allSatisfy { $0.globalStep == 4 })
    // Generation 3: a replacement with a different initialisation joins; rank 0's whole state
    // (weights, slots, averages, batch-norm statistics) and step reach it through the ring.
    let replacement = try RingReformingTests.trainer(seed: 99)
    #expect(RingReformingTests.state(replacement) != rank0)
    let handedOver = Mutex<[[Float]]>([])
    try RingReformingTests.onRing(survivors + [replacement], generation: 3) { rank, ring, trainer in
      for tensor in CheckpointStore.tensors(of: trainer) {
        try ring.broadcast(UnsafeMutableBufferPointer(start: tensor.pointer, count: tensor.shape.elementCount), root: 0)
      }
      var step = [Float(trainer.globalStep)]
      try step.withUnsafeMutableBufferPointer { try ring.broadcast($0, root: 0) }
      trainer.setGlobalStep(Int(step[0]))
      trainer.hostStateChanged()
      if rank == 2 { handedOver.withLock { $0 = RingReformingTests.state(trainer) } }
      try RingReformingTests.train(ring, trainer, rank: rank, size: 3, steps: trainer.globalStep..<(trainer.globalStep + 2))
    }
    #expect(handedOver.withLock { $0 } == rank0, "the replacement's state is not rank 0's, bit for bit")
    let afterReplacement = (survivors + [replacement]).map(RingReformingTests.shared)
    #expect(afterReplacement[0] == afterReplacement[1] && afterReplacement[0] == afterReplacement[2], "three ranks diverged after the replacement")
    #expect(replacement.globalStep == 6)
  }

  /// A rank still of an older membership greets the new ring: refused by name, and the ring's
  /// wait for its real neighbour ends with that refusal.
  @Test func aRankOfAnOlderGenerationIsRefusedByName() throws {
    let listeners = try (0..<2).map { _ in Shared(try TCPListener(host: "127.0.0.1")) }
    let addresses = listeners.map(\.value.address)
    let outcome = Mutex<String>("")
    let done = DispatchSemaphore(value: 0)
    for rank in 0..<2 {
      Thread {
        do {
          let links = try TCPRing(rank: rank, addresses: addresses, listener: listeners[rank].value, generation: rank == 0 ? 5 : 4, timeout: 3)
          links.close()
        } catch where rank == 0 { outcome.withLock { $0 = "\(error)" } } catch {}
        done.signal()
      }.start()
    }
    done.wait(); done.wait()
    let message = outcome.withLock { $0 }
    #expect(message.contains("is rank 1 of this job's membership generation 4, not the current 5: a worker of an older membership, refused"), "\(message)")
  }
}
