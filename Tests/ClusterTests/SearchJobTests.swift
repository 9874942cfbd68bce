import Testing
import Foundation
import Collective
import Model
import Search
@testable import Cluster

/// The search as a distributed job, in one process: a worker that takes a child and dies has it
/// re-queued to the other, the history and best.json land in --model_dir, the report reads them,
/// and a coordinator started again with more cycles resumes from the history.
@Suite struct SearchJobTests {
  static let config: [String: String] = [
    "num_cells": "3", "reduction_size": "8", "image_size": "24", "use_aux_head": "false", "train_batch_size": "16",
    "num_train_images": "160", "num_epochs": "0.2", "num_eval_images": "40", "eval_batch_size": "20",
    "use_data": "builtin", "num_label_classes": "1001", "mode": "train",
  ]

  func coordinator(directory: String, cycles: Int) throws -> (SearchCoordinator, LineLog) {
    var options = SearchCoordinator.Options(token: "s3arch", config: SearchJobTests.config,
                                            settings: SearchSettings(populationSize: 3, sampleSize: 2, cycles: cycles, seed: 4), directory: directory)
    options.host = "127.0.0.1"; options.heartbeatTimeout = 15; options.joinTimeout = 30  // generous: CI runs suites side by side on 2 cores
    let coordinator = try SearchCoordinator(options: options)
    let lines = LineLog()
    coordinator.log = { lines.append($0) }
    return (coordinator, lines)
  }

  func worker(port: Int) -> Box<Worker> {
    var options = Worker.Options(coordinator: SocketAddress(host: "127.0.0.1", port: port), token: "s3arch")
    options.threads = 1; options.connectTimeout = 30
    let worker = Worker(options: options)
    worker.log = { _ in }
    return Box(worker)
  }

  @Test func aSearchSurvivesALostWorkerWritesItsHistoryAndResumes() throws {
    let directory = NSTemporaryDirectory() + "amoeba-search-job-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let (first, lines) = try coordinator(directory: directory, cycles: 5)
    let job = JobTests()
    let box = Box(first)
    let waitCoordinator = job.start { box.value.run() }
    // A worker that takes its child and dies without a word (kill -9).
    let doomed = try CoordinatorLink.join(SocketAddress(host: "127.0.0.1", port: first.port), secret: JobSecret(token: "s3arch"),
                                          ringAddress: "127.0.0.1:1", host: "doomed", deadline: monotonicNow() + 10)
    guard case let .task(task) = try doomed.awaitWork(timeout: 10) else { Issue.record("no task"); return }
    doomed.channel.connection.close()
    let survivor = worker(port: first.port)
    let waitWorker = job.start { survivor.value.run() }
    #expect(waitWorker() == 0)
    #expect(waitCoordinator() == 0)
    let log = lines.all
    #expect(log.contains { $0.contains("child \(task.id) goes to the next free worker") }, "\(log)")
    let history = try SearchHistory.read(SearchHistory.path(in: directory))
    #expect(history.count == 5 && Set(history.map(\.child.id)) == Set(0..<5))
    #expect(history.filter { $0.child.parent != nil }.count == 2)
    let best = try Genotype.resolve(SearchCoordinator.bestPath(in: directory))
    #expect(best.sameCells(as: history.max { $0.accuracy < $1.accuracy }!.child.genotype))
    let report = SearchReport(settings: try SearchHistory.settings(in: directory), history: history)
    #expect(report.curve.count == 5 && report.svg.contains("<polyline"))
    // Every result is timed, and all came from the survivor, at a positive rate.
    #expect(history.allSatisfy { $0.reportedAt != nil })
    #expect(report.throughput.map { $0.childrenPerHour > 0 && $0.workers == 1 } == true, "\(String(describing: report.throughput))")

    // More cycles, the same --model_dir: it goes on from the five.
    let (second, secondLines) = try coordinator(directory: directory, cycles: 7)
    let secondBox = Box(second)
    let waitSecond = job.start { secondBox.value.run() }
    let again = worker(port: second.port)
    let waitAgain = job.start { again.value.run() }
    #expect(waitAgain() == 0 && waitSecond() == 0)
    #expect(secondLines.all.contains { $0.contains("resuming from") && $0.contains("5 children trained") })
    #expect(try SearchHistory.read(SearchHistory.path(in: directory)).count == 7)
    // Other settings in the same directory are another search: refused by name.
    var other = SearchSettings(populationSize: 3, sampleSize: 2, cycles: 7, seed: 5)
    #expect(throws: SearchError.self) { try SearchHistory.record(other, in: directory) }
    other.seed = 4
    try SearchHistory.record(other, in: directory)
  }
}
