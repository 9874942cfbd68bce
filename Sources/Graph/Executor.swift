#if canImport(Glibc)
import Glibc
#endif
import Tensor

/// Runs a graph on the CPU kernels with every buffer planned ahead.
///
/// Construction schedules the nodes the requested outputs need (node order, already topological),
/// computes liveness, plans one arena (`MemoryPlan`) for intermediate tensors and kernel scratch,
/// allocates it and resolves every kernel's operand pointers. `run()` then walks the resolved
/// instructions: it allocates nothing, and with the same inputs, parameters and `randomStream` it
/// produces bitwise-identical outputs (the kernels' sums have a fixed order whatever the thread count).
///
/// Leaves (inputs, parameters, constants) have their own storage that persists across runs;
/// requested outputs stay live to the end of the run. Read and write them with `pointer(_:)`,
/// `write(_:_:)` and `read(_:)`.
///
/// Threading: not thread-safe; one `run()` at a time (kernels parallelise inside on the context's pool).
public final class Executor {
  public let graph: Graph
  public let outputs: [Value]
  public let plan: MemoryPlan
  public let context: KernelContext
  /// Mixed into the dropout masks; set it to the global step before each run, or let
  /// `randomStreamFromStep` derive it.
  public var randomStream: UInt64 = 0
  /// When set, each run starts with randomStream = offset + the step counter's value, so the masks
  /// follow a step counter that the graph itself advances.
  public var randomStreamFromStep: (step: Value, offset: UInt64)?
  /// The global index of this batch's first example (a worker's rank × its batch): dropout and
  /// drop-path masks are keyed on the global example, so N workers draw the masks one process
  /// with the global batch would.
  public var exampleOffset = 0
  /// For a backend that replicates the step over a host's devices: each input's values for the
  /// whole host batch, replica r's slice (the input's size) after the r before it. Unset inputs,
  /// and every input of a single-device run, are read from the executor's own leaves.
  public var replicaBatches: [Value: UnsafePointer<Float>] = [:]
  /// The data-parallel boundary (`allReduceMean`): given its inputs, writes their means over the
  /// workers into its outputs (element counts alongside). Nil: one worker, the outputs are the inputs.
  public var allReduce: ((_ inputs: [UnsafePointer<Float>], _ outputs: [UnsafeMutablePointer<Float>], _ counts: [Int]) throws -> Void)?
  /// The training state the graph replaces each run: `next` is computed into `state`'s own storage.
  public let stateUpdates: [(state: Value, next: Value)]
  /// The halves of the run around the data-parallel boundary (`run(.gradients)`, `run(.update)`).
  public let phases: StepPhases
  /// How much of the schedule a run executes.
  public enum Part: Sendable { case all, gradients, update }
  /// Instructions of the first half (the rest are the second).
  private var firstHalfCount = 0
  /// Nodes executed per run, in order.
  public let schedule: [Int]
  /// Called after each node runs, with its node index (a distributed trainer hands gradients to
  /// the communication thread as soon as they are final). Nil costs nothing.
  public var onExecuted: ((_ node: Int) -> Void)?
  /// When true, `run()` times every node (two clock reads per node) into `scheduledSeconds`.
  public var profiling = false
  /// The non-leaf nodes `run()` executes, in order (the schedule without inputs, parameters, constants).
  public var executedNodes: [Int] { instructions.map(\.node) }
  /// The fastest time seen per executed node (same order as `executedNodes`) while `profiling` was on:
  /// the minimum, not the sum, so that a preempted run on a shared machine does not skew the profile.
  public private(set) var scheduledSeconds: [Double] = []

  private let arena: UnsafeMutablePointer<Float>
  private var leaves: [Int: UnsafeMutablePointer<Float>] = [:]
  private var valuePointers: [Value: UnsafeMutablePointer<Float>] = [:]
  private var instructions: [Instruction] = []

  /// `stateUpdates`: pairs of a parameter and the value that replaces it after each run. The
  /// value's op must update in place (`Op.updatesInPlace`) and no node may read the parameter after it.
  /// `memoryLimit`: bytes the executor may allocate (arena and leaves); a plan that needs more is
  /// refused before anything is allocated (`GraphError.insufficientMemory`).
  public init(graph: Graph, outputs: [Value], stateUpdates: [(state: Value, next: Value)] = [], context: KernelContext,
              memoryLimit: Int? = nil) throws(GraphError) {
    self.graph = graph
    self.outputs = outputs
    self.stateUpdates = stateUpdates
    self.context = context
    for value in outputs + stateUpdates.flatMap({ [$0.state, $0.next] })
    where value.node >= graph.nodes.count || value.output >= graph.nodes[value.node].outputs.count {
      throw .invalidRequest("executor: output \(value) is not in the graph")
    }

    let planned = try ExecutionPlan(graph: graph, outputs: outputs, stateUpdates: stateUpdates)
    if let memoryLimit, planned.totalBytes > memoryLimit {
      throw .insufficientMemory(needed: planned.totalBytes, available: memoryLimit)
    }
    let (schedule, phases, bufferOfValue, bufferOfWorkspace, inPlace) =
      (planned.schedule, planned.phases, planned.bufferOfValue, planned.bufferOfWorkspace, planned.inPlace)
    self.schedule = schedule
    self.phases = phases
    plan = planned.memory
    arena = .allocateAligned(plan.arenaElements)

    for index in schedule where graph.nodes[index].op.isLeaf {
      let node = graph.nodes[index]
      let storage = UnsafeMutablePointer<Float>.allocateAligned(node.outputs[0].elementCount)
      if case let .constant(fill) = node.op {
        storage.initialize(repeating: fill, count: node.outputs[0].elementCount)
      } else {
        storage.initialize(repeating: 0, count: node.outputs[0].elementCount)
      }
      leaves[index] = storage
      valuePointers[Value(node: index)] = storage
    }
    for (value, buffer) in bufferOfValue { valuePointers[value] = arena + plan.offsets[buffer] }
    for (next, state) in inPlace { valuePointers[next] = leaves[state.node]! }
    for index in schedule where !graph.nodes[index].op.isLeaf {
      let node = graph.nodes[index]
      instructions.append(Instruction(
        node: index, op: node.op,
        inputs: node.inputs.map { UnsafePointer(valuePointers[$0]!) },
        inputShapes: node.inputs.map(graph.shape),
        outputs: node.outputs.indices.map { valuePointers[Value(node: index, output: $0)]! },
        outputShapes: node.outputs,
        workspace: bufferOfWorkspace[index].map { arena + plan.offsets[$0] }))
    }
    scheduledSeconds = [Double](repeating: .infinity, count: instructions.count)
    firstHalfCount = instructions.prefix { !phases.second.contains($0.node) }.count
  }

  deinit {
    arena.deallocate()
    for storage in leaves.values { storage.deallocate() }
    for instruction in instructions { instruction.release() }
  }

  /// Storage of a leaf or of a requested output (valid until the executor is released).
  public func pointer(_ value: Value) -> UnsafeMutablePointer<Float> {
    guard let pointer = valuePointers[value], graph.nodes[value.node].op.isLeaf || outputs.contains(value)
            || stateUpdates.contains(where: { $0.next == value }) else {
      preconditionFailure("executor: \(value) is neither a leaf nor a requested output, so its memory is reused")
    }
    return pointer
  }

  public func write(_ value: Value, _ data: [Float]) {
    precondition(data.count == graph.shape(value).elementCount,
                 "executor: \(data.count) floats for \(value) of shape \(graph.shape(value))")
    pointer(value).update(from: data, count: data.count)
  }

  public func read(_ value: Value) -> [Float] {
    Array(UnsafeBufferPointer(start: pointer(value), count: graph.shape(value).elementCount))
  }

  /// Runs every scheduled node once; or only the first half of a step (`.gradients`: up to the
  /// data-parallel boundary) or only the second (`.update`: the boundary and what follows).
  public func run(_ part: Part = .all) throws(ExecutionError) {
    if part != .update, let (step, offset) = randomStreamFromStep { randomStream = offset &+ UInt64(pointer(step)[0]) }
    let range = part == .all ? 0..<instructions.count : part == .gradients ? 0..<firstHalfCount : firstHalfCount..<instructions.count
    if let hook = onExecuted {
      for instruction in instructions[range] {
        try execute(instruction)
        hook(instruction.node)
      }
      return
    }
    if !profiling {
      for instruction in instructions[range] { try execute(instruction) }
      return
    }
    for index in range {
      let instruction = instructions[index]
      let start = Executor.monotonicSeconds()
      try execute(instruction)
      scheduledSeconds[index] = min(scheduledSeconds[index], Executor.monotonicSeconds() - start)
    }
  }

  /// Profiled seconds (each node's fastest run) summed by op name, largest first.
  public func secondsByOp() -> [(op: String, seconds: Double, count: Int)] {
    var totals: [String: (Double, Int)] = [:]
    for (index, instruction) in instructions.enumerated() {
      let entry = totals[instruction.op.name, default: (0, 0)]
      totals[instruction.op.name] = (entry.0 + scheduledSeconds[index], entry.1 + 1)
    }
    return totals.map { (op: $0.key, seconds: $0.value.0, count: $0.value.1) }.sorted { $0.seconds > $1.seconds }
  }

  static func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
  }

  static func workspaceElements(_ node: Node, graph: Graph) -> Int {
    switch node.op {
    case let .conv2d(g), let .conv2dBackpropInput(g), let .conv2dBackpropFilter(g):
      return Conv2D.workspaceElements(g)
    case let .depthwiseConv2dBackpropFilter(g):
      return DepthwiseConv2D.workspaceElements(g)
    case .batchNormTraining, .batchNormInference, .batchNormGrad:
      let x = graph.shape(node.inputs[0])
      let c = x.dims.last ?? 1
      return BatchNorm.workspaceElements(rows: x.elementCount / max(c, 1), channels: c)
    default:
      return 0
    }
  }
}

/// Failures detected while running: bad data fed by the caller, never a kernel bug.
public enum ExecutionError: Error, CustomStringConvertible, Equatable {
  case invalidLabels(op: String, classes: Int)
  /// The `allReduce` callback failed; its error (a lost peer, a cancelled job) is `reason`, and the
  /// caller that installed the callback holds the original.
  case allReduceFailed(op: String, reason: String)

  public var description: String {
    switch self {
    case let .allReduceFailed(op, reason):
      "\(op): averaging over the workers failed: \(reason)"
    case let .invalidLabels(op, classes):
      "\(op): a label is not a whole number in 0..<\(classes); check the dataset's label range (ImageNet labels are 1...1000 with 1001 classes)"
    }
  }
}

/// One scheduled node with its operand pointers resolved. The pointer lists are allocated once at
/// planning time so `run()` never allocates.
struct Instruction {
  let node: Int
  let op: Op
  let inputs: UnsafeMutableBufferPointer<UnsafePointer<Float>>
  let inputShapes: [Shape]
  let outputs: [UnsafeMutablePointer<Float>]
  let outputShapes: [Shape]
  let workspace: UnsafeMutablePointer<Float>?
  let widths: UnsafeMutableBufferPointer<Int>

  init(node: Int, op: Op, inputs: [UnsafePointer<Float>], inputShapes: [Shape], outputs: [UnsafeMutablePointer<Float>],
       outputShapes: [Shape], workspace: UnsafeMutablePointer<Float>?) {
    self.node = node; self.op = op; self.inputShapes = inputShapes
    self.outputs = outputs; self.outputShapes = outputShapes; self.workspace = workspace
    self.inputs = .allocate(capacity: max(inputs.count, 1))
    _ = self.inputs.initialize(from: inputs)
    self.widths = .allocate(capacity: max(inputShapes.count, 1))
    _ = self.widths.initialize(from: inputShapes.map { $0.dims.last ?? 0 })
  }

  func release() { inputs.deallocate(); widths.deallocate() }
}

extension Op {
  /// Inputs, parameters and constants: values with storage of their own, not computed by a run.
  public var isLeaf: Bool {
    switch self {
    case .input, .parameter, .constant: true
    default: false
    }
  }
}
