#if canImport(Glibc)
import Glibc
#endif
import CLI
import Tensor

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

/// The host, for recording beside the figures, and the GEMM tile and blocking chosen for it.
func machineDescription() -> String {
  let cpu = CPUFeatures.current, (tile, reason) = GEMMKernel.selection
  return "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores, \(cpu.model)\(cpu.hasAVX512 ? " (AVX-512)" : ""), \(CPUCaches.current); "
    + "GEMM tile \(tile) (\(reason)), \(GEMMBlocking.forThisHost(tile))"
}

