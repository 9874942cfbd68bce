/// Where every intermediate tensor lives: offsets into one arena, planned once from liveness.
///
/// Each buffer is live from the step that writes it to the last step that reads it (both
/// inclusive). Two buffers may share memory when their live ranges do not overlap. Placement is
/// greedy by size (largest first, each at the lowest offset that does not collide with an already
/// placed buffer whose range overlaps), the heuristic TFLite's arena planner uses: near-optimal
/// on the long chains of a network, and O(n²) only once per graph.
public struct MemoryPlan: Sendable {
  public struct Buffer: Sendable, Hashable {
    /// Floats, before alignment.
    public var elements: Int
    public var firstStep: Int
    public var lastStep: Int
    public init(elements: Int, firstStep: Int, lastStep: Int) {
      self.elements = elements; self.firstStep = firstStep; self.lastStep = lastStep
    }
  }

  /// Buffers start on 64-byte boundaries (16 floats) so vector loads never split a cache line.
  public static let alignment = 16

  public let buffers: [Buffer]
  /// Arena offset of each buffer, in floats.
  public let offsets: [Int]
  /// Floats the arena needs.
  public let arenaElements: Int

  public init(buffers: [Buffer]) {
    self.buffers = buffers
    var offsets = [Int](repeating: 0, count: buffers.count)
    var placed: [Int] = []
    let order = buffers.indices.sorted {
      let a = buffers[$0], b = buffers[$1]
      return a.elements != b.elements ? a.elements > b.elements : $0 < $1
    }
    var arena = 0
    for index in order {
      let buffer = buffers[index]
      let size = MemoryPlan.aligned(buffer.elements)
      let collisions = placed
        .filter { buffers[$0].firstStep <= buffer.lastStep && buffer.firstStep <= buffers[$0].lastStep }
        .sorted { offsets[$0] < offsets[$1] }
      var candidate = 0
      for other in collisions {
        if offsets[other] >= candidate + size { break }
        candidate = max(candidate, offsets[other] + MemoryPlan.aligned(buffers[other].elements))
      }
      offsets[index] = candidate
      placed.append(index)
      arena = max(arena, candidate + size)
    }
    self.offsets = offsets
    self.arenaElements = arena
  }

  static func aligned(_ elements: Int) -> Int { (elements + alignment - 1) / alignment * alignment }

  /// Bytes of the planned arena: the peak memory of intermediate tensors and scratch.
  public var plannedPeakBytes: Int { arenaElements * 4 }
  /// Bytes if every buffer had its own memory.
  public var naiveBytes: Int { buffers.reduce(0) { $0 + MemoryPlan.aligned($1.elements) } * 4 }

  /// True if no two buffers that are live at the same step overlap in the arena.
  public var isValid: Bool {
    for i in buffers.indices {
      for j in buffers.indices where j > i {
        let a = buffers[i], b = buffers[j]
        guard a.firstStep <= b.lastStep && b.firstStep <= a.lastStep, a.elements > 0, b.elements > 0 else { continue }
        if offsets[i] < offsets[j] + b.elements && offsets[j] < offsets[i] + a.elements { return false }
      }
      if offsets[i] + buffers[i].elements > arenaElements { return false }
    }
    return true
  }
}
