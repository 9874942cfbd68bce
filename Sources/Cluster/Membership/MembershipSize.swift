/// How many workers a membership runs on. Every worker takes an equal share of the global batch
/// (the learning-rate schedule and the data order are the global batch's, whatever the size), so
/// the size divides it; within --min_workers…--max_workers, the largest the available workers
/// allow. Workers beyond it wait as spares.
public struct MembershipSize: Sendable, Equatable {
  public let minWorkers: Int
  public let maxWorkers: Int
  public let globalBatch: Int

  public init(minWorkers: Int, maxWorkers: Int, globalBatch: Int) {
    self.minWorkers = minWorkers; self.maxWorkers = maxWorkers; self.globalBatch = globalBatch
  }

  /// The size for `available` workers; nil: too few (wait for replacements).
  public func choose(available: Int) -> Int? {
    let top = min(available, maxWorkers)
    guard top >= minWorkers, minWorkers >= 1 else { return nil }
    return (minWorkers...top).reversed().first { globalBatch % $0 == 0 }
  }

  /// Why a configuration can never run, or nil.
  public var problem: String? {
    guard minWorkers >= 1 else { return "--min_workers must be at least 1, got \(minWorkers)" }
    guard maxWorkers >= minWorkers else { return "--max_workers=\(maxWorkers) is below --min_workers=\(minWorkers)" }
    guard choose(available: maxWorkers) != nil else {
      return "no number of workers from --min_workers=\(minWorkers) to --max_workers=\(maxWorkers) divides --train_batch_size=\(globalBatch); each worker takes an equal share of the global batch"
    }
    return nil
  }
}
