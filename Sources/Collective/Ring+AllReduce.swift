/// Ring all-reduce: reduce-scatter then all-gather, n − 1 steps each, as Baidu's ring and Gloo's
/// `allreduce_ring` do; small buffers instead gather every rank's copy and sum in rank order
/// (`gatherAndSum`), half the steps when latency, not bandwidth, is the cost.
///
/// The buffer is cut into `size` chunks, chunk i = elements [i·c/n, (i+1)·c/n). In reduce-scatter
/// step s, rank r sends chunk (r − s) to the right and adds the chunk (r − s − 1) arriving from the
/// left into its own copy, so after n − 1 steps rank r holds the full sum of chunk (r + 1). In
/// all-gather step s it sends chunk (r + 1 − s) and overwrites chunk (r − s) with what arrives. Each
/// rank sends 2·(n−1)/n of the buffer in all. Sending, receiving and adding overlap: the adds
/// run on each segment as soon as it has arrived, while the transport keeps both sockets busy.
/// Every rank ends with the same bits: each chunk is summed once, by its owner, then copied.
///
/// A large buffer goes through the ring one slice at a time (NCCL's slices, Gloo's segments): a
/// slice of n · `chunkBytes` is reduce-scattered and all-gathered before the next starts, so the
/// chunk a rank has just summed is still in its cache when it sends it on, and the bytes the kernel
/// copies come from cache, not memory. On this 2-core host that took 2-rank busbw at 64–256 MiB
/// from ~2.3 GB/s to ~4 GB/s (docs/BENCHMARKS.md).
public enum ReduceOperation: Sendable { case sum, mean }

public final class Ring {
  public let links: RingLinks
  private var scratch: UnsafeMutablePointer<Float>
  private var scratchCapacity = 0

  public init(links: RingLinks) {
    self.links = links
    scratch = .allocate(capacity: 1)
  }

  deinit { scratch.deallocate() }

  public var rank: Int { links.rank }
  public var size: Int { links.size }

  func chunk(_ i: Int, count: Int) -> Range<Int> {
    let n = size
    return (i * count / n)..<((i + 1) * count / n)
  }

  private func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
    if count > scratchCapacity {
      scratch.deallocate()
      scratch = .allocate(capacity: max(count, 1))
      scratchCapacity = count
    }
    return scratch
  }

  /// Buffers up to this many bytes (with 2 ranks; scaled by 2/n, since gathering sends n/2 times
  /// the ring's bytes) are reduced by gathering every rank's copy and summing in rank order:
  /// n − 1 exchanges instead of 2(n − 1), which is what counts when latency dominates.
  public var smallBytes = 256 << 10
  /// Bytes of the cyclic window the reduce-scatter receives through (kept in cache).
  public var windowBytes = 256 << 10
  /// Bytes of each rank's chunk of a slice: large enough that an exchange is bandwidth-bound,
  /// small enough that a slice stays in a core's L2 (512 KiB measured best with 2 ranks on 1 MiB L2).
  public var chunkBytes = 512 << 10

  /// The element ranges of `count` cut into slices of at most n · `chunkBytes`, of nearly equal
  /// length (the same on every rank, so the frames line up).
  func slices(count: Int) -> [Range<Int>] {
    let perSlice = max(size, size * chunkBytes / 4)
    let k = (count + perSlice - 1) / perSlice
    return (0..<k).map { (($0 * count) / k)..<((($0 + 1) * count) / k) }
  }

  /// Sums (or averages) `data` across the ring in place.
  public func allReduce(_ data: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation = .sum) throws(CollectiveError) {
    let n = size, count = data.count
    guard n > 1, count > 0 else { return }
    if count * 4 * n <= smallBytes * 2 {
      try gatherAndSum(data)
      if operation == .mean {
        let scale = 1 / Float(n)
        for i in 0..<count { data[i] *= scale }
      }
    } else {
      for slice in slices(count: count) {
        try reduceScatterAllGather(UnsafeMutableBufferPointer(rebasing: data[slice]), operation)
      }
    }
  }

  /// Every rank receives every other rank's buffer around the ring and adds them all in rank order,
  /// so every rank computes the same sum in the same order: bitwise identical results.
  private func gatherAndSum(_ data: UnsafeMutableBufferPointer<Float>) throws(CollectiveError) {
    let n = size, count = data.count
    let all = reserve(n * count)
    (all + rank * count).update(from: data.baseAddress!, count: count)
    try gather(all, count: count)
    let base = data.baseAddress!
    base.update(from: all, count: count)
    for k in 1..<n {
      let other = all + k * count
      for i in 0..<count { base[i] += other[i] }
    }
  }

  private func reduceScatterAllGather(_ data: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation) throws(CollectiveError) {
    let n = size, count = data.count, r = rank
    let base = data.baseAddress!
    let windowFloats = max(1024, windowBytes / 4)
    let window = reserve(windowFloats)
    for s in 0..<(n - 1) {
      let send = chunk((r - s + n) % n, count: count), receive = chunk((r - s - 1 + 2 * n) % n, count: count)
      let target = base + receive.lowerBound
      var added = 0
      // Each callback adds every whole float that has arrived: the window is reused, so nothing
      // may wait for a later callback.
      try links.exchange(send: UnsafeRawBufferPointer(start: base + send.lowerBound, count: send.count * 4),
                         receiveCount: receive.count * 4,
                         window: UnsafeMutableRawBufferPointer(start: window, count: windowFloats * 4)) { bytes in
        let ready = bytes / 4
        while added < ready {
          let position = added % windowFloats
          let run = min(ready - added, windowFloats - position)
          let source = window + position, destination = target + added
          for i in 0..<run { destination[i] += source[i] }
          added += run
        }
      }
    }
    // The owner scales its chunk once; the all-gather copies the result everywhere.
    if operation == .mean {
      let scale = 1 / Float(n)
      for i in chunk((r + 1) % n, count: count) { base[i] *= scale }
    }
    for s in 0..<(n - 1) {
      let send = chunk((r + 1 - s + n) % n, count: count), receive = chunk((r - s + n) % n, count: count)
      try links.exchange(send: UnsafeRawBufferPointer(start: base + send.lowerBound, count: send.count * 4),
                         receive: UnsafeMutableRawBufferPointer(start: base + receive.lowerBound, count: receive.count * 4)) { _ in }
    }
  }

  /// Rank `root`'s `data` everywhere: passed around the ring in n − 1 exchanges.
  public func broadcast(_ data: UnsafeMutableBufferPointer<Float>, root: Int = 0) throws(CollectiveError) {
    let n = size
    guard n > 1 else { return }
    // Step s: the rank s places right of the root has the data and passes it on; the others
    // exchange empty frames, which keeps every link's sequence numbers in step.
    for s in 0..<(n - 1) {
      let sender = (root + s) % n, receiver = (root + s + 1) % n
      let outgoing = rank == sender ? UnsafeRawBufferPointer(data) : UnsafeRawBufferPointer(start: nil, count: 0)
      let incoming = rank == receiver ? UnsafeMutableRawBufferPointer(data) : UnsafeMutableRawBufferPointer(start: nil, count: 0)
      try links.exchange(send: outgoing, receive: incoming) { _ in }
    }
  }

  /// Every rank's `local` (the same count everywhere), concatenated in rank order.
  public func allGather(_ local: [Float]) throws(CollectiveError) -> [Float] {
    let n = size, count = local.count
    var all = [Float](repeating: 0, count: n * count)
    for i in 0..<count { all[rank * count + i] = local[i] }
    guard n > 1 else { return all }
    try all.withUnsafeMutableBufferPointer { (buffer) throws(CollectiveError) in try gather(buffer.baseAddress!, count: count) }
    return all
  }

  /// `all` holds `size` blocks of `count` floats, this rank's in place; afterwards every block is
  /// filled: in step s each rank passes on the block it received in step s − 1.
  private func gather(_ all: UnsafeMutablePointer<Float>, count: Int) throws(CollectiveError) {
    let n = size
    for s in 0..<(n - 1) {
      let send = (rank - s + n) % n, receive = (rank - s - 1 + n) % n
      try links.exchange(send: UnsafeRawBufferPointer(start: all + send * count, count: count * 4),
                         receive: UnsafeMutableRawBufferPointer(start: all + receive * count, count: count * 4)) { _ in }
    }
  }

  /// Returns once every rank has called it (or throws naming the rank that did not).
  public func barrier() throws(CollectiveError) {
    var token: [Float] = [1]
    try token.withUnsafeMutableBufferPointer { (buffer) throws(CollectiveError) in try allReduce(buffer) }
  }
}
