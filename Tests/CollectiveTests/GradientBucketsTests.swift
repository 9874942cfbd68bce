import Testing
import Foundation
@testable import Collective

@Suite struct GradientBucketsTests {
  @Test func bucketsFilledWhileComputingAreAveragedAndPartlyHidden() throws {
    let n = 3
    let (ls, addresses) = try listeners(n)
    let boxes = ls.map { Box($0) }
    let sizes = [1000, 50_000, 200_000, 7]
    let outcomes: [Result<([[Float]], GradientBuckets.Statistics), CollectiveError>] = onRanks(n) { rank in
      do {
        let ring = Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, timeout: 20))
        let buckets = GradientBuckets(ring: ring, bucketSizes: sizes, operation: .mean)
        defer { buckets.shutDown() }
        var results: [[Float]] = []
        var statistics = GradientBuckets.Statistics(communicationSeconds: 0, exposedSeconds: 0)
        for step in 0..<2 {
          for (b, size) in sizes.enumerated() {
            let buffer = buckets.buffer(b)
            for i in 0..<size { buffer[i] = Float(rank * 3 + step) }
            buckets.markReady(b)
            Thread.sleep(forTimeInterval: 0.01)  // "backward" keeps computing meanwhile
          }
          statistics = try buckets.waitAll()
          results.append((0..<sizes.count).flatMap { Array(buckets.buffer($0)) })
        }
        return .success((results, statistics))
      } catch { return .failure(error as! CollectiveError) }
    }
    for outcome in outcomes {
      let (results, statistics) = try outcome.get()
      // Mean of rank·3 + step over ranks 0, 1, 2 = 3 + step.
      #expect(results[0].allSatisfy { $0 == 3 })
      #expect(results[1].allSatisfy { $0 == 4 })
      #expect(statistics.communicationSeconds > 0)
      #expect(statistics.hiddenFraction >= 0 && statistics.hiddenFraction <= 1)
    }
  }

  @Test func planPutsASmallBucketFirst() {
    let mib = 1 << 18  // floats per MiB
    let plan = GradientBuckets.plan(tensorSizes: [mib / 2, mib, 10 * mib, 10 * mib, 10 * mib, 3], bucketBytes: 25 << 20, firstBucketBytes: 1 << 20)
    #expect(plan == [[0, 1], [2, 3, 4], [5]])
    #expect(GradientBuckets.plan(tensorSizes: []) == [])
  }
}
