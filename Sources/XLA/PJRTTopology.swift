import CPJRT

/// A program handed to a plugin: MLIR text with its serialized CompileOptionsProto, alive for one call.
enum PJRTProgram {
  static func withProgram<T>(mlir: String, options: [UInt8],
                             _ body: (UnsafePointer<PJRT_Program>, UnsafePointer<CChar>, Int) throws(PJRTError) -> T) throws(PJRTError) -> T {
    var code = Array(mlir.utf8)
    var format = Array("mlir".utf8)
    let optionBytes = options.map { CChar(bitPattern: $0) }
    var result: T?
    try PJRTError.typed {
      try code.withUnsafeMutableBytes { codeBytes in
        try format.withUnsafeMutableBytes { formatBytes in
          try optionBytes.withUnsafeBufferPointer { optionPointer in
            var program = PJRT_Program(struct_size: MemoryLayout<PJRT_Program>.size, extension_start: nil,
                                       code: codeBytes.baseAddress!.assumingMemoryBound(to: CChar.self), code_size: codeBytes.count,
                                       format: UnsafePointer(formatBytes.baseAddress!.assumingMemoryBound(to: CChar.self)),
                                       format_size: formatBytes.count)
            try withUnsafePointer(to: &program) { result = try body($0, optionPointer.baseAddress!, optionPointer.count) }
          }
        }
      }
    }
    return result!
  }
}

/// A device topology that a plugin compiles for without the devices being present: libtpu
/// compiles for "v5e:2x2" or "v4:2x2x1" on a host with no TPU, which proves a program fits the chip
/// before any TPU time is paid for.
public final class PJRTTopology: @unchecked Sendable {
  // @unchecked: the handle is immutable and only passed to the plugin's thread-safe entry points.
  public let plugin: PJRTPlugin
  public let name: String
  public let platformName: String
  let topology: OpaquePointer

  public init(plugin: PJRTPlugin, name: String) throws(PJRTError) {
    self.plugin = plugin
    self.name = name
    var nameBytes = Array(name.utf8).map { CChar(bitPattern: $0) }
    var created: OpaquePointer?
    try PJRTError.typed {
      try nameBytes.withUnsafeMutableBufferPointer { bytes in
        var arguments = PJRT_TopologyDescription_Create_Args(
          struct_size: MemoryLayout<PJRT_TopologyDescription_Create_Args>.size, extension_start: nil,
          topology_name: bytes.baseAddress, topology_name_size: bytes.count, create_options: nil, num_options: 0, topology: nil)
        try plugin.call(.topologyCreate, "PJRT_TopologyDescription_Create (\(name))", &arguments)
        created = arguments.topology
      }
    }
    guard let created else {
      throw PJRTError(plugin: plugin.path, call: "PJRT_TopologyDescription_Create (\(name))", code: -1, message: "no topology returned")
    }
    topology = created
    var platform = PJRT_TopologyDescription_PlatformName_Args(
      struct_size: MemoryLayout<PJRT_TopologyDescription_PlatformName_Args>.size, extension_start: nil,
      topology: created, platform_name: nil, platform_name_size: 0)
    try plugin.call(.topologyPlatformName, "PJRT_TopologyDescription_PlatformName", &platform)
    platformName = platform.platform_name.map {
      String(decoding: UnsafeRawBufferPointer(start: $0, count: platform.platform_name_size), as: UTF8.self)
    } ?? "?"
  }

  deinit {
    var arguments = PJRT_TopologyDescription_Destroy_Args(struct_size: MemoryLayout<PJRT_TopologyDescription_Destroy_Args>.size,
                                                          extension_start: nil, topology: topology)
    try? plugin.call(.topologyDestroy, "PJRT_TopologyDescription_Destroy", &arguments)
  }

  /// Compiles StableHLO text for this topology into an executable that is not loaded anywhere:
  /// what a TPU host would run, serialized. `replicas` above 1: the program runs on that many of
  /// the topology's chips at once (its cross-replica collectives over their interconnect).
  public func compile(mlir: String, replicas: Int = 1) throws(PJRTError) -> PJRTCompiledProgram {
    let executable = try PJRTProgram.withProgram(mlir: mlir, options: PJRTClient.compileOptions(replicas: replicas)) {
      (program, options, optionsCount) throws(PJRTError) -> OpaquePointer? in
      var arguments = PJRT_Compile_Args(struct_size: MemoryLayout<PJRT_Compile_Args>.size, extension_start: nil,
                                        topology: topology, program: program, compile_options: options,
                                        compile_options_size: optionsCount, client: nil, executable: nil)
      try plugin.call(.compile, "PJRT_Compile (\(name))", &arguments)
      return arguments.executable
    }
    guard let executable else { throw PJRTError(plugin: plugin.path, call: "PJRT_Compile (\(name))", code: -1, message: "no executable returned") }
    defer { PJRTCompiledProgram.destroy(executable, plugin: plugin) }
    return try PJRTCompiledProgram(executable: executable, plugin: plugin)
  }
}

extension PJRTClient {
  /// Compiles for this client's first device and keeps what an ahead-of-time compile gives
  /// (serialized executable, sizes), for comparing a TPU compile with this host's.
  public func compileUnloaded(mlir: String, replicas: Int = 1) throws(PJRTError) -> PJRTCompiledProgram {
    let loaded = try compile(mlir: mlir, replicas: replicas)
    var get = PJRT_LoadedExecutable_GetExecutable_Args(struct_size: MemoryLayout<PJRT_LoadedExecutable_GetExecutable_Args>.size,
                                                       extension_start: nil, loaded_executable: loaded.loaded, executable: nil)
    try plugin.call(.loadedExecutableGetExecutable, "PJRT_LoadedExecutable_GetExecutable", &get)
    guard let executable = get.executable else {
      throw PJRTError(plugin: plugin.path, call: "PJRT_LoadedExecutable_GetExecutable", code: -1, message: "no executable returned")
    }
    defer { PJRTCompiledProgram.destroy(executable, plugin: plugin) }
    return try PJRTCompiledProgram(executable: executable, plugin: plugin)
  }
}

/// An executable compiled ahead of time: its serialized form and what the plugin says it needs.
public struct PJRTCompiledProgram: Sendable {
  /// Device memory the program needs, as the compiler planned it.
  public struct Memory: Sendable, Hashable {
    public let arguments: Int, outputs: Int, aliased: Int, temporaries: Int, generatedCode: Int
    /// Where the plugin reports it (newer interface versions).
    public let peak: Int?
    /// Arguments, outputs not aliased to arguments, temporaries and code, the way XLA sums them.
    public var total: Int { arguments + outputs - aliased + temporaries + generatedCode }
  }
  public let serialized: [UInt8]
  public let generatedCodeBytes: Int?
  public let memory: Memory?

  init(executable: OpaquePointer, plugin: PJRTPlugin) throws(PJRTError) {
    var serialize = PJRT_Executable_Serialize_Args(struct_size: MemoryLayout<PJRT_Executable_Serialize_Args>.size, extension_start: nil,
                                                   executable: executable, serialized_bytes: nil, serialized_bytes_size: 0,
                                                   serialized_executable: nil, serialized_executable_deleter: nil)
    try plugin.call(.executableSerialize, "PJRT_Executable_Serialize", &serialize)
    serialized = serialize.serialized_bytes.map { Array(UnsafeRawBufferPointer(start: $0, count: serialize.serialized_bytes_size)) } ?? []
    if let deleter = serialize.serialized_executable_deleter, let backing = serialize.serialized_executable { deleter(backing) }
    // Both figures are optional in the interface: a plugin without them leaves them unknown.
    var code = PJRT_Executable_SizeOfGeneratedCodeInBytes_Args(
      struct_size: MemoryLayout<PJRT_Executable_SizeOfGeneratedCodeInBytes_Args>.size, extension_start: nil,
      executable: executable, size_in_bytes: -1)
    let codeKnown = (try? plugin.call(.executableSizeOfGeneratedCode, "PJRT_Executable_SizeOfGeneratedCodeInBytes", &code)) != nil
    generatedCodeBytes = codeKnown && code.size_in_bytes >= 0 ? Int(code.size_in_bytes) : nil
    var stats = PJRT_Executable_GetCompiledMemoryStats_Args()
    stats.struct_size = MemoryLayout<PJRT_Executable_GetCompiledMemoryStats_Args>.size
    stats.executable = executable
    stats.peak_memory_in_bytes = -1
    let statsKnown = (try? plugin.call(.executableCompiledMemoryStats, "PJRT_Executable_GetCompiledMemoryStats", &stats)) != nil
    memory = statsKnown
      ? Memory(arguments: Int(stats.argument_size_in_bytes), outputs: Int(stats.output_size_in_bytes),
               aliased: Int(stats.alias_size_in_bytes), temporaries: Int(stats.temp_size_in_bytes),
               generatedCode: Int(stats.generated_code_size_in_bytes),
               peak: stats.peak_memory_in_bytes > 0 ? Int(stats.peak_memory_in_bytes) : nil)
      : nil
  }

  static func destroy(_ executable: OpaquePointer, plugin: PJRTPlugin) {
    var arguments = PJRT_Executable_Destroy_Args(struct_size: MemoryLayout<PJRT_Executable_Destroy_Args>.size, extension_start: nil,
                                                 executable: executable)
    try? plugin.call(.executableDestroy, "PJRT_Executable_Destroy", &arguments)
  }
}
