import Testing
import Synchronization
import Tensor

@Suite struct ThreadPoolTests {
  @Test func everyTaskRunsExactlyOnceAcrossManyLoops() {
    let pool = ThreadPool(threadCount: 3)
    for count in [0, 1, 2, 7, 100, 1000] {
      let hits = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(count, 1))
      hits.initialize(repeating: 0)
      defer { hits.deallocate() }
      pool.parallelFor(count) { task, thread in
        precondition(thread >= 0 && thread < 3)
        hits[task] += 1
      }
      #expect(hits.prefix(count).allSatisfy { $0 == 1 }, "count \(count)")
    }
  }

  @Test func concurrentTasksGetDistinctThreadIndices() {
    let pool = ThreadPool(threadCount: 2)
    let busy = Mutex<[Bool]>([false, false])
    let clash = Atomic<Int>(0)
    pool.parallelFor(200) { _, thread in
      busy.withLock { if $0[thread] { clash.add(1, ordering: .relaxed) }; $0[thread] = true }
      var spin = 0
      for i in 0..<2000 { spin &+= i }
      _ = spin
      busy.withLock { $0[thread] = false }
    }
    #expect(clash.load(ordering: .relaxed) == 0)
  }
}
