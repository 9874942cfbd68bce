#if canImport(Glibc)
import Glibc
#endif
import CLI
import Cluster
import Collective
import Foundation

/// `amoeba bench allreduce --ranks N --sizes 64K,1M,16M,64M,256M [--repeats R] [--chunk 512K] [--json]`: starts N
/// local processes on loopback that form a ring, and prints per size the median time, algbw,
/// busbw (= algbw·2(n−1)/n, nccl-tests' definition) and the count of wrong elements (each rank
/// contributes rank + (i mod 8)/8, so the sum is exact).
///
/// Across hosts: run `amoeba bench allreduce --addresses H0:P0,H1:P1,… --rank R` on each host
/// (rank R binds the R-th address, or `--bind H:P`); rank 0 prints the table.
///
/// With `--step_compute_ms C` it measures steps instead (`OverlapStandIn`): the DAWNBench network's
/// gradients in buckets behind a compute stand-in of C ms, and the exposed communication per step
/// beside what `OverlapModel` predicts for `--link_gbps`.
struct AllReduceBenchmark {
  var ranks: Int
  var sizes: [Int]
  var repeats: Int
  var json: Bool
  var compression: WireCompression
  /// Bytes of each rank's chunk of a slice (`Ring.chunkBytes`); nil keeps the ring's default.
  var chunkBytes: Int?
  /// Authenticate every frame (Poly1305), as a job with `--ring_mac` does.
  var mac: Bool
  /// Set in the child processes.
  var rank: Int?
  var rendezvous: String
  /// Every rank's listening address, when the ranks run on other hosts (`--addresses`).
  var addresses: [SocketAddress]
  /// Where this rank binds when that differs from the address the others connect to
  /// (`--bind`: behind NAT, a container's port mapping, or a relay).
  var bind: SocketAddress?
  /// The step mode's settings; nil: plain all-reduces of `sizes`.
  var standIn: OverlapStandIn?

  init(flags: Flags) throws {
    var flags = flags
    let ranksGiven = flags.has("ranks")
    ranks = try flags.int("ranks", default: 2)
    let sizeText = flags.string("sizes", default: "64K,1M,16M,64M,256M")
    sizes = try sizeText.split(separator: ",").map { try AllReduceBenchmark.parseBytes(String($0)) }
    repeats = try flags.int("repeats", default: 10)
    json = try flags.bool("json")
    let compressionText = flags.string("compression", default: "none")
    guard let compression = WireCompression(rawValue: compressionText) else {
      throw UsageError("--compression must be none, bf16 or fp16, got '\(compressionText)'")
    }
    self.compression = compression
    chunkBytes = flags.has("chunk") ? try AllReduceBenchmark.parseBytes(flags.string("chunk", default: "")) : nil
    if let chunkBytes, chunkBytes < 4 { throw UsageError("--chunk must be at least 4 bytes, got \(chunkBytes)") }
    rank = flags.has("rank") ? try flags.int("rank", default: 0) : nil
    rendezvous = flags.string("rendezvous", default: "")
    let addressText = flags.string("addresses", default: "")
    let bindText = flags.string("bind", default: "")
    mac = try flags.bool("mac")
    if flags.has("step_compute_ms") {
      standIn = OverlapStandIn(computeSeconds: try flags.double("step_compute_ms", default: 0) / 1000,
                               backwardShare: try flags.double("backward_share", default: 2.0 / 3),
                               bucketBytes: Int(try flags.double("bucket_cap_mb", default: 25) * Double(1 << 20)),
                               steps: try flags.int("steps", default: 8), linkGbps: try flags.double("link_gbps", default: 0),
                               latencySeconds: try flags.double("latency_us", default: 50) / 1e6)
      guard standIn!.computeSeconds >= 0, standIn!.steps >= 2, standIn!.bucketBytes > 0,
            (0...1).contains(standIn!.backwardShare) else {
        throw UsageError("--step_compute_ms ≥ 0, --steps ≥ 2, --bucket_cap_mb > 0 and --backward_share in [0, 1]")
      }
    }
    try flags.finish()
    bind = bindText.isEmpty ? nil : try SocketAddress(parsing: bindText)
    addresses = try addressText.split(separator: ",").map { try SocketAddress(parsing: String($0)) }
    if bind != nil && addresses.isEmpty { throw UsageError("--bind is for --addresses: the address this rank binds instead of its listed one") }
    if !addresses.isEmpty {
      guard let rank, addresses.indices.contains(rank) else {
        throw UsageError("--addresses needs --rank R, this host's position in the list (0...\(addresses.count - 1))")
      }
      if let port = addresses.first(where: { $0.port == 0 }) { throw UsageError("--addresses: \(port) needs a port the others can connect to") }
      if ranksGiven && ranks != addresses.count { throw UsageError("--ranks \(ranks) but --addresses lists \(addresses.count); give one or the other") }
      ranks = addresses.count
    } else if rank != nil && rendezvous.isEmpty {
      throw UsageError("--rank is for --addresses (a rank on each host); without it, give only --ranks N")
    }
    guard ranks >= 1, ranks <= 64 else { throw UsageError("--ranks must be in 1...64") }
  }

  static func parseBytes(_ text: String) throws -> Int {
    let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
    if let unit = text.last, let scale = units[unit], let value = Int(text.dropLast()) { return value * scale }
    guard let value = Int(text) else { throw UsageError("--sizes takes byte counts like 64K,1M,256M, got '\(text)'") }
    return value
  }

  func run() throws {
    if let rank { try child(rank: rank); return }
    let directory = NSTemporaryDirectory() + "amoeba-allreduce-\(getpid())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var children: [pid_t] = []
    for r in 0..<ranks {
      let args = [executable, "bench", "allreduce", "--ranks", String(ranks), "--sizes", sizes.map(String.init).joined(separator: ","),
                  "--repeats", String(repeats), "--compression", compression.rawValue, "--rank", String(r), "--rendezvous", directory]
      var extra: [String] = json ? ["--json"] : []
      if let chunkBytes { extra += ["--chunk", String(chunkBytes)] }
      if mac { extra.append("--mac") }
      if let standIn { extra += standIn.flags }
      var pid = pid_t()
      let cArgs = (args + extra).map { strdup($0) } + [nil]
      defer { cArgs.forEach { free($0) } }
      let rc = posix_spawn(&pid, executable, nil, nil, cArgs, environ)
      guard rc == 0 else { throw BenchmarkError("could not start rank \(r): \(String(cString: strerror(rc)))") }
      children.append(pid)
    }
    var failed = false
    for (r, pid) in children.enumerated() {
      var status: Int32 = 0
      waitpid(pid, &status, 0)
      if status != 0 { printError("rank \(r) exited with status \(status)"); failed = true }
    }
    if failed { throw BenchmarkError("allreduce benchmark failed (see the ranks' errors above)") }
  }

  /// One rank: bind, meet the others (through the rendezvous directory, or at the given
  /// addresses), run.
  func child(rank: Int) throws {
    let ring: Ring
    if addresses.isEmpty {
      ring = try localRing(rank: rank)
    } else {
      let local = bind ?? addresses[rank]
      let listener = try TCPListener(host: local.host, port: local.port)
      ring = Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: listener, authenticator: authenticator, timeout: 120))
    }
    if let standIn {
      try standIn.measure(ring, rank: rank, compression: compression, where: addresses.isEmpty ? "on loopback" : "at " + addresses.map(\.description).joined(separator: " "))
    } else {
      try measure(ring, rank: rank)
    }
  }

  /// Binds loopback, publishes the port in the rendezvous directory and reads everyone's.
  func localRing(rank: Int) throws -> Ring {
    let listener = try TCPListener(host: "127.0.0.1")
    try String(listener.address.port).write(toFile: "\(rendezvous)/\(rank).port.tmp", atomically: false, encoding: .utf8)
    rename("\(rendezvous)/\(rank).port.tmp", "\(rendezvous)/\(rank).port")
    let deadline = monotonicNow() + 30
    var addresses: [SocketAddress] = []
    while addresses.count < ranks {
      addresses = (0..<ranks).compactMap { r in
        (try? String(contentsOfFile: "\(rendezvous)/\(r).port", encoding: .utf8)).flatMap(Int.init).map { SocketAddress(host: "127.0.0.1", port: $0) }
      }
      if addresses.count < ranks {
        guard monotonicNow() < deadline else { throw BenchmarkError("rank \(rank): the other ranks did not publish their ports within 30 s") }
        usleep(10_000)
      }
    }
    return Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: listener, authenticator: authenticator, timeout: 60))
  }

  /// With --mac the ranks prove a fixed benchmark token and tag every frame, as a job with --ring_mac does.
  var authenticator: RingAuthenticator? { mac ? TokenRingAuthenticator(token: "amoeba-bench-allreduce", configHash: "bench", macFrames: true) : nil }

  func measure(_ ring: Ring, rank: Int) throws {
    if let chunkBytes { ring.chunkBytes = chunkBytes }
    if rank == 0 && !json {
      let where_ = addresses.isEmpty ? "on loopback" : "at " + addresses.map(\.description).joined(separator: " ")
      print("ring all-reduce, float32 sum, \(ranks) ranks \(where_), wire \(compression == .none ? "float32" : compression.rawValue)\(mac ? " with a Poly1305 tag per frame" : ""), slices of \(ranks) × \(ring.chunkBytes >> 10) KiB; \(machineDescription())")
      print(pad("size", 12) + pad("time ms", 12) + pad("algbw GB/s", 12) + pad("busbw GB/s", 12) + "#wrong")
    }
    var rows: [String] = []
    for bytes in sizes {
      let count = bytes / 4
      let data = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(count, 1))
      defer { data.deallocate() }
      var times: [Double] = []
      var wrong = 0
      for iteration in 0...repeats {
        for i in 0..<count { data[i] = Float(rank) + Float(i % 8) / 8 }
        try ring.barrier()
        let start = monotonicNow()
        try ring.allReduce(UnsafeMutableBufferPointer(rebasing: data[0..<count]), .sum, compression: compression)
        if iteration > 0 { times.append(monotonicNow() - start) }
        let triangle = Float(ranks * (ranks - 1) / 2)
        for i in 0..<count where data[i] != triangle + Float(ranks) * Float(i % 8) / 8 { wrong += 1 }
      }
      var total = [Float(wrong)]
      try total.withUnsafeMutableBufferPointer { (b) throws(CollectiveError) in try ring.allReduce(b) }
      times.sort()
      let median = times[times.count / 2]
      let algbw = Double(bytes) / median / 1e9, busbw = algbw * 2 * Double(ranks - 1) / Double(ranks)
      if rank == 0 {
        if json {
          rows.append("{\"bytes\":\(bytes),\"ranks\":\(ranks),\"median_ms\":\(round3(median * 1e3)),\"algbw_gbps\":\(round3(algbw)),\"busbw_gbps\":\(round3(busbw)),\"wrong\":\(Int(total[0]))}")
        } else {
          print(pad(String(bytes), 12) + pad(String(round3(median * 1e3)), 12) + pad(String(round3(algbw)), 12) + pad(String(round3(busbw)), 12) + String(Int(total[0])))
        }
      }
    }
    if rank == 0 && json { print("[\n  " + rows.joined(separator: ",\n  ") + "\n]") }
  }
}
