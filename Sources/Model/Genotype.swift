import Foundation

/// One cell of the NASNet search space, in the reference's words (`model_specs.py`).
///
/// The cell starts with two hidden states, h0 (the previous cell's output through ReLU → 1×1 →
/// BN) and h1 (the output two cells back, matched to h0's size). Combination k = 0…4 applies
/// `operations[2k]` to state `hiddenstateIndices[2k]` and `operations[2k+1]` to state
/// `hiddenstateIndices[2k+1]`, adds the two results and appends the sum as state 2+k. The cell's
/// output concatenates, in order, every state whose `usedHiddenstates` flag is 0.
public struct CellSpec: Hashable, Sendable, Codable {
  public var operations: [String]
  public var hiddenstateIndices: [Int]
  public var usedHiddenstates: [Int]

  enum CodingKeys: String, CodingKey {
    case operations, hiddenstateIndices = "hiddenstate_indices", usedHiddenstates = "used_hiddenstates"
  }

  public init(operations: [String], hiddenstateIndices: [Int], usedHiddenstates: [Int]) {
    self.operations = operations
    self.hiddenstateIndices = hiddenstateIndices
    self.usedHiddenstates = usedHiddenstates
  }

  /// Checks the spec: 10 operations that all parse, indices that only refer to states already
  /// built, 7 used-flags of 0 or 1, and a flag of 1 only on a state some combination takes as
  /// input (a flagged state leaves the cell's output: one no combination reads would be lost).
  public func validate(_ what: String) throws(ModelError) {
    guard operations.count == 10, hiddenstateIndices.count == 10, usedHiddenstates.count == 7 else {
      throw .invalidGenotype("\(what): needs 10 operations, 10 hiddenstate_indices and 7 used_hiddenstates, got \(operations.count), \(hiddenstateIndices.count) and \(usedHiddenstates.count)")
    }
    for (i, index) in hiddenstateIndices.enumerated() where index < 0 || index >= 2 + i / 2 {
      throw .invalidGenotype("\(what): hiddenstate_indices[\(i)] = \(index) refers to a state not built yet (0..<\(2 + i / 2))")
    }
    for (i, operation) in operations.enumerated() {
      do { _ = try CellOperation(parsing: operation) } catch {
        throw .invalidGenotype("\(what): operations[\(i)]: \(error)")
      }
    }
    let inputs = Set(hiddenstateIndices)
    for (state, flag) in usedHiddenstates.enumerated() {
      guard flag == 0 || flag == 1 else { throw .invalidGenotype("\(what): used_hiddenstates[\(state)] = \(flag); each flag is 0 or 1") }
      if flag == 1 && !inputs.contains(state) {
        throw .invalidGenotype("\(what): used_hiddenstates[\(state)] = 1 but no combination takes state \(state) as input (hiddenstate_indices \(hiddenstateIndices)): it would be computed and dropped; set it to 0 to concatenate it into the output")
      }
    }
  }
}

/// A normal and a reduction cell: one point of the search space, with its name and how many
/// reduction cells the network has (`num_reduction_layers`: they go before normal cells
/// int(k·N/(R+1)), k = 1…R). As a file (`--cell_name=path.json`):
///
///     {"name": "my_cell", "num_reduction_layers": 2,
///      "normal_cell": {"operations": [10 names], "hiddenstate_indices": [10], "used_hiddenstates": [7]},
///      "reduction_cell": {…}}
public struct Genotype: Hashable, Sendable, Codable {
  public var name: String
  public var normal: CellSpec
  public var reduction: CellSpec
  public var numReductionLayers: Int

  enum CodingKeys: String, CodingKey {
    case name, normal = "normal_cell", reduction = "reduction_cell", numReductionLayers = "num_reduction_layers"
  }

  public init(name: String, normal: CellSpec, reduction: CellSpec, numReductionLayers: Int = 2) {
    self.name = name; self.normal = normal; self.reduction = reduction; self.numReductionLayers = numReductionLayers
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    name = try c.decodeIfPresent(String.self, forKey: .name) ?? ""
    normal = try c.decode(CellSpec.self, forKey: .normal)
    reduction = try c.decode(CellSpec.self, forKey: .reduction)
    numReductionLayers = try c.decodeIfPresent(Int.self, forKey: .numReductionLayers) ?? 2
  }

  /// Whether two genotypes build the same network (names aside).
  public func sameCells(as other: Genotype) -> Bool {
    normal == other.normal && reduction == other.reduction && numReductionLayers == other.numReductionLayers
  }

  public func validate() throws(ModelError) {
    try normal.validate("\(name) normal cell")
    try reduction.validate("\(name) reduction cell")
    guard (1...4).contains(numReductionLayers) else {
      throw .invalidGenotype("\(name): num_reduction_layers = \(numReductionLayers); the networks have 1 to 4 reduction cells")
    }
  }

  /// The file form: JSON with sorted keys (equal genotypes give equal text).
  public var json: String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
  }

  /// What `--cell_name` names: a built-in genotype (`amoeba_net_d`, …), the JSON text of one (it
  /// starts with `{`), or a file holding it. The result is validated; a file without a name is
  /// named after the file.
  public static func resolve(_ text: String) throws(ModelError) -> Genotype {
    if let genotype = builtIn[text] { return genotype }
    var source = text, fileName: String?
    if !text.hasPrefix("{") {
      guard text.contains("/") || text.hasSuffix(".json") else {
        throw .invalidGenotype("unknown --cell_name '\(text)'; known: \(builtIn.keys.sorted().joined(separator: ", ")), or a genotype file (path.json)")
      }
      guard let data = FileManager.default.contents(atPath: text) else {
        throw .invalidGenotype("--cell_name=\(text): no such genotype file (or it cannot be read)")
      }
      source = String(decoding: data, as: UTF8.self)
      fileName = ((text as NSString).lastPathComponent as NSString).deletingPathExtension
    }
    var genotype: Genotype
    do { genotype = try JSONDecoder().decode(Genotype.self, from: Data(source.utf8)) } catch {
      throw .invalidGenotype("\(fileName == nil ? "the genotype JSON" : "--cell_name=\(text)") is not a genotype: \(Genotype.describe(error))")
    }
    if genotype.name.isEmpty { genotype.name = fileName ?? "custom" }
    do { try genotype.validate() } catch {
      guard fileName != nil, case let .invalidGenotype(problem) = error else { throw error }
      throw .invalidGenotype("--cell_name=\(text): \(problem)")
    }
    return genotype
  }

  /// A decoding error in a reader's words: the missing or mistyped key and where.
  public static func describe(_ error: any Error) -> String {
    let path = { (keys: [any CodingKey]) in keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined() }
    switch error as? DecodingError {
    case let .keyNotFound(key, context)?: return "\(path(context.codingPath + [key])) is missing"
    case let .typeMismatch(_, context)?: return "\(path(context.codingPath)) has the wrong type (\(context.debugDescription))"
    case let .valueNotFound(_, context)?: return "\(path(context.codingPath)) is null"
    case let .dataCorrupted(context)?: return "not valid JSON (\(context.debugDescription))"
    default: return "\(error)"
    }
  }

  /// The genotypes of the AmoebaNet paper, keyed as `--cell_name` accepts them (paper and code names).
  public static let builtIn: [String: Genotype] = [
    "amoeba_net_a": .amoebaNetA, "evol_net_g": .amoebaNetA,
    "amoeba_net_b": .amoebaNetB, "evol_net_h": .amoebaNetB,
    "amoeba_net_c": .amoebaNetC, "evol_net_a": .amoebaNetC,
    "amoeba_net_d": .amoebaNetD, "evol_net_x": .amoebaNetD,
  ]

  public static let amoebaNetA = Genotype(
    name: "amoeba_net_a",
    normal: CellSpec(
      operations: ["avg_pool_3x3", "max_pool_3x3", "separable_3x3_2", "none", "none", "avg_pool_3x3",
                   "separable_3x3_2", "separable_5x5_2", "avg_pool_3x3", "separable_3x3_2"],
      hiddenstateIndices: [0, 0, 1, 1, 0, 1, 0, 2, 5, 0], usedHiddenstates: [1, 0, 1, 0, 0, 1, 0]),
    reduction: CellSpec(
      operations: ["separable_3x3_2", "avg_pool_3x3", "max_pool_3x3", "separable_7x7_2", "max_pool_3x3",
                   "max_pool_3x3", "separable_3x3_2", "1x7_7x1", "avg_pool_3x3", "separable_7x7_2"],
      hiddenstateIndices: [1, 0, 0, 2, 1, 0, 4, 0, 1, 0], usedHiddenstates: [1, 1, 0, 0, 0, 0, 0]))

  public static let amoebaNetB = Genotype(
    name: "amoeba_net_b",
    normal: CellSpec(
      operations: ["1x1", "max_pool_3x3", "none", "separable_3x3_2", "1x1", "separable_3x3_2", "1x1", "none",
                   "avg_pool_3x3", "1x1"],
      hiddenstateIndices: [1, 1, 1, 0, 1, 0, 2, 2, 1, 5], usedHiddenstates: [0, 1, 1, 0, 0, 1, 0]),
    reduction: CellSpec(
      operations: ["max_pool_2x2", "max_pool_3x3", "none", "3x3", "dil_2_separable_5x5_2", "max_pool_3x3", "none",
                   "separable_3x3_2", "avg_pool_3x3", "1x1"],
      hiddenstateIndices: [0, 0, 2, 1, 2, 2, 3, 1, 4, 3], usedHiddenstates: [1, 1, 1, 1, 1, 0, 0]))

  public static let amoebaNetC = Genotype(
    name: "amoeba_net_c",
    normal: CellSpec(
      operations: ["avg_pool_3x3", "separable_3x3_2", "none", "separable_3x3_2", "avg_pool_3x3", "separable_3x3_2",
                   "none", "separable_3x3_2", "avg_pool_3x3", "separable_3x3_2"],
      hiddenstateIndices: [0, 0, 0, 0, 2, 1, 0, 1, 3, 0], usedHiddenstates: [1, 0, 0, 1, 0, 0, 0]),
    reduction: CellSpec(
      operations: ["max_pool_3x3", "max_pool_3x3", "separable_7x7_2", "separable_3x3_2", "separable_7x7_2",
                   "max_pool_3x3", "separable_5x5_2", "separable_5x5_2", "max_pool_3x3", "separable_3x3_2"],
      hiddenstateIndices: [0, 0, 2, 0, 0, 1, 4, 4, 1, 1], usedHiddenstates: [0, 1, 0, 0, 0, 0, 0]))

  public static let amoebaNetD = Genotype(
    name: "amoeba_net_d",
    normal: CellSpec(
      operations: ["1x1", "max_pool_3x3", "none", "1x7_7x1", "1x1", "1x7_7x1", "max_pool_3x3", "none",
                   "avg_pool_3x3", "1x1"],
      hiddenstateIndices: [1, 1, 1, 0, 0, 0, 2, 2, 1, 5], usedHiddenstates: [0, 1, 1, 0, 0, 1, 0]),
    reduction: CellSpec(
      operations: ["max_pool_2x2", "max_pool_3x3", "none", "3x3", "1x7_7x1", "max_pool_3x3", "none",
                   "max_pool_2x2", "avg_pool_3x3", "1x1"],
      hiddenstateIndices: [0, 0, 2, 1, 2, 2, 3, 1, 2, 3], usedHiddenstates: [1, 1, 1, 1, 0, 0, 0]))
}
