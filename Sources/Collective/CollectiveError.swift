/// Failures of the data plane. Every case names the peer (rank and address) where there is one and
/// says what to check; the first error on a ring is what every later operation on it reports.
public enum CollectiveError: Error, CustomStringConvertible, Equatable, Sendable {
  /// A system call failed: the call, the errno text, and the peer it concerned.
  case systemCall(call: String, error: String, peer: String)
  /// Could not connect to a peer before the deadline.
  case connectFailed(rank: Int, address: String, waited: Double, lastError: String)
  /// The peer closed the connection (its process died or gave up).
  case peerClosed(rank: Int, address: String)
  /// Nothing arrived from (or could be sent to) the peer within the deadline.
  case peerTimedOut(rank: Int, address: String, waited: Double)
  /// No one connected to this process's listening socket before the deadline.
  case acceptTimedOut(listening: String, expecting: String, waited: Double)
  /// The peer sent bytes that are not a valid frame (wrong magic, wrong size, wrong sequence).
  case malformedFrame(rank: Int, address: String, reason: String)
  /// The neighbour never joined the ring, while other connections to this rank's port were refused
  /// (strays, probes, a process with another token or configuration).
  case neighbourMissing(expecting: String, listening: String, waited: Double, refused: Int, lastRefusal: String)
  /// Random bytes for a nonce could not be read from the kernel.
  case noRandomness(String)
  /// An address that cannot be parsed or resolved.
  case badAddress(String)
  /// Another thread raised the operation's `Cancellation` (the coordinator stopped the job).
  case cancelled(reason: String)

  public var description: String {
    switch self {
    case let .systemCall(call, error, peer):
      "\(call) failed for \(peer): \(error)"
    case let .connectFailed(rank, address, waited, lastError):
      "could not connect to rank \(rank) at \(address) within \(seconds(waited)) (last error: \(lastError)); check that the process is running and the address is reachable"
    case let .peerClosed(rank, address):
      "rank \(rank) at \(address) closed the connection; it has probably exited — see its log"
    case let .peerTimedOut(rank, address, waited):
      "rank \(rank) at \(address) sent nothing for \(seconds(waited)); it is stalled or the network is down"
    case let .acceptTimedOut(listening, expecting, waited):
      "\(expecting) did not connect to \(listening) within \(seconds(waited)); check that it is running, was given this address, and can reach it"
    case let .malformedFrame(rank, address, reason):
      "rank \(rank) at \(address) sent a malformed frame: \(reason); is it running the same version of amoeba?"
    case let .badAddress(text):
      "bad address '\(text)': expected host:port (IPv6 as [addr]:port)"
    case let .neighbourMissing(expecting, listening, waited, refused, lastRefusal):
      "\(expecting) did not join the ring at \(listening) within \(seconds(waited)); \(refused) other connection\(refused == 1 ? " was" : "s were") refused there (last: \(lastRefusal)); check that it runs with this job's token and configuration"
    case let .noRandomness(reason):
      reason
    case let .cancelled(reason):
      reason
    }
  }
}

func seconds(_ s: Double) -> String { String(Double(Int(s * 10)) / 10) + " s" }
