import Testing
@testable import Data

/// A global batch over workers that may not divide it: the shares cover it exactly once, the
/// weights make the ring's mean the global batch's, and the batchers' examples of each step are
/// the global batch's examples whatever the number of workers.
@Suite struct BatchSharesTests {
  @Test func sharesCoverTheBatchOnceAndTheirWeightsAverageToOne() {
    for (batch, workers) in [(1024, 3), (1024, 4), (10, 3), (7, 7), (48, 5)] {
      let shares = BatchShares(globalBatch: batch, workers: workers)
      let sizes = (0..<workers).map(shares.batch(of:))
      #expect(sizes.reduce(0, +) == batch)
      #expect(sizes.max()! - sizes.min()! <= 1)
      #expect((0..<workers).map(shares.offset(of:)) == (0..<workers).map { sizes.prefix($0).reduce(0, +) })
      let weights = (0..<workers).map(shares.weight(of:))
      #expect(abs(weights.reduce(0, +) / Float(workers) - 1) < 1e-6)
      #expect(shares.isEven == (batch % workers == 0))
    }
    #expect(BatchShares(globalBatch: 1024, workers: 3).summary == "342 on rank 0, 341 on ranks 1–2")
    #expect(BatchShares(globalBatch: 1024, workers: 4).summary == "256 each")
    #expect(BatchShares(globalBatch: 10, workers: 4).summary == "3 on ranks 0–1, 2 on ranks 2–3")
  }

  @Test func everyStepTakesTheSameExamplesWhateverTheWorkerCount() {
    let data = FakeDataset(imageSize: 2, classCount: 10, trainCount: 100, validationCount: 10)
    for workers in 1...4 {
      let shares = BatchShares(globalBatch: 10, workers: workers)
      let batchers = (0..<workers).map {
        Batcher(dataset: data, split: .train, batchSize: shares.batch(of: $0), shard: $0, shardCount: workers, globalBatch: 10, seed: 4)
      }
      #expect(batchers.allSatisfy { $0.batchesPerEpoch == 10 })
      for step in 0..<12 {
        let positions = batchers.flatMap { b in (0..<b.batchSize).map { b.position(batch: step, example: $0) } }
        #expect(positions.count == 10 && Set(positions) == Set(step * 10..<(step + 1) * 10), "\(workers) workers, step \(step)")
      }
    }
  }
}
