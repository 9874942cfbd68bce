#if canImport(Glibc)
import Glibc
#endif
import CLI
import Cluster
import Collective
import Foundation
import Tensor

/// `amoeba launch --workers N [flags]`: a coordinator and N workers on this machine with a fresh job
/// token; every line each process prints is prefixed with its name; Ctrl-C or the first failure
/// stops everything (the first failure is reported); the exit status is non-zero on failure.
struct LaunchCommand {
  var workers: Int
  var forwarded: [String]
  var threadsPerWorker: Int
  /// Worker flags: where the step runs (`--device`, `--pjrt_plugin`, `--precision`, `--compilation_cache_dir`).
  var workerFlags: [String] = []
  /// Drain the children's output without printing it (benchmarks).
  var quiet = false

  init(arguments: [String]) throws {
    var flags = try Flags(arguments)
    workers = try flags.int("workers", default: 2)
    threadsPerWorker = try flags.int("threads_per_worker", default: max(1, ThreadPool.onlineCores / max(workers, 1)))
    guard workers >= 1 else { throw UsageError("--workers must be at least 1") }
    if flags.has("device") { workerFlags += ["--device", flags.string("device", default: "cpu")] }
    for name in ["pjrt_plugin", "precision", "compilation_cache_dir", "local_devices"] where flags.has(name) {
      workerFlags += ["--" + name, flags.string(name, default: "")]
    }
    // With --help, list these; the coordinator's own flags are behind `amoeba-coordinator --help`.
    if arguments.contains("--help") || arguments.contains("-h") { try flags.finish() }
    // Everything else goes to the coordinator, which validates it.
    forwarded = LaunchCommand.removing(["workers", "threads_per_worker", "device", "pjrt_plugin", "precision", "compilation_cache_dir", "local_devices"],
                                       from: arguments)
  }

  /// `arguments` without the named flags in either form (`--name=value`, `--name value`).
  static func removing(_ names: [String], from arguments: [String]) -> [String] {
    var kept: [String] = [], skipNext = false
    for argument in arguments {
      if skipNext { skipNext = false; continue }
      if let name = names.first(where: { argument == "--" + $0 || argument.hasPrefix("--" + $0 + "=") }) {
        skipNext = argument == "--" + name
        continue
      }
      kept.append(argument)
    }
    return kept
  }

  func run() throws -> Int32 {
    let directory = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map { ($0 as NSString).deletingLastPathComponent } ?? "."
    let token = try JobSecret.generateToken()
    setenv("AMOEBA_JOB_TOKEN", token, 1)
    // The workers share this machine's memory: each plans its step within an equal share.
    if let available = SystemMemory.availableBytes() { setenv(SystemMemory.shareVariable, String(available / max(workers, 1)), 1) }
    let portFile = NSTemporaryDirectory() + "amoeba-launch-\(getpid()).port"
    defer { unlink(portFile) }
    var processes: [(name: String, pid: pid_t, output: Int32)] = []
    func start(_ name: String, _ executable: String, _ arguments: [String]) throws {
      var pipeFds: [Int32] = [0, 0]
      pipe(&pipeFds)
      var actions = posix_spawn_file_actions_t()
      posix_spawn_file_actions_init(&actions)
      posix_spawn_file_actions_adddup2(&actions, pipeFds[1], 1)
      posix_spawn_file_actions_adddup2(&actions, pipeFds[1], 2)
      posix_spawn_file_actions_addclose(&actions, pipeFds[0])
      let path = directory + "/" + executable
      let cArgs = ([path] + arguments).map { strdup($0) } + [nil]
      defer { cArgs.forEach { free($0) }; posix_spawn_file_actions_destroy(&actions) }
      var pid = pid_t()
      let rc = posix_spawn(&pid, path, &actions, nil, cArgs, environ)
      close(pipeFds[1])
      guard rc == 0 else { throw UsageError("could not start \(path): \(String(cString: strerror(rc))); build it with swift build -c release") }
      processes.append((name, pid, pipeFds[0]))
    }
    try start("coordinator", "amoeba-coordinator", ["--workers", String(workers), "--port", "0", "--host", "127.0.0.1", "--port_file", portFile] + forwarded)
    let deadline = monotonicNow() + 30
    var port: Int?
    while port == nil && monotonicNow() < deadline {
      port = (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: " \n")) }
      if port == nil { usleep(20_000); if waitpid(processes[0].pid, nil, WNOHANG) != 0 { break } }
    }
    guard let port else {
      relay(&processes, until: { true })
      printError("launch: the coordinator did not start (see its output above)")
      return 1
    }
    for _ in 0..<workers {
      try start("worker", "amoeba-worker", ["--coordinator", "127.0.0.1:\(port)", "--threads", String(threadsPerWorker)] + workerFlags)
    }
    let interrupted = LaunchCommand.installInterruptHandler()
    var firstFailure: String?
    var failedAt: Double?
    var failureFromCoordinator = false
    var stopped = Set<Int>()
    var running = Set(processes.indices)
    while !running.isEmpty {
      relay(&processes, until: { false }, timeoutMilliseconds: 200)
      // Workers before the coordinator: when both are found gone in one pass, the coordinator's
      // exit is the consequence.
      for i in running.sorted(by: >) {
        var status: Int32 = 0
        if waitpid(processes[i].pid, &status, WNOHANG) == processes[i].pid {
          running.remove(i)
          let signal = status & 0x7F, code = (status >> 8) & 0xFF
          let description = signal != 0 ? "\(processes[i].name) was killed by signal \(signal)" : "\(processes[i].name) exited with status \(code)"
          // A killed worker's exit can be reaped after the coordinator's, which it caused: a signal
          // death within two seconds of a coordinator failure is reported as the first failure.
          // We stop processes with SIGTERM; any other signal, or one we did not send, came from outside.
          let killedByUs = stopped.contains(i) && (signal == SIGTERM || signal == SIGKILL)
          if status != 0 && (firstFailure == nil
                             || (failureFromCoordinator && signal != 0 && !killedByUs && i != 0 && monotonicNow() - (failedAt ?? 0) < 2)) {
            firstFailure = description
            failureFromCoordinator = i == 0
          }
        }
      }
      if (firstFailure != nil || interrupted.pointee != 0) && !running.isEmpty {
        // After a worker's failure the other workers stop at once, and the coordinator (index 0)
        // gets a few seconds to notice and name the lost worker itself. After the coordinator's,
        // the workers get two seconds to act on its stop and say why they end.
        if failedAt == nil { failedAt = monotonicNow() }
        let elapsed = monotonicNow() - failedAt!
        for i in running where interrupted.pointee != 0 || (i == 0 ? elapsed > 3 : !failureFromCoordinator || elapsed > 2) {
          // SIGTERM first; a process still there 4 s later (hung, or stopped with SIGSTOP, where
          // SIGTERM waits for a SIGCONT) gets SIGKILL, so launch always ends.
          kill(processes[i].pid, elapsed > 6 ? SIGKILL : SIGTERM)
          stopped.insert(i)
        }
      }
    }
    relay(&processes, until: { true })
    if interrupted.pointee != 0 { printError("launch: interrupted; stopped every process"); return 130 }
    if let firstFailure { printError("launch: failed: \(firstFailure) first; stopped the others"); return 1 }
    return 0
  }

  /// Copies complete lines from the children's pipes to stdout with a name prefix.
  /// A worker's rank is known once the coordinator assigns it: its first line "worker R of N: …"
  /// renames the process to "rank R" for every later line.
  func relay(_ processes: inout [(name: String, pid: pid_t, output: Int32)], until done: () -> Bool, timeoutMilliseconds: Int32 = 0) {
    var fds = processes.map { pollfd(fd: $0.output, events: Int16(POLLIN), revents: 0) }
    while poll(&fds, nfds_t(fds.count), timeoutMilliseconds) > 0 {
      var progressed = false
      for (i, p) in fds.enumerated() where p.revents != 0 {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = read(p.fd, &buffer, buffer.count)
        if n > 0 {
          progressed = true
          let text = String(decoding: buffer[0..<n], as: UTF8.self)
          for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if processes[i].name == "worker", line.hasPrefix("worker "), let rank = Int(line.dropFirst(7).prefix { $0.isNumber }) {
              processes[i].name = "rank \(rank)"
            }
            if !quiet { print("[\(processes[i].name)] \(line)") }
          }
          fflush(nil)
        }
      }
      if !progressed || !done() { break }
    }
  }

  nonisolated(unsafe) static var interruptFlag = UnsafeMutablePointer<sig_atomic_t>.allocate(capacity: 1)

  static func installInterruptHandler() -> UnsafeMutablePointer<sig_atomic_t> {
    interruptFlag.pointee = 0
    signal(SIGINT) { _ in LaunchCommand.interruptFlag.pointee = 1 }
    signal(SIGTERM) { _ in LaunchCommand.interruptFlag.pointee = 1 }
    return interruptFlag
  }
}
