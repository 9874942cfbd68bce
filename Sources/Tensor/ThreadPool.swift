#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A fixed set of threads that run fork–join loops: `parallelFor` hands out task indices until all
/// are done and returns only then.
///
/// The threads are created once and live as long as the pool; a loop allocates nothing, so the
/// executor can call this inside a training step. The calling thread takes tasks too, so a pool of
/// `threadCount` runs `threadCount` tasks at once with `threadCount - 1` extra threads.
///
/// Results must not depend on which thread runs a task: kernels split work into tasks by size, never
/// by thread count, and each task writes only its own outputs. The thread index passed to the body
/// exists only to pick per-thread scratch memory.
///
/// Threading contract: one `parallelFor` at a time (the executor and the benchmarks call it from one
/// thread); a body must not call `parallelFor` on the same pool.
public final class ThreadPool: @unchecked Sendable {
  // @unchecked: all mutable state lives in `Loop`, guarded as described there.
  public let threadCount: Int
  private let loop: Loop
  private var threads: [pthread_t] = []
  private let inUse = Atomic<Bool>(false)

  /// - Parameter threadCount: threads running tasks, the caller included; defaults to the number
  ///   of online cores.
  public init(threadCount: Int = ThreadPool.onlineCores) {
    precondition(threadCount >= 1, "a thread pool needs at least one thread")
    self.threadCount = threadCount
    loop = Loop(workers: threadCount - 1)
    for index in 1..<threadCount {
      let start = Unmanaged.passRetained(WorkerStart(loop: loop, index: index))
      var thread = pthread_t()
      let rc = pthread_create(&thread, nil, { raw in
        let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
        start.loop.workerLoop(thread: start.index)
        return nil
      }, start.toOpaque())
      precondition(rc == 0, "pthread_create failed: \(String(cString: strerror(rc)))")
      threads.append(thread)
    }
  }

  deinit {
    loop.shutDown()
    for thread in threads { pthread_join(thread, nil) }
  }

  /// Online CPU cores, at least 1.
  public static var onlineCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

  /// Runs `body(task, thread)` for every task in `0..<count` and returns when all have finished.
  /// `thread` is in `0..<threadCount` and is unique among tasks running at the same moment.
  public func parallelFor(_ count: Int, _ body: (_ task: Int, _ thread: Int) -> Void) {
    if count <= 0 { return }
    if count == 1 || threadCount == 1 {
      for task in 0..<count { body(task, 0) }
      return
    }
    // Two callers at once is our bug (scratch memory is per pool), so trap rather than corrupt.
    precondition(inUse.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged,
                 "ThreadPool.parallelFor called while another loop runs on the same pool")
    // The loop receives a pointer to the closure on this stack frame, not the closure itself:
    // handing a closure to an escaping parameter made Swift box it, one heap allocation per loop.
    withoutActuallyEscaping(body) { escapable in
      let job = Job(body: escapable)
      withUnsafePointer(to: job) { loop.run($0, count: count) }
    }
    inUse.store(false, ordering: .releasing)
  }
}

/// The state shared by the caller of `parallelFor` and the worker threads.
///
/// The caller writes `job` and `taskCount`, then publishes a new generation with a release store;
/// a worker that sees the new generation with an acquire load may read them. Workers spin briefly
/// on the generation before sleeping on `wake` (a training step launches thousands of short loops,
/// and a futex wake-up per loop cost more than the loops); the caller likewise spins on `busy`
/// before sleeping on `finished`. Both sleeps re-check their condition under `mutex`, and both
/// wake-ups are sent under it, so none is lost. Task indices come from an atomic counter.
private final class Loop: @unchecked Sendable {
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
  private let finished = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
  private let workers: Int
  private var job: UnsafePointer<Job>?
  private var taskCount = 0
  private var shuttingDown = false
  private let generation = Atomic<UInt64>(0)
  private let busy = Atomic<Int>(0)
  private let nextTask = Atomic<Int>(0)
  /// Polls of an atomic before sleeping: a few tens of microseconds.
  static let spins = 20_000

  init(workers: Int) {
    self.workers = workers
    pthread_mutex_init(mutex, nil)
    pthread_cond_init(wake, nil)
    pthread_cond_init(finished, nil)
  }

  deinit {
    pthread_cond_destroy(wake); pthread_cond_destroy(finished); pthread_mutex_destroy(mutex)
    wake.deallocate(); finished.deallocate(); mutex.deallocate()
  }

  func run(_ body: UnsafePointer<Job>, count: Int) {
    job = body
    taskCount = count
    nextTask.store(0, ordering: .relaxed)
    busy.store(workers, ordering: .relaxed)
    pthread_mutex_lock(mutex)
    generation.wrappingAdd(1, ordering: .releasing)
    pthread_cond_broadcast(wake)
    pthread_mutex_unlock(mutex)

    runTasks(body.pointee.body, count: count, thread: 0)

    var polls = 0
    while busy.load(ordering: .acquiring) > 0 {
      polls += 1
      if polls & 1023 == 0 { sched_yield() }
      if polls < Loop.spins { continue }
      pthread_mutex_lock(mutex)
      while busy.load(ordering: .acquiring) > 0 { pthread_cond_wait(finished, mutex) }
      pthread_mutex_unlock(mutex)
    }
    job = nil
  }

  func shutDown() {
    pthread_mutex_lock(mutex)
    shuttingDown = true
    generation.wrappingAdd(1, ordering: .releasing)
    pthread_cond_broadcast(wake)
    pthread_mutex_unlock(mutex)
  }

  @inline(__always)
  private func runTasks(_ body: (Int, Int) -> Void, count: Int, thread: Int) {
    while true {
      let task = nextTask.wrappingAdd(1, ordering: .relaxed).oldValue
      if task >= count { return }
      body(task, thread)
    }
  }

  func workerLoop(thread: Int) {
    var seen: UInt64 = 0
    while true {
      var current = generation.load(ordering: .acquiring)
      var polls = 0
      while current == seen && polls < Loop.spins {
        polls += 1
        // Yield now and then: if the scheduler put us on the caller's core, the caller runs.
        if polls & 1023 == 0 { sched_yield() }
        current = generation.load(ordering: .acquiring)
      }
      if current == seen {
        pthread_mutex_lock(mutex)
        while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(wake, mutex) }
        current = generation.load(ordering: .acquiring)
        pthread_mutex_unlock(mutex)
      }
      seen = current
      pthread_mutex_lock(mutex)
      let stop = shuttingDown
      pthread_mutex_unlock(mutex)
      if stop { return }
      // The closure lives on the caller's stack until every worker has reported back.
      let body = job!
      runTasks(body.pointee.body, count: taskCount, thread: thread)
      if busy.wrappingSubtract(1, ordering: .acquiringAndReleasing).oldValue == 1 {
        pthread_mutex_lock(mutex)
        pthread_cond_signal(finished)
        pthread_mutex_unlock(mutex)
      }
    }
  }
}

/// A loop body held in a struct field, where a closure keeps its natural calling convention (a bare
/// closure behind a generic pointer would be re-abstracted through a heap-allocated thunk).
private struct Job {
  let body: (Int, Int) -> Void
}

private final class WorkerStart {
  let loop: Loop
  let index: Int
  init(loop: Loop, index: Int) { self.loop = loop; self.index = index }
}
