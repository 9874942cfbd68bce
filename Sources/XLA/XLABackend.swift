#if canImport(Glibc)
import Glibc
#endif
import Graph
import Tensor

/// An executor's graph compiled by a PJRT plugin: every run uploads the leaves, executes on the
/// client's first device and copies the outputs back into the executor's buffers. Parameters
/// cross the boundary each step because the optimizer still runs on the host; once the update is
/// part of the program (issue 12), they stay on the device.
public final class XLABackend: GraphBackend {
  public let client: PJRTClient
  let executable: PJRTExecutable
  let lowering: StableHLOLowering
  public let compileSeconds: Double
  public var name: String { "XLA:\(client.platformName) (PJRT 0.\(client.plugin.minorVersion))" }

  public init(client: PJRTClient, executor: Executor) throws(PJRTError) {
    self.client = client
    lowering = StableHLOLowering(graph: executor.graph, outputs: executor.outputs)
    let started = XLABackend.now()
    executable = try client.compile(mlir: lowering.module(named: "train_step"))
    compileSeconds = XLABackend.now() - started
  }

  public func run(_ executor: Executor) throws {
    var arguments = try lowering.arguments.map { leaf in
      try client.buffer(UnsafeBufferPointer(start: executor.pointer(leaf), count: executor.graph.shape(leaf).elementCount),
                        dims: executor.graph.shape(leaf).dims)
    }
    if lowering.usesRandomStream { arguments.append(try client.buffer(uint64: executor.randomStream)) }
    for (value, output) in zip(executor.outputs, try executable.execute(arguments)) {
      try output.copy(into: UnsafeMutableBufferPointer(start: executor.pointer(value), count: executor.graph.shape(value).elementCount))
    }
  }

  static func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
  }
}
