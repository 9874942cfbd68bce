import Testing
import Foundation
import Synchronization
import Collective
import Data
import Model
import Tensor
@testable import Train

final class Shared<T>: @unchecked Sendable { var value: T; init(_ value: T) { self.value = value } }

@Suite struct DataParallelTests {
  func makeTrainer() throws -> Trainer {
    var network = NetworkConfig()
    network.numCells = 3; network.reductionSize = 8; network.imageSize = 24; network.useAuxHead = false
    var training = TrainingConfig()
    training.trainBatchSize = 4; training.numTrainImages = 400; training.lr = 0.05
    return try Trainer(network: network, training: training, batchSize: 4, context: KernelContext(threads: 1), seed: 11)
  }

  func batch(shard: Int, step: Int) -> ([Float], [Float]) {
    let batcher = Batcher(dataset: BuiltInDataset(imageSize: 24), split: .train, batchSize: 4, shard: shard, shardCount: 2, seed: 3)
    let images = UnsafeMutablePointer<Float>.allocateAligned(4 * 24 * 24 * 3), labels = UnsafeMutablePointer<Float>.allocateAligned(4)
    defer { images.deallocate(); labels.deallocate() }
    _ = try! batcher.fill(batch: step, images: images, labels: labels, context: KernelContext(threads: 1))
    return (Array(UnsafeBufferPointer(start: images, count: 4 * 24 * 24 * 3)), Array(UnsafeBufferPointer(start: labels, count: 4)))
  }

  @Test func twoRanksAverageGradientsAndStayIdentical() throws {
    // Local gradients of each shard's first batch, without a ring.
    var local: [[[Float]]] = []
    for shard in 0..<2 {
      let trainer = try makeTrainer()
      let (images, labels) = batch(shard: shard, step: 0)
      try trainer.computeGradients(images: images, labels: labels)
      local.append(trainer.trainable.indices.map { Array(UnsafeBufferPointer(start: trainer.gradientPointer($0), count: trainer.trainable[$0].shape.elementCount)) })
    }
    let listeners = try (0..<2).map { _ in Shared(try TCPListener(host: "127.0.0.1")) }
    let addresses = listeners.map(\.value.address)
    let results = Mutex<[Int: ([[Float]], [[Float]], Double)]>([:])
    let done = DispatchSemaphore(value: 0)
    let failures = Mutex<[String]>([])
    for rank in 0..<2 {
      Thread {
        do {
          let trainer = try makeTrainer()
          let ring = Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: listeners[rank].value, timeout: 30))
          trainer.attach(ring: ring, bucketBytes: 64 << 10, firstBucketBytes: 4 << 10)
          defer { trainer.detach() }
          let (images, labels) = batch(shard: rank, step: 0)
          try trainer.computeGradients(images: images, labels: labels)
          try trainer.applyGradients()
          let averaged = trainer.trainable.indices.map { Array(UnsafeBufferPointer(start: trainer.averagedGradientPointer($0), count: trainer.trainable[$0].shape.elementCount)) }
          let (images1, labels1) = batch(shard: rank, step: 1)
          try trainer.computeGradients(images: images1, labels: labels1)
          try trainer.applyGradients()
          let parameters = trainer.trainable.indices.map { Array(UnsafeBufferPointer(start: trainer.parameterPointer($0), count: trainer.trainable[$0].shape.elementCount)) }
          results.withLock { $0[rank] = (averaged, parameters, trainer.lastCommunication?.communicationSeconds ?? -1) }
        } catch {
          failures.withLock { $0.append("rank \(rank): \(error)") }
        }
        done.signal()
      }.start()
    }
    done.wait(); done.wait()
    #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
    let r = results.withLock { $0 }
    guard let rank0 = r[0], let rank1 = r[1] else { return }
    // The averaged gradient is the mean of the two local ones, identical on both ranks.
    let sameAverages = rank0.0 == rank1.0
    #expect(sameAverages, "the ranks' averaged gradients differ")
    var worst: Float = 0
    for t in local[0].indices { for e in local[0][t].indices {
      worst = max(worst, abs(rank0.0[t][e] - (local[0][t][e] + local[1][t][e]) / 2))
    } }
    #expect(worst < 1e-5)
    // Identical optimizer steps: the parameters agree bitwise after two steps.
    let sameParameters = rank0.1 == rank1.1
    #expect(sameParameters, "the ranks' parameters differ")
    #expect(rank0.2 > 0)
  }
}
