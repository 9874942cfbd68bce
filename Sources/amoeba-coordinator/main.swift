#if canImport(Glibc)
import Glibc
#endif
import CLI
import Cluster
import Search

/// `amoeba-coordinator --workers N [--port P] [--job_token_file F] [training flags]`
let usage = """
  usage: amoeba-coordinator --workers N [--port 0] [--host 0.0.0.0] [--job_token_file F | --job_token T]
                            [--port_file F] [--metrics_port P] [--metrics_host 127.0.0.1] [--log_every 10]
                            [--heartbeat_timeout 10] [--join_timeout 120] [--handshake_timeout 10]
                            [--min_workers N --max_workers M (elastic: survive lost workers, admit new ones)]
                            [--coordinator_grace 0 (seconds workers wait for a restarted coordinator)]
                            [--straggler_margin 0.5] [--straggler_steps 20] [--evict_stragglers]
                            [model, training and data flags with the reference's names]
                            [--bucket_cap_mb 25] [--gradient_compression none|bf16|fp16] [--allreduce_chunk_kb 512]
         amoeba-coordinator --mode=search --model_dir D [--population 100] [--sample 25] [--cycles 1000]
                            [--search_seed 0] [--aging true] [the proxy task's model, training and data flags]
                            regularized evolution: every worker that joins trains children on the proxy task;
                            the history (search-history.jsonl) and best.json go to D, and a restart resumes
  The job token may also come from AMOEBA_JOB_TOKEN. A --job_token_file that does not exist yet is
  created with a fresh token (mode 0600); give the workers the same file. Without any token a fresh
  one is generated and shown on the terminal only (or written to a 0600 file whose path is printed).
  Exit status: 0 when every worker finished, 1 when the job failed, 2 for a wrong command line.
  """
/// The listening port for scripts, written whole (renamed into place) so a reader never sees half.
func writePortFile(_ path: String, _ port: Int) {
  guard !path.isEmpty else { return }
  let temporary = path + ".tmp"
  if let f = fopen(temporary, "w") { fputs("\(port)\n", f); fclose(f); rename(temporary, path) }
}
if AmoebaVersion.requested(CommandLine.arguments) {
  print("amoeba-coordinator \(AmoebaVersion.release) (cluster protocol \(Handshake.protocolVersion))")
  exit(0)
}
do {
  // --mode=search is this program's own mode, not a training mode the proxy task's flags take.
  var arguments = Array(CommandLine.arguments.dropFirst())
  var searching = false
  if let i = arguments.firstIndex(of: "--mode=search") { arguments.remove(at: i); searching = true }
  if let i = arguments.firstIndex(of: "--mode"), i + 1 < arguments.count, arguments[i + 1] == "search" {
    arguments.removeSubrange(i...(i + 1)); searching = true
  }
  var flags = try Flags(arguments)
  let workers = try flags.int("workers", default: 1)
  let port = try flags.int("port", default: 0)
  let host = flags.string("host", default: "0.0.0.0")
  let portFile = flags.string("port_file", default: "")
  let logEvery = try flags.int("log_every", default: 10)
  let heartbeat = try flags.double("heartbeat_timeout", default: 10)
  let join = try flags.double("join_timeout", default: 120)
  let handshake = try flags.double("handshake_timeout", default: 10)
  let minWorkers = flags.has("min_workers") ? try flags.int("min_workers", default: workers) : nil
  let maxWorkers = flags.has("max_workers") ? try flags.int("max_workers", default: workers) : nil
  let coordinatorGrace = try flags.double("coordinator_grace", default: 0)
  let stragglerMargin = try flags.double("straggler_margin", default: 0.5)
  let stragglerSteps = try flags.int("straggler_steps", default: 20)
  let evictStragglers = try flags.bool("evict_stragglers", default: false)
  let metricsPort = flags.has("metrics_port") ? try flags.int("metrics_port", default: 0) : nil
  let metricsHost = flags.string("metrics_host", default: "127.0.0.1")
  let tokenFile = flags.has("job_token_file") ? flags.string("job_token_file", default: "") : nil
  var token: String?
  if let tokenFile, access(tokenFile, F_OK) != 0 {
    token = try JobSecret.generateToken()
    try TokenFile.write(token!, to: tokenFile)
    print("coordinator: wrote a fresh job token to \(tokenFile) (mode 0600); give the workers --job_token_file \(tokenFile)")
  } else {
    token = try flags.jobToken()
  }
  let ignored = flags.ignoredReferenceFlags()
  if searching {
    let settings = SearchSettings(populationSize: try flags.int("population", default: 100), sampleSize: try flags.int("sample", default: 25),
                                  cycles: try flags.int("cycles", default: 1000), seed: UInt64(try flags.int("search_seed", default: 0)),
                                  aging: try flags.bool("aging", default: true))
    var job = try flags.trainingJob()
    try flags.finish()
    if let problem = settings.problem { throw UsageError(problem) }
    guard let directory = job.config["model_dir"] else { throw UsageError("--mode=search needs --model_dir, where the search's history and best genotype go") }
    guard let token, !token.isEmpty else { throw UsageError("--mode=search needs a job token (--job_token_file F or AMOEBA_JOB_TOKEN) for its workers") }
    // Each child trains alone on the proxy task, evaluated once at its end; no checkpoints.
    job.config["mode"] = "train"
    job.config["model_dir"] = nil
    var options = SearchCoordinator.Options(token: token, config: job.config, settings: settings, directory: directory)
    options.host = host; options.port = port; options.heartbeatTimeout = heartbeat; options.joinTimeout = join; options.handshakeTimeout = handshake
    let coordinator = try SearchCoordinator(options: options)
    print("coordinator listening on port \(coordinator.port) for search workers: proxy task \(job.network.numCells) cells, reduction_size \(job.network.reductionSize), image_size \(job.network.imageSize), \(job.training.totalSteps) steps of \(job.training.trainBatchSize) per child")
    fflush(nil)
    writePortFile(portFile, coordinator.port)
    exit(coordinator.run())
  }
  let job = try flags.trainingJob()
  try flags.finish()
  guard workers >= 1 else { throw UsageError("--workers must be at least 1") }
  guard stragglerMargin > 0 else { throw UsageError("--straggler_margin must be above 0 (0.5: 50% slower than the others), got \(stragglerMargin)") }
  guard stragglerSteps >= 1 else { throw UsageError("--straggler_steps must be at least 1, got \(stragglerSteps)") }
  guard coordinatorGrace >= 0 else { throw UsageError("--coordinator_grace must be 0 (off) or a positive number of seconds, got \(coordinatorGrace)") }
  if coordinatorGrace > 0 && job.config["model_dir"] == nil {
    printError("coordinator: warning: --coordinator_grace without --model_dir: a restarted coordinator has no journal to take the job over from (its workers still resume from their state)")
  }
  for (name, value) in [("heartbeat_timeout", heartbeat), ("join_timeout", join), ("handshake_timeout", handshake)] where value <= 0 {
    throw UsageError("--\(name) must be a positive number of seconds, got \(value)")
  }
  if minWorkers != nil || maxWorkers != nil {
    let sizes = MembershipSize(minWorkers: minWorkers ?? workers, maxWorkers: maxWorkers ?? max(workers, minWorkers ?? workers), globalBatch: job.training.trainBatchSize)
    if let problem = sizes.problem { throw UsageError(problem) }
    guard (sizes.minWorkers...sizes.maxWorkers).contains(workers) else {
      throw UsageError("--workers=\(workers) (the workers the job waits for to start) is outside --min_workers=\(sizes.minWorkers) to --max_workers=\(sizes.maxWorkers)")
    }
  }
  // Checked before anyone joins: a job that cannot split its batch should not wait for workers.
  guard job.training.trainBatchSize >= workers else {
    throw UsageError("--train_batch_size=\(job.training.trainBatchSize) leaves no example for some of the --workers=\(workers); each worker takes a share of the global batch")
  }
  if let given = token, !given.isEmpty, given.count < JobSecret.recommendedTokenLength {
    printError("coordinator: warning: the job token has \(given.count) characters; a recorded handshake lets a short token be guessed offline — use a generated one (a --job_token_file that does not exist yet gets one)")
  }
  if token == nil || token!.isEmpty {
    token = try JobSecret.generateToken()
    if isatty(2) != 0 {
      printError("coordinator: generated job token \(token!) — shown here only; next time pass --job_token_file F (created if missing) to the coordinator and the workers")
    } else {
      let path = (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp") + "/amoeba-job-token-\(getpid())"
      try TokenFile.write(token!, to: path)
      print("coordinator: generated a job token into \(path) (mode 0600); give the workers --job_token_file \(path)")
    }
  }
  if !ignored.isEmpty { print("coordinator: ignoring TPU/Cloud flags \(ignored.map { "--" + $0 }.joined(separator: ", ")) (CPU workers)") }
  var options = Coordinator.Options(token: token!, config: job.config, totalSteps: job.training.totalSteps,
                                    stepsPerEpoch: job.training.stepsPerEpochForTraining, globalBatch: job.training.trainBatchSize)
  options.host = host; options.port = port; options.workers = workers; options.logEvery = logEvery
  options.minWorkers = minWorkers; options.maxWorkers = maxWorkers; options.coordinatorGrace = coordinatorGrace
  options.heartbeatTimeout = heartbeat; options.joinTimeout = join; options.handshakeTimeout = handshake
  options.metricsPort = metricsPort; options.metricsHost = metricsHost
  options.stragglerMargin = stragglerMargin; options.stragglerSteps = stragglerSteps; options.evictStragglers = evictStragglers
  options.logDirectory = job.config["model_dir"]
  options.evaluationInterval = job.training.evaluationInterval
  let coordinator = try Coordinator(options: options)
  if let exporter = coordinator.exporter { print("coordinator: Prometheus metrics at http://\(metricsHost):\(exporter.port)/metrics") }
  print("coordinator listening on port \(coordinator.port) for \(workers) workers: \(job.network.cellName) num_cells=\(job.network.numCells) reduction_size=\(job.network.reductionSize) image_size=\(job.network.imageSize), global batch \(job.training.trainBatchSize), \(job.training.totalSteps) steps")
  fflush(nil)
  writePortFile(portFile, coordinator.port)
  exit(coordinator.run())
} catch let help as HelpRequested {
  print("\(usage)\nflags:\n\(help)")
  exit(0)
} catch let error as UsageError {
  printError("amoeba-coordinator: \(error.message)\n\(usage)")
  exit(ExitStatus.usage)
} catch where ExitStatus.isUsage(error) {
  printError("amoeba-coordinator: \(error)")
  exit(ExitStatus.usage)
} catch {
  printError("amoeba-coordinator: \(error)")
  exit(ExitStatus.failure)
}
