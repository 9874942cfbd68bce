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
/// ring (`Executor.allReduce`), and the second starts from the averages. Given the trainer's
/// gradient buckets (`gradientGroups`), the first half is compiled as one program per bucket —
/// the forward pass and backward as far as the first bucket's gradients, then backward on to the
/// next bucket's, and so on, each passing on to the later ones the values they read — all
/// launched at once: each bucket's gradients go to the host and round the ring while the device
/// computes the next ones (`Executor.onExecuted` tells the trainer), as DDP overlaps backward.
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
  /// One program; or the first half (one program, or one per gradient group) and the update.
  private let programs: [Program]
  /// Of `programs`, how many make up the first half (0: the step is one program).
  private let segmentCount: Int
  /// Per first-half program, the gradients it returns (the boundary's inputs).
  private let segmentGradients: [[Value]]
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
  /// `gradientGroups`: the trainer's gradient buckets in ring order (`Trainer.gradientBuckets`);
  /// more than one, with `averagesOverWorkers`, compiles the first half as one program per bucket.
  public init(client: PJRTClient, executor: Executor, averagesOverWorkers: Bool = false, gradientGroups: [[Value]] = [],
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
    let started = PJRTPlugin.monotonicSeconds()
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
      let firstHostOutputs = hostOutputs.filter { firstHalf.contains($0.node) }
      let boundarySet = Set(boundaryInputs)
      let groups = gradientGroups.map { $0.filter { boundarySet.contains($0) && !graph.nodes[$0.node].op.isLeaf } }.filter { !$0.isEmpty }
      let segments = groups.count > 1
        ? XLABackend.segments(graph: graph, groups: groups, hostOutputs: firstHostOutputs, updateReads: crossing)
        : [Segment(outputs: boundaryInputs + crossing + firstHostOutputs, cut: [], gradients: boundaryInputs)]
      var compiled: [Program] = []
      for (k, segment) in segments.enumerated() {
        let lowering = StableHLOLowering(graph: graph, outputs: segment.outputs, precision: precision, cut: segment.cut,
                                         randomStreamFromStep: executor.randomStreamFromStep, exampleOffset: executor.exampleOffset,
                                         replicas: replicas, averagedOverReplicas: Set(segment.gradients))
        let name = segments.count == 1 ? "train_step_gradients" : "train_step_gradients_\(k + 1)_of_\(segments.count)"
        let (executable, source) = try client.compile(mlir: lowering.module(named: name), replicas: replicas, cache: cache, note: note)
        compiled.append(Program(lowering: lowering, executable: executable))
        sources.append(source)
      }
      let secondOutputs = hostOutputs.filter { !firstHalf.contains($0.node) } + nexts
      let second = StableHLOLowering(graph: graph, outputs: secondOutputs, precision: precision, cut: boundaryOutputs + crossing,
                                     randomStreamFromStep: executor.randomStreamFromStep,
                                     aliases: XLABackend.aliases(executor.stateUpdates, after: secondOutputs.count - nexts.count),
                                     exampleOffset: executor.exampleOffset, replicas: replicas)
      let (update, updateSource) = try client.compile(mlir: second.module(named: "train_step_update"), replicas: replicas,
                                                      cache: cache, note: note)
      programs = compiled + [Program(lowering: second, executable: update)]
      sources.append(updateSource)
      segmentCount = segments.count
      segmentGradients = segments.map(\.gradients)
    } else {
      crossing = []
      let lowering = XLABackend.wholeStep(graph: graph, outputs: hostOutputs, stateUpdates: executor.stateUpdates,
                                          randomStreamFromStep: executor.randomStreamFromStep, precision: precision,
                                          exampleOffset: executor.exampleOffset, replicas: replicas)
      let (executable, source) = try client.compile(mlir: lowering.module(named: "train_step"), replicas: replicas, cache: cache, note: note)
      programs = [Program(lowering: lowering, executable: executable)]
      sources = [source]
      segmentCount = 0
      segmentGradients = []
    }
    compileSeconds = PJRTPlugin.monotonicSeconds() - started
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

  /// One program of the first half: what it returns (its gradients first), the values of earlier
  /// programs it reads (arguments after the leaves), and its gradients.
  struct Segment {
    let outputs: [Value]
    let cut: [Value]
    let gradients: [Value]
  }

  /// The first half cut into one program per gradient group, in ring order: each node goes to
  /// the first group that needs it (so the first program holds the forward pass); a value one
  /// program computes and a later one, or the update (`updateReads`), reads is returned by the
  /// first and passed to the other. The host's first-half outputs (the losses) come from
  /// wherever they were computed.
  static func segments(graph: Graph, groups: [[Value]], hostOutputs: [Value], updateReads: [Value]) -> [Segment] {
    var owner: [Int: Int] = [:]
    func claim(_ roots: [Value], _ k: Int) {
      var stack = roots.map(\.node)
      while let node = stack.popLast() {
        guard owner[node] == nil, !graph.nodes[node].op.isLeaf else { continue }
        owner[node] = k
        stack += graph.nodes[node].inputs.map(\.node)
      }
    }
    for (k, group) in groups.enumerated() { claim(group, k) }
    claim(hostOutputs + updateReads, groups.count - 1)
    var outputs = groups, cut = [[Value]](repeating: [], count: groups.count)
    func handOn(_ value: Value, from j: Int) { if !outputs[j].contains(value) { outputs[j].append(value) } }
    for node in owner.keys.sorted() {
      let k = owner[node]!
      for input in graph.nodes[node].inputs {
        guard let j = owner[input.node], j < k else { continue }
        handOn(input, from: j)
        if !cut[k].contains(input) { cut[k].append(input) }
      }
    }
    for value in updateReads + hostOutputs { if let j = owner[value.node] { handOn(value, from: j) } }
    return groups.indices.map { Segment(outputs: outputs[$0], cut: cut[$0], gradients: groups[$0]) }
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
    // The first half: every program launched at once (the plugin orders them by their buffers),
    // then, program by program, its gradients (over several devices already their mean there)
    // to the host and on to the ring while the device goes on with the next ones; what the later
    // programs and the update read stays on each device.
    var produced = [[Value: PJRTBuffer]](repeating: [:], count: replicas)
    var launches: [PJRTLaunch] = []
    for program in programs.prefix(segmentCount) {
      let launch = try program.executable.launch(replicated: try arguments(program, executor, cutValues: produced))
      for (k, value) in program.lowering.outputs.enumerated() { for r in 0..<replicas { produced[r][value] = launch.outputs[r][k] } }
      launches.append(launch)
    }
    var onHost = Set<Value>()
    let gradientsOfNode = Dictionary(grouping: boundaryInputs, by: \.node)
    for (k, launch) in launches.enumerated() {
      try launch.wait()
      let gradients = Set(segmentGradients[k])
      for (i, value) in programs[k].lowering.outputs.enumerated() where gradients.contains(value) || hostOutputs.contains(value) {
        try copyToHost(launch.outputs, i, value, executor)
        onHost.insert(value)
      }
      // A node's gradients are announced once all of them are here (the trainer hands a node's at once).
      for node in Set(segmentGradients[k].map(\.node)).sorted() where gradientsOfNode[node, default: []].allSatisfy(onHost.contains) {
        executor.onExecuted?(node)
      }
    }
    // Per device: from the first launch until its last program of the half finished.
    if let first = launches.first {
      lastDeviceSeconds = (0..<replicas).map { r in
        launches.map { $0.deviceSeconds.indices.contains(r) && $0.deviceSeconds[r] >= 0 ? $0.launched - first.launched + $0.deviceSeconds[r] : -1 }
          .reduce(0.0) { $0 < 0 || $1 < 0 ? -1 : max($0, $1) }
      }
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
    for value in boundaryOutputs { for r in 0..<replicas { produced[r][value] = try upload(value, executor, replica: r) } }
    let update = programs[segmentCount]
    let second = try execute(update, executor, cutValues: produced)
    try finish(update, second, executor)
  }

  /// A program's arguments on every replica: the cut values given, else the replica's state,
  /// else this run's inputs (each replica's slice of the batch), then the random stream if it takes one.
  private func arguments(_ program: Program, _ executor: Executor, cutValues: [[Value: PJRTBuffer]]?) throws -> [[PJRTBuffer]] {
    try (0..<replicas).map { (r) throws -> [PJRTBuffer] in
      var list = try program.lowering.arguments.map { value in
        if let buffer = cutValues?[r][value] ?? device[r][value] { return buffer }
        return try upload(value, executor, replica: r)
      }
      if program.lowering.takesRandomStream { list.append(try client.buffer(uint64: executor.randomStream, device: r)) }
      return list
    }
  }

  /// Runs a program on every replica's state, this run's inputs and each replica's cut values.
  private func execute(_ program: Program, _ executor: Executor, cutValues: [[Value: PJRTBuffer]]?) throws -> [[PJRTBuffer]] {
    let results = try program.executable.execute(replicated: try arguments(program, executor, cutValues: cutValues))
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
}

extension Op {
  var isParameter: Bool { if case .parameter = self { true } else { false } }
}
