import CLI
import Foundation
import Search

/// `amoeba search report --model_dir D [--top 5] [--every 10] [--out D/search-report.svg]`: the
/// best genotypes of the search in D, the population's median and best accuracy by children
/// trained (a tab-separated table), and the same as an SVG plot.
struct SearchReportCommand {
  var directory: String
  var top: Int
  var every: Int
  var out: String

  init(flags: Flags) throws {
    var flags = flags
    directory = flags.string("model_dir", default: "")
    top = try flags.int("top", default: 5)
    every = try flags.int("every", default: 10)
    out = flags.string("out", default: "")
    try flags.finish()
    guard !directory.isEmpty else { throw UsageError("search report needs --model_dir, the search's directory") }
    guard top >= 1, every >= 1 else { throw UsageError("--top and --every must be at least 1") }
    if out.isEmpty { out = directory + "/search-report.svg" }
  }

  func run() throws {
    let settings = try SearchHistory.settings(in: directory)
    let history = try SearchHistory.read(SearchHistory.path(in: directory))
    guard !history.isEmpty else { throw SearchError("\(SearchHistory.path(in: directory)) holds no trained child yet") }
    let report = SearchReport(settings: settings, history: history)
    print("search in \(directory): \(history.count) of \(settings.cycles) children trained (population \(settings.populationSize), sample \(settings.sampleSize), seed \(settings.seed)\(settings.aging ? "" : ", no aging"))")
    let initial = history.prefix(settings.populationSize).map(\.accuracy).sorted()
    let now = report.curve.last!
    print("initial random population: median \(initial[initial.count / 2]), best \(initial.last!); population now: median \(now.populationMedian), best \(now.populationBest)")
    if let throughput = report.throughput {
      print("throughput: \(Int(throughput.childrenPerHour.rounded())) children per hour from \(throughput.workers) worker\(throughput.workers == 1 ? "" : "s") (wall clock between the first and the last result)")
    }
    print("best children:")
    for entry in report.best(top) {
      print("  child \(entry.child.id)\(entry.child.parent.map { " (of \($0), \(entry.child.mutation!.rawValue))" } ?? " (random)"): top-1 \(entry.accuracy), \(Int(entry.trainSeconds)) s on \(entry.worker)")
      print("    \(entry.child.genotype.json)")
    }
    print("curve:")
    for line in report.table(every: every) { print("  " + line) }
    try report.svg.write(toFile: out, atomically: true, encoding: .utf8)
    print("plot: \(out); the best genotype: \(directory)/best.json (train it with --cell_name=\(directory)/best.json)")
  }
}
