#if canImport(Glibc)
import Glibc
#endif
import CPJRT

/// A PJRT call that failed: the plugin, the entry point, the error code and the plugin's message.
public struct PJRTError: Error, CustomStringConvertible, Sendable {
  public let plugin: String
  public let call: String
  public let code: Int32
  public let message: String
  public var description: String { "\(call) failed in the PJRT plugin \(plugin) (code \(code)): \(message)" }

  /// Runs `body`, whose only errors are PJRTErrors, under a typed throw (the standard library's
  /// buffer closures rethrow untyped).
  static func typed(_ body: () throws -> Void) throws(PJRTError) {
    do { try body() } catch let error as PJRTError { throw error } catch {
      throw PJRTError(plugin: "?", call: "?", code: -1, message: "\(error)")
    }
  }
}

/// The position of each entry point in the plugin's function table (`PJRT_Api`), after the
/// version header: a fact of the interface, fixed since its early versions (new entry points are
/// only appended, after `PJRT_Compile`, at 89).
enum PJRTSlot: Int {
  case errorDestroy = 0, errorMessage, errorGetCode, pluginInitialize, pluginAttributes
  case eventDestroy, eventIsReady, eventError, eventAwait, eventOnReady
  case clientCreate, clientDestroy, clientPlatformName, clientProcessIndex, clientPlatformVersion, clientDevices,
       clientAddressableDevices, clientLookupDevice, clientLookupAddressableDevice, clientAddressableMemories,
       clientCompile, clientDefaultDeviceAssignment, clientBufferFromHostBuffer
  case executableDestroy = 40, executableName, executableNumReplicas, executableNumPartitions, executableNumOutputs,
       executableSizeOfGeneratedCode, executableCostAnalysis, executableOutputMemoryKinds, executableOptimizedProgram,
       executableSerialize
  case loadedExecutableDestroy = 50, loadedExecutableGetExecutable, loadedExecutableAddressableDevices,
       loadedExecutableDelete, loadedExecutableIsDeleted, loadedExecutableExecute, executableDeserializeAndLoad
  case bufferDestroy = 58
  case bufferToHostBuffer = 70
  case topologyCreate = 82, topologyDestroy, topologyPlatformName
  case compile = 89
  case executableCompiledMemoryStats = 96
}

/// A PJRT plugin (XLA:CPU, the CUDA plugin, libtpu) loaded with dlopen: its function table,
/// version and attributes. Nothing links against a plugin; a missing one is an error naming the path.
public final class PJRTPlugin: @unchecked Sendable {
  // @unchecked: the table is immutable after init; PJRT entry points are thread-safe.
  public let path: String
  public let majorVersion: Int
  public let minorVersion: Int
  private let handle: UnsafeMutableRawPointer
  private let api: UnsafeRawPointer
  private let tableBytes: Int

  public init(path: String) throws(PJRTError) {
    self.path = path
    guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
      let reason = dlerror().map { String(cString: $0) } ?? "unknown"
      throw PJRTError(plugin: path, call: "dlopen", code: -1, message: "\(reason); fetch a plugin (Scripts/fetch-pjrt-cpu.sh for XLA:CPU) or pass its path")
    }
    typealias GetApi = @convention(c) () -> UnsafeRawPointer?
    guard let symbol = dlsym(handle, "GetPjrtApi"), let api = unsafeBitCast(symbol, to: GetApi.self)() else {
      dlclose(handle)
      throw PJRTError(plugin: path, call: "GetPjrtApi", code: -1, message: "the library exports no PJRT function table; is it a PJRT plugin?")
    }
    let head = api.load(as: PJRT_Api_Head.self)
    guard head.pjrt_api_version.major_version == 0 else {
      dlclose(handle)
      throw PJRTError(plugin: path, call: "GetPjrtApi", code: -1,
                      message: "PJRT API version \(head.pjrt_api_version.major_version).\(head.pjrt_api_version.minor_version); this build speaks 0.x")
    }
    self.handle = handle
    self.api = api
    tableBytes = head.struct_size
    majorVersion = Int(head.pjrt_api_version.major_version)
    minorVersion = Int(head.pjrt_api_version.minor_version)
    var initialize = PJRT_Plugin_Initialize_Args(struct_size: MemoryLayout<PJRT_Plugin_Initialize_Args>.size, extension_start: nil)
    try call(.pluginInitialize, "PJRT_Plugin_Initialize", &initialize)
  }

  /// The entry point at `slot`, after checking the plugin's table is long enough to have it.
  private func entry(_ slot: PJRTSlot, _ name: String) throws(PJRTError) -> UnsafeRawPointer {
    let offset = MemoryLayout<PJRT_Api_Head>.size + slot.rawValue * MemoryLayout<UnsafeRawPointer>.size
    guard offset + MemoryLayout<UnsafeRawPointer>.size <= tableBytes,
          let pointer = api.load(fromByteOffset: offset, as: UnsafeRawPointer?.self) else {
      throw PJRTError(plugin: path, call: name, code: -1, message: "this plugin (API 0.\(minorVersion)) does not provide it")
    }
    return pointer
  }

  /// Calls an entry point with its argument struct; a returned error becomes a `PJRTError`.
  func call<Arguments>(_ slot: PJRTSlot, _ name: String, _ arguments: inout Arguments) throws(PJRTError) {
    let function = unsafeBitCast(try entry(slot, name), to: PJRT_Entry.self)
    let error = withUnsafeMutablePointer(to: &arguments) { function(UnsafeMutableRawPointer($0)) }
    if let error { throw consume(error, call: name) }
  }

  /// The message and code of a plugin error, which is then destroyed.
  func consume(_ error: OpaquePointer, call name: String) -> PJRTError {
    var message = PJRT_Error_Message_Args(struct_size: MemoryLayout<PJRT_Error_Message_Args>.size, extension_start: nil,
                                          error: error, message: nil, message_size: 0)
    var code = PJRT_Error_GetCode_Args(struct_size: MemoryLayout<PJRT_Error_GetCode_Args>.size, extension_start: nil, error: error, code: 0)
    var text = "(no message)"
    if let pointer = try? entry(.errorMessage, "PJRT_Error_Message") {
      withUnsafeMutablePointer(to: &message) { unsafeBitCast(pointer, to: PJRT_VoidEntry.self)(UnsafeMutableRawPointer($0)) }
      if let bytes = message.message {
        text = String(decoding: UnsafeRawBufferPointer(start: bytes, count: message.message_size), as: UTF8.self)
      }
    }
    if let pointer = try? entry(.errorGetCode, "PJRT_Error_GetCode") {
      _ = withUnsafeMutablePointer(to: &code) { unsafeBitCast(pointer, to: PJRT_Entry.self)(UnsafeMutableRawPointer($0)) }
    }
    destroy(error)
    return PJRTError(plugin: path, call: name, code: code.code, message: text)
  }

  func destroy(_ error: OpaquePointer) {
    var arguments = PJRT_Error_Destroy_Args(struct_size: MemoryLayout<PJRT_Error_Destroy_Args>.size, extension_start: nil, error: error)
    if let pointer = try? entry(.errorDestroy, "PJRT_Error_Destroy") {
      withUnsafeMutablePointer(to: &arguments) { unsafeBitCast(pointer, to: PJRT_VoidEntry.self)(UnsafeMutableRawPointer($0)) }
    }
  }

  /// Waits for an event and destroys it; its error, if any, is thrown.
  func await(_ event: OpaquePointer?, call name: String) throws(PJRTError) {
    guard let event else { return }
    var wait = PJRT_Event_Await_Args(struct_size: MemoryLayout<PJRT_Event_Await_Args>.size, extension_start: nil, event: event)
    var failure: PJRTError?
    do { try call(.eventAwait, name, &wait) } catch { failure = error }
    var destroy = PJRT_Event_Destroy_Args(struct_size: MemoryLayout<PJRT_Event_Destroy_Args>.size, extension_start: nil, event: event)
    try? call(.eventDestroy, "PJRT_Event_Destroy", &destroy)
    if let failure { throw failure }
  }

  /// Waits for every event (one per device) and destroys them; returns, per event, the seconds
  /// from `since` until it was ready, stamped by the plugin's thread as each device finished
  /// (`PJRT_Event_OnReady`), not by this thread as it gets round to each. The first error is thrown.
  func awaitAll(_ events: [OpaquePointer?], since: Double, call name: String) throws(PJRTError) -> [Double] {
    var stamps: [OpaquePointer?] = []
    defer { for stamp in stamps { amoeba_ready_stamp_destroy(stamp) } }
    for event in events {
      let stamp = amoeba_ready_stamp_create()
      var onReady = PJRT_Event_OnReady_Args(struct_size: MemoryLayout<PJRT_Event_OnReady_Args>.size, extension_start: nil,
                                            event: event, callback: amoeba_ready_stamp_callback, user_arg: UnsafeMutableRawPointer(stamp))
      if event != nil, stamp != nil, (try? call(.eventOnReady, "PJRT_Event_OnReady", &onReady)) != nil {
        stamps.append(stamp)
      } else {
        amoeba_ready_stamp_destroy(stamp)
        stamps.append(nil)
      }
    }
    var failure: PJRTError?
    for (r, event) in events.enumerated() {
      do { try self.await(event, call: "\(name) (replica \(r) completion)") } catch { failure = failure ?? error }
    }
    // The callbacks run on the plugin's thread as the events complete, at the latest just after
    // the waits return; a stamp still unwritten a second later is left allocated (the callback
    // may yet write it) and its time is unknown (-1).
    let deadline = PJRTPlugin.monotonicSeconds() + 1
    var seconds: [Double] = []
    for (r, stamp) in stamps.enumerated() {
      guard let stamp else { seconds.append(-1); continue }
      var error: OpaquePointer?
      var ready = amoeba_ready_stamp_seconds(stamp, &error)
      while ready < 0 && PJRTPlugin.monotonicSeconds() < deadline {
        sched_yield()
        ready = amoeba_ready_stamp_seconds(stamp, &error)
      }
      if ready < 0 { stamps[r] = nil }
      if let error { destroy(error) }
      seconds.append(ready < 0 ? -1 : ready - since)
    }
    if let failure { throw failure }
    return seconds
  }

  static func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
  }

  /// The plugin's attributes (`xla_version`, StableHLO versions, …) as text.
  public func attributes() throws(PJRTError) -> [String: String] {
    var arguments = PJRT_Plugin_Attributes_Args(struct_size: MemoryLayout<PJRT_Plugin_Attributes_Args>.size, extension_start: nil,
                                                attributes: nil, num_attributes: 0)
    try call(.pluginAttributes, "PJRT_Plugin_Attributes", &arguments)
    var result: [String: String] = [:]
    for i in 0..<arguments.num_attributes {
      guard let value = arguments.attributes?[i], let name = value.name else { continue }
      let key = String(decoding: UnsafeRawBufferPointer(start: name, count: value.name_size), as: UTF8.self)
      switch value.type {
      case PJRT_NamedValue_kString:
        result[key] = value.string_value.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: value.value_size), as: UTF8.self) } ?? ""
      case PJRT_NamedValue_kInt64: result[key] = String(value.int64_value)
      case PJRT_NamedValue_kInt64List:
        result[key] = (0..<value.value_size).map { String(value.int64_array_value[$0]) }.joined(separator: ".")
      case PJRT_NamedValue_kBool: result[key] = String(value.bool_value)
      default: result[key] = String(value.float_value)
      }
    }
    return result
  }
}
