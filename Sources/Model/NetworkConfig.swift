/// The model flags, with the reference's names and defaults (`amoeba_net.py`, `imagenet_hparams`).
/// `--num_cells` counts normal cells over all three stacks (the paper's N is per stack), and
/// `--reduction_size` is F: "N6F256" is `num_cells=6, reduction_size=256`.
public struct NetworkConfig: Hashable, Sendable {
  /// The cells (`--cell_name`: a built-in genotype, or one from a file).
  public var genotype: Genotype = .amoebaNetD
  public var cellName: String { genotype.name }
  public var numCells = 12
  public var reductionSize = 256
  public var stemReductionSize = 32
  public var imageSize = 299
  public var numLabelClasses = 1001
  public var useAuxHead = true
  public var auxScaling = 0.4
  public var denseDropoutKeepProb = 0.5
  public var dropConnectKeepProb = 1.0
  public var batchNormEpsilon = 1e-5
  public var batchNormDecay = 0.9
  public var weightDecay = 4e-5
  /// `--fc_init`: how the FC weights of the head (and the aux head) start.
  public var fcInit = FullyConnectedInit.fanOut
  /// Fixed hparams of the ImageNet recipe (not flags in the reference).
  public var numReductionLayers: Int { genotype.numReductionLayers }
  public var numStemCells = 2

  public init() {}

  /// The epsilon the kernels use: TensorFlow's fused batch norm raises anything below 1.001e-5 to it.
  /// The reference's variance scaling by fan-out, σ = √(2.6/classes), is made for 1001 classes:
  /// with 10 its logits start with σ ≈ 6–9 and the loss near 12 instead of ln 10. Zeros start every
  /// logit at its bias, 0, and the loss at ln(classes).
  public enum FullyConnectedInit: String, Hashable, Sendable, CaseIterable {
    case fanOut = "fan_out"
    case zeros
  }

  public var effectiveBatchNormEpsilon: Float { Float(max(batchNormEpsilon, 1.001e-5)) }

  /// `calc_reduction_layers`: reduction cells go before normal cells int(k·n/3), k = 1, 2.
  public var reductionIndices: [Int] {
    (1...numReductionLayers).map { Int(Double($0) / Double(numReductionLayers + 1) * Double(numCells)) }
  }

  /// The normal cell after which the aux head sits: reductionIndices[1] − 1.
  public var auxHeadCell: Int? { reductionIndices.count >= 2 ? reductionIndices[1] - 1 : nil }

  public func validate() throws(ModelError) {
    guard numCells >= 1 else { throw .invalidConfig("--num_cells must be at least 1, got \(numCells)") }
    guard reductionSize >= 1, stemReductionSize >= 1 else {
      throw .invalidConfig("--reduction_size and --stem_reduction_size must be positive")
    }
    guard imageSize >= 3 else { throw .invalidConfig("--image_size must be at least 3, got \(imageSize)") }
    guard numLabelClasses >= 2 else { throw .invalidConfig("--num_label_classes must be at least 2") }
    guard denseDropoutKeepProb > 0, denseDropoutKeepProb <= 1, dropConnectKeepProb > 0, dropConnectKeepProb <= 1 else {
      throw .invalidConfig("--dense_dropout_keep_prob and --drop_connect_keep_prob must be in (0, 1]")
    }
    guard auxScaling > 0 else { throw .invalidConfig("--aux_scaling must be positive") }
    // Factorized reduction splits its output in two: every filter count it produces must be even.
    let smallest = Int(Double(reductionSize) / Double(1 << numStemCells))
    if smallest < 2 || smallest % 2 != 0 {
      throw .invalidConfig("--reduction_size=\(reductionSize) gives \(smallest) filters in cell_stem_0; factorized reduction needs an even count ≥ 2 (use a multiple of \(2 << numStemCells))")
    }
  }
}

extension NetworkConfig {
  /// The flags as `--name` → value text, for checkpoint sidecars and logs.
  public var flagValues: [String: String] {
    // A genotype that is not a built-in one travels as its JSON (a worker need not have the file).
    ["cell_name": Genotype.builtIn[cellName] == genotype ? cellName : genotype.json, "num_cells": String(numCells), "reduction_size": String(reductionSize),
     "stem_reduction_size": String(stemReductionSize), "image_size": String(imageSize),
     "num_label_classes": String(numLabelClasses), "use_aux_head": String(useAuxHead), "aux_scaling": String(auxScaling),
     "dense_dropout_keep_prob": String(denseDropoutKeepProb), "drop_connect_keep_prob": String(dropConnectKeepProb),
     "batch_norm_epsilon": String(batchNormEpsilon), "batch_norm_decay": String(batchNormDecay), "weight_decay": String(weightDecay),
     "fc_init": fcInit.rawValue]
  }
}
