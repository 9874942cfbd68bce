/// Finds the rank that holds the others back. In synchronous training every rank's step takes
/// about as long — the fast ones wait for the slow one inside the all-reduce — so the step time
/// says nothing; a rank's own work does: its step minus the time it waited for the ring
/// (compute plus input wait). A rank whose own work exceeds the median of the other ranks' by
/// more than `margin` (0.5: 50% slower) for `steps` steps in a row is a straggler, named once
/// when it becomes one and again when it recovers.
struct StragglerWatch {
  struct Options: Sendable {
    var margin = 0.5
    var steps = 20
    /// Treat a straggler as failed: the job stops naming it.
    var evict = false
  }

  enum Event: Equatable {
    /// `own`: the rank's own work per step; `others`: the other ranks' median, both in seconds.
    case straggling(rank: Int, own: Double, others: Double)
    case recovered(rank: Int)
  }

  let options: Options
  private var slowSteps: [Int: Int] = [:]
  private(set) var stragglers: Set<Int> = []

  init(options: Options) { self.options = options }

  /// A rank's own work in a step: everything but waiting for the others in the ring.
  static func ownSeconds(_ report: StepMetrics) -> Double { max(0, report.stepSeconds - report.ringWaitSeconds) }

  /// One completed step's reports (one per rank); returns who became, or stopped being, a straggler.
  mutating func observe(_ reports: [StepMetrics]) -> [Event] {
    guard reports.count >= 2 else { return [] }
    var events: [Event] = []
    let own = reports.map(StragglerWatch.ownSeconds)
    for (i, report) in reports.enumerated() {
      let others = StragglerWatch.median(own.enumerated().filter { $0.offset != i }.map(\.element))
      if own[i] > others * (1 + options.margin) {
        slowSteps[report.rank, default: 0] += 1
        if slowSteps[report.rank] == options.steps {
          stragglers.insert(report.rank)
          events.append(.straggling(rank: report.rank, own: own[i], others: others))
        }
      } else {
        slowSteps[report.rank] = 0
        if stragglers.remove(report.rank) != nil { events.append(.recovered(rank: report.rank)) }
      }
    }
    return events
  }

  static func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
  }
}
