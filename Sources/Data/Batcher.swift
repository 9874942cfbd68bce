import Tensor

/// Fills batches from a dataset: a seeded per-epoch shuffle of the split, sharded so that worker
/// `shard` of `shardCount` sees every `shardCount`-th example of the shuffled order, each record
/// once per epoch across the job. Examples are produced in parallel on the pool into a caller's
/// preallocated buffers.
public struct Batcher {
  public let dataset: any Dataset
  public let split: Split
  public let batchSize: Int
  public let shard: Int
  public let shardCount: Int
  public let seed: UInt64

  public init(dataset: any Dataset, split: Split, batchSize: Int, shard: Int = 0, shardCount: Int = 1, seed: UInt64 = 0) {
    self.dataset = dataset; self.split = split; self.batchSize = batchSize
    self.shard = shard; self.shardCount = shardCount; self.seed = seed
  }

  /// Batches per epoch for this shard (whole batches only).
  public var batchesPerEpoch: Int { dataset.count(split) / shardCount / batchSize }

  /// The example index at position `position` of the global sequence (epoch-major, shuffled per
  /// epoch for training, in order for validation).
  public func exampleIndex(at position: Int) -> Int {
    let n = dataset.count(split)
    let epoch = position / n, offset = position % n
    guard split == .train else { return offset }
    return Batcher.permute(offset, count: n, key: seed &+ UInt64(epoch) &* 0x9E37_79B9)
  }

  /// Fills `images` (`[batch, S, S, 3]`) and `labels` with this shard's batch number `batch`.
  public func fill(batch: Int, images: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Float>, context: KernelContext) {
    let pixels = dataset.imageSize * dataset.imageSize * 3
    context.pool.parallelFor(batchSize) { i, _ in
      let position = (batch * batchSize + i) * shardCount + shard
      labels[i] = Float(dataset.example(split, exampleIndex(at: position), into: images + i * pixels))
    }
  }

  /// A bijection on 0..<count (cycle-walking over a 4-round Feistel network on the next power of
  /// two): a shuffle that needs no memory and any worker can compute.
  static func permute(_ value: Int, count: Int, key: UInt64) -> Int {
    var bits = 1
    while (1 << bits) < count { bits += 1 }
    if bits % 2 == 1 { bits += 1 }
    let half = bits / 2, mask = UInt64((1 << half) - 1)
    var x = UInt64(value)
    repeat {
      var left = x >> UInt64(half), right = x & mask
      for round in 0..<4 {
        let f = CounterRandom.bits(seed: key, stream: UInt64(round), index: right) & mask
        (left, right) = (right, left ^ f)
      }
      x = (left << UInt64(half)) | right
    } while x >= UInt64(count)
    return Int(x)
  }
}
