import Testing
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
  @Test func rmspropMatchesTensorFlowByHand() {
    var w: [Float] = [1.0, -2.0], ms: [Float] = [1, 1], mom: [Float] = [0, 0]
    let g: [Float] = [0.5, 3.0]
    // Step 1: ms = 0.9 + 0.1·g², mom = lr·g/√(ms + 1), w −= mom.
    ms.withUnsafeMutableBufferPointer { ms in mom.withUnsafeMutableBufferPointer { mom in
      OptimizerKind.rmsprop.apply(weights: &w, gradients: g, count: 2, slots: [ms.baseAddress!, mom.baseAddress!], learningRate: 0.1)
    } }
    let ms1: [Float] = [0.9 + 0.1 * 0.25, 0.9 + 0.1 * 9]
    let mom1: [Float] = [0.1 * 0.5 / (ms1[0] + 1).squareRoot(), 0.1 * 3 / (ms1[1] + 1).squareRoot()]
    func close(_ a: [Float], _ b: [Float]) -> Bool { zip(a, b).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) } }
    #expect(close(ms, ms1))
    #expect(close(mom, mom1))
    #expect(close(w, [1 - mom1[0], -2 - mom1[1]]))
    // Step 2 carries the momentum.
    ms.withUnsafeMutableBufferPointer { ms in mom.withUnsafeMutableBufferPointer { mom in
      OptimizerKind.rmsprop.apply(weights: &w, gradients: g, count: 2, slots: [ms.baseAddress!, mom.baseAddress!], learningRate: 0.1)
    } }
    let ms2 = (0.9 * ms1[0]) + 0.1 * 0.25
    #expect(abs(ms[0] - ms2) < 1e-7)
    #expect(abs(mom[0] - (0.9 * mom1[0] + 0.1 * 0.5 / (ms2 + 1).squareRoot())) < 1e-7)
  }

  @Test func momentumAndSGD() {
    var w: [Float] = [1], acc: [Float] = [0]
    acc.withUnsafeMutableBufferPointer { a in
      OptimizerKind.momentum.apply(weights: &w, gradients: [2], count: 1, slots: [a.baseAddress!], learningRate: 0.5)
      OptimizerKind.momentum.apply(weights: &w, gradients: [2], count: 1, slots: [a.baseAddress!], learningRate: 0.5)
    }
    #expect(acc == [0.9 * 2 + 2])
    #expect(w == [1 - 0.5 * 2 - 0.5 * 3.8])
    var v: [Float] = [1]
    OptimizerKind.sgd.apply(weights: &v, gradients: [4], count: 1, slots: [], learningRate: 0.25)
    #expect(v == [0])
  }

  @Test func movingAverageDecayFollowsNumUpdates() {
    #expect(MovingAverage.effectiveDecay(0.9999, step: 0) == Float(0.1))
    #expect(MovingAverage.effectiveDecay(0.9999, step: 90) == Float(0.91))
    #expect(MovingAverage.effectiveDecay(0.9999, step: 1_000_000) == Float(0.9999))
    var shadow: [Float] = [1]
    MovingAverage.update(shadow: &shadow, toward: [3], count: 1, decay: 0.75)
    #expect(shadow == [1.5])
    // The batch-norm variance enters with Bessel's correction as a scale.
    MovingAverage.update(shadow: &shadow, toward: [1], count: 1, decay: 0.5, scale: 4)
    #expect(shadow == [2.75])
  }
}
