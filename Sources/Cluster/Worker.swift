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
    public init(coordinator: SocketAddress, token: String) { self.coordinator = coordinator; self.token = token }
  }

  public let options: Options
  var rank = -1
  public var log: (String) -> Void = { print($0); fflush(nil) }

  public init(options: Options) { self.options = options }

  var name: String { rank >= 0 ? "worker \(rank)" : "worker" }

  public func run() -> Int32 {
    var link: CoordinatorLink?
    do {
      let listener = try TCPListener(host: options.listenHost)
      var hostName = [CChar](repeating: 0, count: 256)
      gethostname(&hostName, 255)
      let host = String(decoding: hostName.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      let joined = try CoordinatorLink.join(options.coordinator, secret: JobSecret(token: options.token),
                                            ringAddress: listener.address.description, host: host,
                                            deadline: monotonicNow() + options.connectTimeout)
      link = joined
      try train(joined, listener: listener)
      joined.close()
      return 0
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

  func train(_ link: CoordinatorLink, listener: TCPListener) throws {
    let assignment = try link.awaitAssignment(timeout: options.connectTimeout)
    guard case let .assignment(rank, size, ringAddresses, config, jobID, heartbeatTimeout, generation) = assignment else { return }
    self.rank = rank
    link.listen(silence: heartbeatTimeout, exitAfter: options.exitAfterStop, log: log)
    var flags = try Flags(config.map { "--\($0.key)=\($0.value)" })
    let network = try flags.networkConfig()
    let training = try flags.trainingConfig()
    let data = try flags.dataOptions()
    let communication = try flags.communicationOptions()
    let seed = try flags.seed()
    let modelDir = flags.string("model_dir", default: "")
    guard training.trainBatchSize % size == 0 else {
      throw UsageError("--train_batch_size=\(training.trainBatchSize) is not divisible by the \(size) workers")
    }
    let batch = training.trainBatchSize / size
    log("worker \(rank) of \(size): ring \(ringAddresses.joined(separator: " ")), batch \(batch) per worker")

    let context = KernelContext(threads: options.threads)
    // The coordinator sent the job's image counts; a worker whose copy of --data_dir holds a
    // different number of records says so (each reads its own copy on a cluster).
    var counted = training
    let dataset = try data.dataset(network: network, training: &counted, trainImagesGiven: false, evalImagesGiven: false, seed: seed)
    if data.useData == "real" && (counted.numTrainImages != training.numTrainImages || counted.numEvalImages != training.numEvalImages) {
      log("worker \(rank): warning: --data_dir \(data.dataDir) here has \(counted.numTrainImages) training and \(counted.numEvalImages) validation records; the job was configured for \(training.numTrainImages) and \(training.numEvalImages)")
    }
    // Several local devices: each takes a slice of this worker's batch (a micro-batch on the host).
    var client: PJRTClient?
    var devices = 1
    var perWorker = training
    if options.device != .cpu {
      guard let plugin = options.pjrtPlugin ?? options.device.defaultPluginPath else {
        throw UsageError("--device \(options.device.rawValue): no PJRT plugin found; \(options.device.installHint)")
      }
      let started = try PJRTClient(plugin: PJRTPlugin(path: plugin), options: options.device.clientOptions(devices: options.localDevices))
      devices = options.localDevices ?? started.devices.count
      guard devices <= started.devices.count else {
        throw UsageError("--local_devices=\(devices): \(started.platformName) has \(started.devices.count) devices on this host")
      }
      guard batch % devices == 0 else {
        throw UsageError("this worker's batch of \(batch) (--train_batch_size=\(training.trainBatchSize) over \(size) workers) does not split over \(devices) devices")
      }
      if devices > 1 { perWorker.microBatchSize = .fixed(batch / devices) }
      client = started
    }
    let trainer = try Trainer(network: network, training: perWorker, batchSize: batch, context: context, seed: seed,
                              fuseBatchNormRelu: options.device == .cpu, exampleOffset: rank * batch)
    if trainer.microBatch < batch && devices == 1 {
      log("worker \(rank): micro-batches of \(trainer.microBatch) (\(batch / trainer.microBatch) passes per step, gradients accumulated; batch norm per micro-batch)")
    }
    var evaluator: Evaluator?
    if let client {
      let plugin = client.plugin.path
      // With a ring, backward is compiled in one program per gradient bucket, so that each
      // bucket leaves the device while the next is computed.
      let groups = size > 1 ? trainer.gradientBuckets(bucketBytes: communication.bucketBytes) : []
      let backend = try XLABackend(client: client, executor: trainer.executor, averagesOverWorkers: size > 1, gradientGroups: groups,
                                   precision: options.precision,
                                   replicas: devices, cache: options.compilationCache.map(CompileCache.init)) { log("worker \(rank): compile cache: \($0)") }
      trainer.backend = backend
      let cached = backend.sources.allSatisfy { $0 != .compiled }
      log("worker \(rank): the training step " + (cached ? "loaded from the compile cache" : "compiled")
          + " for \(backend.name)\(devices > 1 ? " on \(devices) devices" : "") in \(Int(backend.compileSeconds.rounded())) s (plugin \(plugin), \(options.precision)): "
          + (devices > 1 ? "\(batch / devices) examples per device, gradients averaged across the \(devices) devices in the program; " : "")
          + (size > 1 ? "gradients\(groups.count > 1 ? " in \(groups.count) programs, one per bucket, each bucket to the ring as it is done" : ""), then the ring on the host (one copy per worker), then the update; " : "one program; ")
          + "the state stays on the device")
      if training.mode != "train" {
        let onDevice = try Evaluator(network: network, batchSize: training.evalBatchSize, context: context)
        let evaluation = try XLABackend(client: client, executor: onDevice.executor, precision: options.precision,
                                        cache: options.compilationCache.map(CompileCache.init)) { log("worker \(rank): compile cache: \($0)") }
        onDevice.backend = evaluation
        evaluator = onDevice
        log("worker \(rank): the evaluation network " + (evaluation.sources.allSatisfy { $0 != .compiled } ? "loaded from the compile cache" : "compiled")
            + " for \(evaluation.name) in \(Int(evaluation.compileSeconds.rounded())) s")
      }
    }
    // Each worker looks in its own --model_dir (a shared directory, or a local disk per host):
    // leftovers of a crash mid-save go first, then it finds its newest checkpoint that reads back
    // whole. The ring then agrees which rank's to resume from (`Resume`).
    let directory = options.modelDir ?? modelDir
    let store = directory.isEmpty ? nil : CheckpointStore(directory: directory, keep: training.keepCheckpointMax)
    if let removed = store?.removeLeftovers(), !removed.isEmpty {
      log("worker \(rank): removed what an interrupted save left in \(directory): \(removed.joined(separator: ", "))")
    }
    let localStep = store?.newestValidStep(config: config, report: { self.log("worker \(rank): warning: \($0)") })
    let saveEvery = max(1, training.iterationsPerLoop)
    let evalEvery = max(1, Int(training.numEpochsPerEval * Double(training.stepsPerEpochForTraining)))
    let secret = JobSecret(token: options.token)
    let configHash = JobSecret.configHash(config)
    let links = try TCPRing(rank: rank, addresses: ringAddresses.map { try SocketAddress(parsing: $0) }, listener: listener,
                            jobID: UInt64(jobID) ?? 0, generation: UInt32(clamping: generation), authenticator: secret.ringAuthenticator(configHash: configHash, macFrames: communication.ringMAC),
                            timeout: options.ringTimeout, cancellation: link.cancellation)
    if links.refusedConnections > 0 {
      log("worker \(rank): refused \(links.refusedConnections) stray connection\(links.refusedConnections == 1 ? "" : "s") at ring port \(listener.address) (last: \(links.lastRefusal ?? ""))")
    }
    let ring = Ring(links: links)
    let plan = try Resume.agree(localStep: localStep, ring: ring)
    if let plan, plan.source == rank, let store {
      let sidecar = try store.load(step: plan.step, config: config, into: trainer)
      log("worker \(rank): resumed from \(directory)/\(sidecar.tensorsFile) at step \(sidecar.globalStep)")
    }
    // The source's whole training state everywhere (rank 0's initial one on a fresh start):
    // parameters, optimizer slots, moving averages and batch-norm moving statistics.
    for tensor in CheckpointStore.tensors(of: trainer) {
      try ring.broadcast(UnsafeMutableBufferPointer(start: tensor.pointer, count: tensor.shape.elementCount), root: plan?.source ?? 0)
    }
    trainer.hostStateChanged()
    if let plan {
      trainer.setGlobalStep(plan.step)
      if plan.source != rank { log("worker \(rank): resumed at step \(plan.step) from rank \(plan.source)'s checkpoint") }
    }
    try link.send(.started(rank: rank, step: trainer.globalStep, source: plan?.source ?? -1, device: trainer.backend?.name ?? "cpu",
                           localDevices: devices))
    ring.chunkBytes = communication.chunkBytes
    // One worker has no one to average with (and a device backend compiled as one program takes no ring).
    if size > 1 {
      trainer.attach(ring: ring, bucketBytes: communication.bucketBytes, compression: communication.compression)
      let wire = communication.compression == .none ? "float32" : communication.compression.rawValue
      let buckets = trainer.gradientBucketCount
      log("worker \(rank): gradients all-reduced in \(buckets) bucket\(buckets == 1 ? "" : "s") (cap \(communication.bucketCapMB) MiB), \(wire) on the wire, ring slices of \(size) × \(ring.chunkBytes >> 10) KiB, frames \(links.authenticatesFrames ? "authenticated (Poly1305)" : "without a MAC")")
    }
    defer { trainer.detach() }

    let batcher = Batcher(dataset: dataset, split: .train, batchSize: batch, shard: rank, shardCount: size, seed: seed,
                          onBadRecord: data.onBadRecord)
    let prefetcher = Prefetcher(batcher: batcher, firstBatch: trainer.globalStep, depth: data.prefetchBatches + 1, threads: data.inputThreads)
    defer { prefetcher.shutDown() }
    // Damage found while indexing (a truncated last record) counts as skipped from the first step.
    var skipped = dataset.damagedRecords(.train)
    let total = training.totalSteps
    // Bytes each rank moves per all-reduce of all gradients, nccl-tests' bus-bandwidth convention.
    let busBytes = Double(trainer.trainable.reduce(0) { $0 + $1.shape.elementCount } * 4) * 2 * Double(size - 1) / Double(size)
    while trainer.globalStep < total {
      try link.cancellation.check()
      let started = monotonicNow()
      let input = try prefetcher.next()
      let inputWait = monotonicNow() - started
      if let error = input.report.firstError { log("worker \(rank): warning: skipped a bad record: \(error)") }
      skipped += input.report.skipped
      let losses = try trainer.step(images: input.images, labels: input.labels)
      let rate = Double(losses.learningRate)
      let seconds = monotonicNow() - started
      let communication = trainer.lastCommunication
      try link.send(.metrics(StepMetrics(rank: rank, step: trainer.globalStep, loss: Double(losses.total), learningRate: rate,
                                         imagesPerSecond: Double(batch) / seconds, stepSeconds: seconds,
                                         communicationSeconds: communication?.communicationSeconds ?? 0,
                                         hiddenFraction: communication?.hiddenFraction ?? 1,
                                         busBandwidth: (communication?.communicationSeconds ?? 0) > 0 ? busBytes / communication!.communicationSeconds : 0,
                                         inputWaitSeconds: inputWait, ringWaitSeconds: communication?.waitSeconds ?? 0, badRecords: skipped,
                                         deviceSeconds: trainer.backend?.lastDeviceSeconds ?? [])))
      if trainer.globalStep % options.checksumEvery == 0 || trainer.globalStep == total {
        try compareChecksums(trainer, ring: ring)
      }
      if training.mode == "train_and_eval", trainer.globalStep % evalEvery == 0, trainer.globalStep < total {
        try evaluate(trainer, dataset: dataset, network: network, training: training, rank: rank, size: size,
                     onBadRecord: data.onBadRecord, context: context, link: link, evaluator: evaluator)
      }
      // Rank 0 writes the checkpoints (atomically); the others hold identical parameters, and a
      // restart resumes from whichever rank holds the newest checkpoint.
      if let store, rank == 0, trainer.globalStep % saveEvery == 0 || trainer.globalStep == total {
        log("worker 0: saved \(try store.save(trainer, config: config))")
      }
    }
    trainer.detach()
    if training.mode != "train" {
      try evaluate(trainer, dataset: dataset, network: network, training: training, rank: rank, size: size,
                   onBadRecord: data.onBadRecord, context: context, link: link, evaluator: evaluator)
    }
    try link.send(.done(rank: rank))
    try link.awaitFinish(timeout: options.connectTimeout)
  }

  /// This worker's share of the validation set (batches b ≡ rank mod size), on the moving averages;
  /// the coordinator sums the shares.
  func evaluate(_ trainer: Trainer, dataset: any Dataset, network: NetworkConfig, training: TrainingConfig, rank: Int, size: Int,
                onBadRecord: BadRecordPolicy, context: KernelContext, link: CoordinatorLink, evaluator: Evaluator?) throws {
    let hits = try Validation.hits(trainer, network: network, training: training, dataset: dataset, shard: rank,
                                   shardCount: size, onBadRecord: onBadRecord, context: context, evaluator: evaluator)
    try link.send(.evaluation(rank: rank, step: trainer.globalStep, top1: hits.top1, top5: hits.top5, count: hits.count))
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

/// Which checkpoint a (re)started job resumes from: every rank offers the newest step it can read
/// from its own --model_dir, and all take the newest offered, from the lowest rank that has it.
/// On a shared directory every rank offers the same step; on per-host disks only the host that
/// was rank 0 last time has one, and it need not be rank 0 now.
enum Resume {
  static func agree(localStep: Int?, ring: Ring) throws -> (source: Int, step: Int)? {
    // Two floats per rank, each exact below 2²⁴: steps up to 2³⁶.
    let step = localStep ?? -1
    let offers = try ring.allGather(step < 0 ? [-1, -1] : [Float(step >> 12), Float(step & 4095)])
    var best: (source: Int, step: Int)?
    for r in 0..<ring.size where offers[2 * r] >= 0 {
      let s = Int(offers[2 * r]) << 12 | Int(offers[2 * r + 1])
      if best == nil || s > best!.step { best = (r, s) }
    }
    return best
  }
}
