import Foundation
import Testing
import Model
@testable import Search

/// Regularized evolution against a made-up fitness (so the search itself is what is tested, in
/// milliseconds): every mutation keeps a genotype buildable, a seed gives the same search, aging
/// removes the oldest, a failed child is handed out again, the history resumes, and the search
/// climbs where random sampling does not.
@Suite struct RegularizedEvolutionTests {
  /// Higher for more separable 3×3s and for inputs from the newest states: a landscape with a slope.
  static func fitness(_ g: Genotype) -> Double {
    let cells = [g.normal, g.reduction]
    let ops = cells.flatMap(\.operations).filter { $0 == "separable_3x3_2" }.count
    let depth = cells.flatMap { $0.hiddenstateIndices.enumerated().map { Double($0.element) / Double(1 + $0.offset / 2) } }.reduce(0, +)
    return Double(ops) / 20 + depth / 40
  }

  /// Runs a search to the end, `parallel` children in flight at a time, results in id order.
  static func run(_ settings: SearchSettings, parallel: Int = 3) throws -> RegularizedEvolution {
    var search = RegularizedEvolution(settings: settings)
    var pending: [Child] = []
    while !search.finished {
      while pending.count < parallel, let child = search.nextChild() { pending.append(child) }
      let child = pending.removeFirst()
      try search.report(id: child.id, accuracy: fitness(child.genotype), trainSeconds: 1, worker: "w\(child.id % parallel)")
    }
    return search
  }

  @Test func everyMutationKeepsTheGenotypeBuildable() throws {
    var random = SearchRandom(seed: 7)
    var g = Genotype.random(&random, name: "g")
    var kinds: [MutationKind: Int] = [:]
    for i in 0..<2000 {
      let (child, kind) = g.mutated(&random, name: "c\(i)")
      try child.validate()
      kinds[kind, default: 0] += 1
      if kind != .identity { #expect(child.normal != g.normal || child.reduction != g.reduction) }
      g = child
    }
    #expect(kinds[.hiddenState]! > 800 && kinds[.operation]! > 800 && kinds[.identity]! > 50)
    for seed in 0..<50 { var r = SearchRandom(seed: UInt64(seed)); try Genotype.random(&r, name: "r").validate() }
    // The built-in genotypes mutate into buildable ones too (their own used flags kept where valid).
    for base in [Genotype.amoebaNetA, .amoebaNetB, .amoebaNetC, .amoebaNetD] {
      var r = SearchRandom(seed: 3)
      var g = base
      for _ in 0..<200 { g = g.mutated(&r, name: "m").0; try g.validate() }
    }
  }

  @Test func theSameSeedAndResultsGiveTheSameSearch() throws {
    let settings = SearchSettings(populationSize: 20, sampleSize: 5, cycles: 120, seed: 11)
    let a = try Self.run(settings), b = try Self.run(settings)
    #expect(a.history == b.history)
    var other = settings
    other.seed = 12
    #expect(try Self.run(other).history != a.history)
    #expect(a.history.count == 120 && a.population.count == 20)
    #expect(a.history.prefix(20).allSatisfy { $0.child.parent == nil } && a.history.dropFirst(20).allSatisfy { $0.child.parent != nil })
  }

  @Test func agingRemovesTheOldestAndTheNonAgingVariantTheWorst() throws {
    let aging = try Self.run(SearchSettings(populationSize: 10, sampleSize: 3, cycles: 60, seed: 5), parallel: 1)
    #expect(aging.population.map(\.id) == Array(50..<60))
    let plain = try Self.run(SearchSettings(populationSize: 10, sampleSize: 3, cycles: 60, seed: 5, aging: false), parallel: 1)
    let best = plain.history.map(\.accuracy).sorted(by: >).prefix(10)
    #expect(plain.population.map(\.accuracy).sorted(by: >) == Array(best))
  }

  @Test func aFailedChildIsHandedOutAgainAndAStrayResultRefused() throws {
    var search = RegularizedEvolution(settings: SearchSettings(populationSize: 4, sampleSize: 2, cycles: 8, seed: 1))
    let first = search.nextChild()!, second = search.nextChild()!
    search.requeue(id: first.id)
    #expect(search.nextChild() == first)
    try search.report(id: first.id, accuracy: 0.5, trainSeconds: 1, worker: "w0")
    #expect(throws: SearchError.self) { try search.report(id: first.id, accuracy: 0.5, trainSeconds: 1, worker: "w0") }
    #expect(throws: SearchError.self) { try search.report(id: 99, accuracy: 0.5, trainSeconds: 1, worker: "w0") }
    try search.report(id: second.id, accuracy: 0.4, trainSeconds: 1, worker: "w1")
    // The initial population is out, two results in: a child can be made (sample of 2).
    _ = search.nextChild()!
    _ = search.nextChild()!
    #expect(search.nextChild() != nil)
  }

  @Test func theHistoryResumesThePopulationAndIsNamedWhenDamaged() throws {
    let settings = SearchSettings(populationSize: 8, sampleSize: 3, cycles: 40, seed: 9)
    let done = try Self.run(settings, parallel: 1)
    let directory = NSTemporaryDirectory() + "amoeba-search-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let path = SearchHistory.path(in: directory)
    for entry in done.history.prefix(25) { try SearchHistory.append(entry, to: path) }
    // A torn last line (a crash mid-write) is dropped.
    let handle = FileHandle(forWritingAtPath: path)!
    try handle.seekToEnd(); try handle.write(contentsOf: Data("{\"child\":".utf8)); try handle.close()
    let read = try SearchHistory.read(path)
    #expect(read == Array(done.history.prefix(25)))
    var resumed = RegularizedEvolution(settings: settings, history: read)
    let uninterrupted = RegularizedEvolution(settings: settings, history: Array(done.history.prefix(25)))
    #expect(resumed.population == uninterrupted.population)
    // With the same results from here it ends as the uninterrupted search did (one child in flight at a time).
    while !resumed.finished {
      let child = resumed.nextChild()!
      try resumed.report(id: child.id, accuracy: Self.fitness(child.genotype), trainSeconds: 1, worker: "w\(child.id % 1)")
    }
    #expect(resumed.history == done.history)
    try "garbage\n{}\n".write(toFile: path, atomically: true, encoding: .utf8)
    let error = #expect(throws: SearchError.self) { try SearchHistory.read(path) }
    #expect(error?.description.contains("line 1 is not a search history entry") == true)
  }

  @Test func evolutionClimbsWhereRandomSamplingDoesNot() throws {
    let settings = SearchSettings(populationSize: 30, sampleSize: 8, cycles: 400, seed: 2)
    let search = try Self.run(settings)
    let initial = search.history.prefix(30).map(\.accuracy).sorted()
    let final = search.population.map(\.accuracy).sorted()
    #expect(final[15] > initial[15] + 0.1, "median \(initial[15]) → \(final[15])")
    #expect(final.last! > initial.last!)
    var random = SearchRandom(seed: 2)
    var sampled = 0.0
    for _ in 0..<400 { sampled = max(sampled, Self.fitness(.random(&random, name: "r"))) }
    #expect(search.history.map(\.accuracy).max()! > sampled)
  }
}
