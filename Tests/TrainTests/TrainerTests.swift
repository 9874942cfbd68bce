import Testing
import Foundation
import Data
import Model
import Tensor
@testable import Train

@Suite struct TrainerTests {
  func tinyTrainer(optimizer: String = "rmsprop", batch: Int = 16) throws -> (Trainer, KernelContext) {
    var network = NetworkConfig()
    network.numCells = 3; network.reductionSize = 8; network.imageSize = 24; network.useAuxHead = false
    var training = TrainingConfig()
    training.trainBatchSize = batch; training.numTrainImages = 100 * batch; training.optimizer = optimizer
    training.lr = 0.05; training.lrDecayMethod = "constant"
    let context = KernelContext(threads: 2)
    return (try Trainer(network: network, training: training, batchSize: batch, context: context, seed: 5), context)
  }

  /// `--fc_init=zeros`: the head starts at zero, so the first cross-entropy is ln(classes) exactly
  /// (label smoothing leaves a uniform prediction's loss unchanged); the reference's starts higher,
  /// and `LossCheck` names the switches when a run starts far above ln(classes).
  @Test func zeroFullyConnectedInitStartsAtLnClasses() throws {
    var network = NetworkConfig()
    network.numCells = 3; network.reductionSize = 8; network.imageSize = 24; network.useAuxHead = false
    network.numLabelClasses = 10; network.denseDropoutKeepProb = 1
    var training = TrainingConfig()
    training.trainBatchSize = 8; training.numTrainImages = 800
    let context = KernelContext(threads: 2)
    let batcher = Batcher(dataset: BuiltInDataset(imageSize: 24), split: .train, batchSize: 8)
    let images = UnsafeMutablePointer<Float>.allocateAligned(8 * 24 * 24 * 3), labels = UnsafeMutablePointer<Float>.allocateAligned(8)
    defer { images.deallocate(); labels.deallocate() }
    _ = try! batcher.fill(batch: 0, images: images, labels: labels, context: context)
    var losses: [Float] = []
    for initializer in [NetworkConfig.FullyConnectedInit.zeros, .fanOut] {
      network.fcInit = initializer
      let trainer = try Trainer(network: network, training: training, batchSize: 8, context: context, seed: 2)
      losses.append(try trainer.computeGradients(images: images, labels: labels).crossEntropy)
    }
    #expect(abs(Double(losses[0]) - log(10.0)) < 1e-5)
    #expect(losses[1] > losses[0])
    #expect(LossCheck.warning(loss: 12, step: 20, classes: 10)?.contains("--fc_init=zeros") == true)
    #expect(LossCheck.warning(loss: 7.5, step: 20, classes: 1001) == nil)
  }

  @Test func stepsOnOneBatchDriveItsLossDown() throws {
    let (trainer, context) = try tinyTrainer()
    let batcher = Batcher(dataset: BuiltInDataset(imageSize: 24), split: .train, batchSize: 16)
    let images = UnsafeMutablePointer<Float>.allocateAligned(16 * 24 * 24 * 3), labels = UnsafeMutablePointer<Float>.allocateAligned(16)
    defer { images.deallocate(); labels.deallocate() }
    _ = try! batcher.fill(batch: 0, images: images, labels: labels, context: context)
    let first = try trainer.computeGradients(images: images, labels: labels).crossEntropy
    try trainer.applyGradients()
    for _ in 0..<25 {
      try trainer.computeGradients(images: images, labels: labels)
      try trainer.applyGradients()
    }
    let last = try trainer.computeGradients(images: images, labels: labels).crossEntropy
    #expect(last < first / 2, "cross-entropy \(first) -> \(last)")
    #expect(trainer.globalStep == 26)
  }

  @Test func movingStatisticsAndAveragesFollowTheSteps() throws {
    let (trainer, context) = try tinyTrainer(batch: 4)
    let batcher = Batcher(dataset: BuiltInDataset(imageSize: 24), split: .train, batchSize: 4)
    let images = UnsafeMutablePointer<Float>.allocateAligned(4 * 24 * 24 * 3), labels = UnsafeMutablePointer<Float>.allocateAligned(4)
    defer { images.deallocate(); labels.deallocate() }
    _ = try! batcher.fill(batch: 0, images: images, labels: labels, context: context)
    try trainer.computeGradients(images: images, labels: labels)
    let layer = trainer.moments[0]
    let batchMean = trainer.executor.read(layer.mean), batchVariance = trainer.executor.read(layer.variance)
    let weightsBefore = Array(UnsafeBufferPointer(start: trainer.parameterPointer(0), count: trainer.trainable[0].shape.elementCount))
    try trainer.applyGradients()
    let movingMean = trainer.state[layer.layer.name + "/moving_mean"]!.pointer
    let movingVariance = trainer.state[layer.layer.name + "/moving_variance"]!.pointer
    let n = Float(layer.layer.rows)
    for c in 0..<layer.layer.channels {
      #expect(abs(movingMean[c] - 0.1 * batchMean[c]) < 1e-6)
      #expect(abs(movingVariance[c] - (0.9 + 0.1 * batchVariance[c] * n / (n - 1))) < 1e-5)
    }
    // After step 1 the average decay is min(0.9999, 2/11): shadow = w0 + (1 − 2/11)(w1 − w0).
    let shadow = trainer.state[trainer.trainable[0].name + "/ExponentialMovingAverage"]!.pointer
    let weights = trainer.parameterPointer(0)
    for e in 0..<4 {
      let expected = weightsBefore[e] - (1 - Float(2.0 / 11.0)) * (weightsBefore[e] - weights[e])
      #expect(abs(shadow[e] - expected) < 1e-6)
    }
  }

  @Test func dropPathKeepRampsLinearlyOverTraining() throws {
    var network = NetworkConfig()
    network.numCells = 3; network.reductionSize = 8; network.imageSize = 24; network.useAuxHead = false
    network.dropConnectKeepProb = 0.7
    var training = TrainingConfig()
    training.trainBatchSize = 4; training.numTrainImages = 400; training.numEpochs = 2
    let trainer = try Trainer(network: network, training: training, batchSize: 4, context: KernelContext(threads: 1))
    #expect(trainer.dropPathKeepProbability(at: 0) == 1)
    #expect(abs(trainer.dropPathKeepProbability(at: 100) - 0.85) < 1e-6)
    #expect(abs(trainer.dropPathKeepProbability(at: 10_000) - 0.7) < 1e-6)
  }
}
