#if canImport(Glibc)
import Glibc
#endif
import Graph
import Tensor

/// An executor's training step compiled by a PJRT plugin, its state kept on the device.
///
/// The parameters of the graph — weights, optimizer slots, moving statistics, averages, the step
/// counter — are uploaded once and stay in device memory: each program donates them to the
/// results that replace them (`Executor.stateUpdates`), so a step moves only the batch in and the
/// scalars out. Alone, the step is one program. Averaged over workers it is two, cut at the
/// boundary (`StepPhases`): the first ends with the gradients, which go to the host and round the
/// ring (`Executor.allReduce`), and the second starts from the averages. Nothing overlaps the ring
/// here: the gradients leave when the first program has finished.
public final class XLABackend: GraphBackend {
  public let client: PJRTClient
  public let precision: StableHLOLowering.Precision
  public let compileSeconds: Double
  public var name: String { "XLA:\(client.platformName) (PJRT 0.\(client.plugin.minorVersion))" }

  struct Program {
    let lowering: StableHLOLowering
    let executable: PJRTExecutable
  }
  /// One program, or the halves around the boundary.
  private let programs: [Program]
  /// Requested outputs the host reads back (the boundary's gradients are the ring's business).
  private let hostOutputs: [Value]
  private let boundaryInputs: [Value]
  private let boundaryOutputs: [Value]
  /// Values of the first program the second one reads (kept on the device between them).
  private let crossing: [Value]
  private var device: [Value: PJRTBuffer] = [:]
  private var deviceIsCurrent = false

  /// Whether each program was compiled now or loaded from the compile cache.
  public private(set) var sources: [PJRTClient.CompileSource] = []

  /// `averagesOverWorkers`: compile the two programs the ring goes between (else one). `cache`:
  /// where compiled programs are kept between runs; `note` hears what happened to it.
  public init(client: PJRTClient, executor: Executor, averagesOverWorkers: Bool = false,
              precision: StableHLOLowering.Precision = .float32, cache: CompileCache? = nil,
              note: (String) -> Void = { _ in }) throws {
    self.client = client
    self.precision = precision
    let graph = executor.graph
    let phases = executor.phases
    let boundary = phases.boundary.map { graph.nodes[$0] }
    boundaryInputs = boundary?.inputs ?? []
    boundaryOutputs = phases.boundary.map { b in graph.nodes[b].outputs.indices.map { Value(node: b, output: $0) } } ?? []
    let crossesRing = Set(boundaryInputs + boundaryOutputs)
    hostOutputs = executor.outputs.filter { !crossesRing.contains($0) }
    let nexts = executor.stateUpdates.map(\.next)
    let started = XLABackend.now()
    if averagesOverWorkers, phases.boundary != nil {
      let firstHalf = Set(executor.schedule.filter { !phases.second.contains($0) })
      var crossing: [Value] = []
      for index in executor.schedule where phases.second.contains(index) && index != phases.boundary {
        for input in graph.nodes[index].inputs where firstHalf.contains(input.node) && !graph.nodes[input.node].op.isLeaf
          && !crossing.contains(input) && !crossesRing.contains(input) {
          crossing.append(input)
        }
      }
      self.crossing = crossing
      let firstOutputs = boundaryInputs + crossing + hostOutputs.filter { firstHalf.contains($0.node) }
      let secondOutputs = hostOutputs.filter { !firstHalf.contains($0.node) } + nexts
      let first = StableHLOLowering(graph: graph, outputs: firstOutputs, precision: precision,
                                    randomStreamFromStep: executor.randomStreamFromStep, exampleOffset: executor.exampleOffset)
      let second = StableHLOLowering(graph: graph, outputs: secondOutputs, precision: precision, cut: boundaryOutputs + crossing,
                                     randomStreamFromStep: executor.randomStreamFromStep,
                                     aliases: XLABackend.aliases(executor.stateUpdates, after: secondOutputs.count - nexts.count),
                                     exampleOffset: executor.exampleOffset)
      let (gradients, gradientsSource) = try client.compile(mlir: first.module(named: "train_step_gradients"), cache: cache, note: note)
      let (update, updateSource) = try client.compile(mlir: second.module(named: "train_step_update"), cache: cache, note: note)
      programs = [Program(lowering: first, executable: gradients), Program(lowering: second, executable: update)]
      sources = [gradientsSource, updateSource]
    } else {
      crossing = []
      let lowering = XLABackend.wholeStep(graph: graph, outputs: hostOutputs, stateUpdates: executor.stateUpdates,
                                          randomStreamFromStep: executor.randomStreamFromStep, precision: precision,
                                          exampleOffset: executor.exampleOffset)
      let (executable, source) = try client.compile(mlir: lowering.module(named: "train_step"), cache: cache, note: note)
      programs = [Program(lowering: lowering, executable: executable)]
      sources = [source]
    }
    compileSeconds = XLABackend.now() - started
  }

  /// A step as one program: `outputs`, then the replaced state, each state parameter donated to its
  /// replacement (what `amoeba xla compile` compiles ahead of time, too).
  public static func wholeStep(graph: Graph, outputs: [Value], stateUpdates: [(state: Value, next: Value)],
                               randomStreamFromStep: (step: Value, offset: UInt64)?,
                               precision: StableHLOLowering.Precision, exampleOffset: Int = 0) -> StableHLOLowering {
    StableHLOLowering(graph: graph, outputs: outputs + stateUpdates.map(\.next), precision: precision,
                      randomStreamFromStep: randomStreamFromStep, aliases: aliases(stateUpdates, after: outputs.count),
                      exampleOffset: exampleOffset)
  }

  /// Each state parameter donated to the output that replaces it.
  static func aliases(_ updates: [(state: Value, next: Value)], after offset: Int) -> [Value: Int] {
    Dictionary(uniqueKeysWithValues: updates.enumerated().map { ($1.state, offset + $0) })
  }

  public func run(_ executor: Executor) throws {
    guard executor.exampleOffset == programs[0].lowering.exampleOffset else {
      throw GraphError.invalidRequest("the XLA programs draw masks for examples from \(programs[0].lowering.exampleOffset), the executor's batch starts at \(executor.exampleOffset); compile a backend per offset")
    }
    if !deviceIsCurrent {
      device = [:]
      for program in programs {
        for leaf in program.lowering.arguments where device[leaf] == nil && executor.graph.nodes[leaf.node].op.isParameter {
          device[leaf] = try upload(leaf, executor)
        }
      }
      deviceIsCurrent = true
    }
    if programs.count == 1 {
      guard executor.allReduce == nil else {
        throw GraphError.invalidRequest("this XLA backend was compiled as one program, but a ring is attached; create it with averagesOverWorkers: true")
      }
      let results = try execute(programs[0], executor, cutValues: [:])
      try finish(programs[0], results, executor)
      return
    }
    // First program: the gradients (to the host, for the ring) and what the second one reads.
    let first = try execute(programs[0], executor, cutValues: [:])
    var kept: [Value: PJRTBuffer] = [:]
    for (value, buffer) in zip(programs[0].lowering.outputs, first) {
      if crossing.contains(value) { kept[value] = buffer }
      if !crossing.contains(value) || hostOutputs.contains(value) { try copy(buffer, to: value, executor) }
    }
    let counts = boundaryOutputs.map { executor.graph.shape($0).elementCount }
    let inputs = boundaryInputs.map { UnsafePointer(executor.pointer($0)) }, outputs = boundaryOutputs.map(executor.pointer)
    if let allReduce = executor.allReduce {
      do { try allReduce(inputs, outputs, counts) } catch {
        throw ExecutionError.allReduceFailed(op: "XLA boundary", reason: "\(error)")
      }
    } else {
      for k in counts.indices { outputs[k].update(from: inputs[k], count: counts[k]) }
    }
    for value in boundaryOutputs { kept[value] = try upload(value, executor) }
    let second = try execute(programs[1], executor, cutValues: kept)
    try finish(programs[1], second, executor)
  }

  /// Runs a program on the device's state, this run's inputs and the given cut values.
  private func execute(_ program: Program, _ executor: Executor, cutValues: [Value: PJRTBuffer]) throws -> [PJRTBuffer] {
    var arguments = try program.lowering.arguments.map { value in
      if let buffer = cutValues[value] ?? device[value] { return buffer }
      return try upload(value, executor)
    }
    if program.lowering.takesRandomStream { arguments.append(try client.buffer(uint64: executor.randomStream)) }
    let results = try program.executable.execute(arguments)
    // Donated arguments are gone; their replacements are below.
    for (value, _) in program.lowering.aliases { device[value] = nil }
    return results
  }

  /// Host outputs to the executor, replaced state into the device's map.
  private func finish(_ program: Program, _ results: [PJRTBuffer], _ executor: Executor) throws {
    var nextOf: [Value: Value] = [:]
    for (state, next) in executor.stateUpdates { nextOf[next] = state }
    for (value, buffer) in zip(program.lowering.outputs, results) {
      if let state = nextOf[value], program.lowering.aliases[state] != nil {
        device[state] = buffer
      } else {
        try copy(buffer, to: value, executor)
      }
    }
  }

  public func copyStateToHost(_ executor: Executor) throws {
    guard deviceIsCurrent else { return }
    for (leaf, buffer) in device { try copy(buffer, to: leaf, executor) }
  }

  public func hostStateChanged() { deviceIsCurrent = false }

  private func upload(_ value: Value, _ executor: Executor) throws(PJRTError) -> PJRTBuffer {
    let shape = executor.graph.shape(value)
    return try client.buffer(UnsafeBufferPointer(start: executor.pointer(value), count: shape.elementCount), dims: shape.dims)
  }

  private func copy(_ buffer: PJRTBuffer, to value: Value, _ executor: Executor) throws(PJRTError) {
    try buffer.copy(into: UnsafeMutableBufferPointer(start: executor.pointer(value), count: executor.graph.shape(value).elementCount))
  }

  static func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
  }
}

extension Op {
  var isParameter: Bool { if case .parameter = self { true } else { false } }
}
