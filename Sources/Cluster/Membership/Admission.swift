#if canImport(Glibc)
import Glibc
#endif
import Checksums
import Collective

/// The coordinator's front door: every connection runs the handshake (`Handshake`) concurrently,
/// each against its own deadline, in one poll loop. Junk, half-open, idle and wrong-token
/// connections are logged (`LogLimiter`) and dropped; sources that keep failing are shut out for a
/// while (`SourceGuard`). None of that ends the job: only the join deadline does, and its message
/// counts what was refused. Workers that joined stay watched while others arrive: one that leaves
/// or goes silent is dropped, not ranked.
final class Admission {
  let listener: TCPListener
  let secret: JobSecret
  let handshakeTimeout: Double
  let heartbeatTimeout: Double
  let log: (String) -> Void
  private var limiter = LogLimiter()
  private var sources = SourceGuard()
  private(set) var refused = 0
  private(set) var lastRefusal: String?
  /// Unauthenticated connections held at once; more are closed as they arrive.
  static let pendingLimit = 256

  init(listener: TCPListener, secret: JobSecret, handshakeTimeout: Double, heartbeatTimeout: Double, log: @escaping (String) -> Void) {
    self.listener = listener; self.secret = secret; self.handshakeTimeout = handshakeTimeout
    self.heartbeatTimeout = heartbeatTimeout; self.log = log
  }

  private enum Stage { case hello, proof, joinHeader, joinBody }

  private struct Pending {
    let connection: TCPConnection
    let deadline: Double
    var stage = Stage.hello
    var buffer: [UInt8] = []
    var need = Handshake.helloBytes
    var serverNonce: [UInt8] = []
    var clientNonce: [UInt8] = []
    var channel: ControlChannel?
    var header: [UInt8] = []
    var source: String { connection.peerAddress }
  }

  /// Handshakes in progress.
  private var pending: [Pending] = []

  /// Admits until `workers` have joined; throws when `deadline` passes first. Handshakes still in
  /// progress stay (`closePending` ends them; an elastic job serves them as it runs).
  /// `enough`: fewer workers that do — once that many joined and no other did for `settle`
  /// seconds (a restarted coordinator: the workers that kept their state reconnect within
  /// moments, a dead one never will).
  func admit(workers: Int, deadline: Double, enough: (workers: Int, settle: Double)? = nil) throws(ControlError) -> [Member] {
    var members: [Member] = []
    let started = monotonicNow()
    var lastJoin = started
    while members.count < workers {
      let now = monotonicNow()
      if let enough, members.count >= enough.workers, now - lastJoin >= enough.settle {
        log("coordinator: going on with the \(members.count) of \(workers) workers that came back; none other joined for \(format(enough.settle, 1)) s")
        break
      }
      expire(now: now)
      // Before their assignment workers beat once a second, whatever the timeout.
      let silence = max(heartbeatTimeout, 3)
      members.removeAll { member in
        guard now - member.lastHeard > silence else { return false }
        log("coordinator: dropped \(member.name): it sent nothing for \(format(silence, 1)) s before the job started")
        member.channel.connection.close()
        return true
      }
      if now >= deadline {
        let refusals = refused == 0 ? "" : "; refused \(refused) other connection\(refused == 1 ? "" : "s") (last: \(lastRefusal!))"
        for member in members { try? member.channel.send(.stop(reason: "the job could not start: only \(members.count) of \(workers) workers joined")) }
        throw ControlError("only \(members.count) of \(workers) workers joined within \(Int(now - started)) s (--join_timeout)\(refusals)")
      }
      var fds = descriptors
      let own = fds.count
      fds += members.map { pollfd(fd: $0.channel.connection.fd, events: Int16(POLLIN), revents: 0) }
      let wake = min(deadline, wakeUp ?? deadline, now + (enough == nil ? 1 : 0.2))
      _ = poll(&fds, nfds_t(fds.count), Int32(max(0, wake - now) * 1000 + 1))

      // Members first (their indices in fds are fixed by the arrays as they were polled).
      var drop: [Int] = []
      for (i, member) in members.enumerated() where fds[own + i].revents != 0 {
        do {
          let message = try member.channel.receive(timeout: 5)
          members[i].lastHeard = monotonicNow()
          if case .heartbeat = message { continue }
          if case let .failure(_, text) = message {
            log("coordinator: dropped \(member.name) before the job started: it failed: \(text)")
          } else {
            log("coordinator: dropped \(member.name) before the job started: it sent \(message) out of turn")
          }
        } catch {
          log("coordinator: dropped \(member.name) before the job started: \(error)")
        }
        drop.append(i)
      }
      for i in drop.reversed() { members[i].channel.connection.close(); members.remove(at: i) }
      for member in serve(Array(fds.prefix(own)), limit: workers - members.count) {
        members.append(member)
        lastJoin = monotonicNow()
        log("coordinator: \(member.name) joined (\(members.count) of \(workers))")
      }
    }
    return members
  }

  /// What to poll for admission: the listener, then every handshake in progress.
  var descriptors: [pollfd] {
    [pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)] + pending.map { pollfd(fd: $0.connection.fd, events: Int16(POLLIN), revents: 0) }
  }

  /// When the next handshake runs out of time.
  var wakeUp: Double? { pending.map(\.deadline).min() }

  /// Drops the handshakes that ran out of time.
  func expire(now: Double) {
    pending.removeAll { p in
      guard p.deadline <= now else { return false }
      refuse(p, "idle", "sent no complete handshake within \(Int(handshakeTimeout)) s", now: now)
      return true
    }
  }

  /// Moves the handshakes on after a poll over `descriptors` (`polled`, in that order), accepts
  /// new connections, and returns the workers that completed a join, at most `limit`.
  func serve(_ polled: [pollfd], limit: Int = .max) -> [Member] {
    var joined: [Member] = []
    var keep: [Pending] = []
    for (i, p) in pending.enumerated() {
      var p = p
      guard joined.count < limit, i + 1 < polled.count, polled[i + 1].revents != 0 else { keep.append(p); continue }
      switch step(&p) {
      case .waiting: keep.append(p)
      case let .refused(kind, reason): refuse(p, kind, reason, now: monotonicNow())
      case let .joined(member): joined.append(member)
      }
    }
    pending = keep
    acceptNew(now: monotonicNow())
    return joined
  }

  /// Ends every handshake in progress (the job is full).
  func closePending() {
    for p in pending { p.connection.close() }
    pending = []
  }

  /// Accepts what waits in the backlog and closes it at once: the job is full (called while it runs).
  func turnAway() {
    while let connection = try? listener.acceptIfReady() {
      refused += 1
      if let line = limiter.line("late", "coordinator: closed a connection from \(connection.peerAddress): the job already has all its workers", now: monotonicNow()) { log(line) }
      connection.close()
    }
  }

  private func acceptNew(now: Double) {
    while let connection = try? listener.acceptIfReady() {
      let host = SourceGuard.host(of: connection.peerAddress)
      if !sources.allows(host, now: now) {
        refused += 1
        if let line = limiter.line("throttled", "coordinator: closed a connection from \(connection.peerAddress) unread: \(sources.limit) or more failed handshakes from \(host) in the last \(Int(sources.window)) s, so it gets one try per second", now: now) { log(line) }
        connection.close(); continue
      }
      if pending.count >= Admission.pendingLimit {
        refused += 1
        if let line = limiter.line("full", "coordinator: closed a connection from \(connection.peerAddress): \(Admission.pendingLimit) handshakes already in progress", now: now) { log(line) }
        connection.close(); continue
      }
      pending.append(Pending(connection: connection, deadline: now + handshakeTimeout))
    }
  }

  private func refuse(_ p: Pending, _ kind: String, _ reason: String, now: Double) {
    refused += 1
    lastRefusal = "\(p.source) \(reason)"
    sources.recordFailure(SourceGuard.host(of: p.source), now: now)
    if let line = limiter.line(kind, "coordinator: refused a connection from \(p.source): \(reason)", now: now) { log(line) }
    p.connection.close()
  }

  private enum Outcome { case waiting, refused(kind: String, reason: String), joined(Member) }

  /// Reads what has arrived for one connection and moves its handshake on.
  private func step(_ p: inout Pending) -> Outcome {
    var chunk = [UInt8](repeating: 0, count: p.need - p.buffer.count)
    let n = recv(p.connection.fd, &chunk, chunk.count, 0)
    if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) {
      return .refused(kind: "closed", reason: p.stage == .hello && p.buffer.isEmpty ? "closed without a word (a probe or scanner?)" : "closed during the handshake")
    }
    if n > 0 { p.buffer += chunk.prefix(n) }
    guard p.buffer.count == p.need else { return .waiting }
    let bytes = p.buffer
    p.buffer = []
    switch p.stage {
    case .hello:
      guard let hello = Handshake.parseHello(bytes, magic: Handshake.workerMagic) else {
        return .refused(kind: "junk", reason: "not an amoeba worker (its first bytes are not a worker hello)")
      }
      let nonce: [UInt8]
      do { nonce = try SecureRandom.bytes(32) } catch { return .refused(kind: "random", reason: "\(error)") }
      // Our hello goes back even on a version mismatch: the worker then says which version we speak.
      try? p.connection.sendAll(Handshake.hello(magic: Handshake.coordinatorMagic, nonce: nonce), deadline: monotonicNow() + 1)
      guard hello.version == Handshake.protocolVersion else {
        return .refused(kind: "version", reason: "a worker speaking protocol version \(hello.version), this coordinator \(Handshake.protocolVersion); run the same amoeba build everywhere")
      }
      p.serverNonce = nonce; p.clientNonce = hello.nonce
      p.stage = .proof; p.need = Handshake.proofBytes
    case .proof:
      guard HMACSHA256.constantTimeEqual(bytes, secret.workerProof(serverNonce: p.serverNonce, clientNonce: p.clientNonce)) else {
        return .refused(kind: "token", reason: "wrong job token")
      }
      do {
        try p.connection.sendAll(secret.coordinatorProof(serverNonce: p.serverNonce, clientNonce: p.clientNonce), deadline: monotonicNow() + 1)
      } catch { return .refused(kind: "closed", reason: "closed during the handshake") }
      let keys = secret.sessionKeys(serverNonce: p.serverNonce, clientNonce: p.clientNonce)
      p.channel = ControlChannel(p.connection, peerName: "the worker connected from \(p.source)",
                                 sendKey: keys.coordinatorToWorker, receiveKey: keys.workerToCoordinator)
      p.stage = .joinHeader; p.need = ControlChannel.headerBytes
    case .joinHeader:
      do {
        let length = try p.channel!.bodyLength(bytes)
        p.header = bytes
        p.stage = .joinBody; p.need = length + ControlChannel.macBytes
      } catch { return .refused(kind: "frame", reason: "\(error)") }
    case .joinBody:
      do {
        guard case let .join(ringAddress, host) = try p.channel!.open(header: p.header, rest: bytes) else {
          return .refused(kind: "frame", reason: "its first message was not a join")
        }
        let member = Member(channel: p.channel!, ringAddress: ringAddress, host: host, source: p.source, lastHeard: monotonicNow())
        p.channel!.peerName = member.name
        return .joined(member)
      } catch { return .refused(kind: "frame", reason: "\(error)") }
    }
    return .waiting
  }
}
