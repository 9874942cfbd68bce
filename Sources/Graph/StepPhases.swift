/// A training step's two halves around the data-parallel boundary (`allReduceMean`): what the
/// gradients need, then the averaging and everything that replaces state. Between them the
/// gradients leave the backend for the ring; an executor can stop there (gradient accumulation,
/// tests), and a device backend compiles each half as its own program.
public struct StepPhases: Sendable {
  /// The boundary node, if the graph has one.
  public let boundary: Int?
  /// Nodes of the second half: the boundary, the nodes that replace state and everything that
  /// reads their results. Every other needed node is in the first half.
  public let second: Set<Int>

  /// `needed`: the nodes a run executes.
  public init(graph: Graph, needed: [Int], stateUpdates: [(state: Value, next: Value)]) throws(GraphError) {
    let boundaries = needed.filter { if case .allReduceMean = graph.nodes[$0].op { true } else { false } }
    guard boundaries.count <= 1 else {
      throw .invalidRequest("a step has one data-parallel boundary; this graph has \(boundaries.count): \(boundaries.map { graph.nodes[$0].name })")
    }
    boundary = boundaries.first
    var second = Set(boundaries + stateUpdates.map(\.next.node))
    for index in needed.sorted() where !second.contains(index) {
      if graph.nodes[index].inputs.contains(where: { second.contains($0.node) }) { second.insert(index) }
    }
    self.second = second
  }

  /// The needed nodes in run order: the first half, then the second, each in node order.
  public func order(_ needed: [Int]) -> [Int] {
    needed.filter { !second.contains($0) } + needed.filter { second.contains($0) }
  }
}
