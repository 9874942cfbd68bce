/// How many workers a membership runs on: within --min_workers…--max_workers, the most the
/// available workers allow; workers beyond it wait as spares. The global batch stays what the user
/// set (the learning-rate schedule and the data order are the global batch's, whatever the size);
/// workers of one device take any share of it (`BatchShares`: uneven ones weighted), but a host's
/// devices split its share equally, so with several per worker only sizes whose shares are equal
/// and divide over the devices are chosen.
public struct MembershipSize: Sendable, Equatable {
  public let minWorkers: Int
  public let maxWorkers: Int
  public let globalBatch: Int

  public init(minWorkers: Int, maxWorkers: Int, globalBatch: Int) {
    self.minWorkers = minWorkers; self.maxWorkers = maxWorkers; self.globalBatch = globalBatch
  }

  /// The size for `available` workers; nil: too few (wait for replacements).
  /// `devicesPerWorker`: the most local devices a worker of the job has reported (1 until one has).
  public func choose(available: Int, devicesPerWorker: Int = 1) -> Int? {
    let top = min(available, maxWorkers, globalBatch)
    guard top >= minWorkers, minWorkers >= 1 else { return nil }
    guard devicesPerWorker > 1 else { return top }
    return (minWorkers...top).reversed().first { globalBatch % ($0 * devicesPerWorker) == 0 }
  }

  /// Why a configuration can never run, or nil.
  public var problem: String? {
    guard minWorkers >= 1 else { return "--min_workers must be at least 1, got \(minWorkers)" }
    guard maxWorkers >= minWorkers else { return "--max_workers=\(maxWorkers) is below --min_workers=\(minWorkers)" }
    guard globalBatch >= minWorkers else {
      return "--train_batch_size=\(globalBatch) leaves no example for some of the --min_workers=\(minWorkers) workers"
    }
    return nil
  }
}
