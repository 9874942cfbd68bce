import Tensor

/// The dispatch from IR ops to Tensor kernels: one case per op, operands already resolved.
extension Executor {
  func execute(_ instruction: Instruction) throws(ExecutionError) {
    let x = instruction.inputs, y = instruction.outputs
    let ctx = context
    let count = instruction.outputShapes[0].elementCount
    let ws = instruction.workspace
    switch instruction.op {
    case .input, .parameter, .constant:
      break
    case let .conv2d(g):
      Conv2D.forward(g, input: x[0], filter: x[1], output: y[0], workspace: ws ?? y[0], context: ctx)
    case let .conv2dBackpropInput(g):
      Conv2D.backpropInput(g, outputGradient: x[0], filter: x[1], inputGradient: y[0], workspace: ws ?? y[0], context: ctx)
    case let .conv2dBackpropFilter(g):
      Conv2D.backpropFilter(g, input: x[0], outputGradient: x[1], filterGradient: y[0], workspace: ws ?? y[0], context: ctx)
    case let .depthwiseConv2d(g):
      DepthwiseConv2D.forward(g, input: x[0], filter: x[1], output: y[0], context: ctx)
    case let .depthwiseConv2dBackpropInput(g):
      DepthwiseConv2D.backpropInput(g, outputGradient: x[0], filter: x[1], inputGradient: y[0], context: ctx)
    case let .depthwiseConv2dBackpropFilter(g):
      DepthwiseConv2D.backpropFilter(g, input: x[0], outputGradient: x[1], filterGradient: y[0], workspace: ws!, context: ctx)
    case let .maxPool(g):
      Pooling.maxPool(g, input: x[0], output: y[0], context: ctx)
    case let .maxPoolGrad(g):
      Pooling.maxPoolGrad(g, input: x[0], outputGradient: x[1], inputGradient: y[0], context: ctx)
    case let .avgPool(g):
      Pooling.avgPool(g, input: x[0], output: y[0], context: ctx)
    case let .avgPoolGrad(g):
      Pooling.avgPoolGrad(g, outputGradient: x[0], inputGradient: y[0], context: ctx)
    case let .batchNormTraining(epsilon, relu):
      let (rows, c) = rowsAndChannels(instruction.inputShapes[0])
      BatchNorm.training(x[0], rows: rows, channels: c, gamma: x[1], beta: x[2], epsilon: epsilon, relu: relu, output: y[0],
                         mean: y[1], variance: y[2], workspace: ws!, context: ctx)
    case let .batchNormInference(epsilon):
      let (rows, c) = rowsAndChannels(instruction.inputShapes[0])
      BatchNorm.inference(x[0], rows: rows, channels: c, gamma: x[1], beta: x[2], mean: x[3], variance: x[4],
                          epsilon: epsilon, output: y[0], workspace: ws!, context: ctx)
    case let .batchNormGrad(epsilon, relu):
      let (rows, c) = rowsAndChannels(instruction.inputShapes[0])
      BatchNorm.gradient(x[4], input: x[0], rows: rows, channels: c, gamma: x[1], mean: x[2], variance: x[3],
                         epsilon: epsilon, reluOutput: relu ? x[5] : nil, inputGradient: y[0], gammaGradient: y[1], betaGradient: y[2],
                         workspace: ws!, context: ctx)
    case .relu:
      Elementwise.relu(x[0], into: y[0], count: count, context: ctx)
    case .reluGrad:
      Elementwise.reluGrad(x[0], input: x[1], into: y[0], count: count, context: ctx)
    case .add:
      Elementwise.add(x[0], x[1], into: y[0], count: count, context: ctx)
    case .addN:
      Elementwise.addN(UnsafeBufferPointer(x), into: y[0], count: count, context: ctx)
    case let .scale(factor):
      Elementwise.scale(x[0], by: factor, into: y[0], count: count, context: ctx)
    case .multiplyByScalar:
      Elementwise.scale(x[0], by: x[1][0], into: y[0], count: count, context: ctx)
    case let .dropout(keep, seed):
      let perExample = count / max(instruction.outputShapes[0][0], 1)
      Elementwise.dropout(x[0], keep: keep, seed: seed, stream: randomStream, firstIndex: UInt64(exampleOffset * perExample),
                          into: y[0], count: count, context: ctx)
    case let .dropPath(seed):
      let batch = instruction.inputShapes[0][0]
      Elementwise.dropPath(x[0], keep: x[1][0], seed: seed, stream: randomStream, firstExample: UInt64(exampleOffset), batch: batch,
                           elementsPerExample: count / max(batch, 1), into: y[0], context: ctx)
    case .reshape:
      Elementwise.copy(x[0], to: y[0], count: count, context: ctx)
    case .concat:
      let (rows, _) = rowsAndChannels(instruction.outputShapes[0])
      Elementwise.concatChannels(UnsafeBufferPointer(x), widths: UnsafeBufferPointer(instruction.widths), rows: rows,
                                 into: y[0], context: ctx)
    case let .sliceChannels(first, width):
      let (rows, c) = rowsAndChannels(instruction.inputShapes[0])
      Elementwise.sliceChannels(x[0], channels: c, first: first, width: width, rows: rows, into: y[0], context: ctx)
    case let .slice(window):
      let i = instruction.inputShapes[0], o = instruction.outputShapes[0]
      Spatial.slice(x[0], batch: i[0], inH: i[1], inW: i[2], channels: i[3], window: window, outH: o[1], outW: o[2],
                    into: y[0], context: ctx)
    case let .pad(window):
      let i = instruction.inputShapes[0], o = instruction.outputShapes[0]
      Spatial.pad(x[0], batch: i[0], inH: i[1], inW: i[2], channels: i[3], window: window, outH: o[1], outW: o[2],
                  into: y[0], context: ctx)
    case .globalAvgPool:
      let i = instruction.inputShapes[0]
      Elementwise.globalAveragePool(x[0], batch: i[0], pixels: i[1] * i[2], channels: i[3], into: y[0], context: ctx)
    case .globalAvgPoolGrad:
      let o = instruction.outputShapes[0]
      Elementwise.globalAveragePoolGrad(x[0], batch: o[0], pixels: o[1] * o[2], channels: o[3], into: y[0], context: ctx)
    case let .matmul(tA, tB):
      let a = instruction.inputShapes[0], b = instruction.inputShapes[1], o = instruction.outputShapes[0]
      GEMM.compute(transA: tA, transB: tB, m: o[0], n: o[1], k: tA ? a[0] : a[1], a: x[0], lda: a[1],
                   b: x[1], ldb: b[1], c: y[0], ldc: o[1], context: ctx)
    case .biasAdd:
      let (rows, c) = rowsAndChannels(instruction.inputShapes[0])
      Elementwise.biasAdd(x[0], bias: x[1], rows: rows, channels: c, into: y[0], context: ctx)
    case .biasAddGrad:
      let (rows, c) = rowsAndChannels(instruction.inputShapes[0])
      Elementwise.sumRows(x[0], rows: rows, channels: c, into: y[0], context: ctx)
    case let .softmaxCrossEntropy(labelSmoothing):
      let l = instruction.inputShapes[0]
      try checkLabels(instruction, batch: l[0], classes: l[1])
      y[0][0] = SoftmaxCrossEntropy.loss(logits: x[0], labels: x[1], batch: l[0], classes: l[1], labelSmoothing: labelSmoothing)
    case let .softmaxCrossEntropyGrad(labelSmoothing):
      let l = instruction.inputShapes[0]
      try checkLabels(instruction, batch: l[0], classes: l[1])
      SoftmaxCrossEntropy.gradient(logits: x[0], labels: x[1], batch: l[0], classes: l[1], labelSmoothing: labelSmoothing,
                                   lossGradient: x[2][0], into: y[0])
    case .l2Loss:
      y[0][0] = Elementwise.halfSquaredNorm(x[0], count: instruction.inputShapes[0].elementCount)
    case .reduceSum:
      y[0][0] = Elementwise.sum(x[0], count: instruction.inputShapes[0].elementCount)
    case .reduceMean:
      let n = instruction.inputShapes[0].elementCount
      y[0][0] = Elementwise.sum(x[0], count: n) / Float(max(n, 1))
    case let .broadcastScalar(scale):
      Elementwise.fill(y[0], count: count, with: x[0][0] * scale, context: ctx)
    case let .applyRMSProp(decay, momentum, epsilon):
      TrainingOps.applyRMSProp(weights: x[0], ms: x[1], mom: x[2], gradients: x[3], learningRate: x[4][0], decay: decay,
                               momentum: momentum, epsilon: epsilon, count: count, into: y[0], newMS: y[1], newMom: y[2], context: ctx)
    case let .applyMomentum(momentum):
      TrainingOps.applyMomentum(weights: x[0], accumulation: x[1], gradients: x[2], learningRate: x[3][0], momentum: momentum,
                                count: count, into: y[0], newAccumulation: y[1], context: ctx)
    case .applyGradientDescent:
      TrainingOps.applyGradientDescent(weights: x[0], gradients: x[1], learningRate: x[2][0], count: count, into: y[0], context: ctx)
    case let .movingAverage(scale):
      TrainingOps.movingAverage(shadow: x[0], value: x[1], decay: x[2][0], scale: scale, count: count, into: y[0], context: ctx)
    case let .stepSchedule(schedule):
      y[0][0] = Float(schedule.value(at: Int(x[0][0])))
    case .allReduceMean:
      try allReduceInstruction(instruction)
    }
  }

  private func allReduceInstruction(_ instruction: Instruction) throws(ExecutionError) {
    let counts = instruction.outputShapes.map(\.elementCount)
    guard let allReduce else {
      for k in counts.indices { Elementwise.copy(instruction.inputs[k], to: instruction.outputs[k], count: counts[k], context: context) }
      return
    }
    do { try allReduce(Array(instruction.inputs), instruction.outputs, counts) } catch {
      throw .allReduceFailed(op: graph.nodes[instruction.node].name, reason: "\(error)")
    }
  }

  private func rowsAndChannels(_ shape: Shape) -> (Int, Int) {
    let c = max(shape.dims.last ?? 1, 1)
    return (shape.elementCount / c, c)
  }

  private func checkLabels(_ instruction: Instruction, batch: Int, classes: Int) throws(ExecutionError) {
    if !SoftmaxCrossEntropy.labelsAreValid(instruction.inputs[1], batch: batch, classes: classes) {
      throw .invalidLabels(op: graph.nodes[instruction.node].name, classes: classes)
    }
  }
}
