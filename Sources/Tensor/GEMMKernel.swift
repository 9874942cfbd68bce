import Foundation
import WideTile
import WideTileAVX512

/// The register tile the fast GEMM multiplies with, chosen once at start from the CPU's features
/// (`detected`), so one release binary uses AVX-512 where the CPU has it and AVX2 elsewhere.
/// Packing follows the tile's MR×NR, so a `KernelContext` carries one kernel for all its calls.
public struct GEMMKernel: Sendable, CustomStringConvertible {
  public enum Variant: String, Sendable, CaseIterable {
    /// 6×(2·W) in `FloatVector`s, built with the package's default flags (AVX2+FMA on x86-64, NEON on arm64).
    case narrow
    /// `WideTile`'s 12×32 compiled for AVX-512: only where the CPU has it.
    case avx512
    /// The same 12×32 source compiled with the default flags: slower than `narrow` (the 32
    /// accumulators spill on 16 registers), there so the wide tile's logic is tested on any host.
    case wideBaseline = "wide_baseline"
  }

  public let variant: Variant
  public let mr: Int
  public let nr: Int
  let multiply: @Sendable (_ kc: Int, _ a: UnsafePointer<Float>, _ rowMajor: Bool, _ b: UnsafePointer<Float>,
                           _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ alpha: Float, _ beta: Float) -> Void

  public static let narrow = GEMMKernel(variant: .narrow, mr: 6, nr: 2 * vectorWidth) { kc, a, rowMajor, b, c, ldc, alpha, beta in
    GEMM.microKernel(kc: kc, a: a, layout: rowMajor ? .rowMajor : .kMajor, b: b, c: c, ldc: ldc, alpha: alpha, beta: beta)
  }
  public static let avx512 = GEMMKernel(variant: .avx512, mr: WideTile.mr, nr: WideTile.nr, multiply: wideTileAVX512)
  public static let wideBaseline = GEMMKernel(variant: .wideBaseline, mr: WideTile.mr, nr: WideTile.nr, multiply: wideTileBaseline)

  public static func variant(_ variant: Variant) -> GEMMKernel {
    switch variant {
    case .narrow: .narrow
    case .avx512: .avx512
    case .wideBaseline: .wideBaseline
    }
  }

  /// Whether this CPU can run the variant (the AVX-512 one needs the F, DQ, BW and VL extensions
  /// its target is compiled with, and an OS that saves the zmm registers: Linux lists the flags
  /// only then).
  public static func runs(_ variant: Variant) -> Bool {
    variant != .avx512 || CPUFeatures.current.hasAVX512
  }

  /// Every variant this CPU runs (what the tests compare with the reference).
  public static var runnable: [Variant] { Variant.allCases.filter(runs) }

  /// The variant this CPU runs fastest, or `AMOEBA_GEMM_KERNEL` (narrow, avx512, wide_baseline)
  /// where it names one the CPU runs; a name it cannot honour is reported once and ignored.
  public static var detected: GEMMKernel { selection.kernel }

  /// What `detected` chose, and why (printed by the benchmarks beside their figures).
  public static let selection: (kernel: GEMMKernel, reason: String) = {
    let (best, reason) = fastestRunnable()
    guard let asked = ProcessInfo.processInfo.environment["AMOEBA_GEMM_KERNEL"], !asked.isEmpty else { return (variant(best), reason) }
    guard let wanted = Variant(rawValue: asked) else {
      FileHandle.standardError.write(Data("amoeba: AMOEBA_GEMM_KERNEL=\(asked) is not one of \(Variant.allCases.map(\.rawValue).joined(separator: ", ")); using \(best.rawValue)\n".utf8))
      return (variant(best), reason)
    }
    guard runs(wanted) else {
      FileHandle.standardError.write(Data("amoeba: AMOEBA_GEMM_KERNEL=\(asked): this CPU (\(CPUFeatures.current.model)) lacks AVX-512 F/DQ/BW/VL; using \(best.rawValue)\n".utf8))
      return (variant(best), reason)
    }
    return (variant(wanted), "AMOEBA_GEMM_KERNEL")
  }()

  /// AVX-512 in the flags does not say the FMA units are 512 bits wide: Zen 4 splits each 512-bit
  /// FMA in two, and there the narrow tile, with its smaller blocks, is as fast or faster. So where
  /// both run, each tile is timed on operands that stay in L1, the two alternating in runs of
  /// about a millisecond so a busy spell of the host slows both alike, best of nine each; the wide
  /// one is taken only if it does clearly more multiply-adds per second (full-width units give
  /// about 2×, Zen 4 1.0×; a one-off 1.15 margin once picked the wide tile on Zen 4 in a busy spell).
  static func fastestRunnable() -> (Variant, String) {
    guard runs(.avx512) else { return (.narrow, "no AVX-512") }
    // Operands for the larger tile, allocated once for all eighteen runs.
    let kc = 128, mr = max(GEMMKernel.avx512.mr, GEMMKernel.narrow.mr), nr = max(GEMMKernel.avx512.nr, GEMMKernel.narrow.nr)
    let a = UnsafeMutablePointer<Float>.allocateAligned(mr * kc), b = UnsafeMutablePointer<Float>.allocateAligned(kc * nr)
    let c = UnsafeMutablePointer<Float>.allocateAligned(mr * nr)
    defer { a.deallocate(); b.deallocate(); c.deallocate() }
    a.initialize(repeating: 0.5, count: mr * kc); b.initialize(repeating: 0.25, count: kc * nr)
    var wide = 0.0, narrow = 0.0
    for _ in 0..<9 {
      wide = max(wide, inCacheRate(.avx512, kc: kc, a: a, b: b, c: c))
      narrow = max(narrow, inCacheRate(.narrow, kc: kc, a: a, b: b, c: c))
    }
    let ratio = wide / narrow
    let text = "the AVX-512 tile timed in cache at \(Double(Int(ratio * 100)) / 100)× the 6×16's"
    return ratio >= 1.4 ? (.avx512, text) : (.narrow, text)
  }

  /// Multiply-adds per second of the tile alone on one thread over about a millisecond, with A and
  /// B packed in L1 (`kc` deep; C is written, never read).
  static func inCacheRate(_ tile: GEMMKernel, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                          c: UnsafeMutablePointer<Float>) -> Double {
    let calls = 400
    let start = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<calls { tile.multiply(kc, a, false, b, c, tile.nr, 1, 0) }
    let elapsed = max(1, DispatchTime.now().uptimeNanoseconds - start)
    return Double(tile.mr * tile.nr * kc * calls) / (Double(elapsed) / 1e9)
  }

  public var description: String {
    switch variant {
    case .narrow: "\(vectorWidth == 16 ? "avx512 build" : "default build") \(mr)×\(nr)"
    case .avx512: "avx512 \(mr)×\(nr)"
    case .wideBaseline: "wide tile on default flags \(mr)×\(nr)"
    }
  }
}

@inline(never)
func wideTileBaseline(kc: Int, a: UnsafePointer<Float>, rowMajor: Bool, b: UnsafePointer<Float>,
                      c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
  WideTile.multiply(kc: kc, a: a, rowMajor: rowMajor, b: b, c: c, ldc: ldc, alpha: alpha, beta: beta)
}

/// What the kernels need to know of the CPU, read once.
public struct CPUFeatures: Sendable {
  public var model: String
  public var flags: Set<String>
  public var hasAVX512: Bool {
    #if arch(x86_64)
    ["avx512f", "avx512dq", "avx512bw", "avx512vl"].allSatisfy(flags.contains)
    #else
    false
    #endif
  }

  public static let current = CPUFeatures(cpuinfo: (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "")

  /// From the text of /proc/cpuinfo: the first processor's model name and flags (x86) or
  /// features (arm64). Empty where the file is absent (macOS): no AVX-512 is assumed.
  public init(cpuinfo: String) {
    model = "unknown CPU"; flags = []
    for line in cpuinfo.split(separator: "\n") {
      let parts = line.split(separator: ":", maxSplits: 1)
      guard parts.count == 2 else { continue }
      let key = parts[0].trimmingCharacters(in: .whitespaces), value = parts[1].trimmingCharacters(in: .whitespaces)
      if key == "model name" && model == "unknown CPU" { model = value }
      if (key == "flags" || key == "Features") && flags.isEmpty { flags = Set(value.split(separator: " ").map(String.init)) }
    }
  }
}
