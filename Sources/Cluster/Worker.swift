#if canImport(Glibc)
import Glibc
#endif
import CLI
import Checksums
import Collective
import Data
import Model
import Tensor
import Train
import XLA

/// One training process: joins the coordinator (proving the job token), forms the ring with its
/// neighbours, receives rank 0's initial parameters, and trains its own shard in lockstep —
/// gradients averaged over the ring in buckets overlapped with backward, identical optimizer steps
/// on every rank, batch norm per worker as the reference's per-core batch norm. Reports metrics
/// every step and its share of the evaluation; heartbeats and the coordinator's stop go through
/// `CoordinatorLink` on their own threads.
public final class Worker {
  public struct Options: Sendable {
    public var coordinator: SocketAddress
    public var token: String
    /// Address this worker's ring socket binds and advertises (an interface address on a cluster).
    public var listenHost = "127.0.0.1"
    public var threads = ThreadPool.onlineCores
    /// Reaching the coordinator, and waiting for the rank assignment and the end of the job.
    public var connectTimeout = 120.0
    /// Forming the ring, and each ring exchange (a stop from the coordinator ends either at once).
    public var ringTimeout = 120.0
    /// Where the step runs: the Swift kernels, or a PJRT plugin's device.
    public var device: Accelerator = .cpu
    /// The plugin (`--pjrt_plugin`); nil: where the device's wheel installs it.
    public var pjrtPlugin: String?
    public var precision: StableHLOLowering.Precision = .float32
    /// Devices of this host the step spans (`--local_devices`); nil: all the plugin's.
    public var localDevices: Int? = 1
    /// Compiled programs kept between runs (`--compilation_cache_dir`); nil: compile every time.
    public var compilationCache: String?
    /// Where this worker keeps and looks for checkpoints, when not the job's --model_dir (a local
    /// disk of its own host, say).
    public var modelDir: String?
    /// After a stop from the coordinator, exit the process this many seconds later if training has
    /// not returned by then (nil: never; in-process tests).
    public var exitAfterStop: Double?
    public var checksumEvery = 50
    /// Fault injection for tests: after this step the worker closes every socket without a word,
    /// as a host lost mid-run (what kill -9 does to a process), and returns failure.
    public var loseAfterStep: Int?
    public init(coordinator: SocketAddress, token: String) { self.coordinator = coordinator; self.token = token }
  }

  public let options: Options
  var rank = -1
  public var log: (String) -> Void = { print($0); fflush(nil) }

  public init(options: Options) { self.options = options }

  var name: String { rank >= 0 ? "worker \(rank)" : "worker" }

  public func run() -> Int32 {
    var link: CoordinatorLink?
    // Kept across coordinators: a worker that lost its coordinator keeps its state for the next.
    var local: Local?
    do {
      let listener = try TCPListener(host: options.listenHost)
      var hostName = [CChar](repeating: 0, count: 256)
      gethostname(&hostName, 255)
      let host = String(decoding: hostName.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      var deadline = monotonicNow() + options.connectTimeout
      while true {
        let joined = try CoordinatorLink.join(options.coordinator, secret: JobSecret(token: options.token),
                                              ringAddress: listener.address.description, host: host, deadline: deadline)
        link = joined
        do {
          try train(joined, listener: listener, local: &local)
          joined.close()
          return 0
        } catch where joined.lostCoordinator && (local?.grace ?? 0) > 0 {
          // The coordinator died or its host went away: a restarted one takes the job over from
          // its journal, and this worker's state is the job's.
          let grace = local!.grace
          log("\(name): \(joined.stopReason ?? "lost the coordinator"); keeping the state of step \(local?.trainer?.globalStep ?? 0) and trying to reach it again for \(Int(grace)) s (--coordinator_grace)")
          joined.close()
          deadline = monotonicNow() + grace
        }
      }
    } catch {
      // A worker the coordinator stopped says why; the coordinator already knows. Otherwise the
      // reason goes to the coordinator before the link closes.
      let text = link?.stopReason ?? "\(error)"
      log("\(name): error: \(text)")
      if link?.stopReason == nil { try? link?.send(.failure(rank: rank, message: "\(error)")) }
      link?.close()
      return 1
    }
  }

  /// The job's settings, read once from the configuration the coordinator sent.
  struct JobSettings {
    let config: [String: String]
    let network: NetworkConfig
    let training: TrainingConfig
    let data: DataOptions
    let communication: CommunicationOptions
    let seed: UInt64
    let modelDir: String

    init(config: [String: String]) throws {
      var flags = try Flags(config.map { "--\($0.key)=\($0.value)" })
      self.config = config
      network = try flags.networkConfig()
      training = try flags.trainingConfig()
      data = try flags.dataOptions()
      communication = try flags.communicationOptions()
      seed = try flags.seed()
      modelDir = flags.string("model_dir", default: "")
    }
  }

  /// What the training thread holds from one membership to the next.
  struct Local {
    let job: JobSettings
    let context: KernelContext
    let dataset: any Dataset
    let client: PJRTClient?
    /// Devices of this host the step spans.
    let devices: Int
    var evaluator: Evaluator?
    let store: CheckpointStore?
    let checkpointStep: Int?
    var trainer: Trainer?
    var trainerRingSize = 0
    /// The trainer's state is the job's (it trained in a membership); false for a newcomer.
    var holdsState = false
    /// The last step it began, it also finished (a failed ring can leave one half done).
    var clean = true
    var skipped = 0
    /// --coordinator_grace, as the coordinator last said.
    var grace = 0.0
  }

  func train(_ link: CoordinatorLink, listener: TCPListener, local held: inout Local?) throws {
    var assignment: Assignment
    switch try link.awaitWork(timeout: options.connectTimeout, log: log) {
    case let .assignment(first): assignment = first
    case let .task(task): return try searchChildren(first: task, link: link)
    }
    rank = assignment.rank
    // With a grace, a lost coordinator ends this worker only once the grace has passed.
    link.listen(silence: assignment.heartbeatTimeout, exitAfter: assignment.coordinatorGrace > 0 ? nil : options.exitAfterStop, log: log)
    if held == nil { held = try prepare(JobSettings(config: assignment.config)) }
    held!.grace = assignment.coordinatorGrace
    var local = held!
    defer { held = local }
    while true {
      let next: CoordinatorLink.Directive?
      do {
        next = try membership(assignment, link: link, listener: listener, local: &local)
      } catch where assignment.elastic && link.stopReason == nil && error is CollectiveError {
        // The ring lost a rank (or the coordinator moved the job on) while forming, handing the
        // state over or in a step: the neighbours hear of it at once (this rank's ring sockets
        // are closed), the coordinator forms the next membership, and the state of the last step
        // a rank finished comes back over the new ring.
        log("\(name): the ring of membership generation \(assignment.generation) failed: \(error); waiting for the coordinator's next membership")
        try? link.send(.interrupted(rank: rank, step: (local.trainer?.globalStep ?? 0) + 1, reason: "\(error)", generation: assignment.generation))
        next = try nextDirective(link, timeout: 3 * assignment.heartbeatTimeout + options.ringTimeout)
        if next == nil { return }
      }
      guard let next else { break }
      var directive = next
      while case let .standby(reason) = directive {
        log("\(name): waiting as a spare: \(reason)")
        // A spare waits as long as the coordinator keeps beating (its silence raises the stop).
        guard let following = try nextDirective(link, timeout: .greatestFiniteMagnitude) else { return }
        directive = following
      }
      guard case let .assignment(following) = directive else { return }
      assignment = following
    }
    let trainer = local.trainer!
    if local.job.training.mode != "train" {
      try evaluate(trainer, local, assignment: assignment, link: link)
    }
    try link.send(.done(rank: rank))
    try link.awaitFinish(timeout: options.connectTimeout)
  }

  /// A search's worker (`--mode=search`): trains each child it is given alone on the proxy task,
  /// evaluates its moving averages on the validation set and reports, until the coordinator
  /// stops it. A child whose loss diverges scores 0 (a bad genotype is a result, not a failure).
  func searchChildren(first: SearchTask, link: CoordinatorLink) throws {
    var task = first
    while true {
      let started = monotonicNow()
      let settings = try JobSettings(config: task.config)
      let local = try prepare(settings)
      let trainer = try makeTrainer(local, batch: settings.training.trainBatchSize, size: 1, offset: 0, replacing: nil)
      let batcher = Batcher(dataset: local.dataset, split: .train, batchSize: settings.training.trainBatchSize, seed: settings.seed,
                            onBadRecord: settings.data.onBadRecord)
      let prefetcher = Prefetcher(batcher: batcher, firstBatch: 0, depth: settings.data.prefetchBatches + 1, threads: settings.data.inputThreads)
      var result = TaskResult(id: task.id, top1: 0, top5: 0, trainSeconds: 0)
      do {
        defer { prefetcher.shutDown() }
        while trainer.globalStep < settings.training.totalSteps {
          let input = try prefetcher.next()
          try trainer.step(images: input.images, labels: input.labels)
        }
        let hits = try Validation.hits(trainer, network: settings.network, training: settings.training, dataset: local.dataset,
                                       onBadRecord: settings.data.onBadRecord, context: local.context, evaluator: local.evaluator)
        let count = Double(max(hits.count, 1))
        result.top1 = Double(hits.top1) / count; result.top5 = Double(hits.top5) / count
      } catch {
        guard let failure = error as? TrainError, case .diverged = failure else { throw error }
        log("\(name): child \(task.id) diverged (\(failure)); it scores 0")
      }
      result.trainSeconds = monotonicNow() - started
      log("\(name): child \(task.id) (\(settings.network.cellName)): top-1 \(result.top1) after \(trainer.globalStep) steps in \(Int(result.trainSeconds)) s")
      try link.send(.taskResult(result))
      // The next child, or the end (heartbeats in between; the coordinator's silence ends the wait).
      while true {
        let message = try link.channel.receive(timeout: 3 * task.heartbeatTimeout)
        if case let .task(next) = message { task = next; break }
        if case let .stop(reason) = message {
          if reason == "finished" { return }
          throw ControlError("stopped by \(link.name): \(reason)")
        }
      }
    }
  }

  /// The next membership; nil when the job finished meanwhile (a spare is then done too).
  func nextDirective(_ link: CoordinatorLink, timeout: Double) throws -> CoordinatorLink.Directive? {
    do { return try link.awaitDirective(timeout: timeout) } catch where link.stopReason == "finished" { return nil }
  }

  /// What does not change with the membership: the dataset, the device client, the checkpoint store.
  func prepare(_ job: JobSettings) throws -> Local {
    let context = KernelContext(threads: options.threads)
    let training = job.training
    // The coordinator sent the job's image counts. The built-in and fake sets are made that size
    // (a --num_train_images=7200 job trains on 7,200 images, as `amoeba train` does); a worker whose
    // copy of --data_dir holds a different number of records says so (each reads its own copy).
    var counted = training
    let generated = job.data.useData != "real"
    let dataset = try job.data.dataset(network: job.network, training: &counted, trainImagesGiven: generated, evalImagesGiven: generated,
                                       seed: job.seed)
    if !generated && (counted.numTrainImages != training.numTrainImages || counted.numEvalImages != training.numEvalImages) {
      log("\(name): warning: --data_dir \(job.data.dataDir) here has \(counted.numTrainImages) training and \(counted.numEvalImages) validation records; the job was configured for \(training.numTrainImages) and \(training.numEvalImages)")
    }
    var client: PJRTClient?
    var devices = 1
    var evaluator: Evaluator?
    if options.device != .cpu {
      guard let plugin = options.pjrtPlugin ?? options.device.defaultPluginPath else {
        throw UsageError("--device \(options.device.rawValue): no PJRT plugin found; \(options.device.installHint)")
      }
      let started = try PJRTClient(plugin: PJRTPlugin(path: plugin), options: options.device.clientOptions(devices: options.localDevices))
      devices = options.localDevices ?? started.devices.count
      guard devices <= started.devices.count else {
        throw UsageError("--local_devices=\(devices): \(started.platformName) has \(started.devices.count) devices on this host")
      }
      client = started
      if training.mode != "train" {
        let onDevice = try Evaluator(network: job.network, batchSize: training.evalBatchSize, context: context)
        let evaluation = try XLABackend(client: started, executor: onDevice.executor, precision: options.precision,
                                        cache: options.compilationCache.map(CompileCache.init)) { self.log("\(self.name): compile cache: \($0)") }
        onDevice.backend = evaluation
        evaluator = onDevice
        log("\(name): the evaluation network " + (evaluation.sources.allSatisfy { $0 != .compiled } ? "loaded from the compile cache" : "compiled")
            + " for \(evaluation.name) in \(Int(evaluation.compileSeconds.rounded())) s")
      }
    }
    // Each worker looks in its own --model_dir (a shared directory, or a local disk per host):
    // leftovers of a crash mid-save go first, then it finds its newest checkpoint that reads back
    // whole. The ring then agrees which rank's to resume from (`StateSource`).
    let directory = options.modelDir ?? job.modelDir
    let store = directory.isEmpty ? nil : CheckpointStore(directory: directory, keep: training.keepCheckpointMax)
    if let removed = store?.removeLeftovers(), !removed.isEmpty {
      log("\(name): removed what an interrupted save left in \(directory): \(removed.joined(separator: ", "))")
    }
    let checkpointStep = store?.newestValidStep(config: job.config, report: { self.log("\(self.name): warning: \($0)") })
    return Local(job: job, context: context, dataset: dataset, client: client, devices: devices, evaluator: evaluator,
                 store: store, checkpointStep: checkpointStep)
  }

  /// The trainer for a batch of `batch` per worker in a ring of `size`; with `replacing`, its state
  /// (at its step) is carried over, so that a membership of another size goes on from it.
  /// `offset`: where this worker's examples start in the global batch (its masks are keyed on it;
  /// a device backend compiles it into its programs).
  func makeTrainer(_ local: Local, batch: Int, size: Int, offset: Int, replacing old: Trainer?) throws -> Trainer {
    let training = local.job.training
    var perWorker = training
    // Several local devices: each takes a slice of this worker's batch (a micro-batch on the host).
    if local.client != nil {
      guard batch % local.devices == 0 else {
        throw UsageError("this worker's batch of \(batch) (--train_batch_size=\(training.trainBatchSize) over \(size) workers) does not split over \(local.devices) devices")
      }
      if local.devices > 1 { perWorker.microBatchSize = .fixed(batch / local.devices) }
    }
    let trainer = try Trainer(network: local.job.network, training: perWorker, batchSize: batch, context: local.context, seed: local.job.seed,
                              fuseBatchNormRelu: options.device == .cpu, exampleOffset: offset)
    if trainer.microBatch < batch && local.devices == 1 {
      log("\(name): micro-batches of \(trainer.microBatch) (\(batch / trainer.microBatch) passes per step, gradients accumulated; batch norm per micro-batch)")
    }
    if let client = local.client {
      let devices = local.devices
      // With a ring, backward is compiled in one program per gradient bucket, so that each
      // bucket leaves the device while the next is computed.
      let groups = size > 1 ? trainer.gradientBuckets(bucketBytes: local.job.communication.bucketBytes) : []
      let backend = try XLABackend(client: client, executor: trainer.executor, averagesOverWorkers: size > 1, gradientGroups: groups,
                                   precision: options.precision, replicas: devices,
                                   cache: options.compilationCache.map(CompileCache.init)) { self.log("\(self.name): compile cache: \($0)") }
      trainer.backend = backend
      let cached = backend.sources.allSatisfy { $0 != .compiled }
      log("\(name): the training step " + (cached ? "loaded from the compile cache" : "compiled")
          + " for \(backend.name)\(devices > 1 ? " on \(devices) devices" : "") in \(Int(backend.compileSeconds.rounded())) s (plugin \(client.plugin.path), \(options.precision)): "
          + (devices > 1 ? "\(batch / devices) examples per device, gradients averaged across the \(devices) devices in the program; " : "")
          + (size > 1 ? "gradients\(groups.count > 1 ? " in \(groups.count) programs, one per bucket, each bucket to the ring as it is done" : ""), then the ring on the host (one copy per worker), then the update; " : "one program; ")
          + "the state stays on the device")
    }
    if let old {
      try old.synchronizeHostState()
      for (to, from) in zip(CheckpointStore.tensors(of: trainer), CheckpointStore.tensors(of: old)) {
        to.pointer.update(from: from.pointer, count: to.shape.elementCount)
      }
      trainer.setGlobalStep(old.globalStep)
      trainer.hostStateChanged()
      log("\(name): rebuilt the step for a batch of \(batch) per worker (was \(old.batchSize)), the state carried over at step \(old.globalStep)")
    }
    return trainer
  }

  /// One membership: the ring in its generation, the state from the rank that holds the newest
  /// (in memory, or a checkpoint on the first), then steps until the job ends (nil) or the
  /// coordinator forms the next membership (its directive).
  func membership(_ assignment: Assignment, link: CoordinatorLink, listener: TCPListener, local: inout Local) throws -> CoordinatorLink.Directive? {
    let (size, job) = (assignment.size, local.job)
    rank = assignment.rank
    let shares = BatchShares(globalBatch: job.training.trainBatchSize, workers: size)
    let batch = shares.batch(of: rank)
    log("worker \(rank) of \(size)\(assignment.generation > 1 ? " (membership generation \(assignment.generation))" : ""): ring \(assignment.ringAddresses.joined(separator: " ")), batch \(batch) per worker"
        + (shares.isEven ? "" : " (the global batch of \(shares.globalBatch) as \(shares.summary); gradients weighted by \(shares.weight(of: rank)) before the ring's mean)"))
    // The Swift executor keeps its step when only the ring changes; a device's program is
    // compiled for its ring (one program, or one per bucket), and either for its batch.
    // A device backend compiled the ring size and the example offset into its programs too.
    if local.trainer == nil || local.trainer!.batchSize != batch
      || (local.client != nil && (local.trainerRingSize != size || local.trainer!.exampleOffset != shares.offset(of: rank))) {
      local.trainer = try makeTrainer(local, batch: batch, size: size, offset: shares.offset(of: rank), replacing: local.trainer)
      local.trainerRingSize = size
    }
    let trainer = local.trainer!
    trainer.exampleOffset = shares.offset(of: rank)
    trainer.gradientWeight = shares.weight(of: rank)
    let secret = JobSecret(token: options.token)
    let links = try TCPRing(rank: rank, addresses: assignment.ringAddresses.map { try SocketAddress(parsing: $0) }, listener: listener,
                            jobID: UInt64(assignment.jobID) ?? 0, generation: UInt32(clamping: assignment.generation),
                            authenticator: secret.ringAuthenticator(configHash: JobSecret.configHash(job.config), macFrames: job.communication.ringMAC),
                            timeout: options.ringTimeout, cancellation: link.ringCancellation())
    defer { links.close() }
    if links.refusedConnections > 0 {
      log("\(name): refused \(links.refusedConnections) stray connection\(links.refusedConnections == 1 ? "" : "s") at ring port \(listener.address) (last: \(links.lastRefusal ?? ""))")
    }
    let ring = Ring(links: links)
    let plan = try StateSource.agree(inMemory: local.holdsState ? (trainer.globalStep, local.clean) : nil,
                                     checkpoint: local.holdsState ? nil : local.checkpointStep, ring: ring)
    if let plan, plan.fromCheckpoint, plan.source == rank, let store = local.store {
      let sidecar = try store.load(step: plan.step, config: job.config, into: trainer)
      log("\(name): resumed from \(store.directory)/\(sidecar.tensorsFile) at step \(sidecar.globalStep)")
    }
    if plan?.source == rank { try trainer.synchronizeHostState() }
    // Until the broadcast is complete a receiver's own state is partly the source's: it counts as
    // state only if it was at the source's step already (then only batch-norm statistics differ).
    if let plan, plan.source != rank {
      if trainer.globalStep != plan.step { local.holdsState = false }
      local.clean = false
    }
    // The source's whole training state everywhere (rank 0's initial one on a fresh start):
    // parameters, optimizer slots, moving averages and batch-norm moving statistics.
    for tensor in CheckpointStore.tensors(of: trainer) {
      try ring.broadcast(UnsafeMutableBufferPointer(start: tensor.pointer, count: tensor.shape.elementCount), root: plan?.source ?? 0)
    }
    trainer.hostStateChanged()
    if let plan {
      trainer.setGlobalStep(plan.step)
      if plan.source != rank {
        log("\(name): " + (plan.fromCheckpoint ? "resumed at step \(plan.step) from rank \(plan.source)'s checkpoint"
                                               : "took the state of step \(plan.step) from rank \(plan.source) over the ring"))
      }
    }
    local.holdsState = true
    local.clean = true
    try link.send(.started(rank: rank, step: trainer.globalStep, source: plan.map { $0.fromCheckpoint ? $0.source : -1 } ?? -1,
                           device: trainer.backend?.name ?? "cpu", localDevices: local.devices, generation: assignment.generation))
    ring.chunkBytes = job.communication.chunkBytes
    // One worker has no one to average with (and a device backend compiled as one program takes no ring).
    if size > 1 {
      trainer.attach(ring: ring, bucketBytes: job.communication.bucketBytes, compression: job.communication.compression)
      let wire = job.communication.compression == .none ? "float32" : job.communication.compression.rawValue
      let buckets = trainer.gradientBucketCount
      log("\(name): gradients all-reduced in \(buckets) bucket\(buckets == 1 ? "" : "s") (cap \(job.communication.bucketCapMB) MiB), \(wire) on the wire, ring slices of \(size) × \(ring.chunkBytes >> 10) KiB, frames \(links.authenticatesFrames ? "authenticated (Poly1305)" : "without a MAC")")
    }
    defer { trainer.detach() }
    let step = trainer.globalStep
    if let done = assignment.evaluatedThrough, let every = job.training.evaluationInterval, step > done, step > 0, step % every == 0,
       step < job.training.totalSteps {
      log("\(name): evaluating step \(step) again: the membership changed while its evaluation was in flight")
      try evaluate(trainer, local, assignment: assignment, link: link)
    }
    return try steps(trainer, ring: ring, links: links, assignment: assignment, batch: batch, link: link, local: &local)
  }

  /// Steps in one membership until the last (nil) or the coordinator's next membership: between
  /// steps when it finishes the step first, or — elastic — when the ring fails under a step.
  func steps(_ trainer: Trainer, ring: Ring, links: TCPRing, assignment: Assignment, batch: Int, link: CoordinatorLink,
             local: inout Local) throws -> CoordinatorLink.Directive? {
    let (size, job) = (assignment.size, local.job)
    let training = job.training
    let saveEvery = max(1, training.iterationsPerLoop)
    let evalEvery = training.evaluationInterval ?? Int.max
    let batcher = Batcher(dataset: local.dataset, split: .train, batchSize: batch, shard: rank, shardCount: size,
                          globalBatch: training.trainBatchSize, seed: job.seed, onBadRecord: job.data.onBadRecord)
    let prefetcher = Prefetcher(batcher: batcher, firstBatch: trainer.globalStep, depth: job.data.prefetchBatches + 1, threads: job.data.inputThreads)
    defer { prefetcher.shutDown() }
    // Damage found while indexing (a truncated last record) counts as skipped from the first step.
    if !local.holdsState || local.skipped == 0 { local.skipped = max(local.skipped, local.dataset.damagedRecords(.train)) }
    let total = training.totalSteps
    // Bytes each rank moves per all-reduce of all gradients, nccl-tests' bus-bandwidth convention.
    let busBytes = Double(trainer.trainable.reduce(0) { $0 + $1.shape.elementCount } * 4) * 2 * Double(size - 1) / Double(size)
    while trainer.globalStep < total {
      if let next = link.takeDirective() { return next }
      try link.cancellation.check()
      local.clean = false
      let started = monotonicNow()
      let input = try prefetcher.next()
      let inputWait = monotonicNow() - started
      if let error = input.report.firstError { log("\(name): warning: skipped a bad record: \(error)") }
      local.skipped += input.report.skipped
      let losses = try trainer.step(images: input.images, labels: input.labels)
      local.clean = true
      let seconds = monotonicNow() - started
      let communication = trainer.lastCommunication
      try link.send(.metrics(StepMetrics(rank: rank, step: trainer.globalStep, loss: Double(losses.total), learningRate: Double(losses.learningRate),
                                         imagesPerSecond: Double(batch) / seconds, stepSeconds: seconds,
                                         communicationSeconds: communication?.communicationSeconds ?? 0,
                                         hiddenFraction: communication?.hiddenFraction ?? 1,
                                         busBandwidth: (communication?.communicationSeconds ?? 0) > 0 ? busBytes / communication!.communicationSeconds : 0,
                                         inputWaitSeconds: inputWait, ringWaitSeconds: communication?.waitSeconds ?? 0, badRecords: local.skipped,
                                         deviceSeconds: trainer.backend?.lastDeviceSeconds ?? [])))
      if let lose = options.loseAfterStep, trainer.globalStep == lose {
        link.close(); links.close()
        throw ControlError("lost on purpose after step \(lose) (fault injection: every socket closed without a word)")
      }
      if trainer.globalStep % options.checksumEvery == 0 || trainer.globalStep == total {
        try compareChecksums(trainer, ring: ring)
      }
      if trainer.globalStep % evalEvery == 0, trainer.globalStep < total {
        try evaluate(trainer, local, assignment: assignment, link: link)
      }
      // Rank 0 writes the checkpoints (atomically); the others hold identical parameters, and a
      // restart resumes from whichever rank holds the newest checkpoint.
      if let store = local.store, rank == 0, trainer.globalStep % saveEvery == 0 || trainer.globalStep == total {
        log("worker 0: saved \(try store.save(trainer, config: job.config))")
      }
    }
    return nil
  }

  /// This worker's share of the validation set (batches b ≡ rank mod size), on the moving averages;
  /// the coordinator sums the shares of one membership.
  func evaluate(_ trainer: Trainer, _ local: Local, assignment: Assignment, link: CoordinatorLink) throws {
    let hits = try Validation.hits(trainer, network: local.job.network, training: local.job.training, dataset: local.dataset, shard: assignment.rank,
                                   shardCount: assignment.size, onBadRecord: local.job.data.onBadRecord, context: local.context,
                                   evaluator: local.evaluator)
    try link.send(.evaluation(rank: assignment.rank, step: trainer.globalStep, top1: hits.top1, top5: hits.top5, count: hits.count,
                              generation: assignment.generation))
  }

  /// Every rank's parameter checksum must agree; a divergence names the ranks that differ.
  func compareChecksums(_ trainer: Trainer, ring: Ring) throws {
    try trainer.synchronizeHostState()
    var sum = 0.0
    for i in trainer.trainable.indices {
      let p = trainer.parameterPointer(i)
      for e in 0..<trainer.trainable[i].shape.elementCount { sum += Double(p[e]) * Double((e % 7) + 1) }
    }
    let all = try ring.allGather([Float(sum)])
    let differing = all.indices.filter { all[$0] != all[0] }
    if !differing.isEmpty {
      throw UsageError("parameters diverged at step \(trainer.globalStep): ranks \(differing.map(String.init).joined(separator: ", ")) differ from rank 0 (checksums \(all))")
    }
  }
}

/// Top-1 and top-5 hits of the evaluation network over a share of the validation set: batches
/// b ≡ shard mod shardCount, `--eval_batch_size` images each, up to `--num_eval_images`.
public enum Validation {
  /// `evaluator`: one made before (with a device backend, say); nil: a fresh one on the Swift executor.
  public static func hits(_ trainer: Trainer, network: NetworkConfig, training: TrainingConfig, dataset: any Dataset,
                          shard: Int = 0, shardCount: Int = 1, useAverages: Bool = true, onBadRecord: BadRecordPolicy = .skip,
                          context: KernelContext, evaluator: Evaluator? = nil) throws -> (top1: Int, top5: Int, count: Int) {
    let evaluator = try evaluator ?? Evaluator(network: network, batchSize: training.evalBatchSize, context: context)
    try evaluator.load(from: trainer, useAverages: useAverages)
    let validation = Batcher(dataset: dataset, split: .validation, batchSize: training.evalBatchSize, onBadRecord: onBadRecord)
    let pixels = network.imageSize * network.imageSize * 3
    let images = UnsafeMutablePointer<Float>.allocateAligned(training.evalBatchSize * pixels)
    let labels = UnsafeMutablePointer<Float>.allocateAligned(training.evalBatchSize)
    defer { images.deallocate(); labels.deallocate() }
    var top1 = 0, top5 = 0, count = 0
    let batches = min(training.numEvalImages, dataset.count(.validation)) / training.evalBatchSize
    for b in stride(from: shard, to: batches, by: shardCount) {
      let report = try validation.fill(batch: b, images: images, labels: labels, context: context)
      if let error = report.firstError { print("warning: evaluation skipped \(report.skipped) bad record(s), first: \(error)") }
      let hits = try evaluator.evaluate(images: images, labels: labels, count: training.evalBatchSize)
      top1 += hits.top1; top5 += hits.top5; count += training.evalBatchSize
    }
    return (top1, top5, count)
  }
}

/// Where a membership's state comes from. Ranks that trained in the last membership hold the
/// state in memory: the newest step wins, a rank that finished it cleanly before one whose step
/// was cut short (its batch-norm statistics may be half updated), then the lowest rank. Only when
/// none holds state (the job's first membership) does a checkpoint count: every rank offers the
/// newest step it can read from its own --model_dir, and all take the newest, from the lowest rank
/// that has it. On a shared directory every rank offers the same step; on per-host disks only the
/// host that was rank 0 last time has one, and it need not be rank 0 now.
enum StateSource {
  static func agree(inMemory: (step: Int, clean: Bool)?, checkpoint: Int?, ring: Ring) throws -> (source: Int, step: Int, fromCheckpoint: Bool)? {
    // Steps travel as two floats each, exact below 2²⁴: steps up to 2³⁶.
    func split(_ step: Int?) -> [Float] { step.map { [Float($0 >> 12), Float($0 & 4095)] } ?? [-1, -1] }
    let offers = try ring.allGather(split(inMemory?.step) + [inMemory?.clean == true ? 1 : 0] + split(checkpoint))
    func step(_ r: Int, _ at: Int) -> Int? { offers[5 * r + at] < 0 ? nil : Int(offers[5 * r + at]) << 12 | Int(offers[5 * r + at + 1]) }
    var best: (source: Int, step: Int, clean: Bool)?
    for r in 0..<ring.size {
      guard let s = step(r, 0) else { continue }
      let clean = offers[5 * r + 2] > 0
      if best == nil || (s, clean ? 1 : 0) > (best!.step, best!.clean ? 1 : 0) { best = (r, s, clean) }
    }
    if let best { return (best.source, best.step, false) }
    var newest: (source: Int, step: Int)?
    for r in 0..<ring.size {
      guard let s = step(r, 3) else { continue }
      if newest == nil || s > newest!.step { newest = (r, s) }
    }
    return newest.map { ($0.source, $0.step, true) }
  }
}
