import Testing
import Foundation
import Synchronization
import Checksums
import Collective
import CLI
import Model
@testable import Train
@testable import Cluster

/// Coordinator and workers in one process, on loopback threads: the same code paths as the
/// executables, without depending on them being built.
@Suite struct JobTests {
  static let config: [String: String] = [
    "num_cells": "3", "reduction_size": "8", "image_size": "24", "use_aux_head": "false", "train_batch_size": "8",
    "num_train_images": "80", "num_eval_images": "40", "eval_batch_size": "20", "num_epochs": "0.5", "lr": "0.04",
    "use_data": "builtin", "num_label_classes": "1001",
  ]

  func coordinator(token: String, workers: Int, heartbeat: Double = 60, extra: [String: String] = [:],
                   totalSteps: Int = 5, metrics: Bool = false) throws -> (Coordinator, LineLog) {
    var options = Coordinator.Options(token: token, config: JobTests.config.merging(extra) { _, b in b }, totalSteps: totalSteps,
                                      stepsPerEpoch: 10, globalBatch: 8)
    options.host = "127.0.0.1"; options.workers = workers; options.logEvery = 1
    options.joinTimeout = 20; options.heartbeatTimeout = heartbeat
    if metrics { options.metricsPort = 0 }
    let coordinator = try Coordinator(options: options)
    let lines = LineLog()
    coordinator.log = { line in lines.append(line) }
    return (coordinator, lines)
  }

  func worker(port: Int, token: String) -> Worker {
    var options = Worker.Options(coordinator: SocketAddress(host: "127.0.0.1", port: port), token: token)
    options.threads = 1; options.connectTimeout = 20; options.ringTimeout = 20
    let worker = Worker(options: options)
    worker.log = { _ in }
    return worker
  }

  func start(_ body: @escaping @Sendable () -> Int32) -> () -> Int32 {
    let result = Mutex<Int32>(-1)
    let done = DispatchSemaphore(value: 0)
    Thread { result.withLock { $0 = body() }; done.signal() }.start()
    return { done.wait(); return result.withLock { $0 } }
  }

  @Test func twoWorkersTrainAndTheCoordinatorReportsEveryStep() throws {
    let (coordinator, lines) = try coordinator(token: "t0ken", workers: 2)
    let coordinatorBox = Box(coordinator)
    let waitCoordinator = start { coordinatorBox.value.run() }
    let workers = (0..<2).map { _ in Box(worker(port: coordinator.port, token: "t0ken")) }
    let waits = workers.map { w in start { w.value.run() } }
    #expect(waits.map { $0() } == [0, 0])
    #expect(waitCoordinator() == 0)
    let log = lines.all
    #expect(log.contains { $0.hasPrefix("step 5/5") && $0.contains("slowest rank") })
    #expect(log.contains { $0.hasPrefix("eval step 5:") && $0.contains("over 40 validation images from 2 workers") })
  }

  @Test func communicationFlagsReachEveryWorker() throws {
    // Tiny buckets, bf16 on the wire and 4 KiB slices: the job still trains to the end, and every
    // worker reports the settings the coordinator sent.
    let extra = ["bucket_cap_mb": "0.01", "gradient_compression": "bf16", "allreduce_chunk_kb": "4"]
    let (coordinator, lines) = try coordinator(token: "c0mm", workers: 2, extra: extra)
    let coordinatorBox = Box(coordinator)
    let waitCoordinator = start { coordinatorBox.value.run() }
    let messages = LineLog()
    let workers = (0..<2).map { _ in Box(worker(port: coordinator.port, token: "c0mm")) }
    for w in workers { w.value.log = { line in messages.append(line) } }
    let waits = workers.map { w in start { w.value.run() } }
    #expect(waits.map { $0() } == [0, 0])
    #expect(waitCoordinator() == 0)
    #expect(lines.all.contains { $0.hasPrefix("step 5/5") })
    let reports = messages.all.filter { $0.contains("gradients all-reduced in") }
    #expect(reports.count == 2, "\(messages.all)")
    for report in reports {
      #expect(report.contains("(cap 0.01 MiB), bf16 on the wire, ring slices of 2 × 4 KiB"), "\(report)")
      // With the default 25 MiB cap this network's gradients fit one bucket.
      let count = report.split(separator: " ").drop { $0 != "in" }.dropFirst().first.flatMap { Int($0) } ?? 0
      #expect(count > 1, "\(report)")
    }
  }

  @Test func badCommunicationFlagsAreRefusedByName() throws {
    for (flag, message) in [("--gradient_compression=fp8", "--gradient_compression must be none, bf16 or fp16"),
                            ("--bucket_cap_mb=0", "--bucket_cap_mb must be in"),
                            ("--allreduce_chunk_kb=1", "--allreduce_chunk_kb must be in")] {
      var flags = try Flags([flag])
      #expect { _ = try flags.communicationOptions() } throws: { ($0 as? UsageError)?.message.hasPrefix(message) == true }
    }
    var defaults = try Flags([])
    let options = try defaults.communicationOptions()
    #expect(options.bucketBytes == 25 << 20 && options.compression == .none && options.chunkBytes == 512 << 10)
  }

  /// `--help` lists what the command reads, with defaults, instead of "unknown flag --help".
  @Test func helpListsEveryFlagTheCommandReads() throws {
    var flags = try Flags(["--num_cells=6", "--help"])
    let network = try flags.networkConfig()
    let training = try flags.trainingConfig()
    #expect(network.numCells == NetworkConfig().numCells, "help mode reads defaults")
    #expect(training.lr == TrainingConfig().lr)
    do {
      try flags.finish()
      Issue.record("finish() did not ask for help")
    } catch let help as HelpRequested {
      let names = help.listing.map(\.name)
      #expect(names.contains("num_cells") && names.contains("train_batch_size") && names.contains("lr"))
      #expect(help.description.contains("--num_cells") && help.description.contains("default 12"))
      // Each with a line, under the reference's groups, in their order.
      #expect(names.filter { FlagHelp.line($0, command: "train") == nil }.isEmpty)
      let text = help.rendered(command: "train")
      #expect(text.contains("normal cells over the three stacks"))
      let model = text.range(of: "Model (the reference's):"), training = text.range(of: "Training (the reference's):")
      #expect(model != nil && training != nil && model!.lowerBound < training!.lowerBound)
    }
  }

  @Test func aWorkerWithTheWrongTokenIsRefusedOnBothSides() throws {
    let (coordinator, lines) = try coordinator(token: "right", workers: 1)
    let coordinatorBox = Box(coordinator)
    let waitCoordinator = start { coordinatorBox.value.run() }
    let intruder = Box(worker(port: coordinator.port, token: "wrong"))
    let messages = LineLog()
    intruder.value.log = { line in messages.append(line) }
    #expect(start { intruder.value.run() }() == 1)
    #expect(messages.all.contains { $0.contains("job token") })
    #expect(lines.all.contains { $0.contains("refused a connection from 127.0.0.1:") && $0.contains("wrong job token") })
    // The coordinator still waits for a real worker, which then completes the job.
    let real = Box(worker(port: coordinator.port, token: "right"))
    #expect(start { real.value.run() }() == 0)
    #expect(waitCoordinator() == 0)
  }

  @Test func aSilentWorkerIsNamedAfterTheHeartbeatTimeout() throws {
    let (coordinator, lines) = try coordinator(token: "tk", workers: 1, heartbeat: 1.5)
    let coordinatorBox = Box(coordinator)
    let waitCoordinator = start { coordinatorBox.value.run() }
    // A client that authenticates and joins, then never sends a heartbeat or a metric.
    let channel = try rawJoin(port: coordinator.port, token: "tk", ringAddress: "127.0.0.1:1", host: "silent-host")
    let started = monotonicNow()
    #expect(waitCoordinator() == 1)
    #expect(monotonicNow() - started < 10)
    #expect(lines.all.contains { $0.contains("the worker at 127.0.0.1:1 (host silent-host") && $0.contains("sent nothing for 1.5 s before the job started") }
            || lines.all.contains { $0.contains("rank 0 at 127.0.0.1:1 (host silent-host) sent nothing for 1.5 s") }, "\(lines.all)")
    _ = channel
  }
}

/// The worker's side of the handshake by hand, without the heartbeat thread a real worker runs.
func rawJoin(port: Int, token: String, ringAddress: String, host: String) throws -> ControlChannel {
  let deadline = monotonicNow() + 10
  let connection = try connect(to: SocketAddress(host: "127.0.0.1", port: port), rank: -1, deadline: deadline)
  let clientNonce = try SecureRandom.bytes(32)
  try connection.sendAll(Handshake.hello(magic: Handshake.workerMagic, nonce: clientNonce), deadline: deadline)
  guard let hello = Handshake.parseHello(try connection.receive(count: Handshake.helloBytes, deadline: deadline), magic: Handshake.coordinatorMagic) else {
    throw ControlError("no coordinator hello")
  }
  let secret = JobSecret(token: token)
  try connection.sendAll(secret.workerProof(serverNonce: hello.nonce, clientNonce: clientNonce), deadline: deadline)
  _ = try connection.receive(count: Handshake.proofBytes, deadline: deadline)
  let keys = secret.sessionKeys(serverNonce: hello.nonce, clientNonce: clientNonce)
  let channel = ControlChannel(connection, peerName: "the coordinator", sendKey: keys.workerToCoordinator, receiveKey: keys.coordinatorToWorker)
  try channel.send(.join(ringAddress: ringAddress, host: host))
  return channel
}

final class Box<T>: @unchecked Sendable { var value: T; init(_ value: T) { self.value = value } }

final class LineLog: Sendable {
  private let lines = Mutex<[String]>([])
  func append(_ line: String) { lines.withLock { $0.append(line) } }
  var all: [String] { lines.withLock { $0 } }
}
