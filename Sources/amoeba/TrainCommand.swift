#if canImport(Glibc)
import Glibc
#endif
import CLI
import Cluster
import Data
import Model
import Tensor
import Train

/// `amoeba train`: the single-process training loop (the one the distributed worker reuses), with a
/// progress line and evaluation of the moving-average weights on the validation split.
struct TrainCommand {
  var network: NetworkConfig
  var training: TrainingConfig
  var data: DataOptions
  var dataset: any Dataset
  var threads: Int
  var seed: UInt64
  var logEvery: Int
  var evalOnAverages: Bool
  var modelDir: String
  var saveEvery: Int

  init(flags: Flags) throws {
    var flags = flags
    network = try flags.networkConfig()
    training = try flags.trainingConfig()
    data = try flags.dataOptions()
    threads = try flags.int("threads", default: ThreadPool.onlineCores)
    seed = try flags.seed()
    logEvery = try flags.int("log_every", default: 20)
    evalOnAverages = try flags.bool("eval_on_moving_averages", default: true)
    modelDir = flags.string("model_dir", default: "")
    let saveSteps = try flags.int("save_checkpoints_steps", default: 0)
    let trainImagesGiven = flags.has("num_train_images"), evalImagesGiven = flags.has("num_eval_images")
    try flags.finish()
    dataset = try data.dataset(network: network, training: &training, trainImagesGiven: trainImagesGiven,
                               evalImagesGiven: evalImagesGiven, seed: seed)
    try training.validate()
    saveEvery = saveSteps > 0 ? saveSteps : training.iterationsPerLoop
  }

  var checkpointConfig: [String: String] { network.flagValues.merging(training.flagValues) { a, _ in a } }

  func run() throws {
    let context = KernelContext(threads: threads)
    let trainer = try Trainer(network: network, training: training, batchSize: training.trainBatchSize, context: context, seed: seed)
    let batcher = Batcher(dataset: dataset, split: .train, batchSize: training.trainBatchSize, seed: seed, onBadRecord: data.onBadRecord)

    let store = modelDir.isEmpty ? nil : CheckpointStore(directory: modelDir, keep: training.keepCheckpointMax)
    if let removed = store?.removeLeftovers(), !removed.isEmpty {
      print("removed what an interrupted save left in \(modelDir): \(removed.joined(separator: ", "))")
    }
    if let store, let sidecar = try store.restore(into: trainer, config: checkpointConfig, report: { print("warning: \($0)") }) {
      print("restored \(modelDir)/\(sidecar.tensorsFile) at step \(sidecar.globalStep)")
    }
    if training.mode == "eval" {
      guard store != nil, trainer.globalStep > 0 else { throw UsageError("--mode=eval needs --model_dir with a checkpoint") }
      try evaluate(trainer, dataset: dataset, context: context)
      return
    }
    let total = training.totalSteps
    print("training \(network.cellName) num_cells=\(network.numCells) reduction_size=\(network.reductionSize) image_size=\(network.imageSize) on \(data.useData) data\(data.dataDir.isEmpty ? "" : " from " + data.dataDir) (\(dataset.count(.train)) training, \(dataset.count(.validation)) validation images): \(trainer.model.trainableParameterCount) parameters, \(total) steps of \(training.trainBatchSize) (\(training.numEpochs) epochs)"
          + (trainer.microBatch < trainer.batchSize ? " in micro-batches of \(trainer.microBatch) (gradients accumulated; batch norm per micro-batch)" : "")
          + ", \(threads) threads")
    let evalEvery = training.evaluationInterval ?? Int.max
    var windowStart = now(), windowImages = 0, lossSum = 0.0, lossCount = 0, inputWait = 0.0, skipped = 0
    var firstLoss: (step: Int, value: Double)?, lossSeen = false
    let started = now()
    let prefetcher = Prefetcher(batcher: batcher, firstBatch: trainer.globalStep, depth: data.prefetchBatches + 1, threads: data.inputThreads)
    defer { prefetcher.shutDown() }
    while trainer.globalStep < total {
      let waitStarted = now()
      let batch = try prefetcher.next()
      inputWait += now() - waitStarted
      if let error = batch.report.firstError { print("warning: skipped a bad record: \(error)") }
      skipped += batch.report.skipped
      let losses = try trainer.step(images: batch.images, labels: batch.labels)
      let rate = Double(losses.learningRate)
      windowImages += training.trainBatchSize
      lossSum += Double(losses.total); lossCount += 1
      if !lossSeen { firstLoss = (trainer.globalStep, Double(losses.total)); lossSeen = true }
      if trainer.globalStep % logEvery == 0 || trainer.globalStep == total {
        let elapsed = now() - windowStart, speed = Double(windowImages) / max(elapsed, 1e-9)
        let remaining = Double(total - trainer.globalStep) * Double(training.trainBatchSize) / max(speed, 1e-9)
        let epoch = Double(trainer.globalStep) / Double(training.stepsPerEpochForTraining)
        let waited = inputWait / Double(lossCount) * 1000
        print("step \(trainer.globalStep)/\(total) epoch \(format(epoch, 2)) loss \(format(lossSum / Double(lossCount), 4)) lr \(format(rate, 5)) images/s \(format(speed, 1)) eta \(duration(remaining)) input wait \(format(waited, 1)) ms/step" + (skipped > 0 ? " bad records skipped \(skipped)" : ""))
        // The first step's loss: a window's mean hides how far above ln(classes) the run started.
        if let loss = firstLoss, let warning = LossCheck.warning(loss: loss.value, step: loss.step, classes: network.numLabelClasses) {
          print(warning)
        }
        firstLoss = nil
        windowStart = now(); windowImages = 0; lossSum = 0; lossCount = 0; inputWait = 0
      }
      if let store, trainer.globalStep % saveEvery == 0 || trainer.globalStep == total {
        let path = try store.save(trainer, config: checkpointConfig)
        print("saved \(path)")
      }
      if trainer.globalStep % evalEvery == 0 && trainer.globalStep < total {
        try evaluate(trainer, dataset: dataset, context: context)
      }
    }
    print("trained to step \(total) in \(duration(now() - started))")
    // --mode=train only trains, as the reference's; the others end with an evaluation.
    if training.mode != "train" { try evaluate(trainer, dataset: dataset, context: context) }
  }

  func evaluate(_ trainer: Trainer, dataset: any Dataset, context: KernelContext) throws {
    let hits = try Validation.hits(trainer, network: network, training: training, dataset: dataset,
                                   useAverages: evalOnAverages, context: context)
    let seen = max(hits.count, 1)
    print("eval step \(trainer.globalStep): top_1_accuracy \(format(Double(hits.top1) / Double(seen), 4)) top_5_accuracy \(format(Double(hits.top5) / Double(seen), 4)) over \(seen) validation images (\(evalOnAverages ? "moving-average weights" : "live weights"))")
  }
}

func format(_ x: Double, _ digits: Int) -> String {
  var scale = 1.0
  for _ in 0..<digits { scale *= 10 }
  let rounded = (x * scale).rounded() / scale
  return String(rounded)
}

func duration(_ seconds: Double) -> String {
  guard seconds.isFinite else { return "?" }
  let s = Int(seconds.rounded())
  return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
}
