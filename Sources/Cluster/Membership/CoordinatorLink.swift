#if canImport(Glibc)
import Glibc
#endif
import Checksums
import Collective
import Foundation
import Synchronization

/// A worker's side of its control connection: the handshake, then a heartbeat thread from the
/// moment it joined (through data indexing, restore, broadcast and evaluation, so a slow start is
/// not taken for a dead worker) and a listening thread once it is ranked. A stop from the
/// coordinator, the coordinator closing, or its silence beyond the heartbeat timeout raises
/// `cancellation`, which ends any ring wait at once. In an elastic job the listening thread also
/// takes the coordinator's next membership (`Directive`): the training thread picks it up at the
/// step boundary, or at once when the ring it waits on lost a rank.
final class CoordinatorLink: @unchecked Sendable {
  // @unchecked: mutable state is in `state`; `channel` sends are serialised inside it, and its
  // receive side is used by the joining thread until `listen` hands it to the listening thread.
  let channel: ControlChannel
  let address: SocketAddress
  let cancellation = Cancellation()
  /// What the coordinator says about this worker's next membership.
  enum Directive: Sendable {
    case assignment(Assignment)
    case standby(reason: String)
  }
  /// What a joined worker is given: a rank in a training job, or a search's child to train.
  enum Work: Sendable {
    case assignment(Assignment)
    case task(SearchTask)
  }
  private struct State {
    var rank = -1
    var stop: String?
    /// The stop is the coordinator's loss (closed or silent), not its word.
    var lost = false
    var closing = false
    var heartbeatInterval = 1.0
    var directives: [Directive] = []
    /// Raised when the coordinator moves the job on from the ring this worker is in.
    var ring: Cancellation?
  }
  private let directive = DispatchSemaphore(value: 0)
  private let state = Mutex(State())
  private let stopped = DispatchSemaphore(value: 0)
  private var threads: [Thread] = []

  var name: String { "the coordinator at \(address)" }

  private init(channel: ControlChannel, address: SocketAddress) { self.channel = channel; self.address = address }

  /// Connects, proves the token, checks the coordinator's proof and joins; heartbeats start here.
  static func join(_ address: SocketAddress, secret: JobSecret, ringAddress: String, host: String,
                   deadline: Double) throws -> CoordinatorLink {
    // A coordinator shedding load (a flood of strays from this host) closes connections before its
    // hello; try again until the deadline.
    while true {
      do {
        return try attempt(address, secret: secret, ringAddress: ringAddress, host: host, deadline: deadline)
      } catch let error as Retry {
        guard monotonicNow() + 0.25 < deadline else { throw error.error }
        usleep(250_000)
      }
    }
  }

  private struct Retry: Error { let error: ControlError }

  private static func attempt(_ address: SocketAddress, secret: JobSecret, ringAddress: String, host: String,
                              deadline: Double) throws -> CoordinatorLink {
    let name = "the coordinator at \(address)"
    let connection: TCPConnection
    do { connection = try connect(to: address, rank: -1, deadline: deadline) } catch {
      throw ControlError("could not reach \(name) within the connect timeout (--connect_timeout): \(lastWords(error)); check that it runs and the address is right")
    }
    connection.peerAddress = address.description
    func read(_ count: Int, _ stage: String) throws -> [UInt8] {
      do { return try connection.receive(count: count, deadline: deadline) } catch {
        if case .peerClosed = error, stage == "proof" {
          throw ControlError("\(name) closed the connection after this worker's proof: most likely the job token differs from the coordinator's (check --job_token_file or AMOEBA_JOB_TOKEN on both sides), or the job already had all its workers (see the coordinator's log)")
        }
        let closed: Bool
        switch error { case .peerClosed, .systemCall: closed = true; default: closed = false }
        if closed && stage == "hello" { throw Retry(error: ControlError("\(name) kept closing the connection before its hello (is it shedding load, or not an amoeba coordinator?)")) }
        throw ControlError("\(name) \(lastWords(error)) during the handshake (\(stage)); is it an amoeba coordinator?")
      }
    }
    let clientNonce = try SecureRandom.bytes(32)
    try connection.sendAll(Handshake.hello(magic: Handshake.workerMagic, nonce: clientNonce), deadline: deadline)
    guard let hello = Handshake.parseHello(try read(Handshake.helloBytes, "hello"), magic: Handshake.coordinatorMagic) else {
      throw ControlError("\(name) did not answer with a coordinator hello; is it an amoeba coordinator?")
    }
    guard hello.version == Handshake.protocolVersion else {
      throw ControlError("\(name) speaks protocol version \(hello.version), this worker \(Handshake.protocolVersion); run the same amoeba build everywhere")
    }
    try connection.sendAll(secret.workerProof(serverNonce: hello.nonce, clientNonce: clientNonce), deadline: deadline)
    let proof = try read(Handshake.proofBytes, "proof")
    guard HMACSHA256.constantTimeEqual(proof, secret.coordinatorProof(serverNonce: hello.nonce, clientNonce: clientNonce)) else {
      throw ControlError("\(name) could not prove the job token: it is not this job's coordinator (or its token differs)")
    }
    let keys = secret.sessionKeys(serverNonce: hello.nonce, clientNonce: clientNonce)
    let channel = ControlChannel(connection, peerName: name, sendKey: keys.workerToCoordinator, receiveKey: keys.coordinatorToWorker)
    try channel.send(.join(ringAddress: ringAddress, host: host))
    let link = CoordinatorLink(channel: channel, address: address)
    link.start { link.beat() }
    return link
  }

  private static func lastWords(_ error: Error) -> String {
    switch error as? CollectiveError {
    case .peerClosed?: "closed the connection"
    case .peerTimedOut?: "sent nothing"
    case let .connectFailed(_, _, _, last)?: "no connection (\(last))"
    default: "\(error)"
    }
  }

  private func start(_ body: @escaping @Sendable () -> Void) {
    let thread = Thread(block: body)
    thread.name = "amoeba-control"
    threads.append(thread)
    thread.start()
  }

  /// Waits (on the joining thread) for the rank assignment; the coordinator sends it once every
  /// worker joined (a worker joining a running elastic job may first be told to wait as a spare:
  /// it then waits as long as the coordinator keeps beating).
  func awaitAssignment(timeout: Double, log: (String) -> Void = { _ in }) throws -> Assignment {
    guard case let .assignment(assignment) = try awaitWork(timeout: timeout, log: log) else {
      throw ControlError("\(name) runs a search (--mode=search), not a training job")
    }
    return assignment
  }

  /// The first work: a rank assignment, or (from a search's coordinator) a child to train.
  func awaitWork(timeout: Double, log: (String) -> Void = { _ in }) throws -> Work {
    var deadline = monotonicNow() + timeout
    var spare = false
    while true {
      let remaining = deadline - monotonicNow()
      guard remaining > 0 else {
        throw ControlError(spare ? "\(name) went silent while this worker waited as a spare" : "\(name) sent no rank assignment within \(Int(timeout)) s (--connect_timeout); are all its workers starting?")
      }
      let message = try channel.receive(timeout: remaining)
      switch message {
      case .heartbeat:
        if spare { deadline = monotonicNow() + timeout }
      case let .standby(reason):
        log("worker: waiting as a spare: \(reason)")
        spare = true; deadline = monotonicNow() + timeout
      case let .stop(reason): throw ControlError("stopped by \(name): \(reason)")
      case let .assignment(assignment):
        state.withLock { $0.rank = assignment.rank; $0.heartbeatInterval = max(0.05, min(1, assignment.heartbeatTimeout / 4)) }
        return .assignment(assignment)
      case let .task(task):
        state.withLock { $0.heartbeatInterval = max(0.05, min(1, task.heartbeatTimeout / 4)) }
        return .task(task)
      default: throw ControlError("\(name) sent \(message) before the rank assignment")
      }
    }
  }

  /// A fresh cancellation for the ring of a new membership: raised by a stop, or by the next
  /// membership when it says to abandon the step in flight.
  func ringCancellation() -> Cancellation {
    let fresh = Cancellation()
    state.withLock { state in
      state.ring = fresh
      if let stop = state.stop { fresh.cancel(stop) }
    }
    return fresh
  }

  /// The coordinator's next membership, if one came (the training thread asks between steps).
  func takeDirective() -> Directive? {
    state.withLock { $0.directives.isEmpty ? nil : $0.directives.removeFirst() }
  }

  /// Waits up to `timeout` for the next membership; a stop or a lost coordinator ends the wait.
  func awaitDirective(timeout: Double) throws -> Directive {
    let deadline = monotonicNow() + timeout
    while true {
      if let stop = stopReason { throw ControlError(stop) }
      if let next = takeDirective() { return next }
      let remaining = deadline - monotonicNow()
      guard remaining > 0 else {
        throw ControlError("\(name) formed no new membership within \(Int(timeout)) s after this worker's ring failed")
      }
      _ = directive.wait(timeout: .now() + min(remaining, 1))
    }
  }

  /// From now on a thread reads the coordinator's messages: a stop, a close or `silence` seconds
  /// without a word raise the cancellation (and, with `exitAfter`, end the process that many
  /// seconds later if the training thread has not returned by then).
  func listen(silence: Double, exitAfter: Double?, log: @escaping (String) -> Void) {
    let log = UncheckedLog(write: log)
    start { [self] in
      var reason: String
      while true {
        do {
          let message = try channel.receive(timeout: silence)
          if case let .stop(text) = message { reason = text == "finished" ? text : "stopped by \(name): \(text)"; break }
          let next: Directive
          switch message {
          case let .assignment(assignment): next = .assignment(assignment)
          case let .standby(text): next = .standby(reason: text)
          default: continue
          }
          let ring = state.withLock { state -> Cancellation? in
            state.directives.append(next)
            if case let .assignment(a) = next { state.rank = a.rank }
            if case let .assignment(a) = next, !a.abandonStep { return nil }
            return state.ring
          }
          ring?.cancel("\(name) formed a new membership")
          directive.signal()
        } catch {
          if state.withLock({ $0.closing }) { return }
          reason = "lost \(name): \(error)"
          state.withLock { $0.lost = true }
          break
        }
      }
      let ring = state.withLock { state -> Cancellation? in state.stop = reason; return state.ring }
      if reason != "finished" { cancellation.cancel(reason); ring?.cancel(reason) }
      stopped.signal()
      directive.signal()
      guard reason != "finished", let exitAfter else { return }
      Thread.sleep(forTimeInterval: exitAfter)
      if !state.withLock({ $0.closing }) {
        log.write("worker: error: \(reason) (the training thread did not stop within \(exitAfter) s; exiting)")
        exit(1)
      }
    }
  }

  /// Whether this worker lost the coordinator (it closed or went silent) rather than being stopped by it.
  var lostCoordinator: Bool { state.withLock { $0.lost } }

  /// The reason the coordinator stopped this worker, if it did.
  var stopReason: String? { state.withLock { $0.stop } }

  /// After `done`: waits for the coordinator's final stop.
  func awaitFinish(timeout: Double) throws {
    guard stopped.wait(timeout: .now() + timeout) == .success else {
      throw ControlError("\(name) did not confirm the end of the job within \(Int(timeout)) s")
    }
    if let reason = stopReason, reason != "finished" { throw ControlError(reason) }
  }

  func send(_ message: ControlMessage) throws { try channel.send(message) }

  /// Ends the heartbeat and listening threads and the connection.
  func close() {
    state.withLock { $0.closing = true }
    channel.connection.shutdown()
  }

  private func beat() {
    var last = monotonicNow()
    while true {
      let (closing, rank, interval) = state.withLock { ($0.closing, $0.rank, $0.heartbeatInterval) }
      if closing { return }
      if monotonicNow() - last >= interval {
        last = monotonicNow()
        do { try channel.send(.heartbeat(rank: rank), timeout: 5) } catch { return }
      }
      Thread.sleep(forTimeInterval: min(interval, 0.05))
    }
  }
}

/// The worker's log function, called from the listening thread only to report an exit.
private struct UncheckedLog: @unchecked Sendable { let write: (String) -> Void }
