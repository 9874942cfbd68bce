import Testing
import Foundation
import Synchronization
import Collective
import Data
import Model
import Graph
import Tensor
@testable import Train

/// N workers at global batch B against one process at batch B with batch norm per group of B/N:
/// the single process runs the groups one after another on one trainer, averages their gradients
/// in rank order and applies them. Dropout and drop-path are on: their masks are keyed on the
/// global example, so every worker count draws the same ones.
@Suite struct EquivalenceTests {
  let globalBatch = 8, steps = 3

  func trainer(batch: Int, rank: Int = 0, micro: Int? = nil) throws -> Trainer {
    var network = NetworkConfig()
    network.numCells = 3; network.reductionSize = 8; network.imageSize = 24; network.useAuxHead = false
    network.denseDropoutKeepProb = 0.5; network.dropConnectKeepProb = 0.7
    var training = TrainingConfig()
    training.trainBatchSize = globalBatch; training.numTrainImages = 800; training.lr = 0.05
    if let micro { training.microBatchSize = .fixed(micro) }
    return try Trainer(network: network, training: training, batchSize: batch, context: KernelContext(threads: 1), seed: 21,
                       exampleOffset: rank * batch)
  }

  func group(_ rank: Int, of n: Int, step: Int) -> ([Float], [Float]) {
    let batch = globalBatch / n
    let batcher = Batcher(dataset: BuiltInDataset(imageSize: 24), split: .train, batchSize: batch, shard: rank, shardCount: n, seed: 3)
    let images = UnsafeMutablePointer<Float>.allocateAligned(batch * 24 * 24 * 3), labels = UnsafeMutablePointer<Float>.allocateAligned(batch)
    defer { images.deallocate(); labels.deallocate() }
    _ = try! batcher.fill(batch: step, images: images, labels: labels, context: KernelContext(threads: 1))
    return (Array(UnsafeBufferPointer(start: images, count: batch * 24 * 24 * 3)), Array(UnsafeBufferPointer(start: labels, count: batch)))
  }

  func parameters(_ t: Trainer) -> [[Float]] {
    t.trainable.indices.map { Array(UnsafeBufferPointer(start: t.parameterPointer($0), count: t.trainable[$0].shape.elementCount)) }
  }

  func singleProcess(groups n: Int) throws -> [[Float]] {
    let t = try trainer(batch: globalBatch / n)
    for step in 0..<steps {
      var sums: [[Float]] = []
      for rank in 0..<n {
        let (images, labels) = group(rank, of: n, step: step)
        t.exampleOffset = rank * (globalBatch / n)
        try t.computeGradients(images: images, labels: labels)
        for i in t.trainable.indices {
          let g = UnsafeBufferPointer(start: t.gradientPointer(i), count: t.trainable[i].shape.elementCount)
          if rank == 0 { sums.append(Array(g)) } else { for e in g.indices { sums[i][e] += g[e] } }
        }
      }
      for i in t.trainable.indices {
        let g = t.gradientPointer(i)
        for e in sums[i].indices { g[e] = sums[i][e] * (1 / Float(n)) }
      }
      try t.applyGradients()
    }
    return parameters(t)
  }

  func distributed(workers n: Int) throws -> [[[Float]]] {
    let listeners = try (0..<n).map { _ in Shared(try TCPListener(host: "127.0.0.1")) }
    let addresses = listeners.map(\.value.address)
    let results = Mutex<[Int: [[Float]]]>([:]), failures = Mutex<[String]>([])
    let done = DispatchSemaphore(value: 0)
    for rank in 0..<n {
      Thread {
        do {
          let t = try trainer(batch: globalBatch / n, rank: rank)
          t.attach(ring: Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: listeners[rank].value, timeout: 30)),
                   bucketBytes: 32 << 10, firstBucketBytes: 4 << 10)
          defer { t.detach() }
          for step in 0..<steps {
            let (images, labels) = group(rank, of: n, step: step)
            try t.computeGradients(images: images, labels: labels)
            try t.applyGradients()
          }
          results.withLock { $0[rank] = parameters(t) }
        } catch { failures.withLock { $0.append("rank \(rank): \(error)") } }
        done.signal()
      }.start()
    }
    for _ in 0..<n { done.wait() }
    #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
    return results.withLock { r in (0..<n).compactMap { r[$0] } }
  }

  /// Two workers: the ring adds the two gradients (in either order: addition commutes) and scales
  /// by 1/2, exactly as the single process does, so the parameters agree bitwise.
  @Test func twoWorkersMatchOneProcessWithTwoBatchNormGroupsBitwise() throws {
    let single = try singleProcess(groups: 2)
    let ranks = try distributed(workers: 2)
    #expect(ranks.count == 2)
    #expect(ranks.allSatisfy { $0 == single })
  }

  /// Four workers: each chunk of the ring is summed starting at a different rank, so float addition
  /// (not associative) may differ in the last bit from the single process's rank order. Tolerance:
  /// 1e-5 absolute after three steps; the ranks agree with each other bitwise.
  @Test func fourWorkersMatchOneProcessWithFourBatchNormGroups() throws {
    let single = try singleProcess(groups: 4)
    let ranks = try distributed(workers: 4)
    #expect(ranks.count == 4)
    #expect(ranks.allSatisfy { $0 == ranks[0] })
    var worst: Float = 0
    for (a, b) in zip(ranks[0], single) { for (x, y) in zip(a, b) { worst = max(worst, abs(x - y)) } }
    #expect(worst < 1e-5, "largest difference \(worst)")
  }

  /// Three workers sharing a batch of 8 as 3, 3 and 2, each gradient weighted by its share
  /// (`BatchShares`) as the worker does, against one process that weights the three groups'
  /// gradients by their sizes: the same averaged gradient and the same parameters after the
  /// update to 1e-5 relative (the ring sums in another order). One step: at batch-norm groups of
  /// 2 the next steps amplify a last-bit difference far beyond that.
  @Test func unevenSharesMatchOneProcessWeightingItsGroupsBySize() throws {
    let shares = BatchShares(globalBatch: globalBatch, workers: 3)
    @Sendable func group(_ rank: Int) -> ([Float], [Float]) {
      let batch = shares.batch(of: rank)
      let batcher = Batcher(dataset: BuiltInDataset(imageSize: 24), split: .train, batchSize: batch, shard: rank, shardCount: 3,
                            globalBatch: globalBatch, seed: 3)
      let images = UnsafeMutablePointer<Float>.allocateAligned(batch * 24 * 24 * 3), labels = UnsafeMutablePointer<Float>.allocateAligned(batch)
      defer { images.deallocate(); labels.deallocate() }
      _ = try! batcher.fill(batch: 0, images: images, labels: labels, context: KernelContext(threads: 1))
      return (Array(UnsafeBufferPointer(start: images, count: batch * 24 * 24 * 3)), Array(UnsafeBufferPointer(start: labels, count: batch)))
    }
    @Sendable func averaged(_ t: Trainer) -> [[Float]] {
      t.trainable.indices.map { Array(UnsafeBufferPointer(start: t.averagedGradientPointer($0), count: t.trainable[$0].shape.elementCount)) }
    }
    // One process: a trainer for the groups of 3 and one for the group of 2 (the same initial parameters).
    let main = try trainer(batch: 3), small = try trainer(batch: 2)
    var sums: [[Float]] = main.trainable.map { [Float](repeating: 0, count: $0.shape.elementCount) }
    var plain = sums
    for rank in 0..<3 {
      let t = shares.batch(of: rank) == 3 ? main : small
      let (images, labels) = group(rank)
      t.exampleOffset = shares.offset(of: rank)
      try t.computeGradients(images: images, labels: labels)
      let weight = Float(shares.batch(of: rank)) / Float(globalBatch)
      for i in t.trainable.indices {
        for e in sums[i].indices { sums[i][e] += t.gradientPointer(i)[e] * weight; plain[i][e] += t.gradientPointer(i)[e] / 3 }
      }
    }
    for i in main.trainable.indices { main.gradientPointer(i).update(from: sums[i], count: sums[i].count) }
    try main.applyGradients()
    let single = (averaged(main), parameters(main))

    let listeners = try (0..<3).map { _ in Shared(try TCPListener(host: "127.0.0.1")) }
    let addresses = listeners.map(\.value.address)
    let results = Mutex<[Int: ([[Float]], [[Float]])]>([:]), failures = Mutex<[String]>([])
    let done = DispatchSemaphore(value: 0)
    for rank in 0..<3 {
      Thread {
        do {
          let t = try trainer(batch: shares.batch(of: rank))
          t.exampleOffset = shares.offset(of: rank)
          t.gradientWeight = shares.weight(of: rank)
          t.attach(ring: Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: listeners[rank].value, timeout: 30)),
                   bucketBytes: 32 << 10, firstBucketBytes: 4 << 10)
          defer { t.detach() }
          let (images, labels) = group(rank)
          try t.step(images: images, labels: labels)
          results.withLock { $0[rank] = (averaged(t), parameters(t)) }
        } catch { failures.withLock { $0.append("rank \(rank): \(error)") } }
        done.signal()
      }.start()
    }
    for _ in 0..<3 { done.wait() }
    #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
    let ranks = results.withLock { r in (0..<3).compactMap { r[$0] } }
    #expect(ranks.count == 3 && ranks.allSatisfy { $0.1 == ranks[0].1 })
    func relative(_ a: [[Float]], _ b: [[Float]]) -> Float {
      var worst: Float = 0
      for (x, y) in zip(a, b) {
        let scale = max(y.map(abs).max() ?? 0, 1e-6)
        for (u, v) in zip(x, y) { worst = max(worst, abs(u - v) / scale) }
      }
      return worst
    }
    #expect(relative(ranks[0].0, single.0) < 1e-5, "averaged gradients differ by \(relative(ranks[0].0, single.0))")
    #expect(relative(ranks[0].1, single.1) < 1e-5, "parameters differ by \(relative(ranks[0].1, single.1))")
    // The weights matter: the plain mean of the three groups' gradients is another gradient.
    #expect(relative(plain, single.0) > 1e-3, "the weighted and the plain mean differ by only \(relative(plain, single.0))")
  }

  /// One process with micro-batches of B/2 accumulates exactly what one process running the two
  /// groups by hand does: the same parameters, bitwise.
  @Test func microBatchesMatchOneProcessWithTwoBatchNormGroupsBitwise() throws {
    let single = try singleProcess(groups: 2)
    let t = try trainer(batch: globalBatch, micro: globalBatch / 2)
    #expect(t.microBatch == globalBatch / 2)
    for step in 0..<steps {
      let halves = (0..<2).map { group($0, of: 2, step: step) }
      try t.step(images: halves[0].0 + halves[1].0, labels: halves[0].1 + halves[1].1)
    }
    #expect(parameters(t) == single)
  }

  /// A step that cannot fit is refused before allocating, with both figures and the fix; `auto`
  /// then picks the largest micro-batch that fits.
  @Test func aStepThatDoesNotFitIsRefusedAndAutoPicksAMicroBatchThatDoes() throws {
    var network = NetworkConfig()
    network.numCells = 3; network.reductionSize = 8; network.imageSize = 24; network.useAuxHead = false
    var training = TrainingConfig()
    training.trainBatchSize = 16; training.numTrainImages = 800
    let context = KernelContext(threads: 1)
    let whole = try Trainer(network: network, training: training, batchSize: 16, context: context, memoryLimit: nil)
    let needed = try Executor.requiredBytes(graph: whole.executor.graph, outputs: whole.executor.outputs,
                                            stateUpdates: whole.executor.stateUpdates)
    let limit = needed - 1
    #expect {
      _ = try Trainer(network: network, training: training, batchSize: 16, context: context, memoryLimit: limit)
    } throws: { error in
      let text = "\(error)"
      return text.contains("needs") && text.contains("MiB") && text.contains("--micro_batch_size=auto")
    }
    training.microBatchSize = .auto
    let fitted = try Trainer(network: network, training: training, batchSize: 16, context: context, memoryLimit: limit)
    #expect(fitted.microBatch < 16 && 16 % fitted.microBatch == 0)
    let batcher = Batcher(dataset: BuiltInDataset(imageSize: 24), split: .train, batchSize: 16)
    let images = UnsafeMutablePointer<Float>.allocateAligned(16 * 24 * 24 * 3), labels = UnsafeMutablePointer<Float>.allocateAligned(16)
    defer { images.deallocate(); labels.deallocate() }
    _ = try batcher.fill(batch: 0, images: images, labels: labels, context: context)
    let result = try fitted.step(images: images, labels: labels)
    #expect(result.total.isFinite && fitted.globalStep == 1)
  }
}
