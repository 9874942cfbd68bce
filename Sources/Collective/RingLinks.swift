#if canImport(Glibc)
import Glibc
#endif
import Checksums

/// What the ring algorithms need from a transport: a rank, a size, and one full-duplex step —
/// send to the right neighbour while receiving from the left. The algorithms (`Ring+AllReduce`, …)
/// know nothing about sockets; `TCPRing` implements this over TCP, and tests may implement it in memory.
public protocol RingLinks: AnyObject {
  var rank: Int { get }
  var size: Int { get }
  /// Queues the frame `outgoing` to the right (nil: none) and receives a frame of exactly
  /// `receiveCount` bytes from the left (nil: none), sending while it receives. Returns once the
  /// incoming frame has arrived and every frame queued by earlier calls has left; this call's frame
  /// may still be partly unsent, so its bytes must stay untouched until a later call (or `flush`)
  /// returns. A frame may thus go ahead of the receive it does not depend on without either side
  /// having to buffer a whole frame. Frames are numbered per direction, so every rank must run the
  /// same sequence of calls.
  ///
  /// The incoming bytes pass through `window`, reused cyclically: stream byte k lands at
  /// `window[k % window.count]`, and `received(bytes)` is called as they arrive (with the count so
  /// far), so a caller can reduce the first segments while later ones are on the wire. It must
  /// consume everything that has arrived before it returns, since later bytes overwrite the window;
  /// a small window stays in cache, so a reduction reads what the kernel just wrote from cache.
  func exchange(send outgoing: UnsafeRawBufferPointer?, receiveCount: Int?, window: UnsafeMutableRawBufferPointer,
                received: (Int) -> Void) throws(CollectiveError)
  /// Returns once every queued frame has left.
  func flush() throws(CollectiveError)
}

extension RingLinks {
  /// Sends `outgoing` to the right while receiving exactly `incoming.count` bytes into `incoming`;
  /// both are complete when it returns.
  public func exchange(send outgoing: UnsafeRawBufferPointer, receive incoming: UnsafeMutableRawBufferPointer,
                       received: (Int) -> Void) throws(CollectiveError) {
    try exchange(send: outgoing, receiveCount: incoming.count, window: incoming, received: received)
    try flush()
  }
}

/// Proves and checks knowledge of a job's secret on a ring link (HMAC in `Cluster`): the ring stays
/// free of cryptography and of tokens.
public protocol RingAuthenticator: Sendable {
  /// 32 bytes proving the secret for `nonce`, in `role` ("accept" or "connect"), by `rank`.
  func proof(role: String, nonce: [UInt8], rank: Int) -> [UInt8]
  func verify(_ proof: [UInt8], role: String, nonce: [UInt8], rank: Int) -> Bool
  /// 32 bytes keying the MACs of one link's frames (the link from `connectorRank` to its right
  /// neighbour), derived from the secret and both nonces of that link's handshake; nil: frames
  /// travel without a MAC (a trusted fabric).
  func frameKey(connectorNonce: [UInt8], acceptorChallenge: [UInt8], connectorRank: Int) -> [UInt8]?
}

extension RingAuthenticator {
  public func frameKey(connectorNonce: [UInt8], acceptorChallenge: [UInt8], connectorRank: Int) -> [UInt8]? { nil }
}

/// The per-frame Poly1305 keys of one link direction: ChaCha20 under the link key with a 64-bit
/// count of the link's frames as nonce, so no two frames share a key (RFC 8439 §2.6's
/// construction; the header's 32-bit sequence number may wrap on a long run, this count does not).
struct FrameAuthenticator {
  let key: [UInt8]
  private(set) var frames: UInt64 = 0
  static let tagBytes = 16

  init(key: [UInt8]) { self.key = key }

  mutating func nextMAC() -> Poly1305 {
    var nonce = [UInt8](repeating: 0, count: 12)
    withUnsafeBytes(of: frames.littleEndian) { for i in 0..<8 { nonce[i] = $0[i] } }
    frames += 1
    return Poly1305(key: ChaCha20.poly1305Key(key: key, nonce: nonce))
  }
}

/// A ring of processes over TCP: this rank connects to its right neighbour and accepts its left one.
///
/// Every message is a frame: a 16-byte header (magic `AMRG`, sequence number, payload length), then
/// the payload, then — on an authenticated ring (`RingAuthenticator.frameKey`) — a 16-byte
/// Poly1305 tag over header and payload. The receiver knows the length it expects and checks the
/// header against it before reading the payload, so a peer sending garbage is reported, never
/// trusted for a size; a frame whose tag does not verify fails the ring (its bytes may already have
/// been summed into this step's buffer, which the failure then discards).
/// The first error is sticky: later operations fail with the same error.
public final class TCPRing: RingLinks {
  public let rank: Int
  public let size: Int
  /// Seconds each operation may wait on a peer.
  public let timeout: Double
  /// How long a stalled exchange of at most `spinBytes` each way retries before it sleeps in poll
  /// (0: never spin). A small frame's reply usually comes sooner than a sleep and wake-up; a large
  /// exchange stalls on bandwidth, not latency, and spinning there takes the cores from the
  /// training threads (spinning on every exchange measured 4–9% fewer images/s with 2–4 workers
  /// on 2 cores, `bench scaling --preset tiny`).
  public var spinSeconds = 50e-6
  public var spinBytes = 256 << 10
  let right: TCPConnection?
  let left: TCPConnection?
  private var sendSequence: UInt32 = 0
  /// Frames queued to the right, oldest first: at most the one left over from the previous call
  /// and this call's. Headers in two preallocated slots: an exchange allocates nothing.
  private struct Outgoing {
    var header: UnsafeMutableRawPointer
    var payload: UnsafeRawBufferPointer
    /// The tag's slot, used when the ring authenticates frames.
    var tag: UnsafeMutableRawPointer
    var tagBytes: Int
    var sent = 0
    var total: Int { TCPRing.headerBytes + payload.count + tagBytes }
  }
  private var queue: (Outgoing?, Outgoing?) = (nil, nil)
  private let headerSlots = UnsafeMutableRawPointer.allocate(byteCount: 2 * TCPRing.headerBytes, alignment: 8)
  private var nextSlot = 0
  private let incomingHeader = UnsafeMutableRawPointer.allocate(byteCount: TCPRing.headerBytes, alignment: 8)
  private let tagSlots = UnsafeMutableRawPointer.allocate(byteCount: 2 * FrameAuthenticator.tagBytes, alignment: 8)
  private let incomingTag = UnsafeMutableRawPointer.allocate(byteCount: FrameAuthenticator.tagBytes, alignment: 8)
  private var sendAuthenticator: FrameAuthenticator?
  private var receiveAuthenticator: FrameAuthenticator?
  /// Whether frames carry a MAC (both links keyed).
  public var authenticatesFrames: Bool { sendAuthenticator != nil }
  private var receiveSequence: UInt32 = 0
  private var failure: CollectiveError?

  static let magic: UInt32 = 0x4752_4D41  // "AMRG"
  static let headerBytes = 16

  /// Connections to this rank's port that were refused while the ring formed (strays, probes,
  /// other jobs), and the last one's reason.
  public let refusedConnections: Int
  public let lastRefusal: String?
  private let cancellation: Cancellation?

  /// Forms the ring (`RingFormation`): `listener` is this rank's bound socket, `addresses[r]` every
  /// rank's listening address. Peers may start in any order; everything must be connected before
  /// `timeout` passes. With an `authenticator`, each link runs a mutual challenge–response (both
  /// ends prove the job's secret over fresh nonces) before any data flows; `jobID` must match on
  /// both ends in any case, and so must `generation`, the membership the ring belongs to (a rank
  /// of an older one is refused by name). `socketBufferBytes` sets both links' socket buffers once connected
  /// (nil: the kernel's autotuning, or `AMOEBA_SOCKET_BUFFER` from the start); frames larger than
  /// the buffers are fine. A raised `cancellation` ends any wait, forming or exchanging, within
  /// `Cancellation.pollSeconds`.
  public init(rank: Int, addresses: [SocketAddress], listener: TCPListener, jobID: UInt64 = 0, generation: UInt32 = 1,
              authenticator: RingAuthenticator? = nil, timeout: Double = 30, socketBufferBytes: Int? = nil,
              cancellation: Cancellation? = nil) throws(CollectiveError) {
    self.rank = rank
    self.size = addresses.count
    self.timeout = timeout
    self.cancellation = cancellation
    guard size > 1 else {
      right = nil; left = nil; refusedConnections = 0; lastRefusal = nil
      sendAuthenticator = nil; receiveAuthenticator = nil
      return
    }
    let links = try RingFormation(rank: rank, addresses: addresses, listener: listener, jobID: jobID, generation: generation,
                                  authenticator: authenticator,
                                  timeout: timeout, cancellation: cancellation).form()
    if let socketBufferBytes {
      links.right.setBuffers(socketBufferBytes)
      links.left.setBuffers(socketBufferBytes)
    }
    right = links.right
    left = links.left
    refusedConnections = links.refused
    lastRefusal = links.lastRefusal
    sendAuthenticator = links.rightKey.map { FrameAuthenticator(key: $0) }
    receiveAuthenticator = links.leftKey.map { FrameAuthenticator(key: $0) }
  }

  public func close() {
    right?.close()
    left?.close()
  }

  deinit {
    headerSlots.deallocate()
    incomingHeader.deallocate()
    tagSlots.deallocate()
    incomingTag.deallocate()
  }

  public func exchange(send outgoing: UnsafeRawBufferPointer?, receiveCount: Int?, window: UnsafeMutableRawBufferPointer,
                       received: (Int) -> Void) throws(CollectiveError) {
    if let failure { throw failure }
    guard let right, let left else { return }
    precondition((receiveCount ?? 0) == 0 || window.count > 0, "a receive needs a window")
    precondition(queue.1 == nil, "at most one frame may stay queued between calls")
    // Frames queued before this call must have left when it returns; this call's may stay queued.
    let required = queue.0 == nil ? 0 : 1
    if let outgoing {
      let header = headerSlots + nextSlot * TCPRing.headerBytes
      let tag = tagSlots + nextSlot * FrameAuthenticator.tagBytes
      nextSlot ^= 1
      header.storeBytes(of: TCPRing.magic.littleEndian, as: UInt32.self)
      (header + 4).storeBytes(of: sendSequence.littleEndian, as: UInt32.self)
      (header + 8).storeBytes(of: UInt64(outgoing.count).littleEndian, as: UInt64.self)
      if sendAuthenticator != nil {
        var mac = sendAuthenticator!.nextMAC()
        mac.update(UnsafeRawBufferPointer(start: header, count: TCPRing.headerBytes))
        mac.update(outgoing)
        tag.storeBytes(of: mac.finalize(), as: (UInt64, UInt64).self)
      }
      sendSequence &+= 1
      let frame = Outgoing(header: header, payload: outgoing, tag: tag, tagBytes: sendAuthenticator == nil ? 0 : FrameAuthenticator.tagBytes)
      if queue.0 == nil { queue.0 = frame } else { queue.1 = frame }
    }
    do {
      try run(right: right, left: left, required: required, receiveCount: receiveCount, window: window, received: received)
    } catch {
      failure = error
      throw error
    }
  }

  public func flush() throws(CollectiveError) {
    if let failure { throw failure }
    guard let right, let left else { return }
    // After an exchange at most its own frame is still queued.
    let required = queue.0 == nil ? 0 : 1
    do {
      try run(right: right, left: left, required: required, receiveCount: nil, window: UnsafeMutableRawBufferPointer(start: nil, count: 0)) { _ in }
    } catch {
      failure = error
      throw error
    }
  }

  /// Sends queued frames and receives the incoming one until that has arrived and the first
  /// `required` queued frames have left (a frame beyond those is sent while there is time).
  private func run(right: TCPConnection, left: TCPConnection, required: Int, receiveCount frameCount: Int?,
                   window: UnsafeMutableRawBufferPointer, received: (Int) -> Void) throws(CollectiveError) {
    let deadline = monotonicNow() + timeout
    let incomingHeader = self.incomingHeader
    var toSend = required, got = 0
    let receiveCount = frameCount ?? 0
    // No frame from the left: nothing to receive, not even a header.
    let tagBytes = receiveAuthenticator == nil ? 0 : FrameAuthenticator.tagBytes
    let receiveTotal = frameCount == nil ? 0 : TCPRing.headerBytes + receiveCount + tagBytes
    let payloadEnd = TCPRing.headerBytes + receiveCount
    var mac: Poly1305?
    // Try both directions first and poll only when neither could move: small frames then cost one
    // writev and two reads, with no poll at all when the peer is already waiting.
    var stalled = false, spinUntil = 0.0
    let largestSend = max(queue.0?.total ?? 0, queue.1?.total ?? 0)
    let spin = max(largestSend, receiveTotal) <= spinBytes + TCPRing.headerBytes ? spinSeconds : 0
    // One attempt at the queue even when nothing is required, so a frame sent ahead starts moving.
    var first = true
    while first || toSend > 0 || got < receiveTotal {
      if stalled {
        // Retry without sleeping for a few tens of microseconds first: a small frame's reply
        // usually arrives within that, and poll's sleep and wake-up would cost more than the wait.
        let time = monotonicNow()
        if spinUntil == 0 { spinUntil = time + spin }
        if time >= spinUntil {
          var fds = (pollfd(fd: right.fd, events: queue.0 != nil ? Int16(POLLOUT) : 0, revents: 0),
                     pollfd(fd: left.fd, events: got < receiveTotal ? Int16(POLLIN) : 0, revents: 0))
          let remaining = deadline - time
          if remaining <= 0 {
            let late = got < receiveTotal ? left : right
            throw .peerTimedOut(rank: late.peerRank, address: late.peerAddress, waited: timeout)
          }
          let slice = cancellation == nil ? min(remaining, 60) : min(remaining, Cancellation.pollSeconds)
          let rc = withUnsafeMutablePointer(to: &fds) {
            poll(UnsafeMutableRawPointer($0).assumingMemoryBound(to: pollfd.self), 2, Int32(slice * 1000 + 1))
          }
          if rc < 0 && errno != EINTR { throw right.failure("poll") }
          try cancellation?.check()
        } else {
          // Let the kernel's network softirq thread run if it shares our core: on loopback it may
          // be the one delivering the bytes we wait for.
          sched_yield()
        }
      } else {
        spinUntil = 0
      }
      stalled = true
      first = false
      if var frame = queue.0 {
        // What is left of header, payload and tag, in one system call (iovecs on the stack).
        var parts = (iovec(), iovec(), iovec())
        var count = 0, start = 0
        withUnsafeMutableBytes(of: &parts) { raw in
          let vectors = raw.bindMemory(to: iovec.self)
          func add(_ base: UnsafeRawPointer?, _ length: Int) {
            let skip = max(0, min(length, frame.sent - start))
            start += length
            guard length > skip, let base else { return }
            vectors[count] = iovec(iov_base: UnsafeMutableRawPointer(mutating: base + skip), iov_len: length - skip)
            count += 1
          }
          add(frame.header, TCPRing.headerBytes)
          add(frame.payload.baseAddress, frame.payload.count)
          add(frame.tag, frame.tagBytes)
        }
        let n = withUnsafeMutablePointer(to: &parts) { vectors in
          var message = msghdr()
          message.msg_iov = UnsafeMutableRawPointer(vectors).assumingMemoryBound(to: iovec.self)
          message.msg_iovlen = count
          return sendmsg(right.fd, &message, Int32(MSG_NOSIGNAL))
        }
        if n > 0 {
          stalled = false
          frame.sent += n
          if frame.sent == frame.total {
            queue = (queue.1, nil)
            toSend = max(0, toSend - 1)
          } else {
            queue.0 = frame
          }
        } else if n < 0 && errno != EAGAIN && errno != EINTR {
          throw right.failure("send")
        }
      }
      if got < receiveTotal {
        let n: Int
        if got < TCPRing.headerBytes {
          n = Glibc.recv(left.fd, incomingHeader + got, TCPRing.headerBytes - got, 0)
          if n > 0 && got + n == TCPRing.headerBytes {
            try check(incomingHeader, expected: receiveCount, from: left)
            if receiveAuthenticator != nil {
              mac = receiveAuthenticator!.nextMAC()
              mac!.update(UnsafeRawBufferPointer(start: incomingHeader, count: TCPRing.headerBytes))
            }
          }
        } else if got < payloadEnd {
          // Up to the end of the window (or of the payload), never across the wrap.
          let offset = got - TCPRing.headerBytes, position = offset % window.count
          n = Glibc.recv(left.fd, window.baseAddress! + position, min(window.count - position, receiveCount - offset), 0)
          // The MAC reads the bytes before the caller consumes them (the window is reused).
          if n > 0, mac != nil { mac!.update(UnsafeRawBufferPointer(start: window.baseAddress! + position, count: n)) }
        } else {
          n = Glibc.recv(left.fd, incomingTag + (got - payloadEnd), receiveTotal - got, 0)
        }
        if n == 0 { throw .peerClosed(rank: left.peerRank, address: left.peerAddress) }
        if n > 0 {
          let before = got
          got += n
          stalled = false
          if got > TCPRing.headerBytes && before < payloadEnd { received(min(got, payloadEnd) - TCPRing.headerBytes) }
          if tagBytes > 0 && got == receiveTotal {
            let expected = mac!.finalize()
            let actual = incomingTag.loadUnaligned(as: (UInt64, UInt64).self)
            guard (expected.0 ^ actual.0) | (expected.1 ^ actual.1) == 0 else {
              throw .malformedFrame(rank: left.peerRank, address: left.peerAddress,
                                    reason: "frame \(receiveSequence) failed authentication (altered on the way, or a sender without this job's key)")
            }
          }
        } else if errno != EAGAIN && errno != EINTR { throw left.failure("recv") }
      }
      if !stalled && monotonicNow() > deadline {
        let late = got < receiveTotal ? left : right
        throw .peerTimedOut(rank: late.peerRank, address: late.peerAddress, waited: timeout)
      }
    }
    if frameCount != nil { receiveSequence &+= 1 }
  }

  private func check(_ header: UnsafeMutableRawPointer, expected: Int, from left: TCPConnection) throws(CollectiveError) {
    if let reason = TCPRing.problem(header: UnsafeRawBufferPointer(start: header, count: TCPRing.headerBytes),
                                    sequence: receiveSequence, length: expected) {
      throw .malformedFrame(rank: left.peerRank, address: left.peerAddress, reason: reason)
    }
  }

  /// What is wrong with a frame header (magic, sequence, payload length), or nil: the payload's
  /// length is the receiver's, never the sender's, so a lying header is refused before any read.
  public static func problem(header: UnsafeRawBufferPointer, sequence: UInt32, length expected: Int) -> String? {
    guard header.count == headerBytes else { return "a header of \(header.count) bytes" }
    func word(_ i: Int) -> UInt32 { UInt32(littleEndian: header.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)) }
    guard word(0) == TCPRing.magic else { return "bad magic 0x\(String(word(0), radix: 16))" }
    guard word(1) == sequence else { return "sequence \(word(1)), expected \(sequence)" }
    let length = Int(word(2)) | Int(word(3)) << 32
    guard length == expected else { return "payload of \(length) bytes, expected \(expected)" }
    return nil
  }
}
