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
/// this job. A worker that sends nothing for `heartbeatTimeout` is named (rank and address); then
/// either the others are stopped and the run fails, or — an elastic job (--min_workers,
/// --max_workers) — the survivors form the next membership without it, its replacement or a
/// newcomer is admitted at a step boundary, and the state comes from a survivor over the ring.
public final class Coordinator {
  /// Where the workers' steps run, once they have all started.
  private var devices: JobDevices?
  /// Whether the first progress line's loss was compared with ln(classes) (`LossCheck`).
  private var lossChecked = false
  private var stragglerWatch: StragglerWatch
  /// The current membership: its number (in every assignment and ring greeting), its ranks in
  /// ring order, and the workers waiting as spares.
  private var generation = 0
  private var members: [Member] = []
  private var spares: [Member] = []
  /// What this membership's workers reported so far.
  private var round = Round()
  /// The last step every rank reported, across memberships (what a re-formed one must go on from).
  private var lastCompletedStep = 0
  /// When a rank first said its ring failed while no rank was known lost.
  private var interruptedSince: Double?
  private var workersLost = 0
  /// Memberships this coordinator formed (a restarted one counts from its own start).
  private var formations = 0
  /// When the journal was last written (it is written at most once a second as steps complete).
  private var journalled = -Double.infinity
  /// When the job fell below --min_workers (it waits that long for replacements: --join_timeout).
  private var shortSince: Double?
  /// The most local devices a worker of this job has reported (sizes are chosen for it).
  private var devicesPerWorker = 1
  /// The last step whose evaluation every rank reported.
  private var lastEvaluatedStep = 0

  public struct Options: Sendable {
    public var host = "0.0.0.0"
    public var port = 0
    public var workers = 1
    /// An elastic job's bounds (--min_workers, --max_workers); nil for both: a lost worker stops the job.
    public var minWorkers: Int?
    public var maxWorkers: Int?
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
    /// Seconds workers that lose this coordinator keep their state and try to reach it again
    /// (`--coordinator_grace`; a restarted coordinator on the same address and --model_dir takes
    /// the job over from its journal); 0: they give up at once.
    public var coordinatorGrace = 0.0
    /// Steps between evaluations (`TrainingConfig.evaluationInterval`); nil: none during training.
    public var evaluationInterval: Int?
    /// Fault injection for tests: once every rank reported this step the coordinator closes every
    /// socket without a word, as kill -9 leaves it, and returns 137.
    public var vanishAfterStep: Int?
    public init(token: String, config: [String: String], totalSteps: Int, stepsPerEpoch: Int, globalBatch: Int) {
      self.token = token; self.config = config; self.totalSteps = totalSteps
      self.stepsPerEpoch = stepsPerEpoch; self.globalBatch = globalBatch
    }

    public var elastic: Bool { minWorkers != nil || maxWorkers != nil }
    public var sizes: MembershipSize {
      MembershipSize(minWorkers: minWorkers ?? workers, maxWorkers: maxWorkers ?? max(workers, minWorkers ?? workers), globalBatch: globalBatch)
    }
  }

  /// One membership's reports: steps until every rank sent theirs, the evaluation's shares, and
  /// where each rank started.
  struct Round {
    var stepReports: [Int: [StepMetrics]] = [:]
    var evaluation = (top1: 0, top5: 0, count: 0, reports: 0)
    var starts: [Int: (step: Int, source: Int, kind: String, count: Int)] = [:]
    var started: Bool = false
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
    // A journal of this job, unfinished: this coordinator takes over a running job (its workers
    // kept their state through --coordinator_grace and are reconnecting).
    var journal: JobJournal?
    if let directory = options.logDirectory {
      do {
        journal = try JobJournal.read(in: directory, configHash: JobSecret.configHash(options.config)).flatMap { $0.finished ? nil : $0 }
      } catch {
        log("coordinator: warning: \(error); starting the job as a new one (the journal is replaced)")
      }
    }
    log("coordinator: waiting for \(options.workers) workers on port \(port)"
        + (options.elastic ? " (elastic: \(options.sizes.minWorkers) to \(options.sizes.maxWorkers) workers)" : "")
        + (journal != nil && options.elastic ? "; taking a job over, it goes on with \(options.sizes.minWorkers) once no other worker joins for \(format(options.heartbeatTimeout, 1)) s" : ""))
    do {
      // Taking over an elastic job, the workers that come back are the job: one that died with
      // the old coordinator must not hold the rest until --join_timeout.
      let enough = journal != nil && options.elastic ? (options.sizes.minWorkers, options.heartbeatTimeout) : nil
      spares = try admission.admit(workers: options.workers, deadline: monotonicNow() + options.joinTimeout, enough: enough)
    } catch {
      log("coordinator: error: \(error)")
      return 1
    }
    if !options.elastic { admission.closePending() }
    if let journal, let directory = options.logDirectory {
      generation = journal.generation
      lastCompletedStep = journal.lastCompletedStep
      // An older journal does not say: the evaluation of its last step is taken as made.
      lastEvaluatedStep = journal.lastEvaluatedStep ?? journal.lastCompletedStep
      log("coordinator: taking the job over from \(JobJournal.path(in: directory)): membership generation \(journal.generation), step \(journal.lastCompletedStep) completed by every rank")
    }
    if let failure = formMembership(abandonStep: false, why: nil) { return fail(failure) }
    return supervise(admission)
  }

  /// Ranks the live workers (the current ranks first, in their order, then the spares in the order
  /// they joined) into the next generation and sends every one its assignment or its standby.
  /// Returns a reason to fail the job, or nil.
  func formMembership(abandonStep: Bool, why: String?) -> String? {
    let pool = members + spares
    guard let size = options.sizes.choose(available: pool.count, devicesPerWorker: devicesPerWorker) else {
      if options.sizes.choose(available: pool.count) != nil {
        return "no number of workers from --min_workers=\(options.sizes.minWorkers) to \(min(pool.count, options.sizes.maxWorkers)) gives equal shares of --train_batch_size=\(options.globalBatch) that split over each host's \(devicesPerWorker) devices; choose a global batch divisible by more worker counts × \(devicesPerWorker)"
      }
      // Too few: everyone waits as a spare until replacements join (or --join_timeout passes).
      if shortSince == nil { shortSince = monotonicNow() }
      members = []; spares = pool
      let reason = "\(pool.count) worker\(pool.count == 1 ? "" : "s") left, fewer than --min_workers=\(options.sizes.minWorkers); waiting up to \(Int(options.joinTimeout)) s (--join_timeout) for replacements"
      log("coordinator: " + reason)
      for index in spares.indices { spares[index].rank = -1; try? spares[index].channel.send(.standby(reason: reason), timeout: 5) }
      return nil
    }
    shortSince = nil
    interruptedSince = nil
    generation += 1
    formations += 1
    members = Array(pool.prefix(size))
    spares = Array(pool.dropFirst(size))
    let addresses = members.map(\.ringAddress)
    let jobID = String(secret.ringJobID(configHash: JobSecret.configHash(options.config)))
    for rank in members.indices {
      members[rank].rank = rank
      members[rank].channel.peerName = members[rank].name
      let assignment = Assignment(rank: rank, size: size, ringAddresses: addresses, config: options.config, jobID: jobID,
                                  heartbeatTimeout: options.heartbeatTimeout, generation: generation, abandonStep: abandonStep,
                                  elastic: options.elastic, coordinatorGrace: options.coordinatorGrace,
                                  evaluatedThrough: generation > 1 ? lastEvaluatedStep : nil)
      do { try members[rank].channel.send(.assignment(assignment)) } catch {
        return "could not send \(members[rank].name) its assignment: \(error)"
      }
    }
    for index in spares.indices {
      spares[index].rank = -1
      let reason = size == options.sizes.maxWorkers
        ? "the job runs on \(size) workers (--max_workers=\(size))"
        : "the job runs on \(size) workers (the most within --min_workers=\(options.sizes.minWorkers) and --max_workers=\(options.sizes.maxWorkers) whose equal shares of the global batch of \(options.globalBatch) split over each host's \(devicesPerWorker) devices)"
      try? spares[index].channel.send(.standby(reason: reason), timeout: 5)
    }
    round = Round()
    writeJournal(force: true)
    devices = nil
    stragglerWatch = StragglerWatch(options: stragglerWatch.options)
    let order = addresses.enumerated().map { "\($0.offset):\($0.element)" }.joined(separator: " ")
    if generation == 1 || why == nil {
      log("coordinator: \(members.count) workers joined; ring order \(order)")
    } else {
      log("coordinator: membership generation \(generation): \(size) workers" + (why.map { " (\($0))" } ?? "") + "; ring order \(order)"
          + (spares.isEmpty ? "" : "; \(spares.count) spare\(spares.count == 1 ? "" : "s")"))
    }
    return nil
  }

  func supervise(_ admission: Admission) -> Int32 {
    let started = monotonicNow()
    // Workers hear from us as often as we expect to hear from them, so a hung coordinator is found too.
    let beat = max(0.05, min(1, options.heartbeatTimeout / 4))
    var lastBeat = 0.0
    while members.isEmpty || members.contains(where: { !$0.done }) {
      // A finished worker's socket is not polled (it may have closed), but it still gets heartbeats:
      // it waits for the others and would otherwise take our silence for a dead coordinator.
      var fds = members.map { pollfd(fd: $0.done ? -1 : $0.channel.connection.fd, events: Int16(POLLIN), revents: 0) }
      fds += spares.map { pollfd(fd: $0.channel.connection.fd, events: Int16(POLLIN), revents: 0) }
      let own = fds.count
      fds += options.elastic ? admission.descriptors : [pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)]
      _ = poll(&fds, nfds_t(fds.count), Int32(beat * 1000))
      let now = monotonicNow()
      var lost: [(rank: Int, reason: String)] = []
      if now - lastBeat >= beat {
        lastBeat = now
        for member in members {
          do { try member.channel.send(.heartbeat(rank: -1), timeout: 5) } catch where !member.done {
            lost.append((member.rank, "\(member.name) is gone: \(error)"))
          } catch {}
        }
        for spare in spares { try? spare.channel.send(.heartbeat(rank: -1), timeout: 5) }
      }
      for rank in members.indices where !members[rank].done && !lost.contains(where: { $0.rank == rank }) {
        if fds[rank].revents == 0 {
          if now - members[rank].lastHeard > options.heartbeatTimeout {
            lost.append((rank, "\(members[rank].name) sent nothing for \(format(options.heartbeatTimeout, 1)) s (--heartbeat_timeout): stalled or dead"))
          }
          continue
        }
        members[rank].lastHeard = now
        let message: ControlMessage
        do { message = try members[rank].channel.receive(timeout: 30) } catch {
          lost.append((rank, "\(members[rank].name) is gone: \(error)"))
          continue
        }
        switch handle(message, from: rank, started: started) {
        case .none: break
        case let .lose(reason): lost.append((rank, reason))
        case let .fail(reason): return fail(reason)
        case .vanish:
          for member in members + spares { member.channel.connection.close() }
          Glibc.shutdown(listener.fd, Int32(SHUT_RDWR))
          return 137
        }
      }
      watchSpares(fds[members.count..<own], now: now)
      var joined: [Member] = []
      if options.elastic {
        admission.expire(now: now)
        joined = admission.serve(Array(fds[own...]))
      } else if fds[own].revents != 0 {
        admission.turnAway()
      }
      for member in joined { log("coordinator: \(member.name) joined as a spare") }
      spares += joined

      if !lost.isEmpty {
        guard options.elastic else { return fail(lost[0].reason) }
        if let failure = lose(lost) { return fail(failure) }
      } else if let since = interruptedSince, now - since > options.heartbeatTimeout {
        // A ring failed but every rank still answers (a data-plane link down): form the ring again.
        if let failure = formMembership(abandonStep: true, why: "a ring link failed while every rank answered") { return fail(failure) }
      } else if let failure = grow(now: now) {
        return fail(failure)
      }
    }
    writeJournal(force: true, finished: true)
    log("coordinator: all \(members.count) workers finished in \(Int(monotonicNow() - started)) s")
    for member in members + spares { try? member.channel.send(.stop(reason: "finished")) }
    return 0
  }

  /// Records the job's state in --model_dir (`JobJournal`); a failed write is named, not fatal: the
  /// job goes on, only a restarted coordinator could not take it over.
  func writeJournal(force: Bool = false, finished: Bool = false) {
    guard let directory = options.logDirectory, force || monotonicNow() - journalled >= 1 else { return }
    journalled = monotonicNow()
    let journal = JobJournal(configHash: JobSecret.configHash(options.config), generation: generation, lastCompletedStep: lastCompletedStep,
                             lastEvaluatedStep: lastEvaluatedStep, finished: finished)
    do { try journal.write(in: directory) } catch {
      log("coordinator: warning: could not write the job journal \(JobJournal.path(in: directory)): \(error)")
    }
  }

  enum Verdict { case lose(String), fail(String), vanish }

  /// Acts on one message from the rank `rank` of the current membership.
  func handle(_ message: ControlMessage, from rank: Int, started: Double) -> Verdict? {
    switch message {
    case var .metrics(report):
      // Until a rank started in this membership, what it sends belongs to the one before.
      guard round.starts[rank] != nil else { return nil }
      report.rank = rank
      let step = report.step
      round.stepReports[step, default: []].append(report)
      guard round.stepReports[step]!.count == members.count else { return nil }
      let reports = round.stepReports.removeValue(forKey: step)!.sorted { $0.rank < $1.rank }
      lastCompletedStep = max(lastCompletedStep, step)
      writeJournal()
      for event in stragglerWatch.observe(reports) {
        switch event {
        case let .straggling(r, own, others):
          let report = reports[r]
          let line = "\(members[r].name) is a straggler: its own work took \(format(own * 1000, 1)) ms a step (compute \(format((own - report.inputWaitSeconds) * 1000, 1)) ms, input wait \(format(report.inputWaitSeconds * 1000, 1)) ms) against the other ranks' median \(format(others * 1000, 1)) ms, more than \(Int(options.stragglerMargin * 100))% slower for \(options.stragglerSteps) steps (--straggler_margin, --straggler_steps)"
          if options.evictStragglers { return .lose(line + "; evicted (--evict_stragglers)") }
          log("coordinator: warning: " + line)
        case let .recovered(r):
          log("coordinator: \(members[r].name) is no longer a straggler")
        }
      }
      record(step: step, reports)
      if step % options.logEvery == 0 || step == options.totalSteps { progress(step: step, reports, started: started) }
      if step == options.vanishAfterStep { return .vanish }
    case let .evaluation(_, step, top1, top5, count, generation):
      guard generation == self.generation, round.starts[rank] != nil else { return nil }
      round.evaluation.top1 += top1; round.evaluation.top5 += top5; round.evaluation.count += count; round.evaluation.reports += 1
      if round.evaluation.reports == members.count {
        let n = Double(max(round.evaluation.count, 1))
        let top1 = Double(round.evaluation.top1) / n, top5 = Double(round.evaluation.top5) / n
        log("eval step \(step): top_1_accuracy \(format(top1)) top_5_accuracy \(format(top5)) over \(round.evaluation.count) validation images from \(members.count) workers")
        events?.add(step: step, scalars: [("top_1_accuracy", Float(top1)), ("top_5_accuracy", Float(top5))])
        jsonLog?.write([("step", step), ("top_1_accuracy", top1), ("top_5_accuracy", top5), ("eval_images", round.evaluation.count)])
        exporter?.set("amoeba_top_1_accuracy", help: "Validation top-1 accuracy of the moving-average weights.", samples: [.init(labels: [:], value: top1)])
        exporter?.set("amoeba_top_5_accuracy", help: "Validation top-5 accuracy of the moving-average weights.", samples: [.init(labels: [:], value: top5)])
        round.evaluation = (0, 0, 0, 0)
        lastEvaluatedStep = max(lastEvaluatedStep, step)
      }
    case .heartbeat:
      break
    case let .started(_, step, source, device, localDevices, generation):
      guard generation == self.generation else { return nil }
      round.starts[rank] = (step, source, device, max(1, localDevices))
      if round.starts.count == members.count { return membershipStarted() }
    case let .interrupted(_, step, reason, generation):
      // A rank still in the old ring when the next membership formed reports that ring's end.
      guard generation == self.generation else { return nil }
      log("coordinator: \(members[rank].name) lost its ring in step \(step): \(reason)")
      if interruptedSince == nil { interruptedSince = monotonicNow() }
    case .done:
      members[rank].done = true
    case let .failure(_, text):
      return .fail("\(members[rank].name) failed: \(text)")
    default:
      return .fail("\(members[rank].name) sent an unexpected \(message)")
    }
    return nil
  }

  /// Every rank of the membership started: they must start at the same step.
  func membershipStarted() -> Verdict? {
    round.started = true
    let starts = round.starts
    let steps = Set(starts.values.map(\.step))
    guard steps.count == 1, let step = steps.first else {
      return .fail("the workers start at different steps (\(starts.keys.sorted().map { "\(members[$0].name): \(starts[$0]!.step)" }.joined(separator: ", "))); they would train different models")
    }
    let job = JobDevices(kinds: members.indices.map { starts[$0]!.kind }, counts: members.indices.map { starts[$0]!.count })
    devices = job
    devicesPerWorker = max(devicesPerWorker, job.counts.max() ?? 1)
    // The ranks make an evaluation in flight again when they go on from its step; from a later one it is gone.
    if generation > 1, let every = options.evaluationInterval {
      let latest = step / every * every
      if latest > lastEvaluatedStep, latest > 0, latest != step, latest < options.totalSteps {
        log("coordinator: the evaluation of step \(latest) was in flight when the membership changed, and the job goes on from step \(step): it is lost (the next is at step \(latest + every))")
      }
    }
    let source = starts.values.map(\.source).max() ?? -1
    // A job started again from its checkpoints (all its processes restarted, the journal of the
    // last run read) starts as a job does; the journal says how much it redoes.
    if formations == 1 && (generation == 1 || source >= 0) {
      let redone = generation > 1 ? "; completed steps lost: \(max(0, lastCompletedStep - step)), per the journal" : ""
      log("coordinator: every worker starts at step \(step)" + (source >= 0 ? " (restored from rank \(source)'s checkpoint, broadcast to all\(redone))" : "")
          + " on \(job.summary)")
    } else {
      // Steps every rank had reported that the new membership does again (0 from memory: at most
      // the step in flight is lost, and it was never reported complete).
      let lost = max(0, lastCompletedStep - step)
      log("coordinator: membership generation \(generation) goes on from step \(step)"
          + (source >= 0 ? " (restored from rank \(source)'s checkpoint: the in-memory state left with the lost workers" : " (the state of a surviving rank, over the ring")
          + "; completed steps lost: \(lost)) on \(job.summary)")
    }
    for line in job.table(hosts: members.map { ($0.host, $0.ringAddress) }, globalBatch: options.globalBatch) { log("coordinator:   " + line) }
    exporter?.set("amoeba_devices", help: "Devices each worker's step spans (one program replicated over them).",
                  samples: members.indices.map { .init(labels: ["rank": String($0), "device": job.kinds[$0]], value: Double(job.counts[$0])) })
    exporter?.set("amoeba_membership_generation", help: "The membership's number: 1 at the start, one more each time it is formed again.",
                  samples: [.init(labels: [:], value: Double(generation))])
    exporter?.set("amoeba_workers", help: "Workers in the current membership.", samples: [.init(labels: [:], value: Double(members.count))])
    return nil
  }

  /// Spares are watched like ranks: one that closes or goes silent is dropped.
  func watchSpares(_ polled: ArraySlice<pollfd>, now: Double) {
    var drop: [Int] = []
    for (i, fd) in zip(spares.indices, polled) {
      if fd.revents == 0 {
        if now - spares[i].lastHeard > options.heartbeatTimeout { drop.append(i) }
        continue
      }
      spares[i].lastHeard = now
      if case .heartbeat? = try? spares[i].channel.receive(timeout: 5) { continue }
      drop.append(i)
    }
    for i in drop.reversed() {
      log("coordinator: dropped the spare \(spares[i].name): it closed or went silent")
      spares[i].channel.connection.close()
      spares.remove(at: i)
    }
  }

  /// Ranks lost in an elastic job: named, their connections closed, and the next membership formed
  /// from the others (abandoning the step in flight: the ring would wait for the lost ranks).
  func lose(_ lost: [(rank: Int, reason: String)]) -> String? {
    let ranks = Set(lost.map(\.rank))
    for (_, reason) in lost { log("coordinator: \(reason); forming the next membership without it") }
    for rank in ranks.sorted(by: >) {
      try? members[rank].channel.send(.stop(reason: "this worker was dropped from the job: \(lost.first { $0.rank == rank }!.reason)"), timeout: 1)
      members[rank].channel.connection.close()
      members.remove(at: rank)
    }
    workersLost += ranks.count
    exporter?.set("amoeba_workers_lost_total", help: "Workers lost (gone, silent or evicted) since the coordinator started.", type: "counter",
                  samples: [.init(labels: [:], value: Double(workersLost))])
    // Once a rank finished its last step, every rank did: the job ends without the lost one.
    if members.contains(where: \.done) {
      log("coordinator: the lost worker had finished its steps; its share of the final evaluation is missing")
      return nil
    }
    return formMembership(abandonStep: true, why: "lost " + lost.map { "rank \($0.rank)" }.joined(separator: ", "))
  }

  /// Admits spares at a step boundary when they let the job run on more workers (or when it is
  /// waiting for replacements); gives up once it has waited --join_timeout for them.
  func grow(now: Double) -> String? {
    if let since = shortSince {
      if options.sizes.choose(available: spares.count, devicesPerWorker: devicesPerWorker) != nil { return formMembership(abandonStep: false, why: "replacements joined") }
      if now - since > options.joinTimeout {
        return "only \(spares.count) worker\(spares.count == 1 ? "" : "s") left, fewer than --min_workers=\(options.sizes.minWorkers), and no replacement joined within \(Int(options.joinTimeout)) s (--join_timeout)"
      }
      return nil
    }
    guard round.started, !spares.isEmpty, !members.contains(where: \.done), lastCompletedStep < options.totalSteps,
          let size = options.sizes.choose(available: members.count + spares.count, devicesPerWorker: devicesPerWorker), size > members.count else { return nil }
    return formMembership(abandonStep: false, why: "admitted " + spares.prefix(size - members.count).map { "the worker at \($0.ringAddress) (host \($0.host))" }.joined(separator: ", "))
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

  func fail(_ reason: String) -> Int32 {
    log("coordinator: error: \(reason); stopping the other workers")
    for member in members + spares { try? member.channel.send(.stop(reason: reason), timeout: 5) }
    return 1
  }
}

func format(_ x: Double, _ digits: Int = 4) -> String {
  var scale = 1.0
  for _ in 0..<digits { scale *= 10 }
  return String((x * scale).rounded() / scale)
}
