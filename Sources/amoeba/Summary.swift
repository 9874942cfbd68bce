import CLI
import Model

/// `amoeba summary [model flags]`: the per-stage output shapes, the trainable parameter counts with
/// and without the aux head, and the multiply-adds per image of the evaluation network.
struct SummaryCommand {
  var config: NetworkConfig

  init(flags: Flags) throws {
    var flags = flags
    config = try flags.networkConfig()
    try flags.finish()
  }

  func run() throws {
    let training = try AmoebaNet(config: config, batchSize: 1, mode: .training)
    let evaluation = try AmoebaNet(config: config, batchSize: 1, mode: .evaluation)
    print("\(config.cellName): num_cells=\(config.numCells) reduction_size=\(config.reductionSize) image_size=\(config.imageSize) num_label_classes=\(config.numLabelClasses)")
    for (name, value) in training.stages {
      let shape = training.graph.shape(value).dims.dropFirst().map(String.init).joined(separator: "x")
      print(pad(name, 20) + shape)
    }
    let withoutAux = training.parameters.filter { $0.isTrainable && !$0.name.hasPrefix("aux_") }
    print("trainable_parameters \(training.trainableParameterCount)")
    print("trainable_parameters_without_aux \(withoutAux.reduce(0) { $0 + $1.shape.elementCount })")
    print("multiply_adds_per_image \(evaluation.multiplyAddsPerImage)")
  }
}
