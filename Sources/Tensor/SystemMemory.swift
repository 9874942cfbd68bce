#if canImport(Glibc)
import Glibc
#endif

/// The memory this process can still take: the smaller of the kernel's estimate of what can be
/// allocated without swapping (`MemAvailable`) and what the process's cgroup still allows (v2
/// `memory.max` − `memory.current`, or v1 `memory.limit_in_bytes` − `memory.usage_in_bytes`), so a
/// worker in a container or a Slurm allocation sees its own limit, not the host's.
public enum SystemMemory {
  /// Set by a launcher that starts several workers on one machine: each one's share, in bytes.
  public static let shareVariable = "AMOEBA_WORKER_MEMORY_BYTES"

  public static func availableBytes() -> Int? {
    var candidates: [Int] = []
    if let share = getenv(shareVariable).flatMap({ Int(String(cString: $0)) }) { candidates.append(share) }
    if let meminfo = read("/proc/meminfo"),
       let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
       let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
      candidates.append(kib * 1024)
    }
    if let limit = number("/sys/fs/cgroup/memory.max"), let used = number("/sys/fs/cgroup/memory.current") {
      candidates.append(max(limit - used, 0))
    } else if let limit = number("/sys/fs/cgroup/memory/memory.limit_in_bytes"), limit < 1 << 60,
              let used = number("/sys/fs/cgroup/memory/memory.usage_in_bytes") {
      candidates.append(max(limit - used, 0))
    }
    return candidates.min()
  }

  /// A file holding one number ("max" and unreadable files are nil).
  static func number(_ path: String) -> Int? {
    read(path).flatMap { Int($0.split(separator: "\n").first ?? "") }
  }

  static func read(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var text = ""
    var buffer = [CChar](repeating: 0, count: 4096)
    while fgets(&buffer, Int32(buffer.count), file) != nil { text += String(cString: buffer) }
    return text
  }
}
