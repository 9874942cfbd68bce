/// One operation of the NASNet search space, parsed from its name as the reference's
/// `_apply_operation` reads it.
public enum CellOperation: Hashable, Sendable {
  /// `'none'`: identity, or ReLU → 1×1 (stride s) → BN when the stride or the width must change.
  case none
  /// `'1x1'`: ReLU → 1×1 conv (stride s) → BN.
  case conv1x1
  /// `'3x3'`, `'1x7_7x1'`, `'1x3_3x1'`, `'dilated_3x3_rate_R'`: convolutions behind a bottleneck.
  case bottleneck(BottleneckCore)
  /// `'separable_KxK_L'`: L × (ReLU → depthwise K×K → pointwise → BN); only the first strides.
  case separable(kernel: Int, layers: Int)
  /// `'max_pool_KxK'`, `'avg_pool_KxK'`, `'min_pool_KxK'`: SAME pooling with stride s.
  case pool(PoolKind, size: Int)

  public enum BottleneckCore: Hashable, Sendable {
    case conv3x3
    case conv1x7_7x1
    case conv1x3_3x1
    case dilated3x3(rate: Int)
  }

  public enum PoolKind: String, Hashable, Sendable { case max, avg, min }

  public init(parsing name: String) throws(ModelError) {
    switch name {
    case "none": self = .none
    case "1x1": self = .conv1x1
    case "3x3": self = .bottleneck(.conv3x3)
    case "1x7_7x1": self = .bottleneck(.conv1x7_7x1)
    case "1x3_3x1": self = .bottleneck(.conv1x3_3x1)
    case "dilated_3x3_rate_2": self = .bottleneck(.dilated3x3(rate: 2))
    case "dilated_3x3_rate_4": self = .bottleneck(.dilated3x3(rate: 4))
    case "dilated_3x3_rate_6": self = .bottleneck(.dilated3x3(rate: 6))
    default:
      let parts = name.split(separator: "_").map(String.init)
      if name.contains("separable") {
        // As the reference parses it: the kernel is the digit before the first 'x', the layer count
        // the last '_' field. So 'dil_2_separable_5x5_2' is a plain separable 5×5 ×2.
        let kernelText = name.split(separator: "x").first.map { String($0.last!) } ?? ""
        guard let kernel = Int(kernelText), let layers = Int(parts.last!), kernel >= 1, layers >= 1,
              name.split(separator: "x").count == 2, name.split(separator: "x")[1].first.map({ String($0) }) == kernelText
        else { throw .invalidGenotype("cannot parse operation '\(name)' (expected separable_KxK_L)") }
        self = .separable(kernel: kernel, layers: layers)
      } else if parts.count == 3, parts[1] == "pool", let kind = PoolKind(rawValue: parts[0]) {
        let size = parts[2].split(separator: "x").compactMap { Int($0) }
        guard size.count == 2, size[0] == size[1], size[0] >= 1 else {
          throw .invalidGenotype("cannot parse operation '\(name)' (expected a square pool such as max_pool_3x3)")
        }
        self = .pool(kind, size: size[0])
      } else {
        throw .invalidGenotype("unknown operation '\(name)'; the NASNet space has none, 1x1, 3x3, 1x7_7x1, 1x3_3x1, dilated_3x3_rate_{2,4,6}, separable_KxK_L, {max,avg,min}_pool_KxK")
      }
    }
  }
}

/// A model that cannot be built as configured; each case says what to change.
public enum ModelError: Error, CustomStringConvertible, Equatable {
  case invalidGenotype(String)
  case invalidConfig(String)
  case graph(String)

  public var description: String {
    switch self {
    case let .invalidGenotype(message), let .invalidConfig(message), let .graph(message): message
    }
  }
}
