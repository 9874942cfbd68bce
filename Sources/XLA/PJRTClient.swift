import CPJRT

/// A PJRT client on a plugin: its addressable devices, compilation of StableHLO (MLIR text) into
/// executables, and float32 buffers moved between host and device.
public final class PJRTClient: @unchecked Sendable {
  // @unchecked: the handles are used through the plugin's thread-safe entry points only.
  public let plugin: PJRTPlugin
  let client: OpaquePointer
  public let devices: [OpaquePointer]
  public let platformName: String
  /// The platform's own version string (XLA:CPU: "cpu"; CUDA: the driver's), for cache keys.
  public let platformVersion: String

  /// `options`: the plugin's create options, integers only (XLA:CPU's `cpu_device_count`).
  public init(plugin: PJRTPlugin, options: [String: Int64] = [:]) throws(PJRTError) {
    self.plugin = plugin
    let names = options.keys.sorted()
    var cNames = names.map { Array($0.utf8CString) }
    let created: OpaquePointer? = try cNames.withUnsafeMutableBufferPointer { (buffers) throws(PJRTError) -> OpaquePointer? in
      let values = buffers.indices.map { i in
        var value = PJRT_NamedValue()
        value.struct_size = MemoryLayout<PJRT_NamedValue>.size
        value.name = buffers[i].withUnsafeBufferPointer { $0.baseAddress }
        value.name_size = names[i].utf8.count
        value.type = PJRT_NamedValue_kInt64
        value.int64_value = options[names[i]]!
        value.value_size = 1
        return value
      }
      var arguments = PJRT_Client_Create_Args()
      arguments.struct_size = MemoryLayout<PJRT_Client_Create_Args>.size
      arguments.num_options = values.count
      try values.withUnsafeBufferPointer { (list) throws(PJRTError) in
        arguments.create_options = list.baseAddress
        try plugin.call(.clientCreate, "PJRT_Client_Create", &arguments)
      }
      return arguments.client
    }
    guard let created else { throw PJRTError(plugin: plugin.path, call: "PJRT_Client_Create", code: -1, message: "no client returned") }
    client = created
    var name = PJRT_Client_PlatformName_Args(struct_size: MemoryLayout<PJRT_Client_PlatformName_Args>.size, extension_start: nil,
                                              client: created, platform_name: nil, platform_name_size: 0)
    try plugin.call(.clientPlatformName, "PJRT_Client_PlatformName", &name)
    platformName = name.platform_name.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: name.platform_name_size), as: UTF8.self) } ?? "?"
    var version = PJRT_Client_PlatformVersion_Args(struct_size: MemoryLayout<PJRT_Client_PlatformVersion_Args>.size, extension_start: nil,
                                                   client: created, platform_version: nil, platform_version_size: 0)
    try plugin.call(.clientPlatformVersion, "PJRT_Client_PlatformVersion", &version)
    platformVersion = version.platform_version.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: version.platform_version_size), as: UTF8.self) } ?? "?"
    var list = PJRT_Client_AddressableDevices_Args(struct_size: MemoryLayout<PJRT_Client_AddressableDevices_Args>.size, extension_start: nil,
                                                    client: created, addressable_devices: nil, num_addressable_devices: 0)
    try plugin.call(.clientAddressableDevices, "PJRT_Client_AddressableDevices", &list)
    devices = (0..<list.num_addressable_devices).compactMap { list.addressable_devices?[$0] }
  }

  deinit {
    var arguments = PJRT_Client_Destroy_Args(struct_size: MemoryLayout<PJRT_Client_Destroy_Args>.size, extension_start: nil, client: client)
    try? plugin.call(.clientDestroy, "PJRT_Client_Destroy", &arguments)
  }

  /// CompileOptionsProto for `replicas` replicas and one partition (executable_build_options = 3 {
  /// num_replicas = 4: N, num_partitions = 5: 1 }), the device assignment left to the plugin's
  /// default (replica r on addressable device r). Never empty: an empty one aborts some plugins.
  static func compileOptions(replicas: Int) -> [UInt8] {
    precondition(replicas >= 1 && replicas < 128, "replicas \(replicas) (one varint byte)")
    return [0x1a, 0x04, 0x20, UInt8(replicas), 0x28, 0x01]
  }

  static let singleDeviceCompileOptions = compileOptions(replicas: 1)

  /// Compiles a StableHLO module given as MLIR text, for `replicas` of the addressable devices
  /// (a program with cross-replica collectives runs on all of them at once).
  public func compile(mlir: String, replicas: Int = 1) throws(PJRTError) -> PJRTExecutable {
    guard replicas <= devices.count else {
      throw PJRTError(plugin: plugin.path, call: "PJRT_Client_Compile", code: -1,
                      message: "\(replicas) replicas asked for, the client has \(devices.count) devices")
    }
    let loaded = try PJRTProgram.withProgram(mlir: mlir, options: PJRTClient.compileOptions(replicas: replicas)) {
      (program, options, optionsCount) throws(PJRTError) -> OpaquePointer? in
      var arguments = PJRT_Client_Compile_Args(struct_size: MemoryLayout<PJRT_Client_Compile_Args>.size, extension_start: nil,
                                               client: client, program: program, compile_options: options,
                                               compile_options_size: optionsCount, executable: nil)
      try plugin.call(.clientCompile, "PJRT_Client_Compile", &arguments)
      return arguments.executable
    }
    guard let loaded else { throw PJRTError(plugin: plugin.path, call: "PJRT_Client_Compile", code: -1, message: "no executable returned") }
    return try PJRTExecutable(client: self, loaded: loaded, replicas: replicas)
  }

  /// A float32 array copied to addressable device `device`.
  public func buffer(_ values: [Float], dims: [Int], device: Int = 0) throws(PJRTError) -> PJRTBuffer {
    precondition(dims.reduce(1, *) == values.count, "dims \(dims) do not hold \(values.count) values")
    var result: PJRTBuffer?
    try PJRTError.typed { try values.withUnsafeBytes { result = try buffer($0, type: PJRT_Buffer_Type_F32, dims: dims, device: device) } }
    return result!
  }

  /// float32 values in host memory copied to addressable device `device`.
  public func buffer(_ values: UnsafeBufferPointer<Float>, dims: [Int], device: Int = 0) throws(PJRTError) -> PJRTBuffer {
    precondition(dims.reduce(1, *) == values.count, "dims \(dims) do not hold \(values.count) values")
    return try buffer(UnsafeRawBufferPointer(values), type: PJRT_Buffer_Type_F32, dims: dims, device: device)
  }

  /// A ui64 scalar on addressable device `device` (a run's random stream).
  public func buffer(uint64 value: UInt64, device: Int = 0) throws(PJRTError) -> PJRTBuffer {
    var result: PJRTBuffer?
    try PJRTError.typed { try withUnsafeBytes(of: value) { result = try buffer($0, type: PJRT_Buffer_Type_U64, dims: [], device: device) } }
    return result!
  }

  private func buffer(_ data: UnsafeRawBufferPointer, type: PJRT_Buffer_Type, dims: [Int], device: Int) throws(PJRTError) -> PJRTBuffer {
    precondition(devices.indices.contains(device), "device \(device) of \(devices.count)")
    let dims64 = dims.map(Int64.init)
    var arguments = PJRT_Client_BufferFromHostBuffer_Args()
    arguments.struct_size = MemoryLayout<PJRT_Client_BufferFromHostBuffer_Args>.size
    arguments.client = client
    arguments.type = type
    arguments.num_dims = dims64.count
    arguments.host_buffer_semantics = PJRT_HostBufferSemantics_kImmutableUntilTransferCompletes
    arguments.device = devices[device]
    arguments.data = data.baseAddress
    try PJRTError.typed {
      try dims64.withUnsafeBufferPointer { dimsPointer in
        arguments.dims = dimsPointer.baseAddress
        try plugin.call(.clientBufferFromHostBuffer, "PJRT_Client_BufferFromHostBuffer", &arguments)
        // The host bytes must outlive the transfer: wait for it here, while the caller holds them.
        try plugin.await(arguments.done_with_host_buffer, call: "PJRT_Client_BufferFromHostBuffer (transfer)")
      }
    }
    guard let buffer = arguments.buffer else {
      throw PJRTError(plugin: plugin.path, call: "PJRT_Client_BufferFromHostBuffer", code: -1, message: "no buffer returned")
    }
    return PJRTBuffer(client: self, buffer: buffer)
  }
}

/// A compiled program loaded on the client's devices.
public final class PJRTExecutable: @unchecked Sendable {
  let client: PJRTClient
  let loaded: OpaquePointer
  public let outputCount: Int
  /// Devices one run spans (replica r on addressable device r).
  public let replicas: Int
  /// Per replica, the seconds from the last run's launch until its device finished (empty
  /// before the first run): where a device is slower than the others, it shows here.
  public private(set) var lastDeviceSeconds: [Double] = []

  init(client: PJRTClient, loaded: OpaquePointer, replicas: Int = 1) throws(PJRTError) {
    self.client = client
    self.loaded = loaded
    self.replicas = replicas
    var get = PJRT_LoadedExecutable_GetExecutable_Args(struct_size: MemoryLayout<PJRT_LoadedExecutable_GetExecutable_Args>.size,
                                                       extension_start: nil, loaded_executable: loaded, executable: nil)
    try client.plugin.call(.loadedExecutableGetExecutable, "PJRT_LoadedExecutable_GetExecutable", &get)
    var outputs = PJRT_Executable_NumOutputs_Args(struct_size: MemoryLayout<PJRT_Executable_NumOutputs_Args>.size, extension_start: nil,
                                                  executable: get.executable, num_outputs: 0)
    defer {
      var destroy = PJRT_Executable_Destroy_Args(struct_size: MemoryLayout<PJRT_Executable_Destroy_Args>.size, extension_start: nil,
                                                 executable: get.executable)
      try? client.plugin.call(.executableDestroy, "PJRT_Executable_Destroy", &destroy)
    }
    try client.plugin.call(.executableNumOutputs, "PJRT_Executable_NumOutputs", &outputs)
    outputCount = outputs.num_outputs
  }

  deinit {
    var arguments = PJRT_LoadedExecutable_Destroy_Args(struct_size: MemoryLayout<PJRT_LoadedExecutable_Destroy_Args>.size,
                                                       extension_start: nil, executable: loaded)
    try? client.plugin.call(.loadedExecutableDestroy, "PJRT_LoadedExecutable_Destroy", &arguments)
  }

  /// Runs once on device 0 with `arguments` and waits for it; returns the outputs.
  public func execute(_ arguments: [PJRTBuffer]) throws(PJRTError) -> [PJRTBuffer] {
    try execute(replicated: [arguments])[0]
  }

  /// Runs every replica at once, `arguments[r]` on device r (each replica's buffers on its own
  /// device), and waits for all of them; returns each replica's outputs.
  public func execute(replicated arguments: [[PJRTBuffer]]) throws(PJRTError) -> [[PJRTBuffer]] {
    let launch = try self.launch(replicated: arguments)
    try launch.wait()
    lastDeviceSeconds = launch.deviceSeconds
    return launch.outputs
  }

  /// Starts every replica and returns at once: the outputs may be passed to another launch
  /// straight away (the plugin orders the programs by their buffers), read (a copy to the host
  /// waits for its buffer), or waited for (`PJRTLaunch.wait`).
  public func launch(replicated arguments: [[PJRTBuffer]]) throws(PJRTError) -> PJRTLaunch {
    precondition(arguments.count == replicas, "\(arguments.count) argument lists for \(replicas) replicas")
    precondition(Set(arguments.map(\.count)).count == 1, "replicas take the same number of arguments")
    let argumentCount = arguments[0].count
    // Flat lists, one stretch per replica, that outlive the call.
    var inputs: [OpaquePointer?] = arguments.flatMap { $0.map(\.buffer) }
    var outputs = [OpaquePointer?](repeating: nil, count: outputCount * replicas)
    var completions = [OpaquePointer?](repeating: nil, count: replicas)
    var options = PJRT_ExecuteOptions()
    options.struct_size = MemoryLayout<PJRT_ExecuteOptions>.size
    let launched = PJRTPlugin.monotonicSeconds()
    try inputs.withUnsafeMutableBufferPointer { (inputList) throws(PJRTError) in
      try outputs.withUnsafeMutableBufferPointer { (outputList) throws(PJRTError) in
        var inputLists: [UnsafePointer<OpaquePointer?>?] = (0..<replicas).map { UnsafePointer(inputList.baseAddress! + $0 * argumentCount) }
        var outputLists: [UnsafeMutablePointer<OpaquePointer?>?] = (0..<replicas).map { outputList.baseAddress! + $0 * outputCount }
        try inputLists.withUnsafeMutableBufferPointer { (inputListPointer) throws(PJRTError) in
          try outputLists.withUnsafeMutableBufferPointer { (outputListPointer) throws(PJRTError) in
            try withUnsafeMutablePointer(to: &options) { (optionsPointer) throws(PJRTError) in
              try completions.withUnsafeMutableBufferPointer { (completionPointer) throws(PJRTError) in
                var call = PJRT_LoadedExecutable_Execute_Args()
                call.struct_size = MemoryLayout<PJRT_LoadedExecutable_Execute_Args>.size
                call.executable = loaded
                call.options = optionsPointer
                call.argument_lists = UnsafePointer(inputListPointer.baseAddress)
                call.num_devices = replicas
                call.num_args = argumentCount
                call.output_lists = UnsafePointer(outputListPointer.baseAddress)
                call.device_complete_events = completionPointer.baseAddress
                try client.plugin.call(.loadedExecutableExecute, "PJRT_LoadedExecutable_Execute", &call)
              }
            }
          }
        }
      }
    }
    // Wrapped before anything can throw, so every event is awaited and destroyed (`PJRTLaunch.deinit`).
    let launch = PJRTLaunch(plugin: client.plugin, completions: completions, launched: launched)
    launch.outputs = try (0..<replicas).map { (r) throws(PJRTError) -> [PJRTBuffer] in
      try outputs[(r * outputCount)..<((r + 1) * outputCount)].map { (buffer) throws(PJRTError) -> PJRTBuffer in
        guard let buffer else {
          throw PJRTError(plugin: client.plugin.path, call: "PJRT_LoadedExecutable_Execute", code: -1, message: "an output of replica \(r) is missing")
        }
        return PJRTBuffer(client: client, buffer: buffer)
      }
    }
    return launch
  }
}

/// A program running on its devices: its outputs, and the devices' completion events.
public final class PJRTLaunch: @unchecked Sendable {
  // @unchecked: used by the thread that launched it; the plugin's entry points are thread-safe.
  let plugin: PJRTPlugin
  private var completions: [OpaquePointer?]
  let launched: Double
  /// Each replica's outputs (buffers that may not be ready yet).
  public internal(set) var outputs: [[PJRTBuffer]] = []
  /// After `wait`: per device, the seconds from the launch until it finished (-1: unknown).
  public private(set) var deviceSeconds: [Double] = []

  init(plugin: PJRTPlugin, completions: [OpaquePointer?], launched: Double) {
    self.plugin = plugin; self.completions = completions; self.launched = launched
  }

  /// Waits for every device; throws the first device's error.
  public func wait() throws(PJRTError) {
    let events = completions
    completions = []
    guard !events.isEmpty else { return }
    deviceSeconds = try plugin.awaitAll(events, since: launched, call: "PJRT_LoadedExecutable_Execute")
  }

  deinit { try? wait() }
}

/// A device buffer; `toHost` copies it back.
public final class PJRTBuffer: @unchecked Sendable {
  let client: PJRTClient
  let buffer: OpaquePointer

  init(client: PJRTClient, buffer: OpaquePointer) { self.client = client; self.buffer = buffer }

  deinit {
    var arguments = PJRT_Buffer_Destroy_Args(struct_size: MemoryLayout<PJRT_Buffer_Destroy_Args>.size, extension_start: nil, buffer: buffer)
    try? client.plugin.call(.bufferDestroy, "PJRT_Buffer_Destroy", &arguments)
  }

  /// Copies the buffer's float32 values into `destination`, which must hold exactly all of them.
  public func copy(into destination: UnsafeMutableBufferPointer<Float>) throws(PJRTError) {
    var copy = PJRT_Buffer_ToHostBuffer_Args(struct_size: MemoryLayout<PJRT_Buffer_ToHostBuffer_Args>.size, extension_start: nil,
                                             src: buffer, host_layout: nil, dst: UnsafeMutableRawPointer(destination.baseAddress),
                                             dst_size: destination.count * 4, event: nil)
    try client.plugin.call(.bufferToHostBuffer, "PJRT_Buffer_ToHostBuffer", &copy)
    try client.plugin.await(copy.event, call: "PJRT_Buffer_ToHostBuffer")
  }

  /// The buffer's float32 values (the plugin reports the size).
  public func toHost() throws(PJRTError) -> [Float] {
    var query = PJRT_Buffer_ToHostBuffer_Args(struct_size: MemoryLayout<PJRT_Buffer_ToHostBuffer_Args>.size, extension_start: nil,
                                              src: buffer, host_layout: nil, dst: nil, dst_size: 0, event: nil)
    try client.plugin.call(.bufferToHostBuffer, "PJRT_Buffer_ToHostBuffer (size)", &query)
    try client.plugin.await(query.event, call: "PJRT_Buffer_ToHostBuffer (size)")
    var values = [Float](repeating: 0, count: query.dst_size / 4)
    try PJRTError.typed {
      try values.withUnsafeMutableBytes { raw in
        var copy = PJRT_Buffer_ToHostBuffer_Args(struct_size: MemoryLayout<PJRT_Buffer_ToHostBuffer_Args>.size, extension_start: nil,
                                                 src: buffer, host_layout: nil, dst: raw.baseAddress, dst_size: raw.count, event: nil)
        try client.plugin.call(.bufferToHostBuffer, "PJRT_Buffer_ToHostBuffer", &copy)
        try client.plugin.await(copy.event, call: "PJRT_Buffer_ToHostBuffer")
      }
    }
    return values
  }
}
