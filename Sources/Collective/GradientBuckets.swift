#if canImport(Glibc)
import Glibc
#endif

/// Gradients all-reduced in buckets on a communication thread while the backward pass goes on
/// (PyTorch DDP's and Horovod's overlap). The compute thread copies each gradient into its bucket
/// as soon as the gradient is final and calls `markReady`; the communication thread reduces the
/// buckets strictly in index order (the same order on every rank, so the ring's frames line up);
/// `waitAll` blocks only for what is still in flight and reports how much communication was hidden.
///
/// Hidden means reduced while gradients were still being produced: the part of each bucket's
/// all-reduce before the last bucket was marked ready. So one bucket hides nothing, whatever the
/// threads' scheduling (a compute thread descheduled between `markReady` and `waitAll` does no
/// backward work, though `waitAll` then blocks for less), and a bucket reduced behind later
/// gradients' computation counts in full.
///
/// Threading: `markReady` and `waitAll` from one compute thread; the ring is used only by the
/// communication thread between the first `markReady` and `waitAll`.
public final class GradientBuckets: @unchecked Sendable {
  // @unchecked: `state` is only touched with `mutex` held; bucket memory is written by the compute
  // thread before `markReady` and by the communication thread after, never both at once.
  public struct Statistics: Sendable {
    /// Seconds the communication thread spent in all-reduce this step, per bucket.
    public var bucketSeconds: [Double]
    /// Of those, the seconds before the last bucket was marked ready (overlapping backward).
    public var hiddenSeconds: Double
    /// Seconds `waitAll` blocked (the ring wait the compute thread saw).
    public var waitSeconds: Double
    public var communicationSeconds: Double { bucketSeconds.reduce(0, +) }
    public var exposedSeconds: Double { communicationSeconds - hiddenSeconds }
    public var hiddenFraction: Double { communicationSeconds > 0 ? min(1, max(0, hiddenSeconds / communicationSeconds)) : 1 }

    public init(bucketSeconds: [Double] = [], hiddenSeconds: Double = 0, waitSeconds: Double = 0) {
      self.bucketSeconds = bucketSeconds; self.hiddenSeconds = hiddenSeconds; self.waitSeconds = waitSeconds
    }
  }

  public let ring: Ring
  public let operation: ReduceOperation
  public let compression: WireCompression
  public let bucketSizes: [Int]
  private let storage: UnsafeMutablePointer<Float>
  private let offsets: [Int]
  private var state = State()
  private let signal = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  private var thread = pthread_t()

  struct State {
    var ready: [Bool] = []
    var reduced = 0
    var error: CollectiveError?
    /// Per bucket, when its all-reduce started and ended this step.
    var intervals: [(start: Double, end: Double)] = []
    /// When the latest bucket was marked ready.
    var lastReady = 0.0
    var stopping = false
  }

  /// - Parameter bucketSizes: floats per bucket, in the order the buckets become ready.
  public init(ring: Ring, bucketSizes: [Int], operation: ReduceOperation = .mean, compression: WireCompression = .none) {
    self.ring = ring
    self.operation = operation
    self.compression = compression
    self.bucketSizes = bucketSizes
    var offsets: [Int] = [], total = 0
    for size in bucketSizes { offsets.append(total); total += size }
    self.offsets = offsets
    storage = .allocate(capacity: max(total, 1))
    storage.initialize(repeating: 0, count: max(total, 1))
    pthread_mutex_init(mutex, nil)
    pthread_cond_init(signal, nil)
    state.ready = [Bool](repeating: false, count: bucketSizes.count)
    let context = Unmanaged.passRetained(self).toOpaque()
    pthread_create(&thread, nil, { raw in
      let buckets = Unmanaged<GradientBuckets>.fromOpaque(raw!).takeRetainedValue()
      buckets.communicate()
      return nil
    }, context)
  }

  /// Stops the communication thread. Call once, when no step is in flight.
  public func shutDown() {
    pthread_mutex_lock(mutex)
    state.stopping = true
    pthread_cond_broadcast(signal)
    pthread_mutex_unlock(mutex)
    pthread_join(thread, nil)
  }

  deinit {
    storage.deallocate()
    pthread_cond_destroy(signal); pthread_mutex_destroy(mutex)
    signal.deallocate(); mutex.deallocate()
  }

  /// Bucket `index`'s memory: fill it, then `markReady(index)`.
  public func buffer(_ index: Int) -> UnsafeMutableBufferPointer<Float> {
    UnsafeMutableBufferPointer(start: storage + offsets[index], count: bucketSizes[index])
  }

  public func markReady(_ index: Int) {
    let now = monotonicNow()
    pthread_mutex_lock(mutex)
    state.ready[index] = true
    state.lastReady = max(state.lastReady, now)
    pthread_cond_broadcast(signal)
    pthread_mutex_unlock(mutex)
  }

  /// Waits until every bucket is reduced (or the ring failed), then re-arms for the next step.
  public func waitAll() throws(CollectiveError) -> Statistics {
    let started = monotonicNow()
    pthread_mutex_lock(mutex)
    while state.reduced < bucketSizes.count && state.error == nil { pthread_cond_wait(signal, mutex) }
    let error = state.error, intervals = state.intervals, lastReady = state.lastReady
    if error == nil {
      state.ready = [Bool](repeating: false, count: bucketSizes.count)
      state.reduced = 0
      state.intervals = []
      state.lastReady = 0
    }
    pthread_cond_broadcast(signal)
    pthread_mutex_unlock(mutex)
    if let error { throw error }
    return Statistics(bucketSeconds: intervals.map { $0.end - $0.start },
                      hiddenSeconds: intervals.reduce(0) { $0 + max(0, min($1.end, lastReady) - $1.start) },
                      waitSeconds: monotonicNow() - started)
  }

  /// Buckets reduced so far this step (all of them once `waitAll` is due to return).
  public var reducedCount: Int {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return state.reduced
  }

  private func communicate() {
    while true {
      pthread_mutex_lock(mutex)
      var next = -1
      while true {
        if state.stopping { pthread_mutex_unlock(mutex); return }
        if state.error == nil && state.reduced < state.ready.count && state.ready[state.reduced] { next = state.reduced; break }
        pthread_cond_wait(signal, mutex)
      }
      pthread_mutex_unlock(mutex)
      let started = monotonicNow()
      var failure: CollectiveError?
      do { try ring.allReduce(buffer(next), operation, compression: compression) } catch { failure = error }
      let ended = monotonicNow()
      pthread_mutex_lock(mutex)
      state.intervals.append((started, ended))
      if let failure { state.error = failure } else { state.reduced += 1 }
      pthread_cond_broadcast(signal)
      pthread_mutex_unlock(mutex)
    }
  }

  /// Groups tensors (sizes in floats, in the order their gradients become final) into buckets of
  /// about `bucketBytes`, the first one `firstBucketBytes` so communication starts early — DDP's
  /// defaults are 25 MiB and 1 MiB; the first is never larger than the others. Returns the tensor
  /// indices of each bucket.
  public static func plan(tensorSizes: [Int], bucketBytes: Int = 25 << 20, firstBucketBytes: Int = 1 << 20) -> [[Int]] {
    let firstBucketBytes = min(firstBucketBytes, bucketBytes)
    var buckets: [[Int]] = [], current: [Int] = [], bytes = 0
    for (index, size) in tensorSizes.enumerated() {
      current.append(index)
      bytes += size * 4
      if bytes >= (buckets.isEmpty ? firstBucketBytes : bucketBytes) {
        buckets.append(current); current = []; bytes = 0
      }
    }
    if !current.isEmpty { buckets.append(current) }
    return buckets
  }
}
