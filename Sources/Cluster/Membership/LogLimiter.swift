import Foundation

/// At most one log line per kind of event every `interval` seconds; the next line that gets through
/// says how many like it were held back. A flood of stray connections then costs a few lines, not
/// a line each.
struct LogLimiter {
  var interval = 5.0
  private var last: [String: Double] = [:]
  private var held: [String: Int] = [:]

  /// The line to print for an event of `kind`, or nil when it is held back.
  mutating func line(_ kind: String, _ text: String, now: Double) -> String? {
    if let previous = last[kind], now - previous < interval {
      held[kind, default: 0] += 1
      return nil
    }
    last[kind] = now
    let count = held.removeValue(forKey: kind) ?? 0
    return count == 0 ? text : text + " (and \(count) more like it in the last \(Int(interval)) s)"
  }
}

/// Failed handshakes per source host: a host that failed `limit` times within `window` seconds gets
/// one connection through per second while its failures age out; the rest are closed on accept,
/// unread. A scanner or a misconfigured client in a loop then cannot keep the coordinator busy,
/// while a real worker on the same host still gets in (workers retry a connection closed before
/// the coordinator's hello).
struct SourceGuard {
  var limit = 10
  var window = 60.0
  private var failures: [String: [Double]] = [:]
  private var lastAllowed: [String: Double] = [:]

  mutating func recordFailure(_ host: String, now: Double) {
    failures[host, default: []].append(now)
    prune(host, now: now)
  }

  /// Whether a new connection from `host` may start a handshake now.
  mutating func allows(_ host: String, now: Double) -> Bool {
    prune(host, now: now)
    guard (failures[host]?.count ?? 0) >= limit else { return true }
    if let last = lastAllowed[host], now - last < 1 { return false }
    lastAllowed[host] = now
    return true
  }

  private mutating func prune(_ host: String, now: Double) {
    guard var times = failures[host] else { return }
    times.removeAll { now - $0 > window }
    failures[host] = times.isEmpty ? nil : times
    if failures.count > 10_000 { failures.removeAll(); lastAllowed.removeAll() }  // bounded memory under a spoofed-source flood
  }

  /// The host part of `host:port` / `[v6]:port`.
  static func host(of address: String) -> String {
    guard let colon = address.lastIndex(of: ":") else { return address }
    return String(address[..<colon]).trimmingCharacters(in: ["[", "]"])
  }
}
