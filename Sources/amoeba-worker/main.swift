#if canImport(Glibc)
import Glibc
#endif
import CLI
import Cluster
import Collective
import Tensor
import XLA

/// `amoeba-worker --coordinator host:port [--job_token T] [--listen ADDRESS] [--threads N] [--device cpu]`
let usage = """
  usage: amoeba-worker --coordinator HOST:PORT [--job_token_file F | --job_token T] [--listen 127.0.0.1]
                       [--threads N] [--device cpu|xla_cpu|gpu|tpu] [--pjrt_plugin PATH] [--precision float32|bfloat16]
                       [--local_devices 1|N|all] [--compilation_cache_dir DIR] [--connect_timeout 120] [--ring_timeout 120] [--model_dir DIR]
  The job token may also come from AMOEBA_JOB_TOKEN. --listen is the address this worker's ring socket
  binds and advertises to its neighbours: an address of this host that the other workers can reach,
  or a network interface's name (eth0, ib0, …), whose address is then used. --connect_timeout bounds
  reaching the coordinator and waiting for the job to start; --ring_timeout forming the ring and
  each ring exchange. A stop from the coordinator ends the worker at once. --device xla_cpu|gpu|tpu
  runs the whole step (forward, backward, optimizer, moving averages) as XLA programs through a PJRT
  plugin, the state kept on the device: --pjrt_plugin, or where pip installs it (XLA:CPU: .pjrt/ from
  Scripts/fetch-pjrt-cpu.sh or AMOEBA_PJRT_CPU_PLUGIN; gpu: jax-cuda12-pjrt; tpu: libtpu). The
  hardware is checked first (a TPU by its PCI vendor id). --precision bfloat16 gives convolutions
  and matrix products bf16 operands with f32 accumulation. --local_devices N|all replicates the step
  over this host's devices (XLA:CPU: that many virtual devices), each on its slice of the worker's
  batch with batch norm per device, the gradients averaged across them inside the program, then
  (with several workers) one copy per worker round the ring. Compiled programs are kept in
  --compilation_cache_dir (default ~/.cache/amoeba/xla; empty: off). --model_dir overrides the
  job's checkpoint directory for this worker (a local disk); a restarted job resumes from the newest
  checkpoint any worker holds, broadcast to all.
  Exit status: 0 when the job finished, 1 when it failed, 2 for a wrong command line.
  """
if AmoebaVersion.requested(CommandLine.arguments) {
  print("amoeba-worker \(AmoebaVersion.release) (cluster protocol \(Handshake.protocolVersion))")
  exit(0)
}
do {
  var flags = try Flags(Array(CommandLine.arguments.dropFirst()))
  let coordinatorText = flags.string("coordinator", default: "")
  let listen = flags.string("listen", default: "127.0.0.1")
  let threads = try flags.int("threads", default: ThreadPool.onlineCores)
  let deviceName = flags.string("device", default: "cpu")
  let plugin = flags.has("pjrt_plugin") ? flags.string("pjrt_plugin", default: "") : nil
  let precisionName = flags.string("precision", default: "float32")
  let cacheDirectory = flags.string("compilation_cache_dir", default: CompileCache.defaultDirectory)
  let localDevicesText = flags.string("local_devices", default: "1")
  let token = try flags.jobToken()
  let connectTimeout = try flags.double("connect_timeout", default: 120)
  let ringTimeout = try flags.double("ring_timeout", default: 120)
  let modelDir = flags.has("model_dir") ? flags.string("model_dir", default: "") : nil
  try flags.finish()
  for (name, value) in [("connect_timeout", connectTimeout), ("ring_timeout", ringTimeout)] where value <= 0 {
    throw UsageError("--\(name) must be a positive number of seconds, got \(value)")
  }
  guard !coordinatorText.isEmpty else { throw UsageError("--coordinator HOST:PORT is required") }
  guard let device = Accelerator(rawValue: deviceName) else {
    throw UsageError("--device \(deviceName): one of \(Accelerator.allCases.map(\.rawValue).joined(separator: ", "))")
  }
  guard let precision = StableHLOLowering.Precision(rawValue: precisionName) else {
    throw UsageError("--precision \(precisionName): float32 or bfloat16")
  }
  if let missing = device.missingHardware() { throw UsageError(missing) }
  if device != .cpu {
    guard let path = plugin ?? device.defaultPluginPath, access(path, R_OK) == 0 else {
      throw UsageError("--device \(device.rawValue): no PJRT plugin at \(plugin ?? device.defaultPluginPath ?? "any of the usual places"); \(device.installHint)")
    }
  }
  let localDevices: Int?
  if localDevicesText == "all" { localDevices = nil } else {
    guard let n = Int(localDevicesText), n >= 1 else { throw UsageError("--local_devices \(localDevicesText): all, or a number of devices from 1") }
    guard n == 1 || device != .cpu else { throw UsageError("--local_devices=\(n) needs --device xla_cpu, gpu or tpu (the Swift kernels use one process per core group)") }
    localDevices = n
  }
  guard let token, !token.isEmpty else { throw UsageError("no job token: pass --job_token, --job_token_file or AMOEBA_JOB_TOKEN (the coordinator prints its token)") }
  var options = Worker.Options(coordinator: try SocketAddress(parsing: coordinatorText), token: token)
  // An interface name stands for its address (IPv4 first).
  let interface = SocketAddress.interface(listen)
  if interface.exists && interface.address == nil {
    throw UsageError("--listen \(listen): that network interface has no IPv4 or global IPv6 address to bind")
  }
  options.listenHost = interface.address ?? listen
  options.threads = max(1, threads)
  options.connectTimeout = connectTimeout
  options.ringTimeout = ringTimeout
  options.exitAfterStop = 2
  options.modelDir = modelDir
  options.device = device
  options.pjrtPlugin = plugin
  options.precision = precision
  options.localDevices = localDevices
  options.compilationCache = cacheDirectory.isEmpty ? nil : cacheDirectory
  exit(Worker(options: options).run())
} catch let help as HelpRequested {
  print("\(usage)\nflags:\n\(help)")
  exit(0)
} catch let error as UsageError {
  printError("amoeba-worker: \(error.message)\n\(usage)")
  exit(ExitStatus.usage)
} catch where ExitStatus.isUsage(error) {
  printError("amoeba-worker: \(error)")
  exit(ExitStatus.usage)
} catch {
  printError("amoeba-worker: \(error)")
  exit(ExitStatus.failure)
}
