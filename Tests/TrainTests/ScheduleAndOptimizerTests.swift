import Testing
import Graph
import Tensor
@testable import Train

@Suite struct LearningRateScheduleTests {
  @Test func dawnBenchScheduleGivesTheReferenceValues() {
    var c = TrainingConfig()
    c.trainBatchSize = 1024; c.lr = 2.56; c.lrDecayValue = 0.88; c.numEpochs = 35
    let s = LearningRateSchedule(c)
    #expect(c.stepsPerEpochForLearningRate == 1251)
    #expect(c.totalSteps == 43_820)
    #expect(s.warmupSteps == 437)
    let expected: [(Int, Double)] = [(0, 0.000256), (100, 0.585812), (437, 2.56), (1251, 2.2528), (10000, 1.046210), (43819, 0.029183)]
    for (step, rate) in expected {
      #expect(abs(s.learningRate(at: step) - rate) < 1e-6 * max(rate, 1), "step \(step): \(s.learningRate(at: step))")
    }
  }

  @Test func headWarmupFlagAndOtherMethods() {
    var c = TrainingConfig()
    c.trainBatchSize = 1024; c.lr = 2.56; c.numEpochs = 35; c.lrWarmupEpochs = 0.35
    #expect(LearningRateSchedule(c).warmupSteps == 437)
    c.lrDecayMethod = "constant"
    #expect(LearningRateSchedule(c).warmupSteps == 0)
    #expect(LearningRateSchedule(c).learningRate(at: 5000) == 2.56)
    c.lrDecayMethod = "cosine"
    #expect(abs(LearningRateSchedule(c).learningRate(at: c.totalSteps / 2) - 1.28) < 1e-3)
    // The floor: 1e-4 · lr at the end of a cosine.
    #expect(abs(LearningRateSchedule(c).learningRate(at: c.totalSteps) - 2.56e-4) < 1e-12)
  }
}

@Suite struct OptimizerTests {
  /// One in-place update through the kernel (results written over the state, as the executor does).
  func rmsprop(_ w: inout [Float], _ ms: inout [Float], _ mom: inout [Float], _ g: [Float], lr: Float) {
    w.withUnsafeMutableBufferPointer { w in ms.withUnsafeMutableBufferPointer { ms in mom.withUnsafeMutableBufferPointer { mom in
      TrainingOps.applyRMSProp(weights: w.baseAddress!, ms: ms.baseAddress!, mom: mom.baseAddress!, gradients: g, learningRate: lr,
                               decay: OptimizerKind.rmspropDecay, momentum: OptimizerKind.momentumRate, epsilon: OptimizerKind.rmspropEpsilon,
                               count: g.count, into: w.baseAddress!, newMS: ms.baseAddress!, newMom: mom.baseAddress!,
                               context: KernelContext(threads: 1))
    } } }
  }

  @Test func rmspropMatchesTensorFlowByHand() {
    var w: [Float] = [1.0, -2.0], ms: [Float] = [1, 1], mom: [Float] = [0, 0]
    let g: [Float] = [0.5, 3.0]
    // Step 1: ms = 0.9 + 0.1·g², mom = lr·g/√(ms + 1), w −= mom.
    rmsprop(&w, &ms, &mom, g, lr: 0.1)
    let ms1: [Float] = [0.9 + 0.1 * 0.25, 0.9 + 0.1 * 9]
    let mom1: [Float] = [0.1 * 0.5 / (ms1[0] + 1).squareRoot(), 0.1 * 3 / (ms1[1] + 1).squareRoot()]
    func close(_ a: [Float], _ b: [Float]) -> Bool { zip(a, b).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) } }
    #expect(close(ms, ms1))
    #expect(close(mom, mom1))
    #expect(close(w, [1 - mom1[0], -2 - mom1[1]]))
    // Step 2 carries the momentum.
    rmsprop(&w, &ms, &mom, g, lr: 0.1)
    let ms2 = (0.9 * ms1[0]) + 0.1 * 0.25
    #expect(abs(ms[0] - ms2) < 1e-7)
    #expect(abs(mom[0] - (0.9 * mom1[0] + 0.1 * 0.5 / (ms2 + 1).squareRoot())) < 1e-7)
  }

  @Test func momentumAndSGD() {
    var w: [Float] = [1], acc: [Float] = [0]
    let context = KernelContext(threads: 1)
    for _ in 0..<2 {
      w.withUnsafeMutableBufferPointer { w in acc.withUnsafeMutableBufferPointer { a in
        TrainingOps.applyMomentum(weights: w.baseAddress!, accumulation: a.baseAddress!, gradients: [2], learningRate: 0.5,
                                  momentum: OptimizerKind.momentumRate, count: 1, into: w.baseAddress!, newAccumulation: a.baseAddress!,
                                  context: context)
      } }
    }
    #expect(acc == [0.9 * 2 + 2])
    #expect(w == [1 - 0.5 * 2 - 0.5 * 3.8])
    var v: [Float] = [1]
    v.withUnsafeMutableBufferPointer { v in
      TrainingOps.applyGradientDescent(weights: v.baseAddress!, gradients: [4], learningRate: 0.25, count: 1, into: v.baseAddress!, context: context)
    }
    #expect(v == [0])
  }

  @Test func movingAverageDecayFollowsNumUpdates() {
    func decay(_ step: Int) -> Float { Float(StepSchedule.movingAverageDecay(0.9999).value(at: step)) }
    #expect(decay(0) == Float(0.1))
    #expect(decay(90) == Float(0.91))
    #expect(decay(1_000_000) == Float(0.9999))
    var shadow: [Float] = [1]
    func update(toward value: Float, decay: Float, scale: Float = 1) {
      shadow.withUnsafeMutableBufferPointer { s in
        TrainingOps.movingAverage(shadow: s.baseAddress!, value: [value], decay: decay, scale: scale, count: 1, into: s.baseAddress!,
                                  context: KernelContext(threads: 1))
      }
    }
    update(toward: 3, decay: 0.75)
    #expect(shadow == [1.5])
    // The batch-norm variance enters with Bessel's correction as a scale.
    update(toward: 1, decay: 0.5, scale: 4)
    #expect(shadow == [2.75])
  }
}
