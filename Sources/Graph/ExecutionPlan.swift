/// What an executor will allocate, planned without allocating: the schedule (two halves around
/// the data-parallel boundary), each value's arena buffer, each kernel's scratch, the state updates
/// written in place, and the arena (`MemoryPlan`). `totalBytes` lets a caller refuse a
/// configuration that cannot fit before any memory is taken.
struct ExecutionPlan {
  let schedule: [Int]
  let phases: StepPhases
  let memory: MemoryPlan
  let bufferOfValue: [Value: Int]
  let bufferOfWorkspace: [Int: Int]
  /// State update results → the parameter whose storage they are written into.
  let inPlace: [Value: Value]
  /// Leaves (inputs, parameters, constants) have storage of their own.
  let leafBytes: Int

  var totalBytes: Int { memory.plannedPeakBytes + leafBytes }

  init(graph: Graph, outputs: [Value], stateUpdates: [(state: Value, next: Value)]) throws(GraphError) {
    // Schedule: every node an output or a state update depends on, in node order.
    var needed = [Bool](repeating: false, count: graph.nodes.count)
    for value in outputs + stateUpdates.map(\.next) { needed[value.node] = true }
    for index in stride(from: graph.nodes.count - 1, through: 0, by: -1) where needed[index] {
      for input in graph.nodes[index].inputs { needed[input.node] = true }
    }
    let phases = try StepPhases(graph: graph, needed: graph.nodes.indices.filter { needed[$0] }, stateUpdates: stateUpdates)
    let schedule = phases.order(graph.nodes.indices.filter { needed[$0] })
    var step = [Int: Int]()
    for (s, index) in schedule.enumerated() { step[index] = s }

    // Liveness of every non-leaf output and of each node's scratch.
    var lastUse = [Value: Int]()
    for (s, index) in schedule.enumerated() {
      for input in graph.nodes[index].inputs { lastUse[input] = s }
    }
    for value in outputs { lastUse[value] = schedule.count }
    var inPlace: [Value: Value] = [:]
    for (state, next) in stateUpdates {
      let producer = graph.nodes[next.node]
      guard case .parameter = graph.nodes[state.node].op, graph.shape(state) == graph.shape(next) else {
        throw .invalidRequest("executor: \(graph.nodes[state.node].name) is not a parameter of the shape of \(producer.name)")
      }
      guard producer.op.updatesInPlace, inPlace[next] == nil, !inPlace.values.contains(state) else {
        throw .invalidRequest("executor: \(producer.name) (\(producer.op.name)) cannot be written over \(graph.nodes[state.node].name)")
      }
      if let last = lastUse[state], last > step[next.node]! {
        throw .invalidRequest("executor: \(graph.nodes[schedule[last]].name) reads \(graph.nodes[state.node].name) after \(producer.name) replaced it")
      }
      inPlace[next] = state
    }
    var buffers: [MemoryPlan.Buffer] = []
    var bufferOfValue: [Value: Int] = [:]
    var bufferOfWorkspace: [Int: Int] = [:]
    for (s, index) in schedule.enumerated() {
      let node = graph.nodes[index]
      if node.op.isLeaf { continue }
      for (output, shape) in node.outputs.enumerated() {
        let value = Value(node: index, output: output)
        if inPlace[value] != nil { continue }
        bufferOfValue[value] = buffers.count
        buffers.append(.init(elements: shape.elementCount, firstStep: s, lastStep: max(s, lastUse[value] ?? s)))
      }
      let scratch = Executor.workspaceElements(node, graph: graph)
      if scratch > 0 {
        bufferOfWorkspace[index] = buffers.count
        buffers.append(.init(elements: scratch, firstStep: s, lastStep: s))
      }
    }
    memory = MemoryPlan(buffers: buffers)
    self.schedule = schedule
    self.phases = phases
    self.bufferOfValue = bufferOfValue
    self.bufferOfWorkspace = bufferOfWorkspace
    self.inPlace = inPlace
    leafBytes = schedule.filter { graph.nodes[$0].op.isLeaf }
      .reduce(0) { $0 + MemoryPlan.aligned(graph.nodes[$1].outputs[0].elementCount) * 4 }
  }
}

extension Executor {
  /// Bytes an executor of this graph would allocate (arena and leaves), without allocating them.
  public static func requiredBytes(graph: Graph, outputs: [Value], stateUpdates: [(state: Value, next: Value)] = []) throws(GraphError) -> Int {
    try ExecutionPlan(graph: graph, outputs: outputs, stateUpdates: stateUpdates).totalBytes
  }
}
