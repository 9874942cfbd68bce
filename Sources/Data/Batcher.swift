import Tensor

/// What to do with a record that cannot be used (damaged TFRecord, bad tf.Example, corrupt JPEG,
/// label out of range): skip it and count it (the default, as a long run should survive one bad
/// file), or stop the job (`--on_bad_record=fail`).
public enum BadRecordPolicy: String, Sendable { case skip, fail }

/// Fills batches from a dataset: a seeded per-epoch shuffle of the split, sharded so that worker
/// `shard` of `shardCount` sees every `shardCount`-th example of each global batch in the
/// shuffled order, each record once per epoch across the job (its `batchSize` is its own share:
/// when the shards do not divide `globalBatch`, the first ones take one example more). Examples
/// are produced in parallel on a pool into a caller's preallocated buffers. A skipped bad record
/// is replaced by its neighbour in the dataset (index + 1, + 2, …), which that epoch then sees
/// twice.
public struct Batcher: Sendable {
  public let dataset: any Dataset
  public let split: Split
  public let batchSize: Int
  public let shard: Int
  public let shardCount: Int
  /// Examples of one step over all shards.
  public let globalBatch: Int
  public let seed: UInt64
  public let onBadRecord: BadRecordPolicy

  /// Replacements tried for one slot before even the skip policy gives up.
  static let maxReplacements = 16

  /// `globalBatch`: nil for `batchSize` × `shardCount` (equal shares).
  public init(dataset: any Dataset, split: Split, batchSize: Int, shard: Int = 0, shardCount: Int = 1, globalBatch: Int? = nil,
              seed: UInt64 = 0, onBadRecord: BadRecordPolicy = .skip) {
    self.dataset = dataset; self.split = split; self.batchSize = batchSize
    self.shard = shard; self.shardCount = shardCount; self.globalBatch = globalBatch ?? batchSize * shardCount
    self.seed = seed; self.onBadRecord = onBadRecord
  }

  /// Batches per epoch for this shard (whole global batches only).
  public var batchesPerEpoch: Int { dataset.count(split) / globalBatch }

  /// The epoch and example index at position `position` of the global sequence (epoch-major,
  /// shuffled per epoch for training, in order for validation).
  public func example(at position: Int) -> (epoch: Int, index: Int) {
    let n = dataset.count(split)
    let epoch = position / n, offset = position % n
    guard split == .train else { return (epoch, offset) }
    return (epoch, dataset.shuffled(offset, epoch: epoch, seed: seed))
  }

  public func exampleIndex(at position: Int) -> Int { example(at: position).index }

  /// Where example `i` of this shard's batch `batch` lies in the global sequence.
  public func position(batch: Int, example i: Int) -> Int { batch * globalBatch + i * shardCount + shard }

  /// What one `fill` skipped: how many records, and the first one's error.
  public struct Report: Sendable {
    public var skipped = 0
    public var firstError: DataError?
  }

  /// Fills `images` (`[batch, S, S, 3]`) and `labels` with this shard's batch number `batch`.
  public func fill(batch: Int, images: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Float>,
                   pool: ThreadPool) throws(DataError) -> Report {
    let pixels = dataset.imageSize * dataset.imageSize * 3
    let n = dataset.count(split)
    let errors = UnsafeMutablePointer<DataError?>.allocate(capacity: batchSize)
    let skips = UnsafeMutablePointer<Int>.allocate(capacity: batchSize)
    errors.initialize(repeating: nil, count: batchSize)
    skips.initialize(repeating: 0, count: batchSize)
    defer { errors.deinitialize(count: batchSize); errors.deallocate(); skips.deallocate() }
    pool.parallelFor(batchSize) { i, _ in
      let (epoch, index) = example(at: position(batch: batch, example: i))
      for attempt in 0...Batcher.maxReplacements {
        do throws(DataError) {
          labels[i] = Float(try dataset.example(split, (index + attempt) % n, epoch: epoch, into: images + i * pixels))
          return
        } catch {
          if errors[i] == nil { errors[i] = error }
          skips[i] += 1
          if onBadRecord == .fail { return }
        }
      }
    }
    var report = Report()
    for i in 0..<batchSize {
      if let error = errors[i] {
        if onBadRecord == .fail || skips[i] > Batcher.maxReplacements {
          throw error
        }
        if report.firstError == nil { report.firstError = error }
      }
      report.skipped += skips[i]
    }
    return report
  }

  public func fill(batch: Int, images: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Float>,
                   context: KernelContext) throws(DataError) -> Report {
    try fill(batch: batch, images: images, labels: labels, pool: context.pool)
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
