import Testing
import Foundation
import Synchronization
import Checksums
import CLI
import Collective
import Tensor
import Train
@testable import Cluster

/// The probes an operator tried against the coordinator and the workers: strays, probes, garbage,
/// slow starts, hung peers and forged messages. Each must leave the job running or end it with a
/// message that names the culprit, within its deadline.
@Suite struct HardeningTests {
  let job = JobTests()

  @Test func strayConnectionsDuringAdmissionNeverStopTheJob() throws {
    let (coordinator, lines) = try job.coordinator(token: "a-long-enough-token", workers: 2)
    let box = Box(coordinator)
    let waitCoordinator = job.start { box.value.run() }
    let address = SocketAddress(host: "127.0.0.1", port: coordinator.port)
    var idle: [TCPConnection] = []
    for i in 0..<60 {
      let c = try connect(to: address, rank: -1, deadline: monotonicNow() + 5)
      switch i % 4 {
      case 0: try? c.sendAll([0xE2, 0x0D, 0xD9, 0xCD] + (try SecureRandom.bytes(60)), deadline: monotonicNow() + 1)  // "3453554146 bytes"
      case 1: break  // connect, then close: a port scanner, a TCP health probe
      case 2: try? c.sendAll(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8), deadline: monotonicNow() + 1)
      default: try? c.sendAll(Handshake.hello(magic: Handshake.workerMagic, nonce: [UInt8](repeating: 7, count: 32), version: 3), deadline: monotonicNow() + 1)
      }
      if i < 5 { idle.append(c) } else { c.close() }
    }
    let intruder = Box(job.worker(port: coordinator.port, token: "not-the-token"))
    #expect(job.start { intruder.value.run() }() == 1)
    let workers = (0..<2).map { _ in Box(job.worker(port: coordinator.port, token: "a-long-enough-token")) }
    let waits = workers.map { w in job.start { w.value.run() } }
    #expect(waits.map { $0() } == [0, 0])
    #expect(waitCoordinator() == 0)
    let log = lines.all
    #expect(log.contains { $0.hasPrefix("step 5/5") })
    #expect(log.contains { $0.contains("refused a connection from 127.0.0.1:") && $0.contains("wrong job token") })
    #expect(log.contains { $0.contains("not an amoeba worker") })
    #expect(log.contains { $0.contains("protocol version 3") })
    // 60 strays and an intruder cost a handful of lines, not one each.
    #expect(log.filter { $0.contains("refused a connection") || $0.contains("closed a connection") }.count < 20, "\(log)")
    idle.forEach { $0.close() }
  }

  @Test func aWorkerOfAnotherVersionIsToldTheCoordinatorsVersion() throws {
    let (coordinator, lines) = try job.coordinator(token: "tk", workers: 1)
    let box = Box(coordinator)
    let waitCoordinator = job.start { box.value.run() }
    let c = try connect(to: SocketAddress(host: "127.0.0.1", port: coordinator.port), rank: -1, deadline: monotonicNow() + 5)
    try c.sendAll(Handshake.hello(magic: Handshake.workerMagic, nonce: try SecureRandom.bytes(32), version: 3), deadline: monotonicNow() + 5)
    let hello = Handshake.parseHello(try c.receive(count: Handshake.helloBytes, deadline: monotonicNow() + 5), magic: Handshake.coordinatorMagic)
    #expect(hello?.version == Handshake.protocolVersion)
    let real = Box(job.worker(port: coordinator.port, token: "tk"))
    #expect(job.start { real.value.run() }() == 0)
    #expect(waitCoordinator() == 0)
    #expect(lines.all.contains { $0.contains("protocol version 3, this coordinator \(Handshake.protocolVersion)") })
  }

  @Test func aSlowStartBeyondTheHeartbeatTimeoutIsNotADeadWorker() throws {
    // Heartbeats come from their own thread, so 3 s of "setup" against a 1 s timeout is fine.
    let (coordinator, _) = try job.coordinator(token: "tk", workers: 1, heartbeat: 1)
    let box = Box(coordinator)
    let waitCoordinator = job.start { box.value.run() }
    let link = try CoordinatorLink.join(SocketAddress(host: "127.0.0.1", port: coordinator.port), secret: JobSecret(token: "tk"),
                                        ringAddress: "127.0.0.1:1", host: "slow", deadline: monotonicNow() + 10)
    _ = try link.awaitAssignment(timeout: 10)
    link.listen(silence: 1, exitAfter: nil, log: { _ in })
    Thread.sleep(forTimeInterval: 3)
    #expect(link.stopReason == nil)
    try link.send(.done(rank: 0))
    try link.awaitFinish(timeout: 10)
    link.close()
    #expect(waitCoordinator() == 0)
  }

  @Test func aWorkerThatFinishesFirstStillHearsTheCoordinatorUntilTheEnd() throws {
    // One worker is done 3 s before the other, against a 1 s heartbeat timeout: the coordinator
    // must keep beating to it, or it would take the silence for a dead coordinator and fail.
    let (coordinator, _) = try job.coordinator(token: "tk", workers: 2, heartbeat: 1)
    let box = Box(coordinator)
    let waitCoordinator = job.start { box.value.run() }
    let address = SocketAddress(host: "127.0.0.1", port: coordinator.port)
    let links = try (0..<2).map { i in
      try CoordinatorLink.join(address, secret: JobSecret(token: "tk"), ringAddress: "127.0.0.1:\(i + 1)", host: "w\(i)", deadline: monotonicNow() + 10)
    }
    let ranks = try links.map { link -> Int in
      let assignment = try link.awaitAssignment(timeout: 10)
      link.listen(silence: 1, exitAfter: nil, log: { _ in })
      return assignment.rank
    }
    try links[0].send(.done(rank: ranks[0]))
    Thread.sleep(forTimeInterval: 3)
    #expect(links[0].stopReason == nil, "\(links[0].stopReason ?? "")")
    try links[1].send(.done(rank: ranks[1]))
    for link in links { try link.awaitFinish(timeout: 10); link.close() }
    #expect(waitCoordinator() == 0)
  }

  @Test func aHungPeerIsFoundAndTheStopReachesAWorkerWaitingOnTheRing() throws {
    let (coordinator, lines) = try job.coordinator(token: "tk", workers: 2, heartbeat: 1.5)
    let box = Box(coordinator)
    let waitCoordinator = job.start { box.value.run() }
    let messages = LineLog()
    let real = Box(job.worker(port: coordinator.port, token: "tk"))
    real.value.log = { messages.append($0) }
    let started = monotonicNow()
    let waitReal = job.start { real.value.run() }
    // The other worker joins without a heartbeat thread, forms the ring, then hangs (as if SIGSTOPped):
    // the real worker is left waiting in rank 0's broadcast with a 20 s ring timeout.
    let listener = try TCPListener(host: "127.0.0.1")
    let channel = try rawJoin(port: coordinator.port, token: "tk", ringAddress: listener.address.description, host: "hung")
    guard case let .assignment(assignment) = try channel.receive(timeout: 10) else {
      Issue.record("no assignment"); return
    }
    let (rank, addresses, config, jobID) = (assignment.rank, assignment.ringAddresses, assignment.config, assignment.jobID)
    // Under load the coordinator may already have declared it dead while the ring forms; the real
    // worker is then stopped in the formation's wait instead of the broadcast's — either is the point.
    let links = try? TCPRing(rank: rank, addresses: addresses.map { try SocketAddress(parsing: $0) }, listener: listener,
                            jobID: UInt64(jobID) ?? 0,
                            authenticator: JobSecret(token: "tk").ringAuthenticator(configHash: JobSecret.configHash(config)), timeout: 20)
    #expect(waitReal() == 1)
    #expect(monotonicNow() - started < 8, "the stop took \(monotonicNow() - started) s")
    #expect(waitCoordinator() == 1)
    #expect(lines.all.contains { $0.contains("rank \(rank) at \(listener.address) (host hung) sent nothing for 1.5 s") }, "\(lines.all)")
    #expect(messages.all.contains { $0.contains("error: stopped by the coordinator at 127.0.0.1:\(coordinator.port)") }, "\(messages.all)")
    links?.close()
  }

  @Test func theMetricsOfARealJobPassPromtool() throws {
    let (coordinator, _) = try job.coordinator(token: "metrics-token", workers: 2, metrics: true)
    let box = Box(coordinator)
    let waitCoordinator = job.start { box.value.run() }
    let workers = (0..<2).map { _ in Box(job.worker(port: coordinator.port, token: "metrics-token")) }
    #expect(workers.map { w in job.start { w.value.run() } }.map { $0() } == [0, 0])
    #expect(waitCoordinator() == 0)
    let exposition = coordinator.exporter!.exposition()
    #expect(exposition.contains("amoeba_global_step 5.0"))
    #expect(exposition.contains("amoeba_devices{device=\"cpu\",rank=\"1\"} 1.0") || exposition.contains("amoeba_devices{rank=\"1\",device=\"cpu\"} 1.0"), "\(exposition)")
    let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let promtool else {
      print("skipped: promtool is not installed (.ci/run installs Debian's prometheus package); the exposition was not linted")
      return
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: promtool)
    process.arguments = ["check", "metrics"]
    let input = Pipe(), output = Pipe()
    process.standardInput = input; process.standardOutput = output; process.standardError = output
    try process.run()
    input.fileHandleForWriting.write(Data(exposition.utf8))
    try input.fileHandleForWriting.close()
    process.waitUntilExit()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    #expect(process.terminationStatus == 0, "promtool check metrics: \(text)\n\(exposition)")
  }

  /// Two ends of one authenticated connection on loopback.
  func channelPair() throws -> (ControlChannel, ControlChannel, TCPConnection, [UInt8]) {
    let listener = try TCPListener(host: "127.0.0.1")
    let a = try connect(to: listener.address, rank: -1, deadline: monotonicNow() + 5)
    let b = try listener.accept(deadline: monotonicNow() + 5, expecting: "the test client")
    let k1 = try SecureRandom.bytes(32), k2 = try SecureRandom.bytes(32)
    return (ControlChannel(a, peerName: "the coordinator", sendKey: k1, receiveKey: k2),
            ControlChannel(b, peerName: "the worker", sendKey: k2, receiveKey: k1), a, k1)
  }

  @Test func forgedReplayedAndOversizedControlFramesAreRefusedUnparsed() throws {
    var (sender, receiver, raw, key) = try channelPair()
    try sender.send(.heartbeat(rank: 3))
    #expect(try receiver.receive(timeout: 5) == .heartbeat(rank: 3))
    // A relay injects a stop with a made-up MAC.
    let body = Array(try JSONEncoder().encode(ControlMessage.stop(reason: "injected")))
    try raw.sendAll(ControlChannel.header(length: body.count, sequence: 1) + body + [UInt8](repeating: 0, count: 32), deadline: monotonicNow() + 5)
    #expect { _ = try receiver.receive(timeout: 5) } throws: { "\($0)".contains("failed authentication") }

    // A replay: a valid frame with a sequence number already used.
    (sender, receiver, raw, key) = try channelPair()
    try sender.send(.heartbeat(rank: 0))
    _ = try receiver.receive(timeout: 5)
    // A second sender with the same key starts again at sequence 0.
    let replayer = ControlChannel(raw, peerName: "x", sendKey: key, receiveKey: key)
    try replayer.send(.stop(reason: "replayed"))
    #expect { _ = try receiver.receive(timeout: 5) } throws: { "\($0)".contains("sequence 0, expected 1") }

    // A length beyond the limit is refused before anything is read or allocated.
    (sender, receiver, raw, key) = try channelPair()
    try raw.sendAll([0xE2, 0x0D, 0xD9, 0xCD, 0, 0, 0, 0, 0, 0, 0, 0], deadline: monotonicNow() + 5)
    #expect { _ = try receiver.receive(timeout: 5) } throws: { "\($0)".contains("3453554146 bytes") }
    _ = (sender, key)
  }
}

/// Restarts without a shared disk, crashes mid-save, and ranks that drift apart.
@Suite struct ResumeTests {
  let job = JobTests()

  /// One job of `steps` global steps (batch 8 of 80 images: 10 steps an epoch) whose two workers
  /// keep checkpoints in `directories`; returns the coordinator's and the workers' lines.
  func runJob(epochs: String, directories: [String]) throws -> (status: [Int32], coordinator: [String], workers: [String]) {
    let extra = ["num_epochs": epochs, "iterations_per_loop": "2", "keep_checkpoint_max": "2", "mode": "train"]
    let (coordinator, lines) = try job.coordinator(token: "resume-token", workers: 2, extra: extra, totalSteps: Int(Double(epochs)! * 10))
    let box = Box(coordinator)
    let waitCoordinator = job.start { box.value.run() }
    let messages = LineLog()
    let workers = directories.map { directory in
      var options = job.worker(port: coordinator.port, token: "resume-token").options
      options.modelDir = directory
      let w = Box(Worker(options: options))
      w.value.log = { messages.append($0) }
      return w
    }
    let waits = workers.map { w in job.start { w.value.run() } }
    let status = waits.map { $0() } + [waitCoordinator()]
    return (status, lines.all, messages.all)
  }

  func checkpoints(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix("model.ckpt-") }.sorted()
  }

  @Test func aJobResumesFromWhicheverWorkerHoldsTheCheckpoint() throws {
    let root = NSTemporaryDirectory() + "amoeba-resume-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    defer { try? FileManager.default.removeItem(atPath: root) }
    let directories = [root + "/host-a", root + "/host-b"]
    let first = try runJob(epochs: "0.5", directories: directories)
    #expect(first.status == [0, 0, 0], "\(first.coordinator) \(first.workers)")
    // Rank 0 saved at steps 2, 4 and 5 and kept the newest two (--keep_checkpoint_max=2); the
    // other worker's directory stays empty.
    let holder = directories.first { !checkpoints($0).isEmpty }!
    #expect(checkpoints(holder) == ["model.ckpt-4.json", "model.ckpt-4.safetensors", "model.ckpt-5.json", "model.ckpt-5.safetensors"])
    #expect(directories.filter { checkpoints($0).isEmpty }.count == 1)
    // A crash mid-save: a tensor file without its sidecar and a temporary.
    _ = FileManager.default.createFile(atPath: holder + "/model.ckpt-7.safetensors", contents: Data([1, 2, 3]))
    _ = FileManager.default.createFile(atPath: holder + "/model.ckpt-7.json.tmp-4242", contents: Data([4]))

    let second = try runJob(epochs: "1", directories: directories)
    #expect(second.status == [0, 0, 0], "\(second.coordinator) \(second.workers)")
    #expect(second.workers.contains { $0.contains("removed what an interrupted save left") && $0.contains("model.ckpt-7.safetensors") })
    #expect(second.coordinator.contains { $0.contains("every worker starts at step 5 (restored from rank") }, "\(second.coordinator)")
    #expect(second.workers.contains { $0.contains("resumed from \(holder)/model.ckpt-5.safetensors at step 5") })
    #expect(second.workers.contains { $0.contains("resumed at step 5 from rank") })
    #expect(second.coordinator.contains { $0.hasPrefix("step 10/10") }, "\(second.coordinator)")
    #expect(!checkpoints(holder).contains("model.ckpt-7.safetensors"))
  }

  @Test func parametersThatDriftApartAreDetectedAndTheRankNamed() throws {
    var flags = try Flags(["--num_cells=3", "--reduction_size=8", "--image_size=24", "--use_aux_head=false"])
    let network = try flags.networkConfig()
    let (ls, addresses) = try (0..<2).reduce(into: ([TCPListener](), [SocketAddress]())) { acc, _ in
      let l = try TCPListener(host: "127.0.0.1"); acc.0.append(l); acc.1.append(l.address)
    }
    let boxes = ls.map { Box($0) }
    let errors = Mutex<[Int: String]>([:])
    let done = DispatchSemaphore(value: 0)
    for rank in 0..<2 {
      Thread {
        do {
          let trainer = try Trainer(network: network, training: TrainingConfig(), batchSize: 2, context: KernelContext(threads: 1), seed: 0)
          if rank == 1 { trainer.parameterPointer(3)[0] += 0.5 }
          let ring = Ring(links: try TCPRing(rank: rank, addresses: addresses, listener: boxes[rank].value, timeout: 10))
          try Worker(options: .init(coordinator: addresses[0], token: "t")).compareChecksums(trainer, ring: ring)
          errors.withLock { $0[rank] = "no error" }
        } catch {
          errors.withLock { $0[rank] = "\(error)" }
        }
        done.signal()
      }.start()
    }
    done.wait(); done.wait()
    for rank in 0..<2 {
      let text = errors.withLock { $0[rank] } ?? ""
      #expect(text.contains("parameters diverged at step 0: ranks 1 differ from rank 0"), "\(text)")
    }
  }
}
