/// Ring all-reduce: reduce-scatter then all-gather, n − 1 steps each, as Baidu's ring and Gloo's
/// `allreduce_ring` do; small buffers instead gather every rank's copy and sum in rank order
/// (`gatherAndSum`), half the steps when latency, not bandwidth, is the cost.
///
/// Each slice of the buffer (below) is cut into `size` chunks, chunk i = elements [i·c/n, (i+1)·c/n) of
/// the slice's c. In reduce-scatter
/// step s, rank r sends chunk (r − s) to the right and adds the chunk (r − s − 1) arriving from the
/// left into its own copy, so after n − 1 steps rank r holds the full sum of chunk (r + 1). In
/// all-gather step s it sends chunk (r + 1 − s) and overwrites chunk (r − s) with what arrives. Each
/// rank sends 2·(n−1)/n of the buffer in all. Sending, receiving and adding overlap: the adds
/// run on each segment as soon as it has arrived, while the transport keeps both sockets busy.
/// Every rank ends with the same bits: each chunk is summed once, by its owner, then copied.
///
/// The buffer goes round the ring in slices of n · `chunkBytes` (NCCL's slices, Gloo's segments),
/// so the chunk a rank has just summed is still in its cache when it sends it on: the bytes the
/// kernel copies come from cache, not memory (on this 2-core host that took 2-rank busbw at
/// 64–256 MiB from ~2.3 GB/s to ~4 GB/s, docs/BENCHMARKS.md). Slices go in pairs whose frames
/// alternate, and each frame leaves while the one before it arrives: within a slice every send
/// waits for the previous receive, but the other slice's frame fills that gap, so a link is not
/// idle for a network latency at every step.
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
  /// small enough that a pair of slices stays near a core's L2. The same on every rank (the
  /// frames must line up), so a constant, not the local cache size.
  public var chunkBytes = 512 << 10

  /// The element ranges of `count` cut into slices of at most n · `chunkBytes`, of nearly equal length.
  func slices(count: Int) -> [Range<Int>] {
    let perSlice = max(size, size * chunkBytes / 4)
    let k = max(1, (count + perSlice - 1) / perSlice)
    return (0..<k).map { (($0 * count) / k)..<((($0 + 1) * count) / k) }
  }

  /// One frame of the reduce-scatter/all-gather schedule, as element ranges of the buffer.
  struct Frame {
    var send: Range<Int>
    var receive: Range<Int>
    /// Reduce-scatter frames add what arrives; all-gather frames overwrite.
    var adds: Bool
    /// On a slice's last reduce-scatter frame: the chunk this rank holds the full sum of once the
    /// frame has arrived.
    var owned: Range<Int>?
    /// Whether this frame's chunk is the one the frame just before it in the schedule brings: it
    /// cannot leave before that one has arrived.
    var follows = false
  }

  /// The 2(n − 1) frames of one slice, in order.
  func frames(of slice: Range<Int>) -> [Frame] {
    let n = size, r = rank
    func piece(_ i: Int) -> Range<Int> {
      let part = chunk(((i % n) + n) % n, count: slice.count)
      return (slice.lowerBound + part.lowerBound)..<(slice.lowerBound + part.upperBound)
    }
    var frames: [Frame] = []
    for s in 0..<(n - 1) {
      frames.append(Frame(send: piece(r - s), receive: piece(r - s - 1), adds: true, owned: s == n - 2 ? piece(r + 1) : nil))
    }
    for s in 0..<(n - 1) {
      frames.append(Frame(send: piece(r + 1 - s), receive: piece(r - s), adds: false, owned: nil))
    }
    return frames
  }

  /// Every frame of a buffer of `count` elements: the slices in pairs, the two slices' frames
  /// alternating, so that no frame depends on the one just before it; an odd last slice (or a
  /// buffer of one slice) goes on its own, each frame following the one before.
  func schedule(count: Int) -> [Frame] {
    let slices = self.slices(count: count)
    var schedule: [Frame] = []
    for p in stride(from: 0, to: slices.count - 1, by: 2) {
      let a = frames(of: slices[p]), b = frames(of: slices[p + 1])
      for t in a.indices { schedule.append(a[t]); schedule.append(b[t]) }
    }
    if slices.count % 2 == 1 {
      for (t, var frame) in frames(of: slices[slices.count - 1]).enumerated() {
        frame.follows = t > 0
        schedule.append(frame)
      }
    }
    return schedule
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
      try run(schedule(count: count), on: data, operation, wire: .none)
    }
  }

  /// Runs `frames` over `data`. Frame i + 1 leaves while frame i arrives unless it `follows` frame
  /// i: a link then stays busy while a rank waits for what it must add before sending on, instead
  /// of idling for a network latency at every step. With a 16-bit `wire`, chunks are encoded
  /// before they leave and decoded as they arrive.
  func run(_ frames: [Frame], on data: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation,
           wire: WireCompression) throws(CollectiveError) {
    let n = size, base = data.baseAddress!
    let windowFloats = max(1024, windowBytes / 4)
    let largest = frames.reduce(0) { max($0, $1.send.count, $1.receive.count) }
    // Float32 frames leave straight from `data` and arrive through a cyclic window (adds) or in
    // place (copies); 16-bit frames are encoded into two outgoing buffers in turn (a frame may
    // still be leaving while the next is encoded) and arrive in one incoming buffer.
    let scratchFloats = wire == .none ? windowFloats : (6 * largest + 3) / 4
    let buffers = reserve(scratchFloats)
    let window = UnsafeMutableRawBufferPointer(start: buffers, count: scratchFloats * 4)
    let incoming = UnsafeMutableRawPointer(buffers) + 4 * largest
    // A mean is divided once, by the chunk's owner; fp16 was prescaled by 1/n already.
    let ownedScale: Float = operation == .mean && wire != .fp16 ? 1 / Float(n) : 1
    func leaving(_ index: Int) -> UnsafeRawBufferPointer {
      let frame = frames[index]
      if wire == .none { return UnsafeRawBufferPointer(start: base + frame.send.lowerBound, count: frame.send.count * 4) }
      let outgoing = UnsafeMutableRawPointer(buffers) + (index % 2) * 2 * largest
      wire.encode(base + frame.send.lowerBound, count: frame.send.count, into: outgoing)
      return UnsafeRawBufferPointer(start: outgoing, count: frame.send.count * 2)
    }
    // Every frame is queued at the latest with its own receive, and one frame ahead where allowed.
    // A queued frame's bytes stay untouched until the next exchange returns: the chunks written
    // meanwhile are other ones, or (n = 2) the same chunk's final sum, which the left neighbour can
    // only send after it has read this rank's frame to the end.
    var sent = 0
    if frames.count > 1 && !frames[1].follows {
      try links.exchange(send: leaving(0), receiveCount: nil, window: UnsafeMutableRawBufferPointer(start: nil, count: 0)) { _ in }
      sent = 1
    }
    for i in frames.indices {
      let frame = frames[i], target = base + frame.receive.lowerBound
      var next: UnsafeRawBufferPointer?
      if sent == i || (sent == i + 1 && i + 1 < frames.count && !frames[i + 1].follows) {
        next = leaving(sent)
        sent += 1
      }
      if wire != .none {
        var decoded = 0
        let bytes = frame.receive.count * 2
        try links.exchange(send: next, receiveCount: bytes, window: UnsafeMutableRawBufferPointer(start: incoming, count: bytes)) { arrived in
          // Decoded in 64 KiB runs as they arrive (adds) or at the end (copies).
          let ready = arrived / 2
          guard frame.adds && (ready - decoded >= 16_384 || ready == frame.receive.count) else { return }
          wire.decode(incoming, range: decoded..<ready, into: target, adding: true)
          decoded = ready
        }
        if !frame.adds { wire.decode(incoming, range: 0..<frame.receive.count, into: target, adding: false) }
      } else if frame.adds {
        var added = 0
        // Each callback adds every whole float that has arrived: the window is reused, so nothing
        // may wait for a later callback.
        try links.exchange(send: next, receiveCount: frame.receive.count * 4, window: window) { bytes in
          let ready = bytes / 4
          while added < ready {
            let position = added % windowFloats
            let run = min(ready - added, windowFloats - position)
            let source = buffers + position, destination = target + added
            for j in 0..<run { destination[j] += source[j] }
            added += run
          }
        }
      } else {
        try links.exchange(send: next, receiveCount: frame.receive.count * 4,
                           window: UnsafeMutableRawBufferPointer(start: target, count: frame.receive.count * 4)) { _ in }
      }
      // The owner finishes its chunk (the mean's division; the wire's rounding, so it keeps exactly
      // what the others will receive) before the slice's first all-gather frame leaves: that is the
      // slice's next frame, which is at most the next frame to leave.
      if let owned = frame.owned, wire != .none || ownedScale != 1 {
        for j in owned { base[j] = wire.rounded(base[j] * ownedScale) }
      }
    }
    try links.flush()
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
