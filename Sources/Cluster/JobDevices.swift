import Data

/// The job's devices as the workers reported them at the start: per rank, the kind its step runs
/// on and how many of its host's devices the one replicated program spans. Hosts × devices is
/// the shape a TPU pod slice or a multi-GPU cluster has; the rank table and the progress line
/// say it in those terms.
struct JobDevices: Equatable {
  /// Per rank: "cpu", "XLA:cpu (PJRT 0.81)", "XLA:tpu (PJRT 0.117)".
  let kinds: [String]
  /// Per rank: local devices (1 for the Swift executor).
  let counts: [Int]

  var hosts: Int { counts.count }
  var total: Int { counts.reduce(0, +) }

  /// "2 hosts × 4 devices (XLA:tpu (PJRT 0.117))", or for a mixed job
  /// "2 hosts, 3 devices (1× cpu, 2× XLA:cpu (PJRT 0.81))".
  var summary: String {
    let hostWord = hosts == 1 ? "1 host" : "\(hosts) hosts"
    if Set(kinds).count == 1, Set(counts).count == 1 {
      return "\(hostWord) × \(counts[0]) device\(counts[0] == 1 ? "" : "s") (\(kinds[0]))"
    }
    var perKind: [String: Int] = [:]
    for (kind, count) in zip(kinds, counts) { perKind[kind, default: 0] += count }
    return "\(hostWord), \(total) devices (" + perKind.keys.sorted().map { "\(perKind[$0]!)× \($0)" }.joined(separator: ", ") + ")"
  }

  /// The rank table: one line per rank with its host, ring address, devices and batch per device.
  func table(hosts: [(host: String, ringAddress: String)], globalBatch: Int) -> [String] {
    let shares = BatchShares(globalBatch: globalBatch, workers: max(self.hosts, 1))
    let perDevice = { (rank: Int) in
      let batch = shares.batch(of: rank)
      return batch % self.counts[rank] == 0 ? String(batch / self.counts[rank]) : "?"
    }
    let rows = [["rank", "host", "ring address", "devices", "batch/device"]]
      + hosts.indices.map { [String($0), hosts[$0].host, hosts[$0].ringAddress, "\(counts[$0])× \(kinds[$0])", perDevice($0)] }
    let widths = (0..<5).map { column in rows.map { $0[column].count }.max()! }
    return rows.map { row in
      row.enumerated().map { $0.element + String(repeating: " ", count: widths[$0.offset] - $0.element.count) }
        .joined(separator: "  ").trimmingTrailingSpaces()
    }
  }

  /// The fastest and slowest device's time in one step over all ranks, where the backends said.
  static func spread(_ reports: [StepMetrics]) -> (fastest: Double, slowest: Double)? {
    let times = reports.flatMap(\.deviceSeconds).filter { $0 >= 0 }
    guard let fastest = times.min(), let slowest = times.max() else { return nil }
    return (fastest, slowest)
  }
}

extension String {
  fileprivate func trimmingTrailingSpaces() -> String {
    var end = endIndex
    while end > startIndex, self[index(before: end)] == " " { end = index(before: end) }
    return String(self[..<end])
  }
}
