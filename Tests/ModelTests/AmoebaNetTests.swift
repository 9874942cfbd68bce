import Testing
import Foundation
import CLI
import Graph
import Model
import Tensor

@Suite struct AmoebaNetSizeTests {
  func config(cells: Int, filters: Int, image: Int) -> NetworkConfig {
    var c = NetworkConfig()
    c.numCells = cells; c.reductionSize = filters; c.imageSize = image
    return c
  }

  @Test func dawnBenchN6F256At224HasTheReferenceSize() throws {
    let training = try AmoebaNet(config: config(cells: 6, filters: 256, image: 224), batchSize: 1, mode: .training)
    #expect(training.trainableParameterCount == 46_763_161)
    let withoutAux = training.parameters.filter { $0.isTrainable && !$0.name.hasPrefix("aux_") }
    #expect(withoutAux.reduce(0) { $0 + $1.shape.elementCount } == 46_099_177)
    let evaluation = try AmoebaNet(config: config(cells: 6, filters: 256, image: 224), batchSize: 1, mode: .evaluation)
    #expect(abs(Double(evaluation.multiplyAddsPerImage) / 5.716e9 - 1) < 1e-3)
    // The reference's shape table (amoebanet.md §2.4).
    let shapes = training.stages.map { ($0.name, training.graph.shape($0.value).dims.dropFirst().map { $0 }) }
    let expected: [(String, [Int])] = [
      ("conv0", [111, 111, 32]), ("cell_stem_0", [56, 56, 192]), ("cell_stem_1", [28, 28, 384]),
      ("cell_0", [28, 28, 1024]), ("cell_1", [28, 28, 1024]), ("reduction_cell_0", [14, 14, 1536]),
      ("cell_2", [14, 14, 2048]), ("cell_3", [14, 14, 2048]), ("reduction_cell_1", [7, 7, 3072]),
      ("cell_4", [7, 7, 4096]), ("cell_5", [7, 7, 4096]), ("global_pool", [4096]),
    ]
    #expect(shapes.map(\.0) == expected.map(\.0))
    #expect(shapes.map(\.1) == expected.map(\.1))
  }

  @Test func defaultN12F256At299HasTheReferenceSize() throws {
    let training = try AmoebaNet(config: config(cells: 12, filters: 256, image: 299), batchSize: 1, mode: .training)
    #expect(training.trainableParameterCount == 84_812_042)
    let withoutAux = training.parameters.filter { $0.isTrainable && !$0.name.hasPrefix("aux_") }
    #expect(withoutAux.reduce(0) { $0 + $1.shape.elementCount } == 84_007_145)
    #expect(training.graph.shape(training.stages.first { $0.name == "cell_11" }!.value) == [1, 10, 10, 4096])
  }

  @Test func reductionCellsAndAuxHeadSitWhereTheReferencePutsThem() {
    #expect(config(cells: 18, filters: 8, image: 32).reductionIndices == [6, 12])
    #expect(config(cells: 6, filters: 8, image: 32).reductionIndices == [2, 4])
    #expect(config(cells: 6, filters: 8, image: 32).auxHeadCell == 3)
  }

  @Test func parameterNamesFollowTheReferenceScopes() throws {
    let net = try AmoebaNet(config: config(cells: 6, filters: 256, image: 224), batchSize: 1, mode: .training)
    let names = Set(net.parameters.map(\.name))
    for name in ["stem/conv0/weights", "stem/conv0_bn/gamma", "cell_stem_0/1x1/weights", "cell_stem_0/beginning_bn/beta",
                 "cell_stem_1/path1_conv/weights", "cell_stem_1/final_path_bn/gamma",
                 "cell_0/comb_iter_1/right/pre_1x1/weights", "cell_0/comb_iter_1/right/1x7/weights",
                 "cell_0/comb_iter_1/right/bn_1x7_7x1/moving_variance", "cell_0/comb_iter_1/right/post_bn/gamma",
                 "reduction_cell_0/comb_iter_1/right/3x3/weights", "aux_3/aux_logits/proj/weights",
                 "aux_3/aux_logits/Conv/weights", "aux_3/aux_logits/FC/biases", "final_layer/FC/weights"] {
      #expect(names.contains(name), "\(name)")
    }
    #expect(net.parameters.first { $0.name == "aux_3/aux_logits/Conv/weights" }!.shape == [4, 4, 51, 307])
  }

  @Test func anAuxHeadThatCannotBeBuiltSaysToTurnItOff() {
    let error = #expect(throws: ModelError.self) {
      try AmoebaNet(config: config(cells: 3, filters: 8, image: 32), batchSize: 1, mode: .training)
    }
    #expect(error.map(String.init(describing:))?.contains("--use_aux_head=false") == true)
  }

  @Test func badGenotypesAndConfigsAreClearErrors() {
    #expect(throws: ModelError.self) { try Genotype.resolve("amoeba_net_z") }
    #expect(throws: ModelError.self) { try CellOperation(parsing: "sep_conv_9") }
    var c = config(cells: 6, filters: 6, image: 32)
    #expect(throws: ModelError.self) { try c.validate() }
    c.reductionSize = 8
    c.denseDropoutKeepProb = 0
    #expect(throws: ModelError.self) { try c.validate() }
  }

  @Test func operationNamesParseAsTheReferenceParsesThem() throws {
    #expect(try CellOperation(parsing: "separable_5x5_2") == .separable(kernel: 5, layers: 2))
    #expect(try CellOperation(parsing: "dil_2_separable_5x5_2") == .separable(kernel: 5, layers: 2))
    #expect(try CellOperation(parsing: "max_pool_2x2") == .pool(.max, size: 2))
    #expect(try CellOperation(parsing: "dilated_3x3_rate_4") == .bottleneck(.dilated3x3(rate: 4)))
    for (name, genotype) in Genotype.builtIn {
      try genotype.normal.validate(name)
      try genotype.reduction.validate(name)
    }
  }
}

@Suite struct AmoebaNetTrainingGraphTests {
  /// A tiny AmoebaNet-style network of every built-in genotype builds, differentiates and runs.
  @Test(arguments: ["amoeba_net_a", "amoeba_net_b", "amoeba_net_c", "amoeba_net_d"])
  func tinyNetworkOfEveryGenotypeRunsForwardAndBackward(cellName: String) throws {
    var c = NetworkConfig()
    c.genotype = try Genotype.resolve(cellName); c.numCells = 3; c.reductionSize = 8; c.imageSize = 24; c.useAuxHead = false
    c.numLabelClasses = 10; c.dropConnectKeepProb = 0.8
    let net = try AmoebaNet(config: c, batchSize: 2, mode: .training)
    var g = net.graph
    let labels = try g.input("labels", [2])
    let loss = try g.softmaxCrossEntropy(logits: net.logits, labels: labels, labelSmoothing: 0.1)
    let trainable = net.parameters.filter(\.isTrainable)
    let grads = try g.gradients(of: loss, withRespectTo: trainable.map { $0.value! })
    try g.verify()
    let executor = try Executor(graph: g, outputs: [loss] + grads, context: KernelContext(threads: 2))
    for p in trainable { executor.write(p.value!, p.initialValues(seed: 1)) }
    executor.write(net.images, (0..<(2 * 24 * 24 * 3)).map { Float($0 % 17) / 8 - 1 })
    executor.write(labels, [3, 7])
    executor.write(net.dropPathKeepProbability!, [0.9])
    try executor.run()
    let lossValue = executor.read(loss)[0]
    #expect(lossValue.isFinite && lossValue > 0)
    #expect(grads.allSatisfy { executor.read($0).allSatisfy(\.isFinite) })
  }

  @Test func initialValuesFollowTheReference() throws {
    let net = try AmoebaNet(config: { var c = NetworkConfig(); c.numCells = 6; c.reductionSize = 256; c.imageSize = 224; return c }(),
                            batchSize: 1, mode: .training)
    let conv = net.parameters.first { $0.name == "cell_0/comb_iter_1/right/pre_1x1/weights" }!
    let values = conv.initialValues(seed: 7)
    let stddev = (1.3 * 2 / Double(conv.fanOut)).squareRoot()
    #expect(conv.fanOut == conv.shape[3])
    #expect(values.allSatisfy { abs(Double($0)) <= 2 * stddev + 1e-9 })
    let mean = values.reduce(0) { $0 + Double($1) } / Double(values.count)
    let variance = values.reduce(0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(values.count)
    // A normal truncated at 2σ keeps 77.4% of σ².
    #expect(abs(variance / (stddev * stddev) - 0.774) < 0.03)
    #expect(net.parameters.first { $0.kind == .gamma }!.initialValues(seed: 7).allSatisfy { $0 == 1 })
    #expect(net.parameters.first { $0.kind == .movingVariance }!.initialValues(seed: 7).allSatisfy { $0 == 1 })
  }
}

/// Genotypes as files: every built-in one reads back from its JSON, a file without a name is named
/// after it, the JSON travels in the job's flags, and what is wrong with a bad one is named.
@Suite struct GenotypeFileTests {
  func temporaryFile(_ text: String, name: String = "cells.json") throws -> String {
    let directory = NSTemporaryDirectory() + "amoeba-genotype-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let path = directory + "/" + name
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  @Test func builtInGenotypesReadBackFromTheirJSONAndFiles() throws {
    for name in ["amoeba_net_a", "amoeba_net_b", "amoeba_net_c", "amoeba_net_d"] {
      let genotype = try Genotype.resolve(name)
      #expect(try Genotype.resolve(genotype.json) == genotype)
      let path = try temporaryFile(genotype.json)
      #expect(try Genotype.resolve(path) == genotype)
    }
    #expect(try Genotype.resolve("evol_net_x") == .amoebaNetD)
    // Without a name the file names it; num_reduction_layers defaults to the reference's 2.
    var mine = Genotype.amoebaNetA
    mine.normal.operations[0] = "separable_5x5_2"
    var text = mine.json
    text = text.replacingOccurrences(of: "\"name\":\"amoeba_net_a\",", with: "").replacingOccurrences(of: ",\"num_reduction_layers\":2", with: "")
    #expect(!text.contains("name") && !text.contains("num_reduction_layers"))
    let resolved = try Genotype.resolve(try temporaryFile(text, name: "mine.json"))
    #expect(resolved.name == "mine" && resolved.sameCells(as: mine) && resolved.numReductionLayers == 2)
  }

  @Test func aGenotypeFromAFileTravelsInTheFlagsAndBuildsItsNetwork() throws {
    var mine = Genotype.amoebaNetD
    mine.name = "wider"; mine.reduction.operations[3] = "separable_7x7_2"
    let path = try temporaryFile(mine.json)
    var flags = try Flags(["--cell_name=\(path)", "--num_cells=3", "--reduction_size=8", "--image_size=24", "--use_aux_head=false"])
    let network = try flags.networkConfig()
    #expect(network.genotype == mine && network.cellName == "wider")
    // On the wire (and in checkpoint sidecars) it is the JSON itself, which a worker without the file reads.
    let value = network.flagValues["cell_name"]!
    #expect(value.hasPrefix("{") && value == mine.json)
    var remote = try Flags(["--cell_name=\(value)"])
    #expect(try remote.networkConfig().genotype == mine)
    #expect(NetworkConfig().flagValues["cell_name"] == "amoeba_net_d")
    let built = try AmoebaNet(config: network, batchSize: 1, mode: .training)
    let reference = try AmoebaNet(config: { var n = network; n.genotype = .amoebaNetD; return n }(), batchSize: 1, mode: .training)
    #expect(built.trainableParameterCount != reference.trainableParameterCount)
  }

  @Test func whatIsWrongWithABadGenotypeIsNamed() throws {
    func problem(_ change: (inout Genotype) -> Void) -> String {
      var g = Genotype.amoebaNetD
      change(&g)
      do { _ = try Genotype.resolve(g.json); return "accepted" } catch { return "\(error)" }
    }
    #expect(problem { $0.normal.hiddenstateIndices[4] = 5 }.contains("normal cell: hiddenstate_indices[4] = 5 refers to a state not built yet (0..<4)"))
    #expect(problem { $0.reduction.operations[2] = "conv_9x9" }.contains("reduction cell: operations[2]: unknown operation 'conv_9x9'"))
    #expect(problem { $0.normal.usedHiddenstates[3] = 1 }.contains("used_hiddenstates[3] = 1 but no combination takes state 3 as input"))
    #expect(problem { $0.normal.usedHiddenstates[0] = 2 }.contains("used_hiddenstates[0] = 2; each flag is 0 or 1"))
    #expect(problem { $0.normal.operations.removeLast() }.contains("needs 10 operations"))
    #expect(problem { $0.numReductionLayers = 0 }.contains("num_reduction_layers = 0"))
    let missing = "{\"normal_cell\": {\"operations\": [], \"hiddenstate_indices\": []}, \"reduction_cell\": {}}"
    func refusal(_ text: String) -> String {
      (#expect(throws: ModelError.self) { try Genotype.resolve(text) }).map { "\($0)" } ?? "accepted"
    }
    #expect(refusal(missing).contains("the genotype JSON is not a genotype: .normal_cell.used_hiddenstates is missing"), "\(refusal(missing))")
    let file = try temporaryFile(missing)
    #expect(refusal(file).contains("--cell_name=\(file) is not a genotype"))
    #expect(refusal("/nonexistent/cells.json").contains("no such genotype file"))
    #expect(refusal(try temporaryFile("{not json")).contains("not valid JSON"))
    #expect(refusal("amoeba_net_z").contains("or a genotype file"))
  }
}
