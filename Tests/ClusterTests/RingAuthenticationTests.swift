import Testing
import Foundation
import Synchronization
import Collective
@testable import Cluster

@Suite struct RingAuthenticationTests {
  /// Forms a 3-rank ring where rank `odd` (if any) uses `oddToken`; returns each rank's error text, or nil.
  func formRing(oddRank: Int?, oddToken: String) throws -> [String?] {
    let listeners = try (0..<3).map { _ in Box(try TCPListener(host: "127.0.0.1")) }
    let addresses = listeners.map(\.value.address)
    let results = Mutex<[Int: String?]>([:])
    let done = DispatchSemaphore(value: 0)
    for rank in 0..<3 {
      Thread {
        let token = rank == oddRank ? oddToken : "job-token"
        do {
          let links = try TCPRing(rank: rank, addresses: addresses, listener: listeners[rank].value,
                                  authenticator: TokenRingAuthenticator(token: token, configHash: "abc"), timeout: 3)
          var data: [Float] = [Float(rank)]
          try data.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try Ring(links: links).allReduce(b) }
          links.close()
          results.withLock { $0[rank] = data == [3] ? String?.none : "wrong sum \(data)" }
        } catch {
          results.withLock { $0[rank] = "\(error)" }
        }
        done.signal()
      }.start()
    }
    for _ in 0..<3 { done.wait() }
    return results.withLock { r in (0..<3).map { r[$0] ?? "no result" } }
  }

  @Test func neighboursWithTheTokenFormTheRing() throws {
    #expect(try formRing(oddRank: nil, oddToken: "") == [nil, nil, nil])
  }

  @Test func aNeighbourWithoutTheTokenIsRefusedByName() throws {
    let results = try formRing(oddRank: 1, oddToken: "stolen")
    // Rank 0 refuses rank 1's proof by rank — or, when rank 1 failed on rank 2's proof before it
    // answered, sees it close or stay silent (in a real worker the process exits; here its listener
    // lives on). Rank 2 loses both neighbours and names one of them. Nobody proceeds.
    #expect(results[0]?.contains("rank 1 at") == true, "\(String(describing: results[0]))")
    #expect(results[1]?.contains("rank 2") == true && results[1]?.contains("could not prove the job token") == true)
    #expect(results[2]?.contains("rank 1") == true || results[2]?.contains("rank 0 at") == true, "\(String(describing: results[2]))")
  }
}
