#if canImport(Glibc)
import Glibc
#endif
import CLI

/// Monotonic seconds.
func now() -> Double {
  var t = timespec()
  clock_gettime(CLOCK_MONOTONIC, &t)
  return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// Runs `body` once to warm up, then `repeats` times; returns the median seconds.
func medianSeconds(repeats: Int, _ body: () -> Void) -> Double {
  body()
  var times: [Double] = []
  for _ in 0..<max(repeats, 1) {
    let start = now()
    body()
    times.append(now() - start)
  }
  times.sort()
  return times[times.count / 2]
}

/// The host, for recording beside the figures.
func machineDescription() -> String {
  var model = "unknown CPU"
  if let file = fopen("/proc/cpuinfo", "r") {
    defer { fclose(file) }
    var line: UnsafeMutablePointer<CChar>? = nil
    var capacity = 0
    while getline(&line, &capacity, file) > 0 {
      let text = String(cString: line!)
      if text.hasPrefix("model name") {
        model = text.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: " \n") } ?? model
        break
      }
    }
    free(line)
  }
  return "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores, \(model)"
}

