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
///
/// Over several local devices (`replicas`), the one program runs on all of them at once, each on
/// its slice of the host's batch (`Executor.replicaBatches`), batch norm per device as the
/// reference's per-core batch norm, the boundary a cross-replica mean inside the program. Every
/// device then holds the same weights, slots and averages; the moving statistics are each
/// device's own, and the host reads the last device's (as a run over micro-batches keeps the last
/// one's). The host's scalars (losses) are the mean over devices.
public final class XLABackend: GraphBackend {
  public let client: PJRTClient
  public let precision: StableHLOLowering.Precision
  public let compileSeconds: Double
  public let replicas: Int
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
  /// Per replica, the device buffers of the state (and, between the two programs, what crosses).
  private var device: [[Value: PJRTBuffer]] = []
  private var deviceIsCurrent = false

  /// Per device, the last run's time on it: from each program's launch until that device
  /// finished, summed over the programs (the ring between them is not counted); -1 where the
  /// plugin did not say.
  public private(set) var lastDeviceSeconds: [Double] = []

  /// Whether each program was compiled now or loaded from the compile cache.
  public private(set) var sources: [PJRTClient.CompileSource] = []

  /// `averagesOverWorkers`: compile the two programs the ring goes between (else one). `cache`:
  /// where compiled programs are kept between runs; `note` hears what happened to it.
  /// `replicas`: local devices the step spans (the executor's graph is one device's batch).
  public init(client: PJRTClient, executor: Executor, averagesOverWorkers: Bool = false,
              precision: StableHLOLowering.Precision = .float32, replicas: Int = 1, cache: CompileCache? = nil,
              note: (String) -> Void = { _ in }) throws {
    guard replicas <= client.devices.count else {
      throw GraphError.invalidRequest("\(replicas) devices asked for; \(client.platformName) has \(client.devices.count) here")
    }
    self.client = client
    self.precision = precision
    self.replicas = replicas
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
                                    randomStreamFromStep: executor.randomStreamFromStep, exampleOffset: executor.exampleOffset,
                                    replicas: replicas, averagedOverReplicas: Set(boundaryInputs))
      let second = StableHLOLowering(graph: graph, outputs: secondOutputs, precision: precision, cut: boundaryOutputs + crossing,
                                     randomStreamFromStep: executor.randomStreamFromStep,
                                     aliases: XLABackend.aliases(executor.stateUpdates, after: secondOutputs.count - nexts.count),
                                     exampleOffset: executor.exampleOffset, replicas: replicas)
      let (gradients, gradientsSource) = try client.compile(mlir: first.module(named: "train_step_gradients"), replicas: replicas,
                                                            cache: cache, note: note)
      let (update, updateSource) = try client.compile(mlir: second.module(named: "train_step_update"), replicas: replicas,
                                                      cache: cache, note: note)
      programs = [Program(lowering: first, executable: gradients), Program(lowering: second, executable: update)]
      sources = [gradientsSource, updateSource]
    } else {
      crossing = []
      let lowering = XLABackend.wholeStep(graph: graph, outputs: hostOutputs, stateUpdates: executor.stateUpdates,
                                          randomStreamFromStep: executor.randomStreamFromStep, precision: precision,
                                          exampleOffset: executor.exampleOffset, replicas: replicas)
      let (executable, source) = try client.compile(mlir: lowering.module(named: "train_step"), replicas: replicas, cache: cache, note: note)
      programs = [Program(lowering: lowering, executable: executable)]
      sources = [source]
    }
    compileSeconds = XLABackend.now() - started
  }

  /// A step as one program: `outputs`, then the replaced state, each state parameter donated to its
  /// replacement (what `amoeba xla compile` compiles ahead of time, too).
  public static func wholeStep(graph: Graph, outputs: [Value], stateUpdates: [(state: Value, next: Value)],
                               randomStreamFromStep: (step: Value, offset: UInt64)?,
                               precision: StableHLOLowering.Precision, exampleOffset: Int = 0, replicas: Int = 1) -> StableHLOLowering {
    StableHLOLowering(graph: graph, outputs: outputs + stateUpdates.map(\.next), precision: precision,
                      randomStreamFromStep: randomStreamFromStep, aliases: aliases(stateUpdates, after: outputs.count),
                      exampleOffset: exampleOffset, replicas: replicas)
  }

  /// Each state parameter donated to the output that replaces it.
  static func aliases(_ updates: [(state: Value, next: Value)], after offset: Int) -> [Value: Int] {
    Dictionary(uniqueKeysWithValues: updates.enumerated().map { ($1.state, offset + $0) })
  }

  public func run(_ executor: Executor) throws {
    guard executor.exampleOffset == programs[0].lowering.exampleOffset else {
      throw GraphError.invalidRequest("the XLA programs draw masks for examples from \(programs[0].lowering.exampleOffset), the executor's batch starts at \(executor.exampleOffset); compile a backend per offset")
    }
    lastDeviceSeconds = []
    if !deviceIsCurrent {
      device = try (0..<replicas).map { (r) throws -> [Value: PJRTBuffer] in
        var state: [Value: PJRTBuffer] = [:]
        for program in programs {
          for leaf in program.lowering.arguments where state[leaf] == nil && executor.graph.nodes[leaf.node].op.isParameter {
            state[leaf] = try upload(leaf, executor, replica: r)
          }
        }
        return state
      }
      deviceIsCurrent = true
    }
    if programs.count == 1 {
      guard executor.allReduce == nil else {
        throw GraphError.invalidRequest("this XLA backend was compiled as one program, but a ring is attached; create it with averagesOverWorkers: true")
      }
      let results = try execute(programs[0], executor, cutValues: nil)
      try finish(programs[0], results, executor)
      return
    }
    // First program: the gradients (to the host, for the ring; over several devices already
    // their mean there) and what the second one reads, kept on each device.
    let first = try execute(programs[0], executor, cutValues: nil)
    var kept = [[Value: PJRTBuffer]](repeating: [:], count: replicas)
    for (k, value) in programs[0].lowering.outputs.enumerated() {
      if crossing.contains(value) { for r in 0..<replicas { kept[r][value] = first[r][k] } }
      if !crossing.contains(value) || hostOutputs.contains(value) { try copyToHost(first, k, value, executor) }
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
    for value in boundaryOutputs { for r in 0..<replicas { kept[r][value] = try upload(value, executor, replica: r) } }
    let second = try execute(programs[1], executor, cutValues: kept)
    try finish(programs[1], second, executor)
  }

  /// Runs a program on every replica's state, this run's inputs and each replica's cut values.
  private func execute(_ program: Program, _ executor: Executor, cutValues: [[Value: PJRTBuffer]]?) throws -> [[PJRTBuffer]] {
    let arguments = try (0..<replicas).map { (r) throws -> [PJRTBuffer] in
      var list = try program.lowering.arguments.map { value in
        if let buffer = cutValues?[r][value] ?? device[r][value] { return buffer }
        return try upload(value, executor, replica: r)
      }
      if program.lowering.takesRandomStream { list.append(try client.buffer(uint64: executor.randomStream, device: r)) }
      return list
    }
    let results = try program.executable.execute(replicated: arguments)
    let seconds = program.executable.lastDeviceSeconds
    lastDeviceSeconds = lastDeviceSeconds.isEmpty ? seconds : zip(lastDeviceSeconds, seconds).map { $0 < 0 || $1 < 0 ? -1 : $0 + $1 }
    // Donated arguments are gone; their replacements are below.
    for r in 0..<replicas { for (value, _) in program.lowering.aliases { device[r][value] = nil } }
    return results
  }

  /// Replaced state into each replica's map; host outputs to the executor: the last replica's,
  /// scalars averaged over replicas.
  private func finish(_ program: Program, _ results: [[PJRTBuffer]], _ executor: Executor) throws {
    var nextOf: [Value: Value] = [:]
    for (state, next) in executor.stateUpdates { nextOf[next] = state }
    for (k, value) in program.lowering.outputs.enumerated() {
      if let state = nextOf[value], program.lowering.aliases[state] != nil {
        for r in 0..<replicas { device[r][state] = results[r][k] }
      } else {
        try copyToHost(results, k, value, executor)
      }
    }
  }

  /// Output `k` to the host: the mean over replicas for a scalar (a loss), else the last replica's.
  private func copyToHost(_ results: [[PJRTBuffer]], _ k: Int, _ value: Value, _ executor: Executor) throws {
    if replicas > 1 && executor.graph.shape(value).rank == 0 {
      var sum: Float = 0
      for r in 0..<replicas { sum += try results[r][k].toHost()[0] }
      executor.pointer(value)[0] = sum / Float(replicas)
    } else {
      try copy(results[replicas - 1][k], to: value, executor)
    }
  }

  public func copyStateToHost(_ executor: Executor) throws {
    guard deviceIsCurrent else { return }
    for (leaf, buffer) in device[replicas - 1] { try copy(buffer, to: leaf, executor) }
  }

  public func hostStateChanged() { deviceIsCurrent = false }

  /// A leaf of the executor to replica `replica`'s device: an input's slice of the host batch
  /// where the executor has one (`replicaBatches`), else the executor's own values.
  private func upload(_ value: Value, _ executor: Executor, replica: Int) throws(PJRTError) -> PJRTBuffer {
    let shape = executor.graph.shape(value)
    let source = executor.replicaBatches[value].map { $0 + replica * shape.elementCount } ?? UnsafePointer(executor.pointer(value))
    return try client.buffer(UnsafeBufferPointer(start: source, count: shape.elementCount), dims: shape.dims, device: replica)
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
