/// Somewhere else to run an executor's graph: an accelerator compiles the same graph and keeps the
/// training state (`Executor.stateUpdates`) in its own memory between runs. Each run reads the
/// executor's inputs as the host last wrote them and writes the requested outputs back; the state
/// crosses only when asked (`copyStateToHost` before a checkpoint or an evaluation reads it,
/// `hostStateChanged` after the host wrote it). The data-parallel boundary calls the executor's
/// `allReduce` between the backend's two programs. The Swift executor itself is the backend when none is set.
public protocol GraphBackend: AnyObject {
  /// For logs: "XLA:cpu (PJRT 0.81)" (the device kind; `replicas` says how many).
  var name: String { get }
  /// Devices one run spans, each on its own slice of the batch (`Executor.replicaBatches`) with
  /// batch norm over its slice, the boundary a mean over them.
  var replicas: Int { get }
  /// Per device, the seconds the last run kept it busy, where the backend can tell (else empty):
  /// the per-device step time of a host with several chips.
  var lastDeviceSeconds: [Double] { get }
  func run(_ executor: Executor) throws
  /// Writes the device's copy of every parameter into the executor's leaves.
  func copyStateToHost(_ executor: Executor) throws
  /// The executor's leaves are newer than the device's copy: upload them before the next run.
  func hostStateChanged()
}

extension GraphBackend {
  public var replicas: Int { 1 }
  public var lastDeviceSeconds: [Double] { [] }
}
