/// What a step costs when its gradients are all-reduced in buckets behind the backward pass, from
/// the ring's cost model: a bucket of s bytes on the wire takes 2(n−1)/n · s / bandwidth +
/// 2(n−1) · latency (reduce-scatter then all-gather, n−1 hops each). Buckets become ready as
/// backward finishes their gradients (spread over the backward share of the compute time in
/// proportion to their size) and are reduced one after another, each once it is ready and the one
/// before is done — what `GradientBuckets` does. The step ends when compute and the last bucket
/// are both done; the communication not hidden behind compute is exposed.
public struct OverlapModel: Sendable, Equatable {
  /// Floats per bucket, in the order they become ready (`GradientBuckets.plan`).
  public var bucketSizes: [Int]
  /// Ranks in the ring (hosts: a host's devices reduce inside their program first).
  public var ranks: Int
  /// Bytes per second one link carries.
  public var bandwidth: Double
  /// Seconds per hop a message waits beyond its bytes (the link's one-way latency).
  public var latency: Double
  /// Bytes per float on the wire: 4 (float32) or 2 (bf16, fp16).
  public var wireBytes: Int
  /// Seconds of compute per step (forward, backward and update on the device).
  public var computeSeconds: Double
  /// The share of the compute that is backward, over which the buckets become ready.
  public var backwardShare: Double

  public init(bucketSizes: [Int], ranks: Int, bandwidth: Double, latency: Double, wireBytes: Int, computeSeconds: Double,
              backwardShare: Double = 2.0 / 3) {
    self.bucketSizes = bucketSizes; self.ranks = ranks; self.bandwidth = bandwidth; self.latency = latency
    self.wireBytes = wireBytes; self.computeSeconds = computeSeconds; self.backwardShare = backwardShare
  }

  /// The all-reduce of one bucket of `floats`.
  public func bucketSeconds(_ floats: Int) -> Double {
    guard ranks > 1 else { return 0 }
    let n = Double(ranks)
    return 2 * (n - 1) / n * Double(floats * wireBytes) / bandwidth + 2 * (n - 1) * latency
  }

  public struct Prediction: Sendable, Equatable {
    public var stepSeconds: Double
    /// Seconds of all-reduce in the step, hidden or not.
    public var communicationSeconds: Double
    /// The step beyond the compute: communication nothing hid.
    public var exposedSeconds: Double
    /// Compute over step time: the share of a perfectly overlapped step this one reaches.
    public var efficiency: Double { stepSeconds > 0 ? computeSeconds / stepSeconds : 1 }
    public var computeSeconds: Double
  }

  public var prediction: Prediction {
    let total = Double(max(bucketSizes.reduce(0, +), 1))
    let backwardStart = computeSeconds * (1 - backwardShare)
    var finished = 0.0, end = 0.0, communication = 0.0
    for size in bucketSizes {
      finished += Double(size)
      let ready = backwardStart + computeSeconds * backwardShare * finished / total
      let seconds = bucketSeconds(size)
      end = max(ready, end) + seconds
      communication += seconds
    }
    let step = max(computeSeconds, end)
    return Prediction(stepSeconds: step, communicationSeconds: communication, exposedSeconds: step - computeSeconds,
                      computeSeconds: computeSeconds)
  }
}
