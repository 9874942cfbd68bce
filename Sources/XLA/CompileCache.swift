#if canImport(Glibc)
import Glibc
#endif
import Checksums
import CPJRT

/// Compiled executables on disk, so a restarted worker skips the compile (tens of seconds for the
/// small demo, minutes for the full-size step). The key is SHA-256 of the program text, its compile
/// options and what the executable depends on: the plugin (path, interface version, attributes
/// such as `xla_version`), the platform and, for CPU code, this host's processor. A file that no
/// longer loads (another plugin build, a truncated write) is compiled again and replaced.
public struct CompileCache: Sendable {
  public let directory: String

  public init(directory: String) { self.directory = directory }

  /// `$XDG_CACHE_HOME/amoeba/xla`, else `~/.cache/amoeba/xla`.
  public static var defaultDirectory: String {
    if let cache = getenv("XDG_CACHE_HOME").map({ String(cString: $0) }), !cache.isEmpty { return cache + "/amoeba/xla" }
    let home = getenv("HOME").map { String(cString: $0) } ?? "/tmp"
    return home + "/.cache/amoeba/xla"
  }

  func path(mlir: String, options: [UInt8], client: PJRTClient) -> String {
    var identity = Array(mlir.utf8) + [0] + options + [0]
    identity += Array("\(client.plugin.path)|0.\(client.plugin.minorVersion)|\(client.platformName)|\(client.platformVersion)|".utf8)
    for (key, value) in ((try? client.plugin.attributes()) ?? [:]).sorted(by: { $0.key < $1.key }) {
      identity += Array("\(key)=\(value)|".utf8)
    }
    identity += Array(CompileCache.processor.utf8)
    let key = SHA256.hash(identity).map { byte in String(byte >> 4, radix: 16) + String(byte & 15, radix: 16) }.joined()
    return directory + "/" + key + ".pjrt"
  }

  /// The processor's model and feature flags: XLA:CPU code is compiled for the host's instructions.
  static let processor: String = {
    guard let file = fopen("/proc/cpuinfo", "r") else { return "" }
    defer { fclose(file) }
    var found: [String] = []
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    while getline(&line, &capacity, file) > 0, found.count < 2 {
      let text = String(cString: line!)
      if text.hasPrefix("model name") || text.hasPrefix("flags") { found.append(text) }
    }
    free(line)
    return found.joined()
  }()

  func read(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
      let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if n < 0 { return nil }
      if n == 0 { return bytes }
      bytes += chunk[0..<n]
    }
  }

  /// Writes beside the target and renames, so a reader never sees half a file. Failures only
  /// cost the next start a compile, so they are returned, not thrown.
  func write(_ bytes: [UInt8], to path: String) -> String? {
    var prefix = directory.hasPrefix("/") ? "" : "."
    for component in directory.split(separator: "/") {
      prefix += "/" + component
      if mkdir(prefix, 0o755) != 0 && errno != EEXIST { return "cannot create \(prefix): \(String(cString: strerror(errno)))" }
    }
    let temporary = path + ".tmp.\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { return "cannot write \(temporary): \(String(cString: strerror(errno)))" }
    var offset = 0
    while offset < bytes.count {
      let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
      if n <= 0 { close(fd); unlink(temporary); return "cannot write \(temporary): \(String(cString: strerror(errno)))" }
      offset += n
    }
    close(fd)
    guard rename(temporary, path) == 0 else { unlink(temporary); return "cannot rename \(temporary): \(String(cString: strerror(errno)))" }
    return nil
  }
}

extension PJRTClient {
  /// How an executable was obtained.
  public enum CompileSource: Sendable, Equatable { case compiled, loadedFromCache(String) }

  /// Compiles `mlir`, or loads it from `cache` when this program was compiled for this plugin and
  /// host before; a fresh compile is stored for next time. `note` hears what happened to the cache.
  public func compile(mlir: String, replicas: Int = 1, cache: CompileCache?,
                      note: (String) -> Void = { _ in }) throws(PJRTError) -> (PJRTExecutable, CompileSource) {
    guard let cache else { return (try compile(mlir: mlir, replicas: replicas), .compiled) }
    let path = cache.path(mlir: mlir, options: PJRTClient.compileOptions(replicas: replicas), client: self)
    if let bytes = cache.read(path) {
      do { return (try load(serialized: bytes, replicas: replicas), .loadedFromCache(path)) } catch {
        note("the cached executable \(path) does not load (\(error.message)); compiling again")
      }
    }
    let executable = try compile(mlir: mlir, replicas: replicas)
    do {
      let serialized = try executable.serialized()
      if let failure = cache.write(serialized, to: path) { note("not cached: \(failure)") }
    } catch {
      note("not cached: this plugin does not serialize executables (\(error.message))")
    }
    return (executable, .compiled)
  }

  /// An executable from `PJRT_Executable_Serialize`'s bytes, loaded on this client's devices.
  public func load(serialized bytes: [UInt8], replicas: Int = 1) throws(PJRTError) -> PJRTExecutable {
    var loaded: OpaquePointer?
    try PJRTError.typed {
      try bytes.withUnsafeBytes { raw in
        var arguments = PJRT_Executable_DeserializeAndLoad_Args(
          struct_size: MemoryLayout<PJRT_Executable_DeserializeAndLoad_Args>.size, extension_start: nil, client: client,
          serialized_executable: raw.baseAddress!.assumingMemoryBound(to: CChar.self), serialized_executable_size: raw.count,
          loaded_executable: nil, overridden_serialized_compile_options: nil, overridden_serialized_compile_options_size: 0)
        try plugin.call(.executableDeserializeAndLoad, "PJRT_Executable_DeserializeAndLoad", &arguments)
        loaded = arguments.loaded_executable
      }
    }
    guard let loaded else {
      throw PJRTError(plugin: plugin.path, call: "PJRT_Executable_DeserializeAndLoad", code: -1, message: "no executable returned")
    }
    return try PJRTExecutable(client: self, loaded: loaded, replicas: replicas)
  }
}

extension PJRTExecutable {
  /// The executable as the plugin serializes it (`PJRT_Executable_Serialize`).
  public func serialized() throws(PJRTError) -> [UInt8] {
    var get = PJRT_LoadedExecutable_GetExecutable_Args(struct_size: MemoryLayout<PJRT_LoadedExecutable_GetExecutable_Args>.size,
                                                       extension_start: nil, loaded_executable: loaded, executable: nil)
    try client.plugin.call(.loadedExecutableGetExecutable, "PJRT_LoadedExecutable_GetExecutable", &get)
    guard let executable = get.executable else {
      throw PJRTError(plugin: client.plugin.path, call: "PJRT_LoadedExecutable_GetExecutable", code: -1, message: "no executable returned")
    }
    defer { PJRTCompiledProgram.destroy(executable, plugin: client.plugin) }
    return try PJRTCompiledProgram(executable: executable, plugin: client.plugin).serialized
  }
}
