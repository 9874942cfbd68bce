import Synchronization

/// A stop request another thread can raise while this one waits on the network: every wait of the
/// ring (forming it, exchanging frames) checks it at least every `Cancellation.pollSeconds`, so a
/// worker told to stop by its coordinator leaves a blocked all-reduce at once instead of waiting
/// out the ring timeout.
public final class Cancellation: Sendable {
  private let state = Mutex<String?>(nil)
  private let raised = Atomic<Bool>(false)
  /// The longest a cancelled wait sleeps before it notices.
  public static let pollSeconds = 0.1

  public init() {}

  /// Raises the stop with a reason (the first reason wins).
  public func cancel(_ reason: String) {
    state.withLock { if $0 == nil { $0 = reason } }
    raised.store(true, ordering: .releasing)
  }

  public var isCancelled: Bool { raised.load(ordering: .acquiring) }
  public var reason: String? { isCancelled ? state.withLock { $0 } : nil }

  /// Throws `.cancelled` once raised.
  public func check() throws(CollectiveError) {
    if isCancelled { throw .cancelled(reason: reason ?? "cancelled") }
  }
}
