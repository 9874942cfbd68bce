#if canImport(Glibc)
import Glibc
#endif
import Checksums

/// How a rank makes its two ring links: it connects to its right neighbour and greets it, then
/// accepts connections on its own port until one proves to be its left neighbour. Anything else
/// that connects there — a port scanner, a health probe, garbage, a process of another job — is a
/// candidate with its own short deadline, read only as far as the greeting's fixed-size fields,
/// and dropped when it fails; it never ends the job, and the error, if the neighbour never comes,
/// counts the refusals instead of blaming the neighbour.
///
/// The greeting (56 bytes) is the magic and rank, the membership generation and the ring size,
/// the job id and a nonce. With an
/// authenticator, the accepting side answers with its own challenge and a proof of the greeting's
/// nonce (64 bytes) and the connecting side proves the challenge (32 bytes).
struct RingFormation {
  let rank: Int
  let addresses: [SocketAddress]
  let listener: TCPListener
  let jobID: UInt64
  /// The membership this ring belongs to: a re-formed ring has a new one, and a rank still of an
  /// older one is refused by name.
  let generation: UInt32
  let authenticator: RingAuthenticator?
  let timeout: Double
  let cancellation: Cancellation?
  /// How long one unproven connection may take over its greeting and proof.
  static let candidateSeconds = 5.0
  /// Unproven connections held at once; more are closed as they arrive.
  static let candidateLimit = 64
  static let greetingBytes = 24 + 32

  var size: Int { addresses.count }

  private struct Candidate {
    let connection: TCPConnection
    let deadline: Double
    var buffer: [UInt8] = []
    /// Nil while the greeting is read; then the challenge whose proof is awaited.
    var challenge: [UInt8]?
    var greetingNonce: [UInt8] = []
    var need: Int { challenge == nil ? RingFormation.greetingBytes : 32 }
  }

  struct Links {
    var right: TCPConnection, left: TCPConnection
    var refused: Int, lastRefusal: String?
    /// Frame MAC keys of the link to the right (ours to send on) and from the left.
    var rightKey: [UInt8]?, leftKey: [UInt8]?
  }

  func form() throws(CollectiveError) -> Links {
    let started = monotonicNow()
    let deadline = started + timeout
    let rightRank = (rank + 1) % size, leftRank = (rank + size - 1) % size
    let right = try connect(to: addresses[rightRank], rank: rightRank, deadline: deadline, cancellation: cancellation)
    right.timeout = timeout
    let myNonce = try RingFormation.nonce()
    try right.sendAll(RingFormation.hello(rank: rank, size: size, jobID: jobID, generation: generation) + myNonce, deadline: deadline)
    var rightDone = authenticator == nil, rightAnswer: [UInt8] = []
    var left: TCPConnection?
    var rightKey: [UInt8]?, leftKey: [UInt8]?
    var candidates: [Candidate] = []
    var refused = 0, lastRefusal: String?
    func refuse(_ candidate: Candidate, _ reason: String) {
      refused += 1
      lastRefusal = "a connection from \(candidate.connection.peerAddress) \(reason)"
      candidate.connection.close()
    }
    while !rightDone || left == nil {
      try cancellation?.check()
      let now = monotonicNow()
      candidates.removeAll { candidate in
        guard candidate.deadline <= now else { return false }
        refuse(candidate, "sent no complete greeting within \(Int(RingFormation.candidateSeconds)) s")
        return true
      }
      if now >= deadline {
        if !rightDone { throw .peerTimedOut(rank: rightRank, address: addresses[rightRank].description, waited: timeout) }
        let expecting = "rank \(leftRank) (\(addresses[leftRank]))"
        if let lastRefusal {
          throw .neighbourMissing(expecting: expecting, listening: listener.address.description, waited: now - started,
                                  refused: refused, lastRefusal: lastRefusal)
        }
        throw .acceptTimedOut(listening: listener.address.description, expecting: expecting, waited: now - started)
      }
      var fds: [pollfd] = []
      if left == nil { fds.append(pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)) }
      if !rightDone { fds.append(pollfd(fd: right.fd, events: Int16(POLLIN), revents: 0)) }
      fds += candidates.map { pollfd(fd: $0.connection.fd, events: Int16(POLLIN), revents: 0) }
      var wait = min(deadline, candidates.map(\.deadline).min() ?? deadline) - now
      if cancellation != nil { wait = min(wait, Cancellation.pollSeconds) }
      _ = poll(&fds, nfds_t(fds.count), Int32(max(0, wait) * 1000 + 1))

      if left == nil {
        while let connection = try listener.acceptIfReady() {
          if candidates.count >= RingFormation.candidateLimit {
            refuse(Candidate(connection: connection, deadline: now), "was closed: \(RingFormation.candidateLimit) unproven connections already waiting")
          } else {
            connection.timeout = RingFormation.candidateSeconds
            candidates.append(Candidate(connection: connection, deadline: monotonicNow() + RingFormation.candidateSeconds))
          }
        }
      }
      if !rightDone, let authenticator {
        // The right neighbour's challenge and proof of our nonce.
        var chunk = [UInt8](repeating: 0, count: 64 - rightAnswer.count)
        let n = recv(right.fd, &chunk, chunk.count, 0)
        if n == 0 { throw .peerClosed(rank: rightRank, address: addresses[rightRank].description) }
        if n < 0 && errno != EAGAIN && errno != EINTR { throw right.failure("recv") }
        if n > 0 { rightAnswer += chunk.prefix(n) }
        if rightAnswer.count == 64 {
          guard authenticator.verify(Array(rightAnswer.suffix(32)), role: "accept", nonce: myNonce, rank: rightRank) else {
            throw .malformedFrame(rank: rightRank, address: addresses[rightRank].description, reason: "it could not prove the job token")
          }
          try right.sendAll(authenticator.proof(role: "connect", nonce: Array(rightAnswer.prefix(32)), rank: rank), deadline: deadline)
          rightKey = authenticator.frameKey(connectorNonce: myNonce, acceptorChallenge: Array(rightAnswer.prefix(32)), connectorRank: rank)
          rightDone = true
        }
      }
      var index = 0
      while index < candidates.count, left == nil {
        var candidate = candidates[index]
        var chunk = [UInt8](repeating: 0, count: candidate.need - candidate.buffer.count)
        let n = recv(candidate.connection.fd, &chunk, chunk.count, 0)
        if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) {
          refuse(candidate, "closed before proving to be rank \(leftRank)")
          candidates.remove(at: index); continue
        }
        if n > 0 { candidate.buffer += chunk.prefix(n) }
        if candidate.buffer.count < candidate.need { candidates[index] = candidate; index += 1; continue }
        if candidate.challenge == nil {
          guard TCPRing.greetingMatches(candidate.buffer, rank: leftRank, size: size, jobID: jobID, generation: generation) else {
            if let theirs = RingFormation.otherGeneration(candidate.buffer, rank: leftRank, jobID: jobID, generation: generation) {
              refuse(candidate, "is rank \(leftRank) of this job's membership generation \(theirs), not the current \(generation): a worker of an older membership, refused")
            } else {
              refuse(candidate, "sent a greeting that is not rank \(leftRank) of \(size) in this job")
            }
            candidates.remove(at: index); continue
          }
          if let authenticator {
            let challenge = try RingFormation.nonce()
            do {
              try candidate.connection.sendAll(challenge + authenticator.proof(role: "accept", nonce: Array(candidate.buffer.suffix(32)), rank: rank),
                                               deadline: monotonicNow() + 1)
            } catch {
              refuse(candidate, "closed during the ring greeting"); candidates.remove(at: index); continue
            }
            candidate.challenge = challenge
            candidate.greetingNonce = Array(candidate.buffer.suffix(32))
            candidate.buffer = []
            candidates[index] = candidate; index += 1; continue
          }
        } else if let authenticator, let challenge = candidate.challenge {
          guard authenticator.verify(candidate.buffer, role: "connect", nonce: challenge, rank: leftRank) else {
            refuse(candidate, "could not prove the job token as rank \(leftRank)")
            candidates.remove(at: index); continue
          }
          leftKey = authenticator.frameKey(connectorNonce: candidate.greetingNonce, acceptorChallenge: challenge, connectorRank: leftRank)
        }
        candidates.remove(at: index)
        candidate.connection.peerRank = leftRank
        candidate.connection.peerAddress = addresses[leftRank].description
        candidate.connection.timeout = timeout
        left = candidate.connection
      }
    }
    for candidate in candidates { candidate.connection.close() }
    return Links(right: right, left: left!, refused: refused, lastRefusal: lastRefusal, rightKey: rightKey, leftKey: leftKey)
  }

  static func nonce() throws(CollectiveError) -> [UInt8] {
    do { return try SecureRandom.bytes(32) } catch { throw .noRandomness(error.description) }
  }

  static func hello(rank: Int, size: Int, jobID: UInt64, generation: UInt32) -> [UInt8] {
    var bytes = [UInt8]()
    for value in [UInt64(TCPRing.magic) << 32 | UInt64(rank), UInt64(generation) << 32 | UInt64(size), jobID] {
      withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
    return bytes
  }
}

extension RingFormation {
  /// The generation of a greeting that is rank `rank` of this job but of another membership
  /// generation (whatever its ring size), or nil.
  static func otherGeneration(_ bytes: [UInt8], rank: Int, jobID: UInt64, generation: UInt32) -> UInt32? {
    guard bytes.count >= 24 else { return nil }
    func word(_ k: Int) -> UInt64 { bytes[(8 * k)..<(8 * k + 8)].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
    guard word(0) == UInt64(TCPRing.magic) << 32 | UInt64(rank), word(2) == jobID else { return nil }
    let theirs = UInt32(word(1) >> 32)
    return theirs == generation ? nil : theirs
  }
}

extension TCPRing {
  /// Whether a ring greeting's fixed fields (magic and rank, generation and size, job id) are the
  /// ones expected; the nonce after them is not looked at.
  public static func greetingMatches(_ bytes: [UInt8], rank: Int, size: Int, jobID: UInt64, generation: UInt32 = 1) -> Bool {
    bytes.count == RingFormation.greetingBytes
      && Array(bytes.prefix(24)) == RingFormation.hello(rank: rank, size: size, jobID: jobID, generation: generation)
  }

  /// A greeting as rank `rank` sends it.
  public static func greeting(rank: Int, size: Int, jobID: UInt64, generation: UInt32 = 1, nonce: [UInt8]) -> [UInt8] {
    RingFormation.hello(rank: rank, size: size, jobID: jobID, generation: generation) + nonce
  }
}
