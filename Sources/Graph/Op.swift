import Tensor

/// Every operation of the IR, in one enum (the op set is small on purpose).
///
/// Ops are coarse and TensorFlow-shaped so that each has one fast CPU kernel and one short StableHLO
/// lowering (`stablehloName`). Windowed ops carry their full `WindowGeometry`, fixed at build time,
/// so kernels never recompute padding. Tensors are float32 NHWC; filters HWIO.
///
/// Inputs are listed in brackets: `conv2d [x, filter]`.
public enum Op: Hashable, Sendable {
  // Leaves.
  /// A tensor fed before every run (images, labels). `[]`
  case input(name: String)
  /// A tensor that persists across runs (weights, BN moving statistics). `[]`
  case parameter(name: String)
  /// A tensor filled with one value. `[]`
  case constant(Float)

  // Convolutions. The geometry holds input, window, strides, dilation and padding.
  case conv2d(WindowGeometry)                         // [x, filter] → y
  case conv2dBackpropInput(WindowGeometry)            // [dy, filter] → dx
  case conv2dBackpropFilter(WindowGeometry)           // [x, dy] → dfilter
  case depthwiseConv2d(WindowGeometry)                // [x, filter [kh, kw, C]] → y
  case depthwiseConv2dBackpropInput(WindowGeometry)   // [dy, filter] → dx
  case depthwiseConv2dBackpropFilter(WindowGeometry)  // [x, dy] → dfilter

  // Pooling.
  case maxPool(WindowGeometry)                        // [x] → y
  case maxPoolGrad(WindowGeometry)                    // [x, dy] → dx
  case avgPool(WindowGeometry)                        // [x] → y
  case avgPoolGrad(WindowGeometry)                    // [dy] → dx

  // Batch normalisation over N·H·W per channel.
  /// With `relu`, y is max(0, normalised): the BN → ReLU pair fused by `fusingBatchNormRelu()`.
  case batchNormTraining(epsilon: Float, relu: Bool)  // [x, gamma, beta] → (y, mean, variance)
  case batchNormInference(epsilon: Float)             // [x, gamma, beta, mean, variance] → y
  /// With `relu`, a sixth input is the fused forward output y, and dy counts only where y > 0.
  case batchNormGrad(epsilon: Float, relu: Bool)      // [x, gamma, mean, variance, dy (, y)] → (dx, dgamma, dbeta)

  // Element-wise.
  case relu                                           // [x] → y
  case reluGrad                                       // [dy, y] → dx
  case add                                            // [a, b] → a + b
  case addN                                           // [x0, x1, …] → Σ, in input order
  case scale(Float)                                   // [x] → x · c
  case multiplyByScalar                               // [x, s (scalar)] → x · s
  /// Inverted dropout with a counter-based mask: (seed, run's random stream, element index).
  /// Its gradient is the same op on dy: the mask is regenerated, never stored.
  case dropout(keepProbability: Float, seed: UInt64)  // [x] → y
  /// Drop-path (NASNet's drop-connect): keeps each *example* whole with probability `keep` (a scalar
  /// input, so the reference's linear ramp can change it every step) and scales kept ones by 1/keep.
  /// The mask is (seed, random stream, example index); the gradient is the same op on dy.
  case dropPath(seed: UInt64)                         // [x NHWC, keep (scalar)] → y

  // Data movement.
  case concat                                         // [x0, x1, …] along channels (last axis)
  case sliceChannels(first: Int, width: Int)          // [x] → x[…, first..<first+width]
  case slice(SpatialWindow)                           // [x] → x[:, top::sh, left::sw, :] (output shape fixed at build)
  case pad(SpatialWindow)                             // [x] → zeros with x at (top + h·sh, left + w·sw)
  case globalAvgPool                                  // [x NHWC] → [N, C]
  case globalAvgPoolGrad                              // [dy [N, C]] → dx NHWC
  case reshape                                        // [x] → same elements, declared shape

  // Dense layers.
  case matmul(transposeA: Bool, transposeB: Bool)     // [a, b] → op(a) · op(b)
  case biasAdd                                        // [x [.., C], bias [C]] → x + bias
  case biasAddGrad                                    // [dy [.., C]] → Σ over rows [C]

  // Losses and reductions (outputs are scalars).
  case softmaxCrossEntropy(labelSmoothing: Float)     // [logits [N, K], labels [N]] → mean loss
  case softmaxCrossEntropyGrad(labelSmoothing: Float) // [logits, labels, dloss] → dlogits
  case l2Loss                                         // [x] → Σ x² / 2
  case reduceSum                                      // [x] → Σ x
  case reduceMean                                     // [x] → Σ x / count
  case broadcastScalar(scale: Float)                  // [s] → every element s · scale (shape fixed at build)

  // Training state. The updates are TensorFlow's training ops, element by element, so a backend may
  // write each result over the state it replaces (`Executor`'s state updates, XLA's donation).
  /// ms = ρ·ms + (1 − ρ)·g²; mom = μ·mom + lr·g/√(ms + ε); w −= mom (`ApplyRMSProp`).
  case applyRMSProp(decay: Float, momentum: Float, epsilon: Float)  // [w, ms, mom, g, lr] → (w, ms, mom)
  /// acc = μ·acc + g; w −= lr·acc (`ApplyMomentum`, no Nesterov).
  case applyMomentum(momentum: Float)                 // [w, acc, g, lr] → (w, acc)
  case applyGradientDescent                           // [w, g, lr] → w − lr·g
  /// shadow − (1 − decay)·(shadow − scale·value): moving averages and BN moving statistics
  /// (`scale` is the variance's Bessel correction).
  case movingAverage(scale: Float)                    // [shadow, value, decay (scalar)] → shadow'
  case stepSchedule(StepSchedule)                     // [step (scalar)] → the schedule's value at step
  /// The data-parallel boundary: each output is its input averaged over the workers. Where there is
  /// one worker it is the identity; a backend hands the inputs to the ring and waits (`Executor.allReduce`).
  case allReduceMean                                  // [g0, g1, …] → (mean g0, mean g1, …)

  /// Short name used in node names, errors and plan dumps.
  public var name: String {
    switch self {
    case .input: "input"
    case .parameter: "parameter"
    case .constant: "constant"
    case .conv2d: "conv2d"
    case .conv2dBackpropInput: "conv2d_backprop_input"
    case .conv2dBackpropFilter: "conv2d_backprop_filter"
    case .depthwiseConv2d: "depthwise_conv2d"
    case .depthwiseConv2dBackpropInput: "depthwise_conv2d_backprop_input"
    case .depthwiseConv2dBackpropFilter: "depthwise_conv2d_backprop_filter"
    case .maxPool: "max_pool"
    case .maxPoolGrad: "max_pool_grad"
    case .avgPool: "avg_pool"
    case .avgPoolGrad: "avg_pool_grad"
    case let .batchNormTraining(_, relu): relu ? "batch_norm_relu_training" : "batch_norm_training"
    case .batchNormInference: "batch_norm_inference"
    case let .batchNormGrad(_, relu): relu ? "batch_norm_relu_grad" : "batch_norm_grad"
    case .relu: "relu"
    case .reluGrad: "relu_grad"
    case .add: "add"
    case .addN: "add_n"
    case .scale: "scale"
    case .multiplyByScalar: "multiply_by_scalar"
    case .dropout: "dropout"
    case .dropPath: "drop_path"
    case .reshape: "reshape"
    case .concat: "concat"
    case .sliceChannels: "slice_channels"
    case .slice: "slice"
    case .pad: "pad"
    case .globalAvgPool: "global_avg_pool"
    case .globalAvgPoolGrad: "global_avg_pool_grad"
    case .matmul: "matmul"
    case .biasAdd: "bias_add"
    case .biasAddGrad: "bias_add_grad"
    case .softmaxCrossEntropy: "softmax_cross_entropy"
    case .softmaxCrossEntropyGrad: "softmax_cross_entropy_grad"
    case .l2Loss: "l2_loss"
    case .reduceSum: "reduce_sum"
    case .reduceMean: "reduce_mean"
    case .broadcastScalar: "broadcast_scalar"
    case .applyRMSProp: "apply_rms_prop"
    case .applyMomentum: "apply_momentum"
    case .applyGradientDescent: "apply_gradient_descent"
    case .movingAverage: "moving_average"
    case .stepSchedule: "step_schedule"
    case .allReduceMean: "all_reduce_mean"
    }
  }

  /// Whether output k may be written over input k while the op runs: element i of every output
  /// reads only element i of the tensor inputs (and scalars), so a state update can happen in place.
  public var updatesInPlace: Bool {
    switch self {
    case .applyRMSProp, .applyMomentum, .applyGradientDescent, .movingAverage, .add: true
    default: false
    }
  }

  /// The StableHLO construct each op lowers to (the XLA backend's contract; see docs/ARCHITECTURE.md).
  public var stablehloName: String {
    switch self {
    case .input, .parameter: "func.func argument"
    case .constant: "stablehlo.constant + broadcast_in_dim"
    case .conv2d, .conv2dBackpropInput, .conv2dBackpropFilter: "stablehlo.convolution"
    case .depthwiseConv2d, .depthwiseConv2dBackpropInput: "stablehlo.convolution (feature_group_count = C)"
    case .depthwiseConv2dBackpropFilter: "stablehlo.convolution (batch_group_count = C)"
    case .maxPool: "stablehlo.reduce_window (max)"
    case .maxPoolGrad: "stablehlo.select_and_scatter"
    case .avgPool: "stablehlo.reduce_window (add) / reduce_window of ones"
    case .avgPoolGrad: "stablehlo.pad (interior) + reduce_window (add)"
    case .batchNormTraining: "stablehlo.batch_norm_training (+ maximum when fused)"
    case .batchNormInference: "stablehlo.batch_norm_inference"
    case .batchNormGrad: "stablehlo.batch_norm_grad (after compare + select when fused)"
    case .relu: "stablehlo.maximum"
    case .reluGrad: "stablehlo.compare + select"
    case .add, .addN: "stablehlo.add"
    case .scale, .multiplyByScalar: "stablehlo.multiply"
    case .dropout, .dropPath: "stablehlo.rng_bit_generator + compare + select"
    case .reshape: "stablehlo.reshape"
    case .concat: "stablehlo.concatenate"
    case .sliceChannels, .slice: "stablehlo.slice"
    case .pad: "stablehlo.pad"
    case .globalAvgPool: "stablehlo.reduce (add) + divide"
    case .globalAvgPoolGrad: "stablehlo.broadcast_in_dim + divide"
    case .matmul: "stablehlo.dot_general"
    case .biasAdd: "stablehlo.broadcast_in_dim + add"
    case .biasAddGrad, .reduceSum, .reduceMean, .l2Loss: "stablehlo.reduce (add)"
    case .softmaxCrossEntropy, .softmaxCrossEntropyGrad: "stablehlo.reduce (max, add) + exponential + log"
    case .broadcastScalar: "stablehlo.broadcast_in_dim"
    case .applyRMSProp, .applyMomentum, .applyGradientDescent, .movingAverage: "stablehlo.multiply + add + sqrt (element-wise, donated)"
    case .stepSchedule: "stablehlo.floor + power + compare + select (f32 scalars)"
    case .allReduceMean: "identity (one program), or the cut between two programs with the ring between"
    }
  }
}
