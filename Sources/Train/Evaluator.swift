import Graph
import Model
import Tensor

/// The evaluation network (moving statistics, no dropout, no aux head), loaded with the trainer's
/// exponential moving averages of the weights and of the batch-norm statistics, as the reference's
/// `LoadEMAHook` does; top-1 and top-5 over all logits.
public final class Evaluator {
  public let model: AmoebaNet
  public let executor: Executor
  public let batchSize: Int
  /// Where the evaluation graph runs; nil: the Swift executor. Weights go to it once per `load`.
  public var backend: GraphBackend? {
    didSet { backend?.hostStateChanged() }
  }

  public init(network: NetworkConfig, batchSize: Int, context: KernelContext) throws {
    model = try AmoebaNet(config: network, batchSize: batchSize, mode: .evaluation)
    executor = try Executor(graph: model.graph, outputs: [model.logits], context: context)
    self.batchSize = batchSize
  }

  /// Copies weights and statistics from the trainer: the averages when `useAverages`, else the live values.
  public func load(from trainer: Trainer, useAverages: Bool = true) throws {
    try trainer.synchronizeHostState()
    var live: [String: UnsafeMutablePointer<Float>] = [:]
    for (i, p) in trainer.trainable.enumerated() { live[p.name] = trainer.parameterPointer(i) }
    for parameter in model.parameters {
      let suffix = useAverages ? "/ExponentialMovingAverage" : ""
      let source = trainer.state[parameter.name + suffix]?.pointer ?? (useAverages ? nil : live[parameter.name])
        ?? trainer.state[parameter.name]?.pointer
      guard let source else { preconditionFailure("evaluator: no value for \(parameter.name)") }
      executor.pointer(parameter.value!).update(from: source, count: parameter.shape.elementCount)
    }
    backend?.hostStateChanged()
  }

  /// Loads weights and statistics by variable name (`CheckpointStore.newestAverages`, an export).
  public func load(_ weights: [String: SafeTensors.Tensor], from source: String) throws(TrainError) {
    for parameter in model.parameters {
      guard let tensor = weights[parameter.name], tensor.shape == parameter.shape else {
        throw .checkpoint("\(source) has no \(parameter.name) of shape \(parameter.shape) (was it written with other model flags?)")
      }
      executor.pointer(parameter.value!).update(from: tensor.values, count: parameter.shape.elementCount)
    }
    backend?.hostStateChanged()
  }

  /// The logits of one batch (`[batch, S, S, 3]` as the evaluation preprocessing makes it),
  /// valid until the next run.
  public func logits(images: UnsafePointer<Float>) throws -> UnsafePointer<Float> {
    executor.pointer(model.images).update(from: images, count: executor.graph.shape(model.images).elementCount)
    if let backend { try backend.run(executor) } else { try executor.run() }
    return UnsafePointer(executor.pointer(model.logits))
  }

  /// Top-1 and top-5 hits of one batch.
  public func evaluate(images: UnsafePointer<Float>, labels: UnsafePointer<Float>, count: Int) throws -> (top1: Int, top5: Int) {
    let logits = try self.logits(images: images), classes = model.config.numLabelClasses
    var top1 = 0, top5 = 0
    for n in 0..<min(count, batchSize) {
      let row = logits + n * classes, label = Int(labels[n])
      var higher = 0
      for k in 0..<classes where row[k] > row[label] || (row[k] == row[label] && k < label) { higher += 1 }
      if higher == 0 { top1 += 1 }
      if higher < 5 { top5 += 1 }
    }
    return (top1, top5)
  }
}
