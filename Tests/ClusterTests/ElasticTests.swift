import Testing
import Foundation
import Synchronization
import Collective
@testable import Cluster

/// Elastic membership end to end, in one process: a rank lost mid-run (every socket closed without
/// a word, as kill -9 leaves it) and the survivors going on from the last step in memory; a worker
/// joining a running job, admitted at a step boundary; and the sizes a membership may take.
@Suite struct ElasticTests {
  static let config: [String: String] = [
    "num_cells": "3", "reduction_size": "8", "image_size": "24", "use_aux_head": "false", "train_batch_size": "12",
    "num_train_images": "120", "num_eval_images": "40", "eval_batch_size": "20", "lr": "0.04",
    "use_data": "builtin", "num_label_classes": "1001",
  ]

  static func coordinator(workers: Int, min: Int, max: Int, steps: Int, batch: Int = 12,
                          configure: (inout Coordinator.Options) -> Void = { _ in }) throws -> (Coordinator, LineLog) {
    var config = ElasticTests.config
    config["num_epochs"] = String(Double(steps * batch) / 120)
    config["train_batch_size"] = String(batch)
    var options = Coordinator.Options(token: "el4stic", config: config, totalSteps: steps, stepsPerEpoch: 120 / batch, globalBatch: batch)
    options.host = "127.0.0.1"; options.workers = workers; options.minWorkers = min; options.maxWorkers = max
    options.logEvery = 1; options.joinTimeout = 30; options.heartbeatTimeout = 20
    options.evaluationInterval = (120 + batch - 1) / batch
    configure(&options)
    let coordinator = try Coordinator(options: options)
    let lines = LineLog()
    coordinator.log = { lines.append($0) }
    return (coordinator, lines)
  }

  static func worker(port: Int, loseAfterStep: Int? = nil, log: LineLog) -> Box<Worker> {
    var options = Worker.Options(coordinator: SocketAddress(host: "127.0.0.1", port: port), token: "el4stic")
    options.threads = 1; options.connectTimeout = 30; options.ringTimeout = 30; options.loseAfterStep = loseAfterStep
    let worker = Worker(options: options)
    worker.log = { log.append($0) }
    return Box(worker)
  }

  @Test func membershipSizesTakeTheMostWorkersTheirDevicesAllow() {
    let sizes = MembershipSize(minWorkers: 2, maxWorkers: 4, globalBatch: 12)
    #expect(sizes.choose(available: 5) == 4)
    #expect(sizes.choose(available: 4) == 4)
    #expect(sizes.choose(available: 3) == 3)
    #expect(sizes.choose(available: 1) == nil)
    // Workers of one device take uneven shares: 1024 runs on 3 (342, 341, 341).
    #expect(MembershipSize(minWorkers: 2, maxWorkers: 4, globalBatch: 1024).choose(available: 3) == 3)
    // A host's devices split its share equally: with 4 each, 1024 splits over 2 or 4 hosts, not 3.
    #expect(MembershipSize(minWorkers: 2, maxWorkers: 4, globalBatch: 1024).choose(available: 3, devicesPerWorker: 4) == 2)
    #expect(MembershipSize(minWorkers: 3, maxWorkers: 3, globalBatch: 1024).choose(available: 3, devicesPerWorker: 4) == nil)
    #expect(MembershipSize(minWorkers: 3, maxWorkers: 3, globalBatch: 2).problem?.contains("leaves no example") == true)
    #expect(MembershipSize(minWorkers: 3, maxWorkers: 2, globalBatch: 12).problem?.contains("below --min_workers") == true)
  }

  /// A rank lost right after step 3, an evaluation step: the survivors go on from step 3 in a
  /// membership of two and make the evaluation of step 3 again (the lost rank's share never came).
  @Test func aLostRanksSurvivorsGoOnFromTheLastStepInMemoryAndFinish() throws {
    // A global batch of 10: three workers take 4, 3 and 3 of it, the two survivors 5 each.
    let (coordinator, lines) = try ElasticTests.coordinator(workers: 3, min: 2, max: 3, steps: 6, batch: 10) {
      $0.config["num_epochs_per_eval"] = "0.25"; $0.evaluationInterval = 3
    }
    let box = Box(coordinator)
    let job = JobTests()
    let waitCoordinator = job.start { box.value.run() }
    let messages = LineLog()
    let workers = [ElasticTests.worker(port: coordinator.port, log: messages), ElasticTests.worker(port: coordinator.port, log: messages),
                   ElasticTests.worker(port: coordinator.port, loseAfterStep: 3, log: messages)]
    let waits = workers.map { w in job.start { w.value.run() } }
    #expect(waits.map { $0() } == [0, 0, 1])
    #expect(waitCoordinator() == 0)
    let log = lines.all
    #expect(log.contains { $0.contains("membership generation 2: 2 workers (lost rank") }, "\(log)")
    // The lost rank reported step 3; the survivors' step 4 was cut short (or never began): they go on from 3.
    #expect(log.contains { $0.contains("membership generation 2 goes on from step 3 (the state of a surviving rank, over the ring; completed steps lost: 0)") }, "\(log)")
    #expect(log.contains { $0.hasPrefix("eval step 3:") && $0.contains("over 40 validation images from 2 workers") }, "\(log)")
    #expect(log.contains { $0.hasPrefix("step 6/6") })
    #expect(log.contains { $0.hasPrefix("eval step 6:") && $0.contains("from 2 workers") }, "\(log)")
    let said = messages.all
    #expect(said.contains { $0.contains("evaluating step 3 again: the membership changed while its evaluation was in flight") }, "\(said)")
    #expect(said.contains { $0.contains("(the global batch of 10 as 4 on rank 0, 3 on ranks 1–2; gradients weighted by 1.2 before the ring's mean)") }, "\(said)")
    #expect(said.contains { $0.contains("rebuilt the step for a batch of 5 per worker (was") }, "\(said)")
  }

  @Test func aWorkerJoiningARunningJobIsAdmittedAtAStepBoundary() throws {
    let (coordinator, lines) = try ElasticTests.coordinator(workers: 2, min: 2, max: 3, steps: 40)
    let box = Box(coordinator)
    let job = JobTests()
    let waitCoordinator = job.start { box.value.run() }
    let messages = LineLog()
    let first = (0..<2).map { _ in ElasticTests.worker(port: coordinator.port, log: messages) }
    let waits = first.map { w in job.start { w.value.run() } }
    // The newcomer joins once the job is under way.
    let deadline = monotonicNow() + 60
    while !lines.all.contains(where: { $0.hasPrefix("step 2/") }) && monotonicNow() < deadline { usleep(20_000) }
    let late = ElasticTests.worker(port: coordinator.port, log: messages)
    let waitLate = job.start { late.value.run() }
    #expect(waits.map { $0() } == [0, 0])
    #expect(waitLate() == 0)
    #expect(waitCoordinator() == 0)
    let log = lines.all
    #expect(log.contains { $0.contains("joined as a spare") }, "\(log)")
    #expect(log.contains { $0.contains("membership generation 2: 3 workers (admitted the worker at") }, "\(log)")
    #expect(log.contains { $0.contains("membership generation 2 goes on from step") }, "\(log)")
    #expect(log.contains { $0.hasPrefix("eval step 40:") && $0.contains("from 3 workers") }, "\(log)")
    #expect(messages.all.contains { $0.contains("took the state of step") }, "\(messages.all)")
  }

  /// Three workers, one lost after step 1; the coordinator vanishes after step 3. Its successor on
  /// the same port and --model_dir takes the job over from the journal with the two that come
  /// back (it does not wait --join_timeout for the third), and they go on from the state they hold.
  @Test func aRestartedCoordinatorTakesTheJobOverFromItsJournalAndTheWorkersState() throws {
    let directory = NSTemporaryDirectory() + "amoeba-journal-\(UInt32.random(in: 0...UInt32.max))"
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let (first, firstLines) = try ElasticTests.coordinator(workers: 3, min: 2, max: 3, steps: 10) {
      $0.logDirectory = directory; $0.coordinatorGrace = 30; $0.vanishAfterStep = 3
    }
    let port = first.port
    let job = JobTests()
    let box = Box<Coordinator?>(first)
    let waitFirst = job.start { box.value!.run() }
    let messages = LineLog()
    let workers = [ElasticTests.worker(port: port, log: messages), ElasticTests.worker(port: port, log: messages),
                   ElasticTests.worker(port: port, loseAfterStep: 1, log: messages)]
    let waits = workers.map { w in job.start { w.value.run() } }
    #expect(waitFirst() == 137)
    #expect(firstLines.all.contains { $0.hasPrefix("step 3/10") })
    // The same address and --model_dir (a new process, in real life): its journal says where the job was.
    box.value = nil
    let (second, lines) = try ElasticTests.coordinator(workers: 3, min: 2, max: 3, steps: 10) {
      $0.logDirectory = directory; $0.port = port; $0.coordinatorGrace = 30; $0.heartbeatTimeout = 2
    }
    let secondBox = Box(second)
    let waitSecond = job.start { secondBox.value.run() }
    #expect(waits.map { $0() } == [0, 0, 1])
    #expect(waitSecond() == 0)
    let log = lines.all
    #expect(log.contains { $0.contains("going on with the 2 of 3 workers that came back; none other joined for 2.0 s") }, "\(log)")
    #expect(log.contains { $0.contains("taking the job over from \(directory)/coordinator-journal.json: membership generation 2") }, "\(log)")
    #expect(log.contains { $0.contains("membership generation 3 goes on from step") && $0.contains("over the ring; completed steps lost: 0)") }, "\(log)")
    #expect(log.contains { $0.hasPrefix("step 10/10") })
    #expect(messages.all.contains { $0.contains("trying to reach it again for 30 s (--coordinator_grace)") }, "\(messages.all)")
    let journal = try JobJournal.read(in: directory, configHash: JobSecret.configHash(second.options.config))
    #expect(journal?.finished == true && journal?.lastCompletedStep == 10 && journal?.generation == 3)
  }

  @Test func aJournalOfAnotherJobOrUnreadableIsRefusedByName() throws {
    let directory = NSTemporaryDirectory() + "amoeba-journal-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    #expect(try JobJournal.read(in: directory, configHash: "a") == nil)
    try JobJournal(configHash: "a", generation: 4, lastCompletedStep: 120, finished: false).write(in: directory)
    #expect(try JobJournal.read(in: directory, configHash: "a") == JobJournal(configHash: "a", generation: 4, lastCompletedStep: 120, finished: false))
    #expect { try JobJournal.read(in: directory, configHash: "b") } throws: { "\($0)".contains("is the journal of a job with another configuration") }
    try Array("{\"configHash\": ".utf8).withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: JobJournal.path(in: directory))) }
    #expect { try JobJournal.read(in: directory, configHash: "a") } throws: { "\($0)".contains("coordinator-journal.json is not a readable coordinator journal") }
  }
}
