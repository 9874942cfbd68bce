#if canImport(Glibc)
import Glibc
#endif
import Checksums
import Collective
import Foundation

/// Messages between the coordinator and the workers (the control plane; gradients never pass here).
public enum ControlMessage: Codable, Sendable, Equatable {
  case hello(version: Int, ringAddress: String, host: String)
  case challenge(nonce: String)
  case response(mac: String, clientNonce: String)
  case proof(mac: String)
  case assignment(rank: Int, size: Int, ringAddresses: [String], config: [String: String], jobID: String)
  case metrics(rank: Int, step: Int, loss: Double, learningRate: Double, imagesPerSecond: Double,
               stepSeconds: Double, communicationSeconds: Double, hiddenFraction: Double, busBandwidth: Double,
               inputWaitSeconds: Double, badRecords: Int)
  case heartbeat(rank: Int)
  case evaluation(rank: Int, step: Int, top1: Int, top5: Int, count: Int)
  case checksum(rank: Int, step: Int, value: Double)
  case done(rank: Int)
  case failure(rank: Int, message: String)
  case stop(reason: String)
}

/// One control connection: messages as a 4-byte little-endian length and JSON, the length checked
/// against `maximumBytes` before anything is allocated.
public final class ControlChannel {
  public let connection: TCPConnection
  public static let maximumBytes = 1 << 20

  public init(_ connection: TCPConnection) { self.connection = connection }

  public func send(_ message: ControlMessage, timeout: Double = 30) throws {
    let body = Array(try JSONEncoder().encode(message))
    var frame = [UInt8]()
    withUnsafeBytes(of: UInt32(body.count).littleEndian) { frame.append(contentsOf: $0) }
    frame += body
    try connection.sendAll(frame, deadline: monotonicNow() + timeout)
  }

  public func receive(timeout: Double = 30) throws -> ControlMessage {
    let deadline = monotonicNow() + timeout
    let prefix = try connection.receive(count: 4, deadline: deadline)
    let length = Int(UInt32(prefix[0]) | UInt32(prefix[1]) << 8 | UInt32(prefix[2]) << 16 | UInt32(prefix[3]) << 24)
    guard length <= ControlChannel.maximumBytes else {
      throw CollectiveError.malformedFrame(rank: connection.peerRank, address: connection.peerAddress,
                                           reason: "control message of \(length) bytes (limit \(ControlChannel.maximumBytes))")
    }
    let body = try connection.receive(count: length, deadline: deadline)
    do {
      return try JSONDecoder().decode(ControlMessage.self, from: Data(body))
    } catch {
      throw CollectiveError.malformedFrame(rank: connection.peerRank, address: connection.peerAddress, reason: "not a control message")
    }
  }
}

/// The job token's challenge–response (both sides prove they know it; the token never crosses
/// the wire) and the random nonces it needs.
public enum JobAuthentication {
  /// Raised whenever the control messages or the ring's frames change (3: the ring's slices and
  /// frames sent ahead, the communication flags), so mixed builds are refused at the door.
  public static let protocolVersion = 3

  public static func nonce() -> String {
    var bytes = [UInt8](repeating: 0, count: 32)
    let fd = open("/dev/urandom", O_RDONLY)
    if fd >= 0 { _ = read(fd, &bytes, 32); close(fd) }
    return bytes.hexString
  }

  public static func workerProof(token: String, nonce: String, clientNonce: String) -> String {
    HMACSHA256.authenticationCode(key: Array(token.utf8), message: Array("amoeba-worker:\(nonce):\(clientNonce)".utf8)).hexString
  }

  public static func coordinatorProof(token: String, nonce: String, clientNonce: String) -> String {
    HMACSHA256.authenticationCode(key: Array(token.utf8), message: Array("amoeba-coordinator:\(clientNonce):\(nonce)".utf8)).hexString
  }

  /// A ring identity both neighbours derive from the token and the configuration: a neighbour with
  /// another token or another configuration is refused at the ring greeting.
  public static func ringJobID(token: String, configHash: String) -> UInt64 {
    let mac = HMACSHA256.authenticationCode(key: Array(token.utf8), message: Array("amoeba-ring:\(configHash)".utf8))
    return mac.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
  }

  public static func configHash(_ config: [String: String]) -> String {
    SHA256.hash(Array(config.keys.sorted().map { "\($0)=\(config[$0]!)" }.joined(separator: "\n").utf8)).hexString
  }

  /// Equal hex strings in constant time.
  static func matches(_ a: String, _ b: String) -> Bool { HMACSHA256.constantTimeEqual(Array(a.utf8), Array(b.utf8)) }
}

/// The ring links' challenge–response: HMAC-SHA256 keyed by the job token over the role, the
/// nonce, the prover's rank and the configuration hash, so a neighbour with another token or
/// another configuration cannot join the ring.
public struct TokenRingAuthenticator: RingAuthenticator {
  let key: [UInt8]
  let configHash: String
  public init(token: String, configHash: String) { key = Array(token.utf8); self.configHash = configHash }

  public func proof(role: String, nonce: [UInt8], rank: Int) -> [UInt8] {
    HMACSHA256.authenticationCode(key: key, message: Array("amoeba-ring-\(role):\(rank):\(configHash):".utf8) + nonce)
  }

  public func verify(_ proof: [UInt8], role: String, nonce: [UInt8], rank: Int) -> Bool {
    HMACSHA256.constantTimeEqual(proof, self.proof(role: role, nonce: nonce, rank: rank))
  }
}
