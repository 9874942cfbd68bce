import Testing
@testable import Cluster

/// `StragglerWatch` on made-up steps: a rank is named after `steps` slow steps in a row, once,
/// and again when it recovers; the ring wait does not count (in synchronous training the fast
/// ranks wait for the slow one there); two ranks are enough.
@Suite struct StragglerWatchTests {
  static func step(_ own: [Double], ringWait: [Double]? = nil) -> [StepMetrics] {
    own.enumerated().map { rank, seconds in
      let wait = ringWait?[rank] ?? 0
      return StepMetrics(rank: rank, step: 1, loss: 1, learningRate: 0.1, imagesPerSecond: 1, stepSeconds: seconds + wait,
                         inputWaitSeconds: 0.001, ringWaitSeconds: wait)
    }
  }

  @Test func aRankSlowForKStepsIsNamedOnceAndAgainWhenItRecovers() {
    var watch = StragglerWatch(options: .init(margin: 0.5, steps: 3))
    // Rank 2 does twice the work; the others wait for it in the ring, so all step times are equal.
    let slow = Self.step([0.10, 0.11, 0.20], ringWait: [0.10, 0.09, 0.0])
    #expect(watch.observe(slow).isEmpty)
    #expect(watch.observe(slow).isEmpty)
    let events = watch.observe(slow)
    guard case let .straggling(rank, own, others)? = events.first, events.count == 1 else { Issue.record("\(events)"); return }
    #expect(rank == 2 && abs(own - 0.20) < 1e-12 && abs(others - 0.105) < 1e-12, "\(events)")
    #expect(watch.stragglers == [2])
    #expect(watch.observe(slow).isEmpty, "named once, not every step")
    #expect(watch.observe(Self.step([0.10, 0.11, 0.12])) == [.recovered(rank: 2)])
    #expect(watch.stragglers.isEmpty)
  }

  @Test func aFastStepInBetweenStartsTheCountAgain() {
    var watch = StragglerWatch(options: .init(margin: 0.5, steps: 3))
    let slow = Self.step([0.1, 0.3]), even = Self.step([0.1, 0.1])
    for steps in [[slow, slow, even], [slow, slow]] {
      for s in steps { #expect(watch.observe(s).isEmpty) }
    }
    #expect(watch.observe(slow) == [.straggling(rank: 1, own: 0.3, others: 0.1)])
  }

  @Test func ringWaitAndSmallDifferencesAreNotStraggling() {
    var watch = StragglerWatch(options: .init(margin: 0.5, steps: 1))
    // Rank 0 waits long in the ring (for the others), rank 1 is 40% slower: neither is named.
    #expect(watch.observe(Self.step([0.10, 0.14, 0.10], ringWait: [0.5, 0.0, 0.04])).isEmpty)
    // One rank alone has no one to be slower than.
    #expect(watch.observe(Self.step([9.0])).isEmpty)
    #expect(StragglerWatch.median([3, 1, 2]) == 2 && StragglerWatch.median([4, 1, 2, 3]) == 2.5)
  }
}
