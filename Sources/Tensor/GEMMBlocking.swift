import Foundation
import Synchronization

/// Block sizes of the fast GEMM around its register tile (MR×NR, `GEMMKernel`), chosen once per
/// `KernelContext` from the CPU's caches (`chosen(for:caches:)`), so that a tile twice as wide does
/// not overflow the L1 a narrow one was tuned for:
///
/// - KC: one KC×NR sliver of packed B, reused by every MR-row sliver of A in a block, fills half
///   of L1d, leaving the other half to the A slivers streaming past it; but KC is at least 256:
///   below that the tile's load and store of C per KC step cost more than the L1 misses save
///   (measured on Zen 4 with the 12×32 tile: KC 128 gave 83–90, KC 256 95 GFLOP/s on one core).
/// - MC: one MC×KC block of packed A, reused by every sliver of B, fills an eighth of L2, the
///   rest left to the B slivers streaming through from L3 (measured on Zen 4, 1 MiB L2, 2048³ on
///   one thread: MC 96 and 126 gave 99–106 GFLOP/s, MC 252 94–100, MC 510 — half of L2 — 95–100).
/// - NC: one KC×NC block of packed B, shared by all threads, fills a quarter of the L3 share of
///   the cores that use it.
///
/// `AMOEBA_GEMM_BLOCKING=kc,mc,nc` overrides the choice (for tuning); the benchmark prints it.
public struct GEMMBlocking: Sendable, Equatable, CustomStringConvertible {
  public var kc: Int
  public var mc: Int
  public var nc: Int

  /// Most NR-wide slivers one task of the rectangle path packs at a time.
  public static let panelSlivers = 32
  /// Largest C (m·n) the rectangle path takes; larger products have enough blocks to share B.
  public static let rectangleElements = 1 << 18

  public init(kc: Int, mc: Int, nc: Int) {
    self.kc = kc; self.mc = mc; self.nc = nc
  }

  /// The KC step for a product of depth k: as many steps as KC needs, made even, so that 576
  /// (a 3×3×64 convolution) runs as 3 × 192 and not 256 + 256 + 64, whose last step would load
  /// and store C for a quarter of the work. Never above KC (the scratch is sized by it).
  func kcStep(_ k: Int) -> Int {
    let steps = Swift.max(1, (k + kc - 1) / kc)
    return Swift.min(kc, roundUp((k + steps - 1) / steps, 8))
  }

  /// Rows per block when `m` rows are split into blocks of at most `cap` (MC by default): as many
  /// blocks as a multiple of the thread count, so no thread waits on a last odd block, each a
  /// multiple of MR rows.
  func rowBlock(m: Int, threads: Int, mr: Int, cap: Int? = nil) -> Int {
    let limit = Swift.min(mc, cap ?? mc)
    let blocks = roundUp(Swift.max((m + limit - 1) / limit, 1), threads)
    return Swift.min(limit, roundUp(Swift.max((m + blocks - 1) / blocks, 1), mr))
  }

  var packedAElements: Int { mc * kc }
  var packedBElements: Int { kc * nc }
  func panelBElements(nr: Int) -> Int { kc * Self.panelSlivers * nr }

  /// The blocking for `tile` on a CPU with these caches. MC is a multiple of MR and NC of NR, as
  /// the blocked loops assume.
  public static func chosen(for tile: GEMMKernel, caches: CPUCaches = .current) -> GEMMBlocking {
    let float = MemoryLayout<Float>.size
    let kc = clamp(caches.l1d / 2 / (tile.nr * float) / 16 * 16, 256, 512)
    let mc = clamp(caches.l2 / 8 / (kc * float) / tile.mr * tile.mr, tile.mr, 1020 / tile.mr * tile.mr)
    let nc = clamp(caches.l3PerCore / 4 / (kc * float) / tile.nr * tile.nr, 8 * tile.nr, 4096 / tile.nr * tile.nr)
    return GEMMBlocking(kc: kc, mc: mc, nc: nc)
  }

  /// `chosen(for:)`, or the `AMOEBA_GEMM_BLOCKING` override where it is well formed (a malformed one
  /// is reported once and ignored). The override is rounded to the tile: MC up to a multiple of MR,
  /// NC of NR.
  public static func forThisHost(_ tile: GEMMKernel) -> GEMMBlocking {
    let chosen = chosen(for: tile)
    guard let text = ProcessInfo.processInfo.environment["AMOEBA_GEMM_BLOCKING"], !text.isEmpty else { return chosen }
    let parts = text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard parts.count == 3, parts.allSatisfy({ $0 > 0 && $0 <= 1 << 14 }) else {
      warnOnce("amoeba: AMOEBA_GEMM_BLOCKING=\(text) is not kc,mc,nc (three positive integers up to 16384); using \(chosen)\n")
      return chosen
    }
    return GEMMBlocking(kc: parts[0], mc: roundUp(parts[1], tile.mr), nc: roundUp(parts[2], tile.nr))
  }

  public var description: String { "KC \(kc) MC \(mc) NC \(nc)" }

  private static func clamp(_ x: Int, _ low: Int, _ high: Int) -> Int { Swift.min(Swift.max(x, low), high) }

  private static let warned = Mutex(false)
  private static func warnOnce(_ message: String) {
    let first = warned.withLock { done in defer { done = true }; return !done }
    if first { FileHandle.standardError.write(Data(message.utf8)) }
  }
}

/// The data cache sizes the blocking is derived from, in bytes, read once from Linux's sysfs
/// (`/sys/devices/system/cpu/cpu0/cache`). Where sysfs has no cache entries (macOS, some
/// containers) the sizes of a common x86 core are assumed: 32 KiB L1d, 512 KiB L2, 2 MiB of L3 per core.
public struct CPUCaches: Sendable, Equatable, CustomStringConvertible {
  public var l1d: Int
  public var l2: Int
  /// The last-level cache divided among the CPUs that share it.
  public var l3PerCore: Int
  /// Whether the sizes were read (false: the assumed defaults).
  public var measured: Bool

  public static let assumed = CPUCaches(l1d: 32 << 10, l2: 512 << 10, l3PerCore: 2 << 20, measured: false)

  public init(l1d: Int, l2: Int, l3PerCore: Int, measured: Bool = true) {
    self.l1d = l1d; self.l2 = l2; self.l3PerCore = l3PerCore; self.measured = measured
  }

  public static let current = CPUCaches(sysfs: "/sys/devices/system/cpu/cpu0/cache")

  /// Reads `index*/{level,type,size,shared_cpu_list}` under `directory`; any size it cannot read
  /// keeps its assumed value.
  public init(sysfs directory: String) {
    self = .assumed
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    for entry in entries where entry.hasPrefix("index") {
      func read(_ name: String) -> String? {
        (try? String(contentsOfFile: "\(directory)/\(entry)/\(name)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
      }
      guard let level = read("level").flatMap(Int.init), let type = read("type"),
            let size = read("size").flatMap(CPUCaches.bytes) else { continue }
      switch (level, type) {
      case (1, "Data"): l1d = size; measured = true
      case (2, "Unified"), (2, "Data"): l2 = size; measured = true
      case (3, "Unified"):
        l3PerCore = size / max(1, read("shared_cpu_list").map(CPUCaches.cpuCount) ?? 1); measured = true
      default: continue
      }
    }
  }

  /// "32K", "1024K", "32M" or plain bytes.
  static func bytes(_ text: String) -> Int? {
    let scale: Int
    var digits = Substring(text)
    switch text.last {
    case "K": scale = 1 << 10; digits = digits.dropLast()
    case "M": scale = 1 << 20; digits = digits.dropLast()
    case "G": scale = 1 << 30; digits = digits.dropLast()
    default: scale = 1
    }
    guard let value = Int(digits), value > 0 else { return nil }
    return value * scale
  }

  /// How many CPUs a list such as "0-7,16-23" names.
  static func cpuCount(_ list: String) -> Int {
    list.split(separator: ",").reduce(0) { total, range in
      let ends = range.split(separator: "-").compactMap { Int($0) }
      return total + (ends.count == 2 ? max(0, ends[1] - ends[0] + 1) : ends.count == 1 ? 1 : 0)
    }
  }

  public var description: String {
    "L1d \(l1d >> 10) KiB, L2 \(l2 >> 10) KiB, L3 \(l3PerCore >> 10) KiB/core\(measured ? "" : " (assumed)")"
  }
}
