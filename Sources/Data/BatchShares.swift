/// How a membership splits the global batch over its workers: worker r takes the examples
/// r, r + n, r + 2n, … of every global batch. Each step's batch is then the same set of examples
/// whatever the membership (a re-formed ring mid-epoch still sees every record once per epoch).
/// When n does not divide the batch, the first (batch mod n) workers take one example more and
/// every worker weights its gradient by its share before the ring's mean, so that the mean is
/// still the global batch's mean gradient; only the batch-norm groups differ by one example.
public struct BatchShares: Sendable, Equatable {
  public let globalBatch: Int
  public let workers: Int

  public init(globalBatch: Int, workers: Int) {
    precondition(workers >= 1 && globalBatch >= workers, "a share for each of \(workers) workers in a batch of \(globalBatch)")
    self.globalBatch = globalBatch; self.workers = workers
  }

  public var isEven: Bool { globalBatch % workers == 0 }

  /// Examples of each global batch that worker `rank` takes.
  public func batch(of rank: Int) -> Int { globalBatch / workers + (rank < globalBatch % workers ? 1 : 0) }

  /// Where worker `rank`'s examples start among the batch's (its dropout and drop-path masks
  /// are keyed on it, so no two workers draw the same masks).
  public func offset(of rank: Int) -> Int { rank * (globalBatch / workers) + min(rank, globalBatch % workers) }

  /// Worker `rank`'s gradient (a mean over its own examples) is multiplied by this before the
  /// ring averages over the workers: its examples over an equal share's.
  public func weight(of rank: Int) -> Float { Float(batch(of: rank) * workers) / Float(globalBatch) }

  /// "342 on ranks 0–1, 341 on ranks 2–3" style, for logs; "256 each" when even.
  public var summary: String {
    let base = globalBatch / workers, extra = globalBatch % workers
    guard extra > 0 else { return "\(base) each" }
    let ranks = { (range: ClosedRange<Int>) in range.count == 1 ? "rank \(range.lowerBound)" : "ranks \(range.lowerBound)–\(range.upperBound)" }
    return "\(base + 1) on \(ranks(0...(extra - 1))), \(base) on \(ranks(extra...(workers - 1)))"
  }
}
