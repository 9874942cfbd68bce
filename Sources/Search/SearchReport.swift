import Foundation

/// What `amoeba search report` shows of a search's history: its best children, and the
/// population's median and best accuracy as children come in (replayed with the search's own
/// settings, so the curve is the population the coordinator held), as a table and an SVG plot.
public struct SearchReport: Sendable {
  public struct Point: Sendable, Equatable {
    /// Children trained so far.
    public var trained: Int
    public var populationMedian: Double
    public var populationBest: Double
    public var bestEver: Double
  }
  public let settings: SearchSettings
  public let history: [HistoryEntry]
  /// One point per trained child.
  public let curve: [Point]

  public init(settings: SearchSettings, history: [HistoryEntry]) {
    self.settings = settings; self.history = history
    var replay = RegularizedEvolution(settings: settings)
    var points: [Point] = []
    var bestEver = -Double.infinity
    for (index, entry) in history.enumerated() {
      replay.take(entry)
      bestEver = max(bestEver, entry.accuracy)
      let sorted = replay.population.map(\.accuracy).sorted()
      points.append(Point(trained: index + 1, populationMedian: sorted[sorted.count / 2], populationBest: sorted.last!, bestEver: bestEver))
    }
    curve = points
  }

  /// The best `count` children, best first (ties: the earlier).
  public func best(_ count: Int) -> [HistoryEntry] {
    Array(history.enumerated().sorted { ($0.element.accuracy, -$0.offset) > ($1.element.accuracy, -$1.offset) }.prefix(count).map(\.element))
  }

  /// Children trained per hour of wall clock, between the first and the last result the
  /// coordinator recorded a time for, and how many workers reported them; nil without two.
  public var throughput: (childrenPerHour: Double, workers: Int)? {
    let timed = history.filter { $0.reportedAt != nil }, times = timed.compactMap(\.reportedAt)
    guard times.count >= 2, let first = times.min(), let last = times.max(), last > first else { return nil }
    // The first result's own training started before the first time recorded: count the children after it.
    return (Double(times.count - 1) * 3600 / (last - first), Set(timed.map(\.worker)).count)
  }

  /// The curve every `every` children (and the last), as a plot-ready table.
  public func table(every: Int) -> [String] {
    let rows = curve.enumerated().filter { ($0.offset + 1) % every == 0 || $0.offset == curve.count - 1 }.map(\.element)
    return ["children\tpopulation_median\tpopulation_best\tbest_ever"]
      + rows.map { "\($0.trained)\t\(Self.round4($0.populationMedian))\t\(Self.round4($0.populationBest))\t\(Self.round4($0.bestEver))" }
  }

  /// Every child's accuracy as a dot, the population's median and best as lines.
  public var svg: String {
    let width = 640.0, height = 400.0, left = 56.0, right = 16.0, top = 24.0, bottom = 44.0
    let accuracies = history.map(\.accuracy)
    let low = min(accuracies.min() ?? 0, 0), high = max(accuracies.max() ?? 1, 0.01)
    let n = Double(max(history.count, 1))
    func x(_ i: Double) -> Double { left + (width - left - right) * i / n }
    func y(_ a: Double) -> Double { height - bottom - (height - top - bottom) * (a - low) / (high - low) }
    func f(_ v: Double) -> String { String(format: "%.1f", v) }
    var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
    out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    out += "<text x=\"\(f(left))\" y=\"16\">regularized evolution: population \(settings.populationSize), sample \(settings.sampleSize)\(settings.aging ? "" : ", no aging"), seed \(settings.seed)</text>\n"
    out += "<line x1=\"\(f(left))\" y1=\"\(f(y(low)))\" x2=\"\(f(width - right))\" y2=\"\(f(y(low)))\" stroke=\"black\"/>\n"
    out += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(y(low)))\" stroke=\"black\"/>\n"
    for k in 0...4 {
      let a = low + (high - low) * Double(k) / 4
      out += "<text x=\"\(f(left - 6))\" y=\"\(f(y(a) + 4))\" text-anchor=\"end\">\(Self.round4(a))</text>\n"
    }
    out += "<text x=\"\(f((left + width - right) / 2))\" y=\"\(f(height - 8))\" text-anchor=\"middle\">children trained (\(history.count)); dots: each child's validation top-1</text>\n"
    for (i, a) in accuracies.enumerated() {
      out += "<circle cx=\"\(f(x(Double(i + 1))))\" cy=\"\(f(y(a)))\" r=\"1.5\" fill=\"#999\"/>\n"
    }
    for (label, color, value) in [("population median", "#1f77b4", \Point.populationMedian), ("population best", "#d62728", \Point.populationBest)] {
      let path = curve.map { "\(f(x(Double($0.trained)))),\(f(y($0[keyPath: value])))" }.joined(separator: " ")
      out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path)\"><title>\(label)</title></polyline>\n"
    }
    out += "<text x=\"\(f(width - right - 4))\" y=\"\(f(top + 14))\" text-anchor=\"end\" fill=\"#d62728\">population best</text>\n"
    out += "<text x=\"\(f(width - right - 4))\" y=\"\(f(top + 30))\" text-anchor=\"end\" fill=\"#1f77b4\">population median</text>\n"
    return out + "</svg>\n"
  }

  static func round4(_ v: Double) -> Double { (v * 10000).rounded() / 10000 }
}
