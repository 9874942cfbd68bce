/// One cell of the NASNet search space, in the reference's words (`model_specs.py`).
///
/// The cell starts with two hidden states, h0 (the previous cell's output through ReLU → 1×1 →
/// BN) and h1 (the output two cells back, matched to h0's size). Combination k = 0…4 applies
/// `operations[2k]` to state `hiddenstateIndices[2k]` and `operations[2k+1]` to state
/// `hiddenstateIndices[2k+1]`, adds the two results and appends the sum as state 2+k. The cell's
/// output concatenates, in order, every state whose `usedHiddenstates` flag is 0.
public struct CellSpec: Hashable, Sendable {
  public var operations: [String]
  public var hiddenstateIndices: [Int]
  public var usedHiddenstates: [Int]

  public init(operations: [String], hiddenstateIndices: [Int], usedHiddenstates: [Int]) {
    self.operations = operations
    self.hiddenstateIndices = hiddenstateIndices
    self.usedHiddenstates = usedHiddenstates
  }

  /// Checks the shape of the spec: 10 operations that all parse, indices that only refer to states
  /// already built, 7 used-flags.
  public func validate(_ what: String) throws(ModelError) {
    guard operations.count == 10, hiddenstateIndices.count == 10, usedHiddenstates.count == 7 else {
      throw .invalidGenotype("\(what): needs 10 operations, 10 hiddenstate_indices and 7 used_hiddenstates, got \(operations.count), \(hiddenstateIndices.count) and \(usedHiddenstates.count)")
    }
    for (i, index) in hiddenstateIndices.enumerated() where index < 0 || index >= 2 + i / 2 {
      throw .invalidGenotype("\(what): hiddenstate_indices[\(i)] = \(index) refers to a state not built yet (0..<\(2 + i / 2))")
    }
    for operation in operations { _ = try CellOperation(parsing: operation) }
  }
}

/// A normal and a reduction cell: one point of the search space.
public struct Genotype: Hashable, Sendable {
  public var normal: CellSpec
  public var reduction: CellSpec

  /// The genotypes of the AmoebaNet paper, keyed as `--cell_name` accepts them (paper and code names).
  public static let builtIn: [String: Genotype] = [
    "amoeba_net_a": .amoebaNetA, "evol_net_g": .amoebaNetA,
    "amoeba_net_b": .amoebaNetB, "evol_net_h": .amoebaNetB,
    "amoeba_net_c": .amoebaNetC, "evol_net_a": .amoebaNetC,
    "amoeba_net_d": .amoebaNetD, "evol_net_x": .amoebaNetD,
  ]

  public static func named(_ name: String) throws(ModelError) -> Genotype {
    guard let genotype = builtIn[name] else {
      throw .invalidGenotype("unknown --cell_name '\(name)'; known: \(builtIn.keys.sorted().joined(separator: ", "))")
    }
    return genotype
  }

  public static let amoebaNetA = Genotype(
    normal: CellSpec(
      operations: ["avg_pool_3x3", "max_pool_3x3", "separable_3x3_2", "none", "none", "avg_pool_3x3",
                   "separable_3x3_2", "separable_5x5_2", "avg_pool_3x3", "separable_3x3_2"],
      hiddenstateIndices: [0, 0, 1, 1, 0, 1, 0, 2, 5, 0], usedHiddenstates: [1, 0, 1, 0, 0, 1, 0]),
    reduction: CellSpec(
      operations: ["separable_3x3_2", "avg_pool_3x3", "max_pool_3x3", "separable_7x7_2", "max_pool_3x3",
                   "max_pool_3x3", "separable_3x3_2", "1x7_7x1", "avg_pool_3x3", "separable_7x7_2"],
      hiddenstateIndices: [1, 0, 0, 2, 1, 0, 4, 0, 1, 0], usedHiddenstates: [1, 1, 0, 0, 0, 0, 0]))

  public static let amoebaNetB = Genotype(
    normal: CellSpec(
      operations: ["1x1", "max_pool_3x3", "none", "separable_3x3_2", "1x1", "separable_3x3_2", "1x1", "none",
                   "avg_pool_3x3", "1x1"],
      hiddenstateIndices: [1, 1, 1, 0, 1, 0, 2, 2, 1, 5], usedHiddenstates: [0, 1, 1, 0, 0, 1, 0]),
    reduction: CellSpec(
      operations: ["max_pool_2x2", "max_pool_3x3", "none", "3x3", "dil_2_separable_5x5_2", "max_pool_3x3", "none",
                   "separable_3x3_2", "avg_pool_3x3", "1x1"],
      hiddenstateIndices: [0, 0, 2, 1, 2, 2, 3, 1, 4, 3], usedHiddenstates: [1, 1, 1, 1, 1, 0, 0]))

  public static let amoebaNetC = Genotype(
    normal: CellSpec(
      operations: ["avg_pool_3x3", "separable_3x3_2", "none", "separable_3x3_2", "avg_pool_3x3", "separable_3x3_2",
                   "none", "separable_3x3_2", "avg_pool_3x3", "separable_3x3_2"],
      hiddenstateIndices: [0, 0, 0, 0, 2, 1, 0, 1, 3, 0], usedHiddenstates: [1, 0, 0, 1, 0, 0, 0]),
    reduction: CellSpec(
      operations: ["max_pool_3x3", "max_pool_3x3", "separable_7x7_2", "separable_3x3_2", "separable_7x7_2",
                   "max_pool_3x3", "separable_5x5_2", "separable_5x5_2", "max_pool_3x3", "separable_3x3_2"],
      hiddenstateIndices: [0, 0, 2, 0, 0, 1, 4, 4, 1, 1], usedHiddenstates: [0, 1, 0, 0, 0, 0, 0]))

  public static let amoebaNetD = Genotype(
    normal: CellSpec(
      operations: ["1x1", "max_pool_3x3", "none", "1x7_7x1", "1x1", "1x7_7x1", "max_pool_3x3", "none",
                   "avg_pool_3x3", "1x1"],
      hiddenstateIndices: [1, 1, 1, 0, 0, 0, 2, 2, 1, 5], usedHiddenstates: [0, 1, 1, 0, 0, 1, 0]),
    reduction: CellSpec(
      operations: ["max_pool_2x2", "max_pool_3x3", "none", "3x3", "1x7_7x1", "max_pool_3x3", "none",
                   "max_pool_2x2", "avg_pool_3x3", "1x1"],
      hiddenstateIndices: [0, 0, 2, 1, 2, 2, 3, 1, 2, 3], usedHiddenstates: [1, 1, 1, 1, 0, 0, 0]))
}
