import Model
import Tensor

/// The operations evolution chooses from: the eight of Real et al. (AAAI 2019, the space
/// AmoebaNet was found in) under the names tensorflow/tpu's model builder parses. Its parser
/// builds `dil_2_separable_*` as a plain separable convolution, so the dilated 3×3 is the
/// builder's own `dilated_3x3_rate_2`.
public let searchOperations = [
  "none", "avg_pool_3x3", "max_pool_3x3", "separable_3x3_2", "separable_5x5_2", "separable_7x7_2", "dilated_3x3_rate_2", "1x7_7x1",
]

/// A seeded, reproducible stream of random numbers (`CounterRandom` at successive positions):
/// the same seed gives the same search given the same child results, and with the seed its
/// position is all a history line must keep to go on from there.
public struct SearchRandom: Sendable, Equatable {
  public let seed: UInt64
  /// Numbers drawn so far.
  public private(set) var position: UInt64

  public init(seed: UInt64, position: UInt64 = 0) { self.seed = seed; self.position = position }

  public mutating func next() -> UInt64 {
    defer { position += 1 }
    return CounterRandom.bits(seed: seed, stream: 0x5EA2C4, index: position)
  }

  /// Uniform in 0..<bound.
  public mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

  /// Uniform in [0, 1).
  public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// What a mutation changed, as the history records it.
public enum MutationKind: String, Codable, Sendable {
  /// The parent's genotype as it is (the paper's identity mutation).
  case identity
  /// One input of one combination rewired to another state already built.
  case hiddenState = "hidden_state"
  /// One operation replaced by another of `searchOperations`.
  case operation
}

extension Genotype {
  /// A random point of the space: every combination's two inputs and operations uniform.
  public static func random(_ random: inout SearchRandom, name: String) -> Genotype {
    func cell() -> CellSpec {
      let indices = (0..<10).map { random.below(2 + $0 / 2) }
      let operations = (0..<10).map { _ in searchOperations[random.below(searchOperations.count)] }
      return CellSpec(operations: operations, hiddenstateIndices: indices, usedHiddenstates: CellSpec.inputFlags(indices))
    }
    return Genotype(name: name, normal: cell(), reduction: cell())
  }

  /// The paper's mutation: with `identityProbability` none; otherwise, in the normal or the
  /// reduction cell (even odds), one of the 10 (combination, input) slots gets a different
  /// hidden state or a different operation (even odds). A state that no combination reads any
  /// more leaves the used flags (it joins the cell's output).
  public func mutated(_ random: inout SearchRandom, name: String, identityProbability: Double = 0.05) -> (Genotype, MutationKind) {
    var child = self
    child.name = name
    guard random.unit() >= identityProbability else { return (child, .identity) }
    let inNormal = random.below(2) == 0
    var cell = inNormal ? child.normal : child.reduction
    let slot = random.below(10)
    let kind: MutationKind
    if random.below(2) == 0 {
      // States built before this combination: 2 + slot / 2 of them; pick another than the current.
      let choices = 2 + slot / 2
      cell.hiddenstateIndices[slot] = (cell.hiddenstateIndices[slot] + 1 + random.below(choices - 1)) % choices
      let inputs = Set(cell.hiddenstateIndices)
      for state in cell.usedHiddenstates.indices where cell.usedHiddenstates[state] == 1 && !inputs.contains(state) {
        cell.usedHiddenstates[state] = 0
      }
      kind = .hiddenState
    } else {
      let others = searchOperations.filter { $0 != cell.operations[slot] }
      cell.operations[slot] = others[random.below(others.count)]
      kind = .operation
    }
    if inNormal { child.normal = cell } else { child.reduction = cell }
    return (child, kind)
  }
}

extension CellSpec {
  /// Used flags for these inputs: 1 on every state some combination reads (so only the states
  /// nothing reads form the cell's output, as in NASNet).
  public static func inputFlags(_ hiddenstateIndices: [Int]) -> [Int] {
    let inputs = Set(hiddenstateIndices)
    return (0..<7).map { inputs.contains($0) ? 1 : 0 }
  }
}
