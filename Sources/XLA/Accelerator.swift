#if canImport(Glibc)
import Glibc
#endif
import Tensor

/// Where a worker runs its step (`--device`): the Swift kernels, or a PJRT plugin's devices.
/// Each plugin is looked for where its wheel installs it, and the hardware is checked before a
/// plugin is loaded (libtpu stalls for minutes on a host without a TPU), so a missing device or
/// plugin is one clear line naming what to install.
public enum Accelerator: String, Sendable, CaseIterable {
  case cpu, xlaCPU = "xla_cpu", gpu, tpu

  /// Create options for the plugin's client: XLA:CPU makes `devices` virtual devices (nil: one per core).
  public func clientOptions(devices: Int? = 1) -> [String: Int64] {
    self == .xlaCPU ? ["cpu_device_count": Int64(devices ?? ThreadPool.onlineCores)] : [:]
  }

  /// Where the plugin is when `--pjrt_plugin` is not given: an environment variable, then the
  /// places pip puts each wheel, then `.pjrt/` (the fetch scripts).
  public var defaultPluginPath: String? {
    func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } }
    switch self {
    case .cpu: return nil
    case .xlaCPU: return environment("AMOEBA_PJRT_CPU_PLUGIN") ?? ".pjrt/xla_cpu_pjrt.so"
    case .gpu:
      return environment("AMOEBA_PJRT_GPU_PLUGIN")
        ?? Accelerator.firstExisting(Accelerator.sitePackages.flatMap { ["\($0)/jax_plugins/xla_cuda13/xla_cuda_plugin.so",
                                                                          "\($0)/jax_plugins/xla_cuda12/xla_cuda_plugin.so"] })
    case .tpu:
      return environment("TPU_LIBRARY_PATH")
        ?? Accelerator.firstExisting(Accelerator.sitePackages.map { "\($0)/libtpu/libtpu.so" } + [".pjrt/libtpu.so"])
    }
  }

  /// What to install when the plugin is missing.
  public var installHint: String {
    switch self {
    case .cpu: ""
    case .xlaCPU: "run Scripts/fetch-pjrt-cpu.sh (or set AMOEBA_PJRT_CPU_PLUGIN)"
    case .gpu: "pip install jax-cuda12-pjrt (with its nvidia-* wheels), or pass --pjrt_plugin PATH to xla_cuda_plugin.so"
    case .tpu: "pip install libtpu, or pass --pjrt_plugin PATH to libtpu.so"
    }
  }

  /// Nil when the hardware is here, else what is missing and what to do.
  public func missingHardware() -> String? {
    switch self {
    case .cpu, .xlaCPU: return nil
    case .gpu:
      return access("/dev/nvidia0", F_OK) == 0 || access("/dev/nvidiactl", F_OK) == 0 ? nil
        : "--device gpu: no NVIDIA GPU on this host (no /dev/nvidia0); use --device cpu or xla_cpu here"
    case .tpu:
      return Accelerator.hasTPU() ? nil
        : "--device tpu: no TPU on this host (no PCI device of Google's vendor id 0x1ae0 under /sys/bus/pci/devices); "
          + "run on a Cloud TPU VM, or check that the step compiles for one with `amoeba xla compile --platform tpu`"
    }
  }

  /// A PCI device of Google's vendor id (0x1ae0), the way JAX finds TPUs before starting libtpu.
  static func hasTPU() -> Bool {
    guard let directory = opendir("/sys/bus/pci/devices") else { return false }
    defer { closedir(directory) }
    while let entry = readdir(directory) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      guard !name.hasPrefix("."), let file = fopen("/sys/bus/pci/devices/\(name)/vendor", "r") else { continue }
      var buffer = [CChar](repeating: 0, count: 16)
      let read = fgets(&buffer, 16, file) != nil
      fclose(file)
      if read, String(cString: buffer).hasPrefix("0x1ae0") { return true }
    }
    return false
  }

  /// Python's site-packages directories on this host (virtualenv first), found without Python.
  static var sitePackages: [String] {
    var patterns: [String] = []
    if let venv = getenv("VIRTUAL_ENV").map({ String(cString: $0) }) { patterns.append("\(venv)/lib/python3*/site-packages") }
    if let home = getenv("HOME").map({ String(cString: $0) }) {
      patterns += ["\(home)/.local/lib/python3*/site-packages", "\(home)/.pyenv/versions/*/lib/python3*/site-packages"]
    }
    patterns += ["/usr/local/lib/python3*/site-packages", "/usr/local/lib/python3*/dist-packages", "/usr/lib/python3/dist-packages"]
    return patterns.flatMap(Accelerator.glob)
  }

  static func glob(_ pattern: String) -> [String] {
    var matches = glob_t()
    defer { globfree(&matches) }
    guard Glibc.glob(pattern, 0, nil, &matches) == 0 else { return [] }
    return (0..<Int(matches.gl_pathc)).compactMap { matches.gl_pathv[$0].map { String(cString: $0) } }
  }

  static func firstExisting(_ paths: [String]) -> String? { paths.first { access($0, R_OK) == 0 } }
}
