import Testing
import Graph
import Model
import Tensor
import Train
@testable import XLA

/// The first half of a step cut into one program per gradient bucket (`XLABackend.segments`),
/// checked on the graph alone (no plugin needed): every node in exactly one program, the first
/// reading nothing from the others, each program's gradients its own bucket's, and every value a
/// program reads from another computed by an earlier one and returned by it.
@Suite struct SegmentTests {
  @Test func everyValueComesFromAnEarlierProgram() throws {
    var network = NetworkConfig()
    network.numCells = 3; network.reductionSize = 8; network.imageSize = 24; network.useAuxHead = false
    network.numLabelClasses = 10; network.dropConnectKeepProb = 0.8
    var training = TrainingConfig()
    training.trainBatchSize = 8; training.numTrainImages = 800
    let trainer = try Trainer(network: network, training: training, batchSize: 4, context: KernelContext(threads: 1), seed: 3,
                              fuseBatchNormRelu: false)
    let executor = trainer.executor, graph = executor.graph, phases = executor.phases
    let boundary = graph.nodes[phases.boundary!]
    let groups = trainer.gradientBuckets(bucketBytes: 40_000).map { $0.filter { !graph.nodes[$0.node].op.isLeaf } }.filter { !$0.isEmpty }
    #expect(groups.count >= 3)
    #expect(Set(groups.flatMap { $0 }) == Set(boundary.inputs.filter { !graph.nodes[$0.node].op.isLeaf }))
    let firstHalf = Set(executor.schedule.filter { !phases.second.contains($0) })
    var updateReads: [Value] = []
    for index in executor.schedule where phases.second.contains(index) && index != phases.boundary {
      for input in graph.nodes[index].inputs where firstHalf.contains(input.node) && !graph.nodes[input.node].op.isLeaf
        && !updateReads.contains(input) && !boundary.inputs.contains(input) { updateReads.append(input) }
    }
    let losses = [trainer.totalLoss, trainer.crossEntropy]
    let segments = XLABackend.segments(graph: graph, groups: groups, hostOutputs: losses, updateReads: updateReads)
    #expect(segments.count == groups.count)

    // Which program computes each node: the lowering's own traversal (outputs back to leaves or cut values).
    var program: [Int: Int] = [:]
    for (k, segment) in segments.enumerated() {
      #expect(Array(segment.outputs.prefix(segment.gradients.count)) == groups[k], "program \(k) returns its bucket's gradients first")
      let lowering = StableHLOLowering(graph: graph, outputs: segment.outputs, cut: segment.cut)
      for node in lowering.needed where !graph.nodes[node].op.isLeaf {
        #expect(program[node] == nil, "node \(graph.nodes[node].name) is computed by programs \(program[node]!) and \(k)")
        program[node] = k
      }
    }
    for (k, segment) in segments.enumerated() {
      for value in segment.cut {
        guard let j = program[value.node] else { Issue.record("\(value) is read by program \(k) but computed by none"); continue }
        #expect(j < k && segments[j].outputs.contains(value), "program \(k) reads \(value) from program \(j)")
      }
    }
    // The losses (backward starts from a seed, not from them) come from some program, reading
    // the forward pass's values from the first; the update's inputs all come back.
    #expect(losses.allSatisfy { program[$0.node] != nil })
    #expect(segments[0].cut.isEmpty, "the first program reads nothing computed elsewhere")
    for value in updateReads { #expect(program[value.node].map { segments[$0].outputs.contains(value) } == true, "\(value)") }
    // Every node of the first half is computed once.
    #expect(Set(program.keys) == firstHalf.filter { !graph.nodes[$0].op.isLeaf })
  }
}
