import Testing
import Data
import Tensor

@Suite struct BuiltInDatasetTests {
  @Test func examplesAreDeterministicInRangeAndCoverEveryClass() {
    let data = BuiltInDataset(imageSize: 20, trainCount: 500, validationCount: 100)
    var a = [Float](repeating: 0, count: 20 * 20 * 3), b = a
    var counts = [Int](repeating: 0, count: data.classCount)
    for index in 0..<500 {
      let label = a.withUnsafeMutableBufferPointer { data.example(.train, index, epoch: 0, into: $0.baseAddress!) }
      counts[label] += 1
      if index < 5 {
        let again = b.withUnsafeMutableBufferPointer { data.example(.train, index, epoch: 0, into: $0.baseAddress!) }
        #expect(again == label && a == b)
      }
      #expect(a.allSatisfy { $0 >= -1 && $0 <= 1 })
    }
    #expect(counts.allSatisfy { $0 > 25 }, "\(counts)")
    // The validation split is a different set of images.
    _ = a.withUnsafeMutableBufferPointer { data.example(.train, 0, epoch: 0, into: $0.baseAddress!) }
    _ = b.withUnsafeMutableBufferPointer { data.example(.validation, 0, epoch: 0, into: $0.baseAddress!) }
    #expect(a != b)
  }

  @Test func shuffleIsAPermutationAndShardsAreDisjoint() {
    let data = FakeDataset(imageSize: 2, classCount: 10, trainCount: 1000, validationCount: 10)
    let batchers = (0..<3).map { Batcher(dataset: data, split: .train, batchSize: 5, shard: $0, shardCount: 3, seed: 4) }
    var seen = Set<Int>()
    for batcher in batchers {
      for position in stride(from: batcher.shard, to: 999, by: 3) { seen.insert(batcher.exampleIndex(at: position)) }
    }
    #expect(seen.count == 999)
    let epoch0 = (0..<1000).map { batchers[0].exampleIndex(at: $0) }
    let epoch1 = (1000..<2000).map { batchers[0].exampleIndex(at: $0) }
    #expect(Set(epoch0).count == 1000 && Set(epoch1).count == 1000)
    #expect(epoch0 != epoch1)
  }
}
