import Testing
@testable import Fuzzing

/// CI's short pass of `amoeba fuzz`: every target, a few thousand mutated inputs each. A trap would
/// end the test process; a slow input counts as a hang. `amoeba fuzz --iterations 100000` runs the
/// long pass (docs/BENCHMARKS.md records it).
@Suite struct FuzzingTests {
  @Test(arguments: FuzzTarget.all.map(\.name))
  func mutatedInputsAreRefusedOrAcceptedNeverTrapped(target name: String) {
    let target = FuzzTarget.all.first { $0.name == name }!
    // Each seed must itself be accepted: otherwise the mutations explore nothing.
    for seed in target.seeds { #expect((try? target.run(seed)) == true, "\(name): a seed is refused") }
    let report = target.fuzz(iterations: 2_000, seed: 7)
    #expect(report.inputs == 2_000 && report.hangs == 0, "\(report)")
    // Mutations must be refused now and then, or the target is not looking at its input.
    #expect(report.refused > 0, "\(report)")
  }

  @Test func theSameSeedGivesTheSameInputs() {
    var a = Mutator(seed: 3), b = Mutator(seed: 3)
    let seed: [UInt8] = Array(0..<64)
    for _ in 0..<100 { #expect(a.mutate(seed) == b.mutate(seed)) }
  }
}
