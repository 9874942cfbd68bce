/// Somewhere else to run an executor's graph: an accelerator compiles the same graph and, on each
/// run, reads the executor's leaves (inputs and parameters as the host last wrote them, and its
/// `randomStream`) and writes every requested output back into the executor's buffers. Callers
/// keep reading and writing through the executor, so the CPU path and the device path share one
/// interface; the Swift executor itself is the backend when none is set.
public protocol GraphBackend: AnyObject {
  /// For logs: "XLA:CPU (PJRT 0.81)".
  var name: String { get }
  func run(_ executor: Executor) throws
}
