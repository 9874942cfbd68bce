import Testing
@testable import Collective

/// The ring cost model `amoeba plan` predicts with: a bucket's time, and how much of the buckets'
/// time the backward pass hides.
@Suite struct OverlapModelTests {
  let megabyte = 1 << 18  // floats

  @Test func aBucketCostsItsBytesTwiceOverTheRingPlusTwoHopsPerRank() {
    let model = OverlapModel(bucketSizes: [megabyte], ranks: 4, bandwidth: 1e9, latency: 1e-4, wireBytes: 4, computeSeconds: 0)
    // 2·3/4 · 1 MiB / 1 GB/s + 2·3 · 100 µs
    #expect(abs(model.bucketSeconds(megabyte) - (1.5 * 1_048_576 / 1e9 + 6e-4)) < 1e-12)
    var half = model
    half.wireBytes = 2
    #expect(half.bucketSeconds(megabyte) < model.bucketSeconds(megabyte))
    var alone = model
    alone.ranks = 1
    #expect(alone.bucketSeconds(megabyte) == 0 && alone.prediction.exposedSeconds == 0)
  }

  @Test func oneBucketHidesNothingAndSmallBucketsHideAllButTheLast() {
    let compute = 1.0
    let one = OverlapModel(bucketSizes: [100 * megabyte], ranks: 8, bandwidth: 1e9, latency: 0, wireBytes: 4, computeSeconds: compute)
    let p = one.prediction
    // Ready only when backward ends, at the end of the compute: all of it is exposed.
    #expect(abs(p.exposedSeconds - p.communicationSeconds) < 1e-9)
    #expect(abs(p.stepSeconds - (compute + p.communicationSeconds)) < 1e-9)
    // Ten equal buckets, each reduced faster than backward produces the next: only the last shows.
    let ten = OverlapModel(bucketSizes: Array(repeating: megabyte, count: 10), ranks: 8, bandwidth: 1e9, latency: 0, wireBytes: 4,
                           computeSeconds: compute)
    let q = ten.prediction
    #expect(abs(q.exposedSeconds - ten.bucketSeconds(megabyte)) < 1e-9)
    #expect(q.efficiency > 0.99 && q.efficiency < 1)
    // A slow link: the buckets queue behind each other and the step is the communication's.
    var slow = ten
    slow.bandwidth = 1e6
    let r = slow.prediction
    #expect(r.stepSeconds > r.communicationSeconds && r.exposedSeconds > 0.9 * r.communicationSeconds)
  }
}
