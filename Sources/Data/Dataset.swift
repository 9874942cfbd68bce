import Tensor

/// Where examples come from: one interface for the built-in images, the reference's fake data and
/// ImageNet TFRecord shards. Examples are addressed by split, index and epoch (training
/// augmentation differs per epoch), so any worker can produce any shard of any epoch without
/// coordination and a resumed job sees exactly the examples it would have seen.
public protocol Dataset: Sendable {
  var imageSize: Int { get }
  var classCount: Int { get }
  func count(_ split: Split) -> Int
  /// Writes example `index` of `split` as `[S, S, 3]` floats in [−1, 1] and returns its label.
  func example(_ split: Split, _ index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>) throws(DataError) -> Int
  /// The example at `offset` of the training order of `epoch`: a bijection on 0..<count(.train).
  func shuffled(_ offset: Int, epoch: Int, seed: UInt64) -> Int
  /// Records of `split` found damaged while indexing (a truncated tail, say), never served: they
  /// count as skipped bad records from the start.
  func damagedRecords(_ split: Split) -> Int
}

public enum Split: String, Sendable { case train, validation }

extension Dataset {
  public func damagedRecords(_ split: Split) -> Int { 0 }

  /// A uniform shuffle of the whole split, different every epoch.
  public func shuffled(_ offset: Int, epoch: Int, seed: UInt64) -> Int {
    Batcher.permute(offset, count: count(.train), key: seed &+ UInt64(epoch) &* 0x9E37_79B9)
  }
}
