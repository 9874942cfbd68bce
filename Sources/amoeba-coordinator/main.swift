#if canImport(Glibc)
import Glibc
#endif
import CLI
import Cluster

/// `amoeba-coordinator --workers N [--port P] [--job_token T | --job_token_file F] [training flags]`
let usage = """
  usage: amoeba-coordinator --workers N [--port 0] [--host 0.0.0.0] [--job_token T | --job_token_file F]
                            [--port_file F] [--metrics_port P] [--log_every 10] [--heartbeat_timeout 120] [--join_timeout 120]
                            [model, training and data flags with the reference's names]
                            [--bucket_cap_mb 25] [--gradient_compression none|bf16|fp16] [--allreduce_chunk_kb 512]
  The job token may also come from AMOEBA_JOB_TOKEN; without one a fresh token is generated and printed.
  """
do {
  var flags = try Flags(Array(CommandLine.arguments.dropFirst()))
  let workers = try flags.int("workers", default: 1)
  let port = try flags.int("port", default: 0)
  let host = flags.string("host", default: "0.0.0.0")
  let portFile = flags.string("port_file", default: "")
  let logEvery = try flags.int("log_every", default: 10)
  let heartbeat = try flags.double("heartbeat_timeout", default: 120)
  let join = try flags.double("join_timeout", default: 120)
  let metricsPort = flags.has("metrics_port") ? try flags.int("metrics_port", default: 0) : nil
  var token = try flags.jobToken()
  let ignored = flags.ignoredReferenceFlags()
  let job = try flags.trainingJob()
  try flags.finish()
  guard workers >= 1 else { throw UsageError("--workers must be at least 1") }
  if token == nil || token!.isEmpty {
    token = JobAuthentication.nonce()
    print("coordinator: generated job token \(token!) (pass it to the workers with --job_token or AMOEBA_JOB_TOKEN)")
  }
  if !ignored.isEmpty { print("coordinator: ignoring TPU/Cloud flags \(ignored.map { "--" + $0 }.joined(separator: ", ")) (CPU workers)") }
  var options = Coordinator.Options(token: token!, config: job.config, totalSteps: job.training.totalSteps,
                                    stepsPerEpoch: job.training.stepsPerEpochForTraining, globalBatch: job.training.trainBatchSize)
  options.host = host; options.port = port; options.workers = workers; options.logEvery = logEvery
  options.heartbeatTimeout = heartbeat; options.joinTimeout = join
  options.metricsPort = metricsPort
  options.logDirectory = job.config["model_dir"]
  let coordinator = try Coordinator(options: options)
  if let exporter = coordinator.exporter { print("coordinator: Prometheus metrics at http://0.0.0.0:\(exporter.port)/metrics") }
  print("coordinator listening on port \(coordinator.port) for \(workers) workers: \(job.network.cellName) num_cells=\(job.network.numCells) reduction_size=\(job.network.reductionSize) image_size=\(job.network.imageSize), global batch \(job.training.trainBatchSize), \(job.training.totalSteps) steps")
  fflush(nil)
  if !portFile.isEmpty {
    let temporary = portFile + ".tmp"
    if let f = fopen(temporary, "w") { fputs("\(coordinator.port)\n", f); fclose(f); rename(temporary, portFile) }
  }
  exit(coordinator.run())
} catch let error as UsageError {
  printError("amoeba-coordinator: \(error.message)\n\(usage)")
  exit(2)
} catch {
  printError("amoeba-coordinator: \(error)")
  exit(1)
}
