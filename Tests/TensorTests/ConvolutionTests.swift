import Testing
import Tensor

/// A convolution case: input NHWC, kernel, strides, dilation, padding, output channels.
struct ConvCase: CustomTestStringConvertible, Sendable {
  var input: [Int]
  var kernel: (Int, Int)
  var strides: (Int, Int) = (1, 1)
  var dilations: (Int, Int) = (1, 1)
  var padding: Padding = .same
  var outChannels = 5
  var testDescription: String { "\(input) k\(kernel) s\(strides) d\(dilations) \(padding.rawValue) →\(outChannels)" }
  var geometry: WindowGeometry {
    WindowGeometry(input: Shape(input), window: kernel, strides: strides, dilations: dilations, padding: padding,
                   outChannels: outChannels)!
  }
}

let convCases: [ConvCase] = [
  ConvCase(input: [2, 7, 9, 3], kernel: (3, 3)),
  ConvCase(input: [2, 8, 8, 17], kernel: (3, 3), strides: (2, 2), outChannels: 9),
  ConvCase(input: [1, 9, 7, 11], kernel: (1, 7), strides: (1, 2)),
  ConvCase(input: [1, 7, 9, 11], kernel: (7, 1), strides: (2, 1), outChannels: 13),
  ConvCase(input: [3, 5, 5, 4], kernel: (1, 1), outChannels: 19),
  ConvCase(input: [2, 9, 9, 6], kernel: (1, 1), strides: (2, 2), outChannels: 7),
  ConvCase(input: [2, 11, 11, 3], kernel: (3, 3), strides: (2, 2), padding: .valid, outChannels: 8),
  ConvCase(input: [1, 10, 10, 5], kernel: (3, 3), dilations: (2, 2)),
  ConvCase(input: [2, 6, 6, 9], kernel: (5, 5), strides: (3, 3), padding: .valid, outChannels: 4),
  ConvCase(input: [1, 4, 4, 2], kernel: (4, 4), padding: .valid, outChannels: 3),
  // Enough pixels (16,384) for the split-k pointwise filter gradient, with ragged chunks.
  ConvCase(input: [4, 64, 64, 9], kernel: (1, 1), outChannels: 5),
  // And for the split-k windowed filter gradient: 16,800 and 16,560 output pixels, ragged chunks.
  ConvCase(input: [4, 60, 70, 6], kernel: (3, 3), outChannels: 7),
  ConvCase(input: [8, 90, 92, 3], kernel: (3, 3), strides: (2, 2), outChannels: 4),
  // C_in a multiple of 16: the 6×16 tile reads the windows straight from the image (runs of
  // pixels per output row, cut by the padding, strides and dilation); 7 output channels leave a
  // ragged row tile.
  ConvCase(input: [16, 32, 33, 16], kernel: (3, 3), outChannels: 7),
  ConvCase(input: [16, 64, 66, 16], kernel: (3, 3), strides: (2, 2), outChannels: 5),
  ConvCase(input: [12, 45, 47, 16], kernel: (1, 7), dilations: (1, 2), padding: .valid, outChannels: 4),
  // One input channel and a 9×9 window: 81 taps a KC range, so the indirect forward's blocks shrink
  // to keep its pointers within 64 KiB of stack.
  ConvCase(input: [2, 20, 21, 1], kernel: (9, 9), outChannels: 3),
]

@Suite struct ConvolutionTests {
  /// Each test gets its own pool: a KernelContext serves one caller at a time.
  let context = KernelContext(threads: 2)

  /// The split-k filter gradient's chunks are fixed by the pixel count, so its bits are the same
  /// for any number of threads.
  @Test func splitFilterGradientIsBitwiseIndependentOfThreadCount() {
    let g = ConvCase(input: [4, 60, 70, 6], kernel: (3, 3), outChannels: 7).geometry
    let x = randomArray(g.inputShape.elementCount, seed: 31), dy = randomArray(g.outputShape.elementCount, seed: 32)
    let workspace = UnsafeMutablePointer<Float>.allocateAligned(Conv2D.workspaceElements(g))
    defer { workspace.deallocate() }
    var results: [[Float]] = []
    for threads in [1, 2, 3] {
      let context = KernelContext(threads: threads)
      var dw = [Float](repeating: .nan, count: g.kh * g.kw * g.inC * g.outC)
      dw.withUnsafeMutableBufferPointer {
        Conv2D.backpropFilter(g, input: x, outputGradient: dy, filterGradient: $0.baseAddress!, workspace: workspace, context: context)
      }
      results.append(dw)
    }
    #expect(results[0] == results[1] && results[1] == results[2])
  }

  /// Blocks far smaller than the caches choose (MC 12 rows, KC 64): the direct filter gradient
  /// packs dy in several blocks of channels and the indirect forward runs many blocks and KC steps.
  @Test func smallBlocksMatchTheReference() {
    let context = KernelContext(threads: 2, gemm: .narrow, blocking: GEMMBlocking(kc: 64, mc: 12, nc: 64))
    expectAllPassesMatchTheReference(ConvCase(input: [16, 32, 33, 16], kernel: (3, 3), outChannels: 20).geometry,
                                     context: context, label: "MC 12, KC 64")
  }

  /// With every register tile this CPU runs: the packers follow the tile's MR×NR.
  @Test(arguments: convCases, GEMMKernel.runnable)
  func conv2dFastMatchesReference(_ c: ConvCase, variant: GEMMKernel.Variant) {
    expectAllPassesMatchTheReference(c.geometry, context: KernelContext(threads: 2, gemm: .variant(variant)), label: "\(variant)")
  }

  /// Forward, input gradient and filter gradient of the fast kernels against their reference twins.
  private func expectAllPassesMatchTheReference(_ g: WindowGeometry, context: KernelContext, label: String) {
    let x = randomArray(g.inputShape.elementCount, seed: 11)
    let w = randomArray(g.kh * g.kw * g.inC * g.outC, seed: 12)
    let dy = randomArray(g.outputShape.elementCount, seed: 13)
    let workspace = UnsafeMutablePointer<Float>.allocateAligned(Conv2D.workspaceElements(g))
    defer { workspace.deallocate() }

    var fast = [Float](repeating: .nan, count: g.outputShape.elementCount), slow = fast
    fast.withUnsafeMutableBufferPointer { Conv2D.forward(g, input: x, filter: w, output: $0.baseAddress!, workspace: workspace, context: context) }
    slow.withUnsafeMutableBufferPointer { Conv2D.forwardReference(g, input: x, filter: w, output: $0.baseAddress!) }
    #expect(maxRelativeError(fast, slow) < 1e-4, "forward, \(label)")

    var fastDx = [Float](repeating: .nan, count: x.count), slowDx = fastDx
    fastDx.withUnsafeMutableBufferPointer { Conv2D.backpropInput(g, outputGradient: dy, filter: w, inputGradient: $0.baseAddress!, workspace: workspace, context: context) }
    slowDx.withUnsafeMutableBufferPointer { Conv2D.backpropInputReference(g, outputGradient: dy, filter: w, inputGradient: $0.baseAddress!) }
    #expect(maxRelativeError(fastDx, slowDx) < 1e-4, "backprop input, \(label)")

    var fastDw = [Float](repeating: .nan, count: w.count), slowDw = fastDw
    fastDw.withUnsafeMutableBufferPointer { Conv2D.backpropFilter(g, input: x, outputGradient: dy, filterGradient: $0.baseAddress!, workspace: workspace, context: context) }
    slowDw.withUnsafeMutableBufferPointer { Conv2D.backpropFilterReference(g, input: x, outputGradient: dy, filterGradient: $0.baseAddress!) }
    #expect(maxRelativeError(fastDw, slowDw) < 1e-4, "backprop filter, \(label)")
  }


  @Test(arguments: convCases.filter { $0.dilations == (1, 1) || true })
  func depthwiseFastMatchesReference(_ c: ConvCase) {
    var g = c.geometry
    g.outC = g.inC
    let x = randomArray(g.inputShape.elementCount, seed: 21)
    let w = randomArray(g.kh * g.kw * g.inC, seed: 22)
    let dy = randomArray(g.outputShape.elementCount, seed: 23)
    let workspace = UnsafeMutablePointer<Float>.allocateAligned(DepthwiseConv2D.workspaceElements(g))
    defer { workspace.deallocate() }

    var fast = [Float](repeating: 0, count: g.outputShape.elementCount), slow = fast
    fast.withUnsafeMutableBufferPointer { DepthwiseConv2D.forward(g, input: x, filter: w, output: $0.baseAddress!, context: context) }
    slow.withUnsafeMutableBufferPointer { DepthwiseConv2D.forwardReference(g, input: x, filter: w, output: $0.baseAddress!) }
    #expect(maxRelativeError(fast, slow) < 1e-5, "forward")

    var fastDx = [Float](repeating: .nan, count: x.count), slowDx = fastDx
    fastDx.withUnsafeMutableBufferPointer { DepthwiseConv2D.backpropInput(g, outputGradient: dy, filter: w, inputGradient: $0.baseAddress!, context: context) }
    slowDx.withUnsafeMutableBufferPointer { DepthwiseConv2D.backpropInputReference(g, outputGradient: dy, filter: w, inputGradient: $0.baseAddress!) }
    #expect(maxRelativeError(fastDx, slowDx) < 1e-5, "backprop input")

    var fastDw = [Float](repeating: .nan, count: w.count), slowDw = fastDw
    fastDw.withUnsafeMutableBufferPointer { DepthwiseConv2D.backpropFilter(g, input: x, outputGradient: dy, filterGradient: $0.baseAddress!, workspace: workspace, context: context) }
    slowDw.withUnsafeMutableBufferPointer { DepthwiseConv2D.backpropFilterReference(g, input: x, outputGradient: dy, filterGradient: $0.baseAddress!) }
    #expect(maxRelativeError(fastDw, slowDw) < 1e-4, "backprop filter")
  }
}

@Suite struct PaddingTests {
  /// Each test gets its own pool: a KernelContext serves one caller at a time.
  let context = KernelContext(threads: 2)

  @Test func samePutsTheOddPixelAtTheBottomRight() {
    // 6 inputs, window 3, stride 2: 3 outputs, 1 pixel of padding in total, all of it after.
    #expect(Padding.same.window(input: 6, size: 3, stride: 2)! == (3, 0))
    // 5 inputs: 3 outputs, 2 pixels of padding, one on each side.
    #expect(Padding.same.window(input: 5, size: 3, stride: 2)! == (3, 1))
    // 1x7 on a width of 28, stride 1: 3 before, 3 after.
    #expect(Padding.same.window(input: 28, size: 7, stride: 1)! == (28, 3))
    // AmoebaNet's stem: 224, 3x3 VALID stride 2 → 111.
    #expect(Padding.valid.window(input: 224, size: 3, stride: 2)! == (111, 0))
    // A 5x5 VALID window does not fit a 4x4 input.
    #expect(Padding.valid.window(input: 4, size: 5, stride: 3) == nil)
    // Dilation 2 makes a 3-tap window span 5.
    #expect(Padding.same.window(input: 10, size: 3, stride: 1, dilation: 2)! == (10, 2))
  }

  @Test func sameAveragePoolingDividesByValidInputsOnly() {
    // A 3x3 all-ones image, 3x3 SAME average pool: every output is 1, not 4/9 or 6/9 at the edges.
    let g = WindowGeometry(input: [1, 3, 3, 1], window: (3, 3), strides: (1, 1), padding: .same, outChannels: 1)!
    let x = [Float](repeating: 1, count: 9)
    var y = [Float](repeating: 0, count: 9)
    y.withUnsafeMutableBufferPointer { Pooling.avgPool(g, input: x, output: $0.baseAddress!, context: context) }
    #expect(y == [Float](repeating: 1, count: 9))
    // Max pool 2x2 stride 2 SAME on 3x3: the last row/column window holds only the real pixels.
    let m = WindowGeometry(input: [1, 3, 3, 1], window: (2, 2), strides: (2, 2), padding: .same, outChannels: 1)!
    let v: [Float] = [-1, -2, -3, -4, -5, -6, -7, -8, -9]
    var out = [Float](repeating: 0, count: 4)
    out.withUnsafeMutableBufferPointer { Pooling.maxPool(m, input: v, output: $0.baseAddress!, context: context) }
    #expect(out == [-1, -3, -7, -9])
  }
}

@Suite struct PoolingTests {
  let context = KernelContext(threads: 2)

  @Test(arguments: [((3, 3), (1, 1), Padding.same, 19), ((3, 3), (2, 2), .same, 8), ((2, 2), (2, 2), .same, 5), ((5, 5), (3, 3), .valid, 17)])
  func maxPoolGradMatchesReferenceIncludingTies(window: (Int, Int), strides: (Int, Int), padding: Padding, channels: Int) {
    let g = WindowGeometry(input: [2, 7, 6, channels], window: window, strides: strides, padding: padding, outChannels: channels)!
    // Values rounded to a coarse grid so that windows hold ties: the first maximum must win in both.
    let x = randomArray(g.inputShape.elementCount, seed: 31).map { ($0 * 3).rounded() }
    let dy = randomArray(g.outputShape.elementCount, seed: 32)
    var fast = [Float](repeating: .nan, count: x.count), slow = fast
    fast.withUnsafeMutableBufferPointer { Pooling.maxPoolGrad(g, input: x, outputGradient: dy, inputGradient: $0.baseAddress!, context: context) }
    slow.withUnsafeMutableBufferPointer { Pooling.maxPoolGradReference(g, input: x, outputGradient: dy, inputGradient: $0.baseAddress!) }
    #expect(maxRelativeError(fast, slow) < 1e-6)
  }
}
