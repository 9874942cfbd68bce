import Collective

/// A worker that proved the job token and joined: its authenticated channel, where its ring
/// socket listens, and when the coordinator last heard from it.
struct Member {
  let channel: ControlChannel
  let ringAddress: String
  let host: String
  /// The control connection's source address.
  let source: String
  var lastHeard: Double
  var rank = -1
  var done = false

  /// How messages name it: by rank and ring address once ranked, by source before.
  var name: String {
    rank >= 0 ? "rank \(rank) at \(ringAddress) (host \(host))" : "the worker at \(ringAddress) (host \(host), connected from \(source))"
  }
}
