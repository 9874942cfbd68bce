#if canImport(Glibc)
import Glibc
#endif
import Checksums
import Collective
import Foundation
import Telemetry
import Train

/// The control plane: registers workers (authenticated with the job token), assigns ranks and ring
/// order, sends the configuration, then aggregates every worker's per-step metrics and evaluation
/// into one progress line, and ends the run — exit status 0 only when every worker finished.
/// Admission (`Admission`) runs every handshake concurrently and drops whatever is not a worker of
/// this job. A worker that sends nothing for `heartbeatTimeout` is named (rank and address), the
/// others are stopped (their ring waits end at once), and the run fails.
public final class Coordinator {
  /// Where the workers' steps run, once they have all started.
  private var devices: JobDevices?
  /// Whether the first progress line's loss was compared with ln(classes) (`LossCheck`).
  private var lossChecked = false
  private var stragglerWatch: StragglerWatch
  /// The membership's number, in every assignment and ring greeting: 1 is the job's first; a
  /// membership formed again after a failure (the elastic issue) takes the next, and a worker
  /// still of an older one is refused by name when it greets the new ring.
  private let generation = 1
  public struct Options: Sendable {
    public var host = "0.0.0.0"
    public var port = 0
    public var workers = 1
    public var token: String
    /// The training configuration as flags, sent to every worker.
    public var config: [String: String]
    public var totalSteps: Int
    public var stepsPerEpoch: Int
    public var globalBatch: Int
    public var logEvery = 10
    public var joinTimeout = 120.0
    /// A worker silent this long (no heartbeat, no metric) is declared dead. Heartbeats come from
    /// their own thread every second, whatever the worker is doing.
    public var heartbeatTimeout = 10.0
    /// How long one connection may take over the handshake before it is dropped.
    public var handshakeTimeout = 10.0
    /// The Prometheus server's address (loopback unless the operator exposes it).
    public var metricsHost = "127.0.0.1"
    /// TensorBoard event files and metrics.jsonl go here (the job's --model_dir); nil: none.
    public var logDirectory: String?
    /// Serve Prometheus text at /metrics on this port; nil: no server.
    public var metricsPort: Int?
    /// A rank whose own work per step (compute and input wait, not the ring wait) exceeds the
    /// other ranks' median by this share for `stragglerSteps` steps is named a straggler.
    public var stragglerMargin = 0.5
    public var stragglerSteps = 20
    /// Stop the job naming a straggler, as a failed worker (`--evict_stragglers`).
    public var evictStragglers = false
    public init(token: String, config: [String: String], totalSteps: Int, stepsPerEpoch: Int, globalBatch: Int) {
      self.token = token; self.config = config; self.totalSteps = totalSteps
      self.stepsPerEpoch = stepsPerEpoch; self.globalBatch = globalBatch
    }
  }

  public let options: Options
  let listener: TCPListener
  let secret: JobSecret
  public var log: (String) -> Void = { print($0); fflush(nil) }

  let events: EventFileWriter?
  let jsonLog: JSONLinesLog?
  public let exporter: MetricsExporter?

  public init(options: Options) throws {
    self.options = options
    stragglerWatch = StragglerWatch(options: .init(margin: options.stragglerMargin, steps: options.stragglerSteps,
                                                   evict: options.evictStragglers))
    secret = JobSecret(token: options.token)
    listener = try TCPListener(host: options.host, port: options.port)
    if let directory = options.logDirectory {
      try? FileIO.makeDirectory(directory)
      events = try EventFileWriter(directory: directory)
      jsonLog = try JSONLinesLog(path: directory + "/metrics.jsonl")
    } else {
      events = nil; jsonLog = nil
    }
    exporter = try options.metricsPort.map { try MetricsExporter(host: options.metricsHost, port: $0) }
  }

  public var port: Int { listener.address.port }

  /// Runs the job; returns the process exit status.
  public func run() -> Int32 {
    let admission = Admission(listener: listener, secret: secret, handshakeTimeout: options.handshakeTimeout,
                              heartbeatTimeout: options.heartbeatTimeout, log: log)
    log("coordinator: waiting for \(options.workers) workers on port \(port)")
    var members: [Member]
    do {
      members = try admission.admit(workers: options.workers, deadline: monotonicNow() + options.joinTimeout)
    } catch {
      log("coordinator: error: \(error)")
      return 1
    }
    let configHash = JobSecret.configHash(options.config)
    let addresses = members.map(\.ringAddress)
    let jobID = String(secret.ringJobID(configHash: configHash))
    for rank in members.indices {
      members[rank].rank = rank
      members[rank].channel.peerName = members[rank].name
      members[rank].lastHeard = monotonicNow()
      do {
        try members[rank].channel.send(.assignment(rank: rank, size: members.count, ringAddresses: addresses, config: options.config,
                                                   jobID: jobID, heartbeatTimeout: options.heartbeatTimeout, generation: generation))
      } catch {
        return fail(members, "could not send \(members[rank].name) its assignment: \(error)")
      }
    }
    log("coordinator: \(members.count) workers joined; ring order \(addresses.enumerated().map { "\($0.offset):\($0.element)" }.joined(separator: " "))")
    return supervise(&members, admission: admission)
  }

  func supervise(_ members: inout [Member], admission: Admission) -> Int32 {
    var stepReports: [Int: [StepMetrics]] = [:]
    var evaluation = (top1: 0, top5: 0, count: 0, reports: 0, step: 0)
    var starts: [Int: Int] = [:]
    var startedOn: [Int: (kind: String, count: Int)] = [:]
    let started = monotonicNow()
    // Workers hear from us as often as we expect to hear from them, so a hung coordinator is found too.
    let beat = max(0.05, min(1, options.heartbeatTimeout / 4))
    var lastBeat = 0.0
    while members.contains(where: { !$0.done }) {
      // A finished worker's socket is not polled (it may have closed), but it still gets heartbeats:
      // it waits for the others and would otherwise take our silence for a dead coordinator.
      var fds = members.map { pollfd(fd: $0.done ? -1 : $0.channel.connection.fd, events: Int16(POLLIN), revents: 0) }
      fds.append(pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0))
      _ = poll(&fds, nfds_t(fds.count), Int32(beat * 1000))
      if fds[members.count].revents != 0 { admission.turnAway() }
      let now = monotonicNow()
      if now - lastBeat >= beat {
        lastBeat = now
        for member in members {
          do { try member.channel.send(.heartbeat(rank: -1), timeout: 5) } catch where !member.done {
            return fail(members, "\(member.name) is gone: \(error)")
          } catch {}
        }
      }
      for rank in members.indices where !members[rank].done {
        if fds[rank].revents == 0 {
          if now - members[rank].lastHeard > options.heartbeatTimeout {
            return fail(members, "\(members[rank].name) sent nothing for \(format(options.heartbeatTimeout, 1)) s (--heartbeat_timeout): stalled or dead")
          }
          continue
        }
        members[rank].lastHeard = now
        let message: ControlMessage
        do { message = try members[rank].channel.receive(timeout: 30) } catch {
          return fail(members, "\(members[rank].name) is gone: \(error)")
        }
        switch message {
        case var .metrics(report):
          report.rank = rank
          let step = report.step
          stepReports[step, default: []].append(report)
          if stepReports[step]!.count == members.count {
            let reports = stepReports.removeValue(forKey: step)!.sorted { $0.rank < $1.rank }
            for event in stragglerWatch.observe(reports) {
              switch event {
              case let .straggling(r, own, others):
                let report = reports[r]
                let line = "\(members[r].name) is a straggler: its own work took \(format(own * 1000, 1)) ms a step (compute \(format((own - report.inputWaitSeconds) * 1000, 1)) ms, input wait \(format(report.inputWaitSeconds * 1000, 1)) ms) against the other ranks' median \(format(others * 1000, 1)) ms, more than \(Int(options.stragglerMargin * 100))% slower for \(options.stragglerSteps) steps (--straggler_margin, --straggler_steps)"
                if options.evictStragglers { return fail(members, line + "; evicted (--evict_stragglers)") }
                log("coordinator: warning: " + line)
              case let .recovered(r):
                log("coordinator: \(members[r].name) is no longer a straggler")
              }
            }
            record(step: step, reports)
            if step % options.logEvery == 0 || step == options.totalSteps { progress(step: step, reports, started: started) }
          }
        case let .evaluation(_, step, top1, top5, count):
          evaluation.top1 += top1; evaluation.top5 += top5; evaluation.count += count; evaluation.reports += 1; evaluation.step = step
          if evaluation.reports == members.count {
            let n = Double(max(evaluation.count, 1))
            log("eval step \(step): top_1_accuracy \(format(Double(evaluation.top1) / n)) top_5_accuracy \(format(Double(evaluation.top5) / n)) over \(evaluation.count) validation images from \(members.count) workers")
            let top1 = Double(evaluation.top1) / n, top5 = Double(evaluation.top5) / n
            events?.add(step: step, scalars: [("top_1_accuracy", Float(top1)), ("top_5_accuracy", Float(top5))])
            jsonLog?.write([("step", step), ("top_1_accuracy", top1), ("top_5_accuracy", top5), ("eval_images", evaluation.count)])
            exporter?.set("amoeba_top_1_accuracy", help: "Validation top-1 accuracy of the moving-average weights.", samples: [.init(labels: [:], value: top1)])
            exporter?.set("amoeba_top_5_accuracy", help: "Validation top-5 accuracy of the moving-average weights.", samples: [.init(labels: [:], value: top5)])
            evaluation = (0, 0, 0, 0, 0)
          }
        case .heartbeat:
          break
        case let .started(_, step, source, device, localDevices):
          starts[rank] = step
          startedOn[rank] = (device, max(1, localDevices))
          if starts.count == members.count {
            let steps = Set(starts.values)
            guard steps.count == 1 else {
              return fail(members, "the workers start at different steps (\(starts.keys.sorted().map { "\(members[$0].name): \(starts[$0]!)" }.joined(separator: ", "))); they would train different models")
            }
            let job = JobDevices(kinds: members.indices.map { startedOn[$0]!.kind }, counts: members.indices.map { startedOn[$0]!.count })
            devices = job
            log("coordinator: every worker starts at step \(step)" + (source >= 0 ? " (restored from rank \(source)'s checkpoint, broadcast to all)" : "")
                + " on \(job.summary)")
            for line in job.table(hosts: members.map { ($0.host, $0.ringAddress) }, globalBatch: options.globalBatch) { log("coordinator:   " + line) }
            exporter?.set("amoeba_devices", help: "Devices each worker's step spans (one program replicated over them).",
                          samples: members.indices.map { .init(labels: ["rank": String($0), "device": job.kinds[$0]], value: Double(job.counts[$0])) })
          }
        case .done:
          members[rank].done = true
        case let .failure(_, text):
          return fail(members, "\(members[rank].name) failed: \(text)")
        default:
          return fail(members, "\(members[rank].name) sent an unexpected \(message)")
        }
      }
    }
    log("coordinator: all \(members.count) workers finished in \(Int(monotonicNow() - started)) s")
    for member in members { try? member.channel.send(.stop(reason: "finished")) }
    return 0
  }

  /// TensorBoard scalars, a JSONL line and the Prometheus gauges for one completed step.
  func record(step: Int, _ reports: [StepMetrics]) {
    let loss = reports.map(\.loss).reduce(0, +) / Double(reports.count)
    let rate = reports.map(\.imagesPerSecond).reduce(0, +)
    var scalars: [(tag: String, value: Float)] = [("loss", Float(loss)), ("learning_rate", Float(reports[0].learningRate)), ("images_per_sec", Float(rate))]
    for r in reports {
      scalars.append(("step_time/rank_\(r.rank)", Float(r.stepSeconds)))
      scalars.append(("allreduce_busbw/rank_\(r.rank)", Float(r.busBandwidth / 1e9)))
      scalars.append(("input_wait_seconds/rank_\(r.rank)", Float(r.inputWaitSeconds)))
      scalars.append(("own_work_seconds/rank_\(r.rank)", Float(StragglerWatch.ownSeconds(r))))
      scalars.append(("ring_wait_seconds/rank_\(r.rank)", Float(r.ringWaitSeconds)))
      scalars.append(("straggler/rank_\(r.rank)", stragglerWatch.stragglers.contains(r.rank) ? 1 : 0))
      for (d, seconds) in r.deviceSeconds.enumerated() where seconds >= 0 {
        scalars.append(("device_step_time/rank_\(r.rank)/device_\(d)", Float(seconds)))
      }
    }
    if let devices { scalars.append(("devices", Float(devices.total))) }
    scalars.append(("bad_records_skipped", Float(reports.map(\.badRecords).reduce(0, +))))
    events?.add(step: step, scalars: scalars)
    if step % options.logEvery == 0 || step == options.totalSteps {
      var fields: [(String, Any)] = [
        ("step", step), ("loss", loss), ("learning_rate", reports[0].learningRate), ("images_per_sec", rate),
        ("slowest_rank", reports.max { $0.stepSeconds < $1.stepSeconds }!.rank),
        ("communication_hidden", reports.map(\.hiddenFraction).reduce(0, +) / Double(reports.count)),
        ("step_seconds", reports.map(\.stepSeconds).reduce(0, +) / Double(reports.count)),
        ("input_wait_seconds", reports.map(\.inputWaitSeconds).max()!),
        ("bad_records_skipped", reports.map(\.badRecords).reduce(0, +)),
        ("exposed_communication_seconds", reports.map { $0.communicationSeconds * (1 - $0.hiddenFraction) }.reduce(0, +) / Double(reports.count))]
      if let devices { fields += [("hosts", devices.hosts), ("devices", devices.total)] }
      if let spread = JobDevices.spread(reports) { fields += [("device_step_seconds_min", spread.fastest), ("device_step_seconds_max", spread.slowest)] }
      jsonLog?.write(fields)
    }
    guard let exporter else { return }
    let perRank = { (value: (StepMetrics) -> Double) in reports.map { MetricsExporter.Sample(labels: ["rank": String($0.rank)], value: value($0)) } }
    exporter.set("amoeba_global_step", help: "Last completed global step.", samples: [.init(labels: [:], value: Double(step))])
    exporter.set("amoeba_loss", help: "Mean training loss over the workers.", samples: [.init(labels: [:], value: loss)])
    exporter.set("amoeba_learning_rate", help: "Learning rate of the last step.", samples: [.init(labels: [:], value: reports[0].learningRate)])
    exporter.set("amoeba_images_per_second", help: "Training images per second, summed over the workers.", samples: [.init(labels: [:], value: rate)])
    exporter.set("amoeba_step_seconds", help: "Wall time of the last step per worker.", samples: perRank { $0.stepSeconds })
    let perDevice = reports.flatMap { r in
      r.deviceSeconds.enumerated().filter { $0.element >= 0 }.map {
        MetricsExporter.Sample(labels: ["rank": String(r.rank), "device": String($0.offset)], value: $0.element)
      }
    }
    if !perDevice.isEmpty {
      exporter.set("amoeba_device_step_seconds", help: "Time the last step kept each local device busy, per worker and device.", samples: perDevice)
    }
    exporter.set("amoeba_allreduce_bus_bytes_per_second", help: "All-reduce bus bandwidth per worker.", samples: perRank { $0.busBandwidth })
    exporter.set("amoeba_communication_hidden_ratio", help: "Share of all-reduce time hidden behind backward.", samples: perRank { $0.hiddenFraction })
    exporter.set("amoeba_input_wait_seconds", help: "Time the last step waited for its input batch, per worker.", samples: perRank { $0.inputWaitSeconds })
    exporter.set("amoeba_ring_wait_seconds", help: "Time the last step waited for the other workers in the all-reduce, per worker.",
                 samples: perRank { $0.ringWaitSeconds })
    exporter.set("amoeba_straggler", help: "1 while a worker's own work per step is beyond --straggler_margin of the others' for --straggler_steps steps.",
                 samples: perRank { self.stragglerWatch.stragglers.contains($0.rank) ? 1 : 0 })
    exporter.set("amoeba_bad_records_skipped_total", help: "Unusable input records skipped so far, per worker.", type: "counter",
                 samples: perRank { Double($0.badRecords) })
  }

  func progress(step: Int, _ reports: [StepMetrics], started: Double) {
    let loss = reports.map(\.loss).reduce(0, +) / Double(reports.count)
    let rate = reports.map(\.imagesPerSecond).reduce(0, +)
    let slowest = reports.max { $0.stepSeconds < $1.stepSeconds }!, fastest = reports.min { $0.stepSeconds < $1.stepSeconds }!
    let hidden = reports.map(\.hiddenFraction).reduce(0, +) / Double(reports.count)
    let skipped = reports.map(\.badRecords).reduce(0, +)
    let remaining = Double(options.totalSteps - step) * Double(options.globalBatch) / max(rate, 1e-9)
    let deviceTimes = JobDevices.spread(reports).map { " device step \(format($0.fastest * 1000, 1))–\(format($0.slowest * 1000, 1)) ms" } ?? ""
    let stragglers = stragglerWatch.stragglers.sorted()
    log("step \(step)/\(options.totalSteps) epoch \(format(Double(step) / Double(max(options.stepsPerEpoch, 1)))) loss \(format(loss)) lr \(format(reports[0].learningRate, 5)) images/s \(format(rate, 1)) eta \(Int(remaining))s step-time spread \(format((slowest.stepSeconds - fastest.stepSeconds) * 1000, 1)) ms (slowest rank \(slowest.rank)) comm hidden \(Int(hidden * 100))% input wait \(format(reports.map(\.inputWaitSeconds).max()! * 1000, 1)) ms" + deviceTimes + (skipped > 0 ? " bad records skipped \(skipped)" : "")
        + (stragglers.isEmpty ? "" : " stragglers: " + stragglers.map { "rank \($0)" }.joined(separator: ", ")) + (devices.map { " on \($0.summary)" } ?? ""))
    if !lossChecked {
      lossChecked = true
      if let warning = LossCheck.warning(loss: loss, step: step, classes: Int(options.config["num_label_classes"] ?? "") ?? 1001) { log(warning) }
    }
  }

  func fail(_ members: [Member], _ reason: String) -> Int32 {
    log("coordinator: error: \(reason); stopping the other workers")
    for member in members { try? member.channel.send(.stop(reason: reason), timeout: 5) }
    return 1
  }
}

func format(_ x: Double, _ digits: Int = 4) -> String {
  var scale = 1.0
  for _ in 0..<digits { scale *= 10 }
  return String((x * scale).rounded() / scale)
}
