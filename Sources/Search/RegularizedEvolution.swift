import Foundation
import Model

/// A search's settings (`--population`, `--sample`, `--cycles`, `--search_seed`).
public struct SearchSettings: Codable, Sendable, Equatable {
  public var populationSize: Int
  public var sampleSize: Int
  /// Children trained in all, the initial random population included.
  public var cycles: Int
  public var seed: UInt64
  /// Remove the oldest member as each child joins (regularized evolution); false: the worst
  /// (the non-aging tournament selection the paper compares with, its Fig. 3).
  public var aging: Bool
  public var identityProbability: Double

  public init(populationSize: Int = 100, sampleSize: Int = 25, cycles: Int = 1000, seed: UInt64 = 0, aging: Bool = true,
              identityProbability: Double = 0.05) {
    self.populationSize = populationSize; self.sampleSize = sampleSize; self.cycles = cycles; self.seed = seed
    self.aging = aging; self.identityProbability = identityProbability
  }

  public var problem: String? {
    guard populationSize >= 2 else { return "--population must be at least 2, got \(populationSize)" }
    guard (1...populationSize).contains(sampleSize) else { return "--sample must be from 1 to --population=\(populationSize), got \(sampleSize)" }
    guard cycles >= populationSize else { return "--cycles=\(cycles) is below --population=\(populationSize): the initial population alone takes that many" }
    return nil
  }
}

/// A child to train: its genotype, and where it came from.
public struct Child: Codable, Sendable, Equatable {
  public var id: Int
  public var genotype: Genotype
  /// The parent's id; nil for a member of the initial random population.
  public var parent: Int?
  public var mutation: MutationKind?
}

/// One trained child, as a line of the search's history (`search-history.jsonl`).
public struct HistoryEntry: Codable, Sendable, Equatable {
  public var child: Child
  public var accuracy: Double
  public var trainSeconds: Double
  public var worker: String
  /// How many random numbers the search had drawn once this child's result was taken in (a
  /// resumed search goes on from there, with the seed of its settings).
  public var randomState: UInt64
  /// When the coordinator took the result in (seconds since 1970), for children per hour; nil in
  /// histories written before it was recorded.
  public var reportedAt: Double?

  enum CodingKeys: String, CodingKey {
    case child, accuracy, trainSeconds = "train_seconds", worker, randomState = "random_state", reportedAt = "reported_at"
  }
}

/// Regularized (aging) evolution, asynchronous: a worker that is free takes `nextChild()` — one of
/// the initial random population, then the best of `sampleSize` members sampled from the
/// population, mutated — and its `report` puts the child in the population and removes the
/// oldest member (or the worst, without aging). No barrier per cycle. A child whose worker
/// failed is `requeue`d and handed out again as it was. Given the same results in the same
/// order, the same seed gives the same search.
public struct RegularizedEvolution: Sendable {
  public let settings: SearchSettings
  public struct Member: Sendable, Equatable {
    public var id: Int
    public var genotype: Genotype
    public var accuracy: Double
  }
  /// Oldest first.
  public private(set) var population: [Member] = []
  public private(set) var history: [HistoryEntry] = []
  private var random: SearchRandom
  private var nextID = 0
  private var inFlight: [Int: Child] = [:]
  private var requeued: [Child] = []

  /// A new search, or one resumed from its history: the population rebuilt as the reports came
  /// in, the random position taken from the last line. Children in flight when it stopped are made
  /// afresh.
  public init(settings: SearchSettings, history: [HistoryEntry] = []) {
    self.settings = settings
    random = SearchRandom(seed: settings.seed)
    for entry in history { take(entry) }
    if let last = history.last { random = SearchRandom(seed: settings.seed, position: last.randomState) }
    nextID = (history.map(\.child.id).max() ?? -1) + 1
  }

  public var finished: Bool { history.count >= settings.cycles }
  public var childrenInFlight: Int { inFlight.count }

  /// The next child to train; nil when none can be made now (the initial population is out and
  /// fewer than `sampleSize` results are in) or the search has made all it will.
  public mutating func nextChild() -> Child? {
    if !requeued.isEmpty {
      let child = requeued.removeFirst()
      inFlight[child.id] = child
      return child
    }
    guard nextID < settings.cycles else { return nil }
    let child: Child
    if nextID < settings.populationSize {
      child = Child(id: nextID, genotype: .random(&random, name: "child_\(nextID)"), parent: nil, mutation: nil)
    } else {
      guard population.count >= settings.sampleSize else { return nil }
      // Tournament: the best of a uniform sample without replacement (partial Fisher–Yates).
      var indices = Array(population.indices)
      for i in 0..<settings.sampleSize { indices.swapAt(i, i + random.below(indices.count - i)) }
      let parent = indices.prefix(settings.sampleSize).map { population[$0] }.max { $0.accuracy < $1.accuracy }!
      let (genotype, kind) = parent.genotype.mutated(&random, name: "child_\(nextID)", identityProbability: settings.identityProbability)
      child = Child(id: nextID, genotype: genotype, parent: parent.id, mutation: kind)
    }
    nextID += 1
    inFlight[child.id] = child
    return child
  }

  /// A child's validation accuracy is in. Returns its history line.
  @discardableResult
  public mutating func report(id: Int, accuracy: Double, trainSeconds: Double, worker: String, at reportedAt: Double? = nil) throws -> HistoryEntry {
    guard let child = inFlight.removeValue(forKey: id) else {
      throw SearchError("a result for child \(id) from \(worker), which is not being trained (already reported, or never handed out)")
    }
    let entry = HistoryEntry(child: child, accuracy: accuracy, trainSeconds: trainSeconds, worker: worker, randomState: random.position,
                             reportedAt: reportedAt)
    take(entry)
    return entry
  }

  /// The worker training child `id` failed: the child goes to the next free worker as it is.
  public mutating func requeue(id: Int) {
    if let child = inFlight.removeValue(forKey: id) { requeued.append(child) }
  }

  /// A trained child into the history and the population (a report, or a replayed line).
  mutating func take(_ entry: HistoryEntry) {
    history.append(entry)
    population.append(Member(id: entry.child.id, genotype: entry.child.genotype, accuracy: entry.accuracy))
    if population.count > settings.populationSize {
      if settings.aging {
        population.removeFirst()
      } else {
        population.remove(at: population.indices.min { population[$0].accuracy < population[$1].accuracy }!)
      }
    }
  }
}

public struct SearchError: Error, CustomStringConvertible, Sendable {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// The history as JSON lines, one per trained child, appended as results come in; beside it the
/// settings it was made with (a resumed search, and the report, read them back).
public enum SearchHistory {
  public static func path(in directory: String) -> String { directory + "/search-history.jsonl" }
  public static func settingsPath(in directory: String) -> String { directory + "/search-settings.json" }

  /// Writes `settings` in `directory`, or checks them against the ones written there by the
  /// search being resumed: another population, sample or seed would be another search.
  public static func record(_ settings: SearchSettings, in directory: String) throws {
    let path = settingsPath(in: directory)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    if let data = FileManager.default.contents(atPath: path) {
      guard let written = try? JSONDecoder().decode(SearchSettings.self, from: data) else {
        throw SearchError("\(path) is not readable search settings; move it away (and the history beside it) to start a new search")
      }
      var comparable = settings
      comparable.cycles = written.cycles
      guard comparable == written else {
        throw SearchError("\(directory) holds a search with other settings (\(path): population \(written.populationSize), sample \(written.sampleSize), seed \(written.seed), aging \(written.aging)); use another --model_dir or the same flags (--cycles may change)")
      }
      if written.cycles == settings.cycles { return }
    }
    try Data(try encoder.encode(settings)).write(to: URL(fileURLWithPath: path), options: .atomic)
  }

  /// The settings a search in `directory` was made with.
  public static func settings(in directory: String) throws -> SearchSettings {
    let path = settingsPath(in: directory)
    guard let data = FileManager.default.contents(atPath: path) else { throw SearchError("no search in \(directory): \(path) does not exist") }
    do { return try JSONDecoder().decode(SearchSettings.self, from: data) } catch {
      throw SearchError("\(path) is not readable search settings: \(Genotype.describe(error))")
    }
  }

  public static func line(_ entry: HistoryEntry) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: (try? encoder.encode(entry)) ?? Data(), as: UTF8.self)
  }

  public static func append(_ entry: HistoryEntry, to path: String) throws {
    let text = line(entry) + "\n"
    guard let handle = FileHandle(forWritingAtPath: path) ?? {
      FileManager.default.createFile(atPath: path, contents: nil)
      return FileHandle(forWritingAtPath: path)
    }() else { throw SearchError("cannot write the search history \(path)") }
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: Data(text.utf8))
    try handle.synchronize()
  }

  /// The history in `path` (none when the file does not exist). A line that does not parse is
  /// named by number, except a torn last line (a crash mid-write), which is dropped.
  public static func read(_ path: String) throws -> [HistoryEntry] {
    guard let data = FileManager.default.contents(atPath: path) else { return [] }
    let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
    var entries: [HistoryEntry] = []
    for (number, line) in lines.enumerated() where !line.isEmpty {
      do { entries.append(try JSONDecoder().decode(HistoryEntry.self, from: Data(line.utf8))) } catch {
        if number == lines.count - 1 { break }
        throw SearchError("\(path) line \(number + 1) is not a search history entry: \(Genotype.describe(error)); move the file away to start a new search")
      }
    }
    return entries
  }
}
