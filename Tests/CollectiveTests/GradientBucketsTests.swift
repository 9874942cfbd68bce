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
        var statistics = GradientBuckets.Statistics()
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

  /// The hidden share where it is known: one bucket, or buckets all ready at once (a device
  /// backend's gradients), hide nothing; a bucket reduced before the next one is ready (the
  /// backward pass still computing) is hidden in full, and only the last bucket is exposed.
  @Test func hiddenShareIsWhatOverlappedTheBackwardPass() throws {
    let n = 2
    let (ls, addresses) = try listeners(n)
    let boxes = ls.map { Box($0) }
    let sizes = [20_000, 20_000, 20_000, 20_000]
    let outcomes: [Result<[GradientBuckets.Statistics], CollectiveError>] = onRanks(n) { rank in
      do {
        let ring = Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, timeout: 20))
        var statistics: [GradientBuckets.Statistics] = []
        let one = GradientBuckets(ring: ring, bucketSizes: [80_000], operation: .mean)
        for _ in 0..<3 {
          one.markReady(0)
          Thread.sleep(forTimeInterval: 0.005)  // descheduled or not, nothing computes after the last gradient
          statistics.append(try one.waitAll())
        }
        one.shutDown()
        let several = GradientBuckets(ring: ring, bucketSizes: sizes, operation: .mean)
        defer { several.shutDown() }
        for b in sizes.indices { several.markReady(b) }
        statistics.append(try several.waitAll())
        for b in sizes.indices {
          several.markReady(b)
          // The next gradients take longer to compute than this bucket takes to reduce.
          while b < sizes.count - 1 && several.reducedCount <= b { Thread.sleep(forTimeInterval: 0.001) }
        }
        statistics.append(try several.waitAll())
        return .success(statistics)
      } catch { return .failure(error as! CollectiveError) }
    }
    for outcome in outcomes {
      let statistics = try outcome.get()
      for s in statistics.prefix(4) {
        #expect(s.communicationSeconds > 0)
        #expect(s.hiddenSeconds == 0 && s.hiddenFraction == 0, "hidden \(s.hiddenSeconds) s of \(s.communicationSeconds) s")
      }
      let overlapped = statistics[4]
      #expect(overlapped.bucketSeconds.count == 4)
      let firstThree = overlapped.bucketSeconds.prefix(3).reduce(0, +)
      #expect(abs(overlapped.hiddenSeconds - firstThree) <= 1e-9, "hidden \(overlapped.hiddenSeconds) s, first three buckets \(firstThree) s")
      #expect(abs(overlapped.exposedSeconds - overlapped.bucketSeconds[3]) <= 1e-9)
    }
  }

  @Test func planPutsASmallBucketFirst() {
    let mib = 1 << 18  // floats per MiB
    let plan = GradientBuckets.plan(tensorSizes: [mib / 2, mib, 10 * mib, 10 * mib, 10 * mib, 3], bucketBytes: 25 << 20, firstBucketBytes: 1 << 20)
    #expect(plan == [[0, 1], [2, 3, 4], [5]])
    #expect(GradientBuckets.plan(tensorSizes: []) == [])
  }
}
