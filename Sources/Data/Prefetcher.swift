#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensor

/// Fills batches ahead of the training step: a producer thread with its own pool decodes and
/// augments batch b+1 … b+depth into preallocated buffers while the step computes on batch b.
/// Batches come out in order starting at `firstBatch`; a batch's buffers belong to the caller
/// until the next `next()` call. The caller's waits have deadlines; the producer waits only for a
/// free buffer, and `shutDown` wakes it.
public final class Prefetcher: @unchecked Sendable {
  public struct Batch {
    public let number: Int
    public let images: UnsafeMutablePointer<Float>
    public let labels: UnsafeMutablePointer<Float>
    public let report: Batcher.Report
  }

  public let batcher: Batcher
  public let depth: Int
  let pool: ThreadPool
  let images: [UnsafeMutablePointer<Float>]
  let labels: [UnsafeMutablePointer<Float>]
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  private let signal = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
  private var thread = pthread_t()
  private var startFailure: DataError?
  private var state: State

  struct State {
    /// Next batch to fill, next batch to hand out.
    var filled: Int
    var consumed: Int
    var results: [Result<Batcher.Report, DataError>?]
    var stopping = false
    /// Whether the caller holds a batch (its slot cannot be refilled yet).
    var holding = false
    /// Set by the producer as it exits.
    var finished = false
  }

  /// `depth` ≥ 2 buffers: the caller's batch and at least one being filled.
  public init(batcher: Batcher, firstBatch: Int, depth: Int = 3, threads: Int) {
    self.batcher = batcher
    self.depth = max(2, depth)
    pool = ThreadPool(threadCount: max(1, threads))
    let pixels = batcher.dataset.imageSize * batcher.dataset.imageSize * 3
    images = (0..<self.depth).map { _ in UnsafeMutablePointer<Float>.allocateAligned(batcher.batchSize * pixels) }
    labels = (0..<self.depth).map { _ in UnsafeMutablePointer<Float>.allocateAligned(batcher.batchSize) }
    state = State(filled: firstBatch, consumed: firstBatch, results: [Result<Batcher.Report, DataError>?](repeating: nil, count: self.depth))
    pthread_mutex_init(mutex, nil)
    pthread_cond_init(signal, nil)
    let context = Unmanaged.passRetained(self).toOpaque()
    let rc = pthread_create(&thread, nil, { raw in
      let prefetcher = Unmanaged<Prefetcher>.fromOpaque(raw!).takeRetainedValue()
      prefetcher.produce()
      return nil
    }, context)
    if rc != 0 {
      // No producer: every batch fails with the reason, and shutDown has nothing to wait for.
      Unmanaged<Prefetcher>.fromOpaque(context).release()
      state.finished = true
      startFailure = .io(file: "input pipeline", reason: "cannot start the loader thread: \(String(cString: strerror(rc)))")
    }
  }

  /// Stops the producer after the batch it is filling, waiting up to `timeout` seconds for it; a
  /// producer stuck in a read past that is left to finish on its own (it holds its own reference).
  /// Call once.
  public func shutDown(timeout: Double = 60) {
    pthread_mutex_lock(mutex)
    state.stopping = true
    pthread_cond_broadcast(signal)
    var deadline = Prefetcher.deadline(after: timeout)
    var finished = state.finished
    while !finished {
      if pthread_cond_timedwait(signal, mutex, &deadline) == ETIMEDOUT { break }
      finished = state.finished
    }
    pthread_mutex_unlock(mutex)
    // The producer has left its loop (the join returns at once) or is stuck: let it go.
    if startFailure != nil { return }
    if finished { pthread_join(thread, nil) } else { pthread_detach(thread) }
  }

  /// `seconds` from now on the realtime clock, as the pthread timed waits want it.
  static func deadline(after requested: Double) -> timespec {
    // Finite and at most a year: a deadline, not an overflow.
    let seconds = requested.isFinite ? min(max(requested, 0), 31_536_000) : 31_536_000
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    let nanoseconds = Int(now.tv_nsec) + Int((seconds - seconds.rounded(.down)) * 1e9)
    return timespec(tv_sec: now.tv_sec + Int(seconds.rounded(.down)) + nanoseconds / 1_000_000_000,
                    tv_nsec: nanoseconds % 1_000_000_000)
  }

  deinit {
    images.forEach { $0.deallocate() }; labels.forEach { $0.deallocate() }
    pthread_cond_destroy(signal); pthread_mutex_destroy(mutex)
    signal.deallocate(); mutex.deallocate()
  }

  /// The next batch in order; the previous batch's buffers go back to the producer.
  public func next(timeout seconds: Double = 600) throws(DataError) -> Batch {
    if let startFailure { throw startFailure }
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    let number = state.consumed
    let slot = number % depth
    var deadline = Prefetcher.deadline(after: seconds)
    while state.filled <= number {
      if pthread_cond_timedwait(signal, mutex, &deadline) == ETIMEDOUT && state.filled <= number {
        throw .io(file: "input pipeline", reason: "batch \(number) was not ready after \(seconds) s; the data source (\(batcher.split.rawValue) split) is too slow or stuck")
      }
    }
    let result = state.results[slot]!
    // The slot stays ours until the next call; the one before it is released now.
    state.results[slot] = nil
    state.consumed += 1
    state.holding = true
    pthread_cond_broadcast(signal)
    switch result {
    case let .success(report): return Batch(number: number, images: images[slot], labels: labels[slot], report: report)
    case let .failure(error): throw error
    }
  }

  private func produce() {
    while true {
      pthread_mutex_lock(mutex)
      // Fill batch `filled` when a slot is free: the caller's batch and the ready ones occupy theirs.
      while !state.stopping && state.filled - state.consumed >= depth - (state.holding ? 1 : 0) {
        pthread_cond_wait(signal, mutex)
      }
      if state.stopping {
        state.finished = true
        pthread_cond_broadcast(signal)
        pthread_mutex_unlock(mutex)
        return
      }
      let number = state.filled
      pthread_mutex_unlock(mutex)
      let slot = number % depth
      let result: Result<Batcher.Report, DataError>
      do throws(DataError) {
        result = .success(try batcher.fill(batch: number, images: images[slot], labels: labels[slot], pool: pool))
      } catch {
        result = .failure(error)
      }
      pthread_mutex_lock(mutex)
      state.results[slot] = result
      state.filled += 1
      pthread_cond_broadcast(signal)
      pthread_mutex_unlock(mutex)
    }
  }
}
