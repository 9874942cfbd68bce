#if canImport(Glibc)
import Glibc
#endif
import Checksums
import Collective
import Foundation
import Synchronization

/// Messages between the coordinator and the workers once a connection is authenticated (the
/// control plane; gradients never pass here).
public enum ControlMessage: Codable, Sendable, Equatable {
  /// The worker's first message: where its ring socket listens and the host it runs on.
  case join(ringAddress: String, host: String)
  /// A rank in a membership (the first, or one formed again after a failure or a join).
  case assignment(Assignment)
  /// The job runs without this worker for now (its size would not divide the global batch, or it
  /// is beyond --max_workers): it waits as a spare, watched, until a membership needs it.
  case standby(reason: String)
  /// A ring operation failed at this step (a neighbour lost, say); the worker waits for the
  /// coordinator's next assignment instead of giving up (elastic jobs only). `generation`: the
  /// membership whose ring failed; one of an older membership (its ring torn down by the
  /// re-forming itself) is ignored.
  case interrupted(rank: Int, step: Int, reason: String, generation: Int)
  case metrics(StepMetrics)
  /// The step a worker starts training at, the rank whose checkpoint it was restored from (−1:
  /// none), where its step runs ("cpu", "XLA:cpu (PJRT 0.81)") and on how many of the host's
  /// devices (one program replicated over them).
  /// `generation`: the membership it started in (a late one of an older membership is ignored).
  case started(rank: Int, step: Int, source: Int, device: String, localDevices: Int, generation: Int)
  case heartbeat(rank: Int)
  /// A rank's share of an evaluation, in the membership it was made in (a share of an older one
  /// is ignored: the membership that replaced it evaluates again).
  case evaluation(rank: Int, step: Int, top1: Int, top5: Int, count: Int, generation: Int)
  case done(rank: Int)
  /// A search's child to train on the proxy task (`--mode=search`): the worker trains it alone
  /// and answers with its `taskResult`.
  case task(SearchTask)
  case taskResult(TaskResult)
  case failure(rank: Int, message: String)
  case stop(reason: String)
}

/// One child of an evolution search as a worker's task: the proxy task's flags, its genotype as
/// `cell_name` (JSON), and how long the coordinator may stay silent.
public struct SearchTask: Codable, Sendable, Equatable {
  public var id: Int
  public var config: [String: String]
  public var heartbeatTimeout: Double
  public init(id: Int, config: [String: String], heartbeatTimeout: Double) {
    self.id = id; self.config = config; self.heartbeatTimeout = heartbeatTimeout
  }
}

/// A trained child's validation accuracy (of its moving averages) and its training time.
public struct TaskResult: Codable, Sendable, Equatable {
  public var id: Int
  public var top1: Double
  public var top5: Double
  public var trainSeconds: Double
  public init(id: Int, top1: Double, top5: Double, trainSeconds: Double) {
    self.id = id; self.top1 = top1; self.top5 = top5; self.trainSeconds = trainSeconds
  }
}

/// A worker's place in one membership: its rank, the ring in order, the job's configuration.
public struct Assignment: Codable, Sendable, Equatable {
  public var rank: Int
  public var size: Int
  public var ringAddresses: [String]
  public var config: [String: String]
  public var jobID: String
  /// How long either side may stay silent before the other gives up on it.
  public var heartbeatTimeout: Double
  /// The membership's number: 1 is the job's first, each re-formed membership takes the next; the
  /// ring is formed in it and a rank of an older one is refused by name.
  public var generation: Int
  /// Leave the current ring at once, abandoning the step in flight (a rank was lost: the ring
  /// would wait for it); otherwise finish the step and re-form at its boundary (a worker joined).
  public var abandonStep: Bool
  /// The job re-forms its membership on a failure (--min_workers/--max_workers): a worker whose
  /// ring fails waits for the next assignment instead of giving up.
  public var elastic: Bool
  /// Seconds a worker that lost the coordinator keeps its state and tries to reach it again
  /// (a restarted coordinator takes the job over from its journal); 0: it gives up at once.
  public var coordinatorGrace: Double
  /// The last step whose evaluation the coordinator has every share of. A membership that goes
  /// on from a later evaluation step makes that evaluation first: it was in flight when the
  /// membership changed (its shares from the old one are ignored). nil: the job's first membership.
  public var evaluatedThrough: Int?

  public init(rank: Int, size: Int, ringAddresses: [String], config: [String: String], jobID: String, heartbeatTimeout: Double,
              generation: Int, abandonStep: Bool = false, elastic: Bool = false, coordinatorGrace: Double = 0, evaluatedThrough: Int? = nil) {
    self.rank = rank; self.size = size; self.ringAddresses = ringAddresses; self.config = config; self.jobID = jobID
    self.heartbeatTimeout = heartbeatTimeout; self.generation = generation; self.abandonStep = abandonStep; self.elastic = elastic
    self.coordinatorGrace = coordinatorGrace; self.evaluatedThrough = evaluatedThrough
  }
}

/// What one worker measured of one step, sent to the coordinator after it.
public struct StepMetrics: Codable, Sendable, Equatable {
  public var rank: Int
  public var step: Int
  public var loss: Double
  public var learningRate: Double
  public var imagesPerSecond: Double
  public var stepSeconds: Double
  /// The ring's all-reduce time in the step, and the share of it that overlapped backward.
  public var communicationSeconds: Double
  public var hiddenFraction: Double
  /// All-reduce bus bandwidth (nccl-tests' convention), bytes per second; 0 without a ring.
  public var busBandwidth: Double
  public var inputWaitSeconds: Double
  /// Of the step, the time spent waiting for the ring after this rank's own backward was done.
  public var ringWaitSeconds: Double
  /// Unusable input records skipped so far.
  public var badRecords: Int
  /// Per local device, the seconds the step kept it busy, where the backend says (else empty).
  public var deviceSeconds: [Double]

  public init(rank: Int, step: Int, loss: Double, learningRate: Double, imagesPerSecond: Double, stepSeconds: Double,
              communicationSeconds: Double = 0, hiddenFraction: Double = 1, busBandwidth: Double = 0, inputWaitSeconds: Double = 0,
              ringWaitSeconds: Double = 0, badRecords: Int = 0, deviceSeconds: [Double] = []) {
    self.rank = rank; self.step = step; self.loss = loss; self.learningRate = learningRate
    self.imagesPerSecond = imagesPerSecond; self.stepSeconds = stepSeconds; self.communicationSeconds = communicationSeconds
    self.hiddenFraction = hiddenFraction; self.busBandwidth = busBandwidth; self.inputWaitSeconds = inputWaitSeconds
    self.ringWaitSeconds = ringWaitSeconds; self.badRecords = badRecords; self.deviceSeconds = deviceSeconds
  }
}

/// A control-plane failure, naming the other end ("the coordinator at ADDR", "rank 1 at ADDR").
public struct ControlError: Error, CustomStringConvertible, Sendable {
  public let description: String
  init(_ description: String) { self.description = description }
}

/// One authenticated control connection. A frame is
///
///     length (u32 LE) · sequence (u64 LE) · body (`length` bytes of JSON) · MAC (32 bytes)
///
/// with the MAC an HMAC-SHA256 under this direction's session key over sequence, length and body.
/// The length is checked against `maximumBytes` before anything is allocated, and the MAC and
/// sequence before the body is parsed, so an injected, replayed or reordered message is refused
/// by name and never acted on. Sends are serialised (a heartbeat thread and the training thread
/// share the channel); receives belong to one thread.
public final class ControlChannel: @unchecked Sendable {
  // @unchecked: the send sequence is guarded by `sendSequence`'s mutex; `receiveSequence` and the
  // receive side of `connection` are used by one thread only; `peerName` is set before sharing.
  public let connection: TCPConnection
  /// How errors name the other end.
  public var peerName: String
  private let sendKey: [UInt8]
  private let receiveKey: [UInt8]
  /// The next sequence number, or the error that broke the send side: a send that failed may have
  /// left part of a frame on the wire, and nothing may follow it.
  private let sendState = Mutex<(sequence: UInt64, broken: ControlError?)>((0, nil))
  private var receiveSequence: UInt64 = 0
  public static let maximumBytes = 1 << 20
  public static let headerBytes = 12
  public static let macBytes = 32

  init(_ connection: TCPConnection, peerName: String, sendKey: [UInt8], receiveKey: [UInt8]) {
    self.connection = connection; self.peerName = peerName; self.sendKey = sendKey; self.receiveKey = receiveKey
  }

  public func send(_ message: ControlMessage, timeout: Double = 30) throws(ControlError) {
    let body: [UInt8]
    do { body = Array(try JSONEncoder().encode(message)) } catch { throw ControlError("could not encode a control message: \(error)") }
    try sendState.withLock { (state: inout (sequence: UInt64, broken: ControlError?)) throws(ControlError) in
      if let broken = state.broken { throw broken }
      let frame = ControlChannel.seal(body, key: sendKey, sequence: state.sequence)
      state.sequence += 1
      do throws(CollectiveError) { try connection.sendAll(frame, deadline: monotonicNow() + timeout) } catch {
        let failure = describe(error, waited: timeout)
        state.broken = failure
        throw failure
      }
    }
  }

  public func receive(timeout: Double = 30) throws(ControlError) -> ControlMessage {
    let deadline = monotonicNow() + timeout
    do {
      let header = try connection.receive(count: ControlChannel.headerBytes, deadline: deadline)
      let length = try bodyLength(header)
      let rest = try connection.receive(count: length + ControlChannel.macBytes, deadline: deadline)
      return try open(header: header, rest: rest)
    } catch let error as CollectiveError {
      throw describe(error, waited: timeout)
    } catch let error as ControlError {
      throw error
    } catch {
      throw ControlError("\(peerName): \(error)")
    }
  }

  /// The body length a frame header announces, refused above `maximumBytes`.
  func bodyLength(_ header: [UInt8]) throws(ControlError) -> Int {
    try ControlChannel.bodyLength(header, from: peerName)
  }

  /// Checks a whole frame (header, then body and MAC) and decodes its message.
  func open(header: [UInt8], rest: [UInt8]) throws(ControlError) -> ControlMessage {
    let message = try ControlChannel.open(header: header, rest: rest, key: receiveKey, sequence: receiveSequence, from: peerName)
    receiveSequence += 1
    return message
  }

  public static func bodyLength(_ header: [UInt8], from peerName: String) throws(ControlError) -> Int {
    guard header.count == headerBytes else { throw ControlError("\(peerName) sent a control frame header of \(header.count) bytes") }
    let length = header.prefix(4).reversed().reduce(0) { $0 << 8 | Int($1) }
    guard length <= ControlChannel.maximumBytes else {
      throw ControlError("\(peerName) announced a control message of \(length) bytes (limit \(ControlChannel.maximumBytes)); refused unread")
    }
    return length
  }

  /// The frame checks, apart from any connection (the fuzzer drives them directly).
  public static func open(header: [UInt8], rest: [UInt8], key: [UInt8], sequence expected: UInt64, from peerName: String) throws(ControlError) -> ControlMessage {
    guard header.count == headerBytes, rest.count >= macBytes else { throw ControlError("\(peerName) sent a truncated control frame") }
    let body = Array(rest.dropLast(ControlChannel.macBytes))
    let mac = HMACSHA256.authenticationCode(key: key, message: header + body)
    guard HMACSHA256.constantTimeEqual(mac, Array(rest.suffix(ControlChannel.macBytes))) else {
      throw ControlError("a control message from \(peerName) failed authentication (injected or corrupted on the way); dropped the connection")
    }
    let sequence = header[4..<12].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    guard sequence == expected else {
      throw ControlError("a control message from \(peerName) has sequence \(sequence), expected \(expected) (replayed or reordered); dropped the connection")
    }
    do {
      return try JSONDecoder().decode(ControlMessage.self, from: Data(body))
    } catch {
      throw ControlError("\(peerName) sent an authenticated message this build does not know; run the same amoeba build everywhere")
    }
  }

  /// A whole frame: header, body, MAC.
  public static func seal(_ body: [UInt8], key: [UInt8], sequence: UInt64) -> [UInt8] {
    var frame = header(length: body.count, sequence: sequence) + body
    frame += HMACSHA256.authenticationCode(key: key, message: frame)
    return frame
  }

  static func header(length: Int, sequence: UInt64) -> [UInt8] {
    withUnsafeBytes(of: UInt32(length).littleEndian) { Array($0) } + withUnsafeBytes(of: sequence.littleEndian) { Array($0) }
  }

  func describe(_ error: CollectiveError, waited: Double) -> ControlError {
    switch error {
    case .peerClosed: ControlError("\(peerName) closed the connection; it has probably exited — see its log")
    case .peerTimedOut: ControlError("\(peerName) sent nothing for \(Int(waited)) s")
    case let .systemCall(call, text, _): ControlError("\(call) failed on the connection to \(peerName): \(text)")
    default: ControlError("\(peerName): \(error)")
    }
  }
}
