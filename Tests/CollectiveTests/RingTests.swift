import Testing
import Foundation
import Synchronization
@testable import Collective

/// Runs `body(rank)` on `n` threads at once (ring members block on each other, so a pool with
/// fewer threads than ranks would deadlock) and returns the results in rank order.
func onRanks<T: Sendable>(_ n: Int, _ body: @escaping @Sendable (Int) -> T) -> [T] {
  let results = Mutex<[Int: T]>([:])
  let done = DispatchSemaphore(value: 0)
  for rank in 0..<n {
    let thread = Thread {
      let value = body(rank)
      results.withLock { $0[rank] = value }
      done.signal()
    }
    thread.stackSize = 1 << 22
    thread.start()
  }
  for _ in 0..<n { done.wait() }
  return results.withLock { dict in (0..<n).map { dict[$0]! } }
}

/// Listeners on loopback with their addresses, one per rank.
func listeners(_ n: Int) throws -> ([TCPListener], [SocketAddress]) {
  let ls = try (0..<n).map { _ in try TCPListener(host: "127.0.0.1") }
  return (ls, ls.map(\.address))
}

final class Box<T>: @unchecked Sendable { var value: T; init(_ value: T) { self.value = value } }

/// Whether this host has an IPv6 loopback to bind.
let ipv6Loopback: Bool = (try? TCPListener(host: "::1")) != nil

@Test(.enabled(if: SocketAddress.interface("lo").exists, "no interface named lo"))
func anInterfaceNameGivesItsAddress() throws {
  #expect(SocketAddress.interfaceAddress("lo") == "127.0.0.1")
  #expect(SocketAddress.interfaceAddress("no-such-interface0") == nil)
  let listener = try TCPListener(host: SocketAddress.interfaceAddress("lo")!)
  #expect(listener.address.host == "127.0.0.1" && listener.address.port > 0)
}

@Suite(.enabled(if: ipv6Loopback, "no IPv6 loopback (::1) on this host"))
struct IPv6RingTests {
  @Test func aRingFormsAndReducesOverIPv6() throws {
    let ls = try (0..<3).map { _ in try TCPListener(host: "::1") }
    // The addresses travel as text, as the coordinator sends them: "[::1]:port".
    let addresses = try ls.map { try SocketAddress(parsing: $0.address.description) }
    #expect(ls[0].address.description.hasPrefix("[::1]:"))
    let boxes = ls.map { Box($0) }
    let outcomes: [Result<[Float], CollectiveError>] = onRanks(3) { rank in
      do throws(CollectiveError) {
        let ring = Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, timeout: 20))
        var data = (0..<100_003).map { Float(rank) + Float($0 % 4) }
        try data.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.allReduce(b) }
        return .success(data)
      } catch { return .failure(error) }
    }
    for outcome in outcomes {
      let data = try outcome.get()
      #expect(data.indices.allSatisfy { data[$0] == 3 + 3 * Float($0 % 4) })
    }
  }
}

@Suite struct RingAllReduceTests {
  @Test(arguments: [1, 2, 3, 4, 5, 8])
  func everyRankEndsWithTheExactSumForAnyLength(ranks n: Int) throws {
    let (ls, addresses) = try listeners(n)
    let boxes = ls.map { Box($0) }
    let lengths = [0, 1, n - 1, 7, 1000, 65_537, 250_007]
    let outcomes: [Result<[[Float]], CollectiveError>] = onRanks(n) { rank in
      do {
        let ring = Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, timeout: 20))
        // Both algorithms (gather-and-sum up to 1 KiB·2/n), many laps of a 4 KiB receive window,
        // one slice (1000 elements) and many (65_537 and 250_007 in slices of n · 16 KiB).
        ring.smallBytes = 1024; ring.windowBytes = 4096; ring.chunkBytes = 16 << 10
        var results: [[Float]] = []
        for count in lengths {
          // Each rank contributes rank + i/8: the sum is exact in float32 (a gloo-style test).
          var data = (0..<count).map { Float(rank) + Float($0 % 8) / 8 }
          try data.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.allReduce(b) }
          results.append(data)
        }
        var mean = [Float](repeating: Float(rank), count: 11)
        try mean.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.allReduce(b, .mean) }
        results.append(mean)
        return .success(results)
      } catch { return .failure(error as! CollectiveError) }
    }
    let triangle = Float(n * (n - 1) / 2)
    for (rank, outcome) in outcomes.enumerated() {
      let results = try outcome.get()
      for (k, count) in lengths.enumerated() {
        let expected = (0..<count).map { triangle + Float(n) * Float($0 % 8) / 8 }
        #expect(results[k] == expected, "rank \(rank) of \(n), \(count) elements")
      }
      #expect(results.last! == [Float](repeating: triangle / Float(n), count: 11))
    }
    // Bitwise identical everywhere, also for sums that round.
    #expect(Set(outcomes.map { try! $0.get().description }).count == 1)
  }

  /// Random lengths and random values against a plain sum: within rounding of it (the ring adds
  /// in another order), and the same bits on every rank.
  @Test(arguments: [2, 3, 5])
  func randomLengthsMatchAPlainSum(ranks n: Int) throws {
    let (ls, addresses) = try listeners(n)
    let boxes = ls.map { Box($0) }
    var generator = SplitMix(seed: UInt64(n))
    let lengths = (0..<12).map { _ in Int(generator.next() % 40_000) }
    @Sendable func values(rank: Int, count: Int) -> [Float] {
      var g = SplitMix(seed: UInt64(rank * 1_000_003 + count))
      return (0..<count).map { _ in Float(Int(g.next() % 2_000_001) - 1_000_000) / 1_000_000 }
    }
    let outcomes: [Result<[[Float]], CollectiveError>] = onRanks(n) { rank in
      do {
        let ring = Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, timeout: 20))
        // Most lengths through the sliced schedule (one slice, pairs, an odd last slice), the
        // shortest through gather-and-sum.
        ring.chunkBytes = 8 << 10; ring.smallBytes = 1024
        var results: [[Float]] = []
        for count in lengths {
          var data = values(rank: rank, count: count)
          try data.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.allReduce(b) }
          results.append(data)
        }
        return .success(results)
      } catch { return .failure(error as! CollectiveError) }
    }
    let results = try outcomes.map { try $0.get() }
    for (k, count) in lengths.enumerated() {
      let inputs = (0..<n).map { values(rank: $0, count: count) }
      for i in 0..<count {
        let plain = (0..<n).reduce(Float(0)) { $0 + inputs[$1][i] }
        #expect(abs(results[0][k][i] - plain) <= 1e-6 * Float(n), "element \(i) of \(count): \(results[0][k][i]) vs \(plain)")
      }
      for rank in 1..<n { #expect(results[rank][k] == results[0][k], "rank \(rank), \(count) elements") }
    }
  }

  /// Frames far larger than the socket buffers: a frame sent ahead of a receive must not need the
  /// peer to hold all of it (it would deadlock until the timeout), for float32 and 16-bit wires.
  @Test(arguments: [2, 3])
  func framesLargerThanTheSocketBuffersGoThrough(ranks n: Int) throws {
    let (ls, addresses) = try listeners(n)
    let boxes = ls.map { Box($0) }
    // Frames of 512 KiB; 4 MiB and 3 MiB make an even and an odd number of slices of n × 512 KiB
    // (with 2 ranks the odd one goes alone, its chunk overwritten while its frame may be queued).
    let counts = [1 << 20, 786_432]
    let outcomes: [Result<[([Float], [Float])], CollectiveError>] = onRanks(n) { rank in
      do {
        let ring = Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, timeout: 10,
                                           socketBufferBytes: 16 << 10))
        var results: [([Float], [Float])] = []
        for count in counts {
          var plain = (0..<count).map { Float(rank) + Float($0 % 8) / 8 }
          try plain.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.allReduce(b) }
          var halves = (0..<count).map { Float(rank) + Float($0 % 8) / 8 }
          try halves.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.allReduce(b, .sum, compression: .bf16) }
          results.append((plain, halves))
        }
        return .success(results)
      } catch { return .failure(error as! CollectiveError) }
    }
    let triangle = Float(n * (n - 1) / 2)
    for outcome in outcomes {
      for (plain, halves) in try outcome.get() {
        #expect(plain.indices.allSatisfy { plain[$0] == triangle + Float(n) * Float($0 % 8) / 8 })
        // Small integers plus eighths are exact in bf16 as well.
        #expect(halves == plain)
      }
    }
  }

  @Test func broadcastAllGatherAndBarrier() throws {
    let n = 4
    let (ls, addresses) = try listeners(n)
    let boxes = ls.map { Box($0) }
    let outcomes: [Result<([Float], [Float]), CollectiveError>] = onRanks(n) { rank in
      do {
        let ring = Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, timeout: 20))
        var data = rank == 2 ? [1, 2, 3, 4, 5] : [Float](repeating: 0, count: 5)
        try data.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.broadcast(b, root: 2) }
        let gathered = try ring.allGather([Float(rank), Float(rank * 10)])
        try ring.barrier()
        return .success((data, gathered))
      } catch { return .failure(error as! CollectiveError) }
    }
    for outcome in outcomes {
      let (data, gathered) = try outcome.get()
      #expect(data == [1, 2, 3, 4, 5])
      #expect(gathered == [0, 0, 1, 10, 2, 20, 3, 30])
    }
  }
}

@Suite struct RingFailureTests {
  @Test func aNeighbourThatNeverConnectsIsNamedWithTheAddressItWasGiven() throws {
    // Rank 1's socket is bound (so rank 0's connect succeeds) but rank 1 never runs.
    let (ls, addresses) = try listeners(2)
    let started = monotonicNow()
    #expect {
      _ = try TCPRing(rank: 0, addresses: addresses, listener: ls[0], timeout: 0.5)
    } throws: { error in
      guard case let .acceptTimedOut(listening, expecting, waited) = error as? CollectiveError else { return false }
      return listening == addresses[0].description && expecting == "rank 1 (\(addresses[1]))" && waited >= 0.3
        && "\(error)".contains("rank 1 (\(addresses[1])) did not connect to \(addresses[0])")
    }
    #expect(monotonicNow() - started < 5)
  }

  /// Rank `victim` forms the ring, then does `sabotage` instead of the all-reduce.
  func run(ranks n: Int, victim: Int, timeout: Double, sabotage: @escaping @Sendable (TCPRing) -> Void) throws -> [Result<Double, CollectiveError>] {
    let (ls, addresses) = try listeners(n)
    let boxes = ls.map { Box($0) }
    return onRanks(n) { rank in
      do {
        let links = try TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, timeout: timeout)
        if rank == victim { sabotage(links); return .success(0) }
        let started = monotonicNow()
        var data = [Float](repeating: 1, count: 100_000)
        do {
          try data.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try Ring(links: links).allReduce(b) }
        } catch {
          return .failure(error as! CollectiveError)
        }
        return .success(monotonicNow() - started)
      } catch { return .failure(error as! CollectiveError) }
    }
  }

  @Test func aKilledPeerIsNamedByItsNeighbourWithinTheDeadline() throws {
    let started = monotonicNow()
    let outcomes = try run(ranks: 4, victim: 2, timeout: 3) { links in links.close() }
    #expect(monotonicNow() - started < 10)
    for (rank, outcome) in outcomes.enumerated() where rank != 2 {
      guard case let .failure(error) = outcome else { Issue.record("rank \(rank) finished without the victim"); continue }
      // The right neighbour of the victim sees it close; the others see their own neighbours fail or time out.
      if rank == 3 { #expect(error == .peerClosed(rank: 2, address: "127.0.0.1:\(portOf(error))") || error.description.contains("rank 2")) }
      #expect(error.description.contains("rank"))
    }
  }

  @Test func aStalledPeerTimesOutOnEveryOtherRank() throws {
    let started = monotonicNow()
    let outcomes = try run(ranks: 3, victim: 1, timeout: 1.5) { links in Thread.sleep(forTimeInterval: 4); links.close() }
    #expect(monotonicNow() - started < 8)
    // The stalled rank's right neighbour (rank 2) waits on rank 1 itself and names it.
    guard case let .failure(.peerTimedOut(late, _, waited)) = outcomes[2] else { Issue.record("rank 2: \(outcomes[2])"); return }
    #expect(late == 1)
    #expect(waited == 1.5)
    // Rank 0 waits on rank 2, which gives up in turn: it sees rank 2 time out or close.
    guard case let .failure(error) = outcomes[0] else { Issue.record("rank 0 finished with a stalled peer"); return }
    #expect(error.description.contains("rank 2"), "\(error)")
  }

  @Test func aPeerSendingGarbageIsReportedAsAMalformedFrame() throws {
    let outcomes = try run(ranks: 3, victim: 0, timeout: 3) { links in
      _ = try? links.right!.sendAll([UInt8](repeating: 0xAB, count: 64), deadline: monotonicNow() + 1)
      Thread.sleep(forTimeInterval: 0.5)
      links.close()
    }
    guard case let .failure(error) = outcomes[1] else { Issue.record("rank 1 accepted garbage"); return }
    guard case let .malformedFrame(rank, _, reason) = error else { Issue.record("rank 1: \(error)"); return }
    #expect(rank == 0)
    #expect(reason.contains("magic"))
  }

  @Test func aFrameLongerThanExpectedIsRefusedBeforeReadingIt() throws {
    let outcomes = try run(ranks: 2, victim: 0, timeout: 3) { links in
      // A well-formed header announcing 2^40 bytes.
      var header = [UInt8]()
      for value: UInt32 in [TCPRing.magic, 0, 0, 256] { withUnsafeBytes(of: value.littleEndian) { header.append(contentsOf: $0) } }
      _ = try? links.right!.sendAll(header, deadline: monotonicNow() + 1)
      Thread.sleep(forTimeInterval: 0.5)
      links.close()
    }
    guard case let .failure(.malformedFrame(rank, _, reason)) = outcomes[1] else { Issue.record("rank 1: \(outcomes[1])"); return }
    #expect(rank == 0)
    #expect(reason.contains("1099511627776 bytes"))
  }

  @Test func nobodyListeningIsAConnectErrorNamingTheAddress() throws {
    let listener = try TCPListener(host: "127.0.0.1")
    let dead = try TCPListener(host: "127.0.0.1")
    let deadAddress = dead.address
    _ = consume dead
    let error = #expect(throws: CollectiveError.self) {
      _ = try TCPRing(rank: 0, addresses: [listener.address, deadAddress], listener: listener, timeout: 0.5)
    }
    #expect(error?.description.contains(deadAddress.description) == true)
    #expect(error?.description.contains("rank 1") == true)
  }
}

func portOf(_ error: CollectiveError) -> String {
  if case let .peerClosed(_, address) = error { return String(address.split(separator: ":").last ?? "") }
  return ""
}

@Suite struct CompressionTests {
  @Test func bfloat16RoundsToNearestEven() {
    #expect(WireCompression.float(bfloat16: WireCompression.bfloat16(1.0)) == 1.0)
    // 1 + 2^-8 is halfway between two bfloat16 values: ties go to even (1.0).
    #expect(WireCompression.float(bfloat16: WireCompression.bfloat16(1 + 1.0 / 256)) == 1.0)
    #expect(WireCompression.float(bfloat16: WireCompression.bfloat16(1 + 3.0 / 256)) == 1 + 4.0 / 256)
    #expect(WireCompression.float(bfloat16: WireCompression.bfloat16(-3e38)).isFinite)
    #expect(WireCompression.float(bfloat16: WireCompression.bfloat16(.nan)).isNaN)
  }

  @Test(arguments: [WireCompression.bf16, .fp16])
  func compressedAllReduceIsCloseAndIdenticalEverywhere(compression: WireCompression) throws {
    let n = 3
    let (ls, addresses) = try listeners(n)
    let boxes = ls.map { Box($0) }
    // With slices of 3 × 2,048 elements: fewer elements than ranks, one slice, an odd number of
    // slices (one goes alone), an even number.
    let counts = [1, 2, 7, 6_000, 15_000, 20_011]
    let outcomes: [Result<[([Float], [Float])], CollectiveError>] = onRanks(n) { rank in
      do {
        let ring = Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, timeout: 20))
        ring.chunkBytes = 8 << 10
        var results: [([Float], [Float])] = []
        for count in counts {
          var sum = (0..<count).map { Float(rank + 1) * (1 + Float($0 % 97) / 97) * 10_000 }
          try sum.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.allReduce(b, .sum, compression: compression) }
          var mean = (0..<count).map { Float(rank + 1) * Float($0 % 13) / 13 }
          try mean.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.allReduce(b, .mean, compression: compression) }
          results.append((sum, mean))
        }
        return .success(results)
      } catch { return .failure(error as! CollectiveError) }
    }
    let results = try outcomes.map { try $0.get() }
    // Each value fits float16 (≤ 60,000 < 65,504), but their sum (up to 120,000) would overflow it
    // without the prescale.
    let tolerance: Float = compression == .bf16 ? 1.0 / 64 : 1.0 / 512
    for (k, count) in counts.enumerated() {
      let (sum, mean) = results[0][k]
      for i in 0..<count {
        let exactSum = 6 * (1 + Float(i % 97) / 97) * 10_000, exactMean = 2 * Float(i % 13) / 13
        #expect(abs(sum[i] - exactSum) <= tolerance * exactSum, "\(count) elements: sum[\(i)] \(sum[i]) vs \(exactSum)")
        #expect(abs(mean[i] - exactMean) <= tolerance * max(exactMean, 1e-3) + 1e-3, "\(count) elements: mean[\(i)]")
      }
      for rank in 1..<n {
        #expect(results[rank][k].0 == sum && results[rank][k].1 == mean, "rank \(rank), \(count) elements")
      }
    }
  }
}

/// A small seeded generator (SplitMix64) for reproducible test inputs.
struct SplitMix {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

@Suite struct RingStrayConnectionTests {
  struct SharedSecret: RingAuthenticator {
    // Not cryptography: enough that a stray without "the secret" cannot answer.
    func proof(role: String, nonce: [UInt8], rank: Int) -> [UInt8] {
      nonce.enumerated().map { $0.element ^ UInt8(truncatingIfNeeded: rank &* 31 &+ role.count &+ $0.offset &+ 0x5A) }
    }
    func verify(_ proof: [UInt8], role: String, nonce: [UInt8], rank: Int) -> Bool { proof == self.proof(role: role, nonce: nonce, rank: rank) }
  }

  @Test(arguments: [false, true])
  func strayConnectionsAtARingPortAreDroppedAndTheRingForms(authenticated: Bool) throws {
    let (ls, addresses) = try listeners(2)
    // Before either rank runs, rank 0's port gets a scanner, garbage, an idle connection and a
    // greeting from "rank 5" — the probes that used to end the job and blame rank 1.
    var strays: [TCPConnection] = []
    for i in 0..<8 {
      let c = try connect(to: addresses[0], rank: -1, deadline: monotonicNow() + 5)
      switch i % 4 {
      case 0: c.close()
      case 1: try c.sendAll([UInt8](repeating: 0xAB, count: 100), deadline: monotonicNow() + 1)
      case 2: strays.append(c)
      default: try c.sendAll(RingFormation.hello(rank: 5, size: 2, jobID: 9, generation: 1) + [UInt8](repeating: 1, count: 32), deadline: monotonicNow() + 1)
      }
      if i % 4 != 2 { strays.append(c) }
    }
    let boxes = ls.map { Box($0) }
    let started = monotonicNow()
    let results = onRanks(2) { rank -> (sum: [Float], refused: Int)? in
      guard let links = try? TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, jobID: 9,
                                     authenticator: authenticated ? SharedSecret() : nil, timeout: 10) else { return nil }
      var data: [Float] = [Float(rank + 1), 10]
      guard (try? data.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try Ring(links: links).allReduce(b) }) != nil else { return nil }
      links.close()
      return (data, links.refusedConnections)
    }
    #expect(results[0]?.sum == [3, 20] && results[1]?.sum == [3, 20])
    // The idle strays do not hold the ring up: it forms long before their 5 s candidate deadline.
    #expect(monotonicNow() - started < 4)
    #expect((results[0]?.refused ?? 0) >= 4, "\(String(describing: results[0]))")
    strays.forEach { $0.close() }
  }

  @Test func aRingStopsWaitingWhenCancelled() throws {
    let (ls, addresses) = try listeners(2)
    let cancellation = Cancellation()
    Thread { Thread.sleep(forTimeInterval: 0.5); cancellation.cancel("stopped by the test") }.start()
    let started = monotonicNow()
    // Rank 1 never runs: forming waits for it with a 30 s timeout, until the cancellation.
    #expect { _ = try TCPRing(rank: 0, addresses: addresses, listener: ls[0], timeout: 30, cancellation: cancellation) }
      throws: { ($0 as? CollectiveError) == .cancelled(reason: "stopped by the test") }
    #expect(monotonicNow() - started < 3)
  }

  @Test func aConnectToAnAddressThatDropsPacketsEndsAtTheDeadline() throws {
    // A listener that never accepts, with its backlog full: the kernel drops further SYNs, as an
    // unreachable host or a firewall would. A blocking connect would wait out the SYN retries (minutes).
    let listener = try TCPListener(host: "127.0.0.1")
    listen(listener.fd, 0)
    var held: [TCPConnection] = []
    var refusedQuickly = false
    let started = monotonicNow()
    for _ in 0..<8 {
      do { held.append(try connect(to: listener.address, rank: 1, deadline: monotonicNow() + 1)) } catch {
        refusedQuickly = true
        #expect("\(error)".contains("rank 1 at \(listener.address)"))
        break
      }
    }
    #expect(refusedQuickly, "the backlog never filled")
    #expect(monotonicNow() - started < 8)
    held.forEach { $0.close() }
  }
}

@Suite struct RingFrameMACTests {
  /// An authenticator whose frame keys derive from the link nonces (a stand-in for the job secret's).
  struct Keyed: RingAuthenticator {
    var secret: UInt8 = 7
    func proof(role: String, nonce: [UInt8], rank: Int) -> [UInt8] { nonce.map { $0 ^ secret ^ UInt8(rank) } }
    func verify(_ proof: [UInt8], role: String, nonce: [UInt8], rank: Int) -> Bool { proof == self.proof(role: role, nonce: nonce, rank: rank) }
    func frameKey(connectorNonce: [UInt8], acceptorChallenge: [UInt8], connectorRank: Int) -> [UInt8]? {
      zip(connectorNonce, acceptorChallenge).map { $0 ^ $1 ^ UInt8(connectorRank) }
    }
  }

  @Test(arguments: [2, 3, 5])
  func authenticatedFramesReduceExactly(ranks n: Int) throws {
    let (ls, addresses) = try listeners(n)
    let boxes = ls.map { Box($0) }
    // Lengths through the small path, one slice, pairs and an odd slice (4 KiB chunks), and the
    // empty frames of broadcast.
    let lengths = [0, 1, 7, 1000, 5000, 70_001]
    let results = onRanks(n) { rank -> Bool in
      guard let links = try? TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, authenticator: Keyed(), timeout: 20),
            links.authenticatesFrames else { return false }
      let ring = Ring(links: links)
      ring.chunkBytes = 4 << 10
      for count in lengths {
        var data = (0..<count).map { Float(rank + 1) + Float($0 % 8) / 8 }
        guard (try? data.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.allReduce(b) }) != nil else { return false }
        let expected = (0..<count).map { Float(n * (n + 1) / 2) + Float(n) * Float($0 % 8) / 8 }
        if data != expected { return false }
      }
      var root = [Float](repeating: Float(rank), count: 3000)
      guard (try? root.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.broadcast(b, root: n - 1) }) != nil else { return false }
      links.close()
      return root.allSatisfy { $0 == Float(n - 1) }
    }
    #expect(results == [Bool](repeating: true, count: n))
  }

  @Test func anAlteredFrameFailsAuthenticationAndNamesTheSender() throws {
    // A relay between rank 0 and rank 1 that flips one payload byte of the first frame.
    let (ls, addresses) = try listeners(2)
    let relay = try TCPListener(host: "127.0.0.1")
    let relayAddress = relay.address
    let relayBox = Box(relay)
    Thread {
      guard let inbound = try? relayBox.value.accept(deadline: monotonicNow() + 10, expecting: "rank 0"),
            let outbound = try? connect(to: addresses[1], rank: 1, deadline: monotonicNow() + 10) else { return }
      var forwarded = 0, flipped = false
      let end = monotonicNow() + 10
      while monotonicNow() < end {
        var fds = [pollfd(fd: inbound.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: outbound.fd, events: Int16(POLLIN), revents: 0)]
        _ = poll(&fds, 2, 100)
        var buffer = [UInt8](repeating: 0, count: 65536)
        if fds[0].revents != 0 {
          let n = recv(inbound.fd, &buffer, buffer.count, 0)
          if n <= 0 { break }
          // Greeting (56) + its answer exchange go through untouched; byte 56 + 32 + 16 + 4 is payload.
          let target = 56 + 32 + 16 + 4
          if !flipped && forwarded + n > target { buffer[target - forwarded] ^= 0x01; flipped = true }
          forwarded += n
          _ = try? outbound.sendAll(Array(buffer[0..<n]), deadline: monotonicNow() + 5)
        }
        if fds[1].revents != 0 {
          let n = recv(outbound.fd, &buffer, buffer.count, 0)
          if n <= 0 { break }
          _ = try? inbound.sendAll(Array(buffer[0..<n]), deadline: monotonicNow() + 5)
        }
      }
      inbound.close(); outbound.close()
    }.start()
    let boxes = ls.map { Box($0) }
    let outcomes = onRanks(2) { rank -> String in
      // Rank 0 reaches rank 1 through the relay.
      let view = rank == 0 ? [addresses[0], relayAddress] : addresses
      do {
        let links = try TCPRing(rank: rank, addresses: view, listener: boxes[rank].value, authenticator: Keyed(), timeout: 5)
        var data = [Float](repeating: 1, count: 64)
        try data.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try Ring(links: links).allReduce(b) }
        return "ok"
      } catch { return "\(error)" }
    }
    #expect(outcomes[1].contains("failed authentication") && outcomes[1].contains("rank 0"), "\(outcomes)")
  }
}
