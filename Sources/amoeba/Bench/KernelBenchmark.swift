import CLI
import Tensor

/// `amoeba bench kernels`: GFLOP/s of sgemm and of convolution forward+backward at the shapes of
/// AmoebaNet-D, each as a fraction of the measured FMA peak. Every kernel is first checked against
/// its reference twin on a small instance of the same shape; a mismatch aborts the benchmark.
struct KernelBenchmark {
  var threadCounts: [Int]
  var repeats: Int
  var json: Bool
  /// Also time each convolution's three passes alone (forward, input gradient, filter gradient).
  var passes: Bool

  init(flags: Flags) throws {
    var flags = flags
    threadCounts = try flags.intList("threads", default: [1, 2])
    repeats = try flags.int("repeats", default: 5)
    json = try flags.bool("json")
    passes = try flags.bool("passes")
    try flags.finish()
  }

  struct Row {
    var name: String
    var threads: Int
    var seconds: Double
    var flops: Double
    var peak: Double
    var gflops: Double { flops / seconds / 1e9 }
  }

  func run() throws {
    if !json {
      print("machine: \(machineDescription()); vector width \(vectorWidth) floats")
      print(pad("kernel", 34) + pad("threads", 8) + pad("median ms", 11) + pad("GFLOP/s", 9) + "of peak")
    }
    var rows: [Row] = []
    for threads in threadCounts {
      let context = KernelContext(threads: threads)
      let peak = FMAPeak.gflops(threads: threads, context: context)
      emit(Row(name: "fma_peak", threads: threads, seconds: 1, flops: peak * 1e9, peak: peak), into: &rows)
      for n in [512, 1024, 2048] {
        try emit(gemm(n, context: context, peak: peak), into: &rows)
      }
      let convs: [(String, [Int], (Int, Int))] = [
        ("conv3x3 64->64 32x32", [32, 32, 32, 64], (3, 3)),
        ("conv3x3 64->64 56x56", [32, 56, 56, 64], (3, 3)),
        ("conv1x7 64->64 28x28", [32, 28, 28, 64], (1, 7)),
        ("conv7x1 64->64 28x28", [32, 28, 28, 64], (7, 1)),
      ]
      for (name, input, window) in convs {
        for row in try conv(name, input: input, window: window, context: context, peak: peak) { emit(row, into: &rows) }
      }
      try emit(depthwise("depthwise3x3 56x56x64", input: [32, 56, 56, 64], context: context, peak: peak), into: &rows)
    }
    if json {
      let items = rows.map {
        "{\"kernel\":\"\($0.name)\",\"threads\":\($0.threads),\"median_ms\":\(round3($0.seconds * 1e3)),\"gflops\":\(round3($0.gflops)),\"fraction_of_peak\":\(round3($0.gflops / $0.peak))}"
      }
      print("[\n  " + items.joined(separator: ",\n  ") + "\n]")
    }
  }

  private func emit(_ row: Row, into rows: inout [Row]) {
    rows.append(row)
    if json { return }
    let ms = row.name == "fma_peak" ? "-" : String(round3(row.seconds * 1e3))
    print(pad(row.name, 34) + pad(String(row.threads), 8) + pad(ms, 11) + pad(String(round1(row.gflops)), 9)
          + String(round1(100 * row.gflops / row.peak)) + "%")
  }

  // MARK: Cases

  private func gemm(_ n: Int, context: KernelContext, peak: Double) throws -> Row {
    try checkGemm(context: context)
    let a = randomBuffer(n * n, seed: 1), b = randomBuffer(n * n, seed: 2), c = randomBuffer(n * n, seed: 3)
    defer { a.deallocate(); b.deallocate(); c.deallocate() }
    let seconds = medianSeconds(repeats: repeats) {
      GEMM.compute(transA: false, transB: false, m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, c: c, ldc: n, context: context)
    }
    return Row(name: "sgemm \(n)^3", threads: context.threadCount, seconds: seconds, flops: 2 * Double(n * n * n), peak: peak)
  }

  private func conv(_ name: String, input: [Int], window: (Int, Int), context: KernelContext, peak: Double) throws -> [Row] {
    let g = WindowGeometry(input: Shape(input), window: window, strides: (1, 1), padding: .same, outChannels: input[3])!
    try checkConv(g, context: context)
    let x = randomBuffer(g.inputShape.elementCount, seed: 4), w = randomBuffer(g.kh * g.kw * g.inC * g.outC, seed: 5)
    let y = randomBuffer(g.outputShape.elementCount, seed: 6), dy = randomBuffer(g.outputShape.elementCount, seed: 7)
    let dx = randomBuffer(g.inputShape.elementCount, seed: 8), dw = randomBuffer(g.kh * g.kw * g.inC * g.outC, seed: 9)
    let workspace = UnsafeMutablePointer<Float>.allocateAligned(Conv2D.workspaceElements(g))
    defer { [x, w, y, dy, dx, dw, workspace].forEach { $0.deallocate() } }
    let forward = { Conv2D.forward(g, input: x, filter: w, output: y, workspace: workspace, context: context) }
    let input = { Conv2D.backpropInput(g, outputGradient: dy, filter: w, inputGradient: dx, workspace: workspace, context: context) }
    let filter = { Conv2D.backpropFilter(g, input: x, outputGradient: dy, filterGradient: dw, workspace: workspace, context: context) }
    var rows: [Row] = []
    if passes {
      for (pass, body) in [("fwd", forward), ("bwd input", input), ("bwd filter", filter)] {
        rows.append(Row(name: name + " " + pass, threads: context.threadCount, seconds: medianSeconds(repeats: repeats, body),
                        flops: 2 * Double(g.convMultiplyAdds), peak: peak))
      }
    }
    let seconds = medianSeconds(repeats: repeats) { forward(); input(); filter() }
    return rows + [Row(name: name + " fwd+bwd", threads: context.threadCount, seconds: seconds,
                       flops: 3 * 2 * Double(g.convMultiplyAdds), peak: peak)]
  }

  private func depthwise(_ name: String, input: [Int], context: KernelContext, peak: Double) throws -> Row {
    let g = WindowGeometry(input: Shape(input), window: (3, 3), strides: (1, 1), padding: .same, outChannels: input[3])!
    try checkDepthwise(g, context: context)
    let x = randomBuffer(g.inputShape.elementCount, seed: 4), w = randomBuffer(9 * g.inC, seed: 5)
    let y = randomBuffer(g.outputShape.elementCount, seed: 6), dy = randomBuffer(g.outputShape.elementCount, seed: 7)
    let dx = randomBuffer(g.inputShape.elementCount, seed: 8), dw = randomBuffer(9 * g.inC, seed: 9)
    let workspace = UnsafeMutablePointer<Float>.allocateAligned(DepthwiseConv2D.workspaceElements(g))
    defer { [x, w, y, dy, dx, dw, workspace].forEach { $0.deallocate() } }
    let seconds = medianSeconds(repeats: repeats) {
      DepthwiseConv2D.forward(g, input: x, filter: w, output: y, context: context)
      DepthwiseConv2D.backpropInput(g, outputGradient: dy, filter: w, inputGradient: dx, context: context)
      DepthwiseConv2D.backpropFilter(g, input: x, outputGradient: dy, filterGradient: dw, workspace: workspace, context: context)
    }
    return Row(name: name + " fwd+bwd", threads: context.threadCount, seconds: seconds,
               flops: 3 * 2 * Double(g.outputPixels * 9 * g.inC), peak: peak)
  }

  // MARK: Checks against the reference twins (small instances of the same kernels)

  private func checkGemm(context: KernelContext) throws {
    let m = 67, n = 45, k = 300
    let a = randomBuffer(m * k, seed: 11), b = randomBuffer(k * n, seed: 12)
    let fast = randomBuffer(m * n, seed: 13), slow = randomBuffer(m * n, seed: 13)
    defer { [a, b, fast, slow].forEach { $0.deallocate() } }
    GEMM.compute(transA: false, transB: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c: fast, ldc: n, context: context)
    GEMM.reference(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0, c: slow, ldc: n)
    try compare("sgemm", fast, slow, m * n)
  }

  private func checkConv(_ full: WindowGeometry, context: KernelContext) throws {
    var g = full
    g.batch = 1
    let x = randomBuffer(g.inputShape.elementCount, seed: 14), w = randomBuffer(g.kh * g.kw * g.inC * g.outC, seed: 15)
    let fast = randomBuffer(g.outputShape.elementCount, seed: 0), slow = randomBuffer(g.outputShape.elementCount, seed: 0)
    let workspace = UnsafeMutablePointer<Float>.allocateAligned(Conv2D.workspaceElements(g))
    defer { [x, w, fast, slow, workspace].forEach { $0.deallocate() } }
    Conv2D.forward(g, input: x, filter: w, output: fast, workspace: workspace, context: context)
    Conv2D.forwardReference(g, input: x, filter: w, output: slow)
    try compare("conv2d", fast, slow, g.outputShape.elementCount)
  }

  private func checkDepthwise(_ full: WindowGeometry, context: KernelContext) throws {
    var g = full
    g.batch = 1
    let x = randomBuffer(g.inputShape.elementCount, seed: 16), w = randomBuffer(g.kh * g.kw * g.inC, seed: 17)
    let fast = randomBuffer(g.outputShape.elementCount, seed: 0), slow = randomBuffer(g.outputShape.elementCount, seed: 0)
    defer { [x, w, fast, slow].forEach { $0.deallocate() } }
    DepthwiseConv2D.forward(g, input: x, filter: w, output: fast, context: context)
    DepthwiseConv2D.forwardReference(g, input: x, filter: w, output: slow)
    try compare("depthwise_conv2d", fast, slow, g.outputShape.elementCount)
  }

  private func compare(_ kernel: String, _ fast: UnsafePointer<Float>, _ slow: UnsafePointer<Float>, _ count: Int) throws {
    for i in 0..<count where abs(fast[i] - slow[i]) > 1e-4 * max(1, abs(slow[i])) {
      throw BenchmarkError("\(kernel): fast kernel disagrees with its reference at element \(i): \(fast[i]) vs \(slow[i])")
    }
  }
}

struct BenchmarkError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

func randomBuffer(_ count: Int, seed: UInt64) -> UnsafeMutablePointer<Float> {
  let buffer = UnsafeMutablePointer<Float>.allocateAligned(count)
  for i in 0..<count { buffer[i] = CounterRandom.uniform(seed: seed, stream: 0, index: UInt64(i)) * 2 - 1 }
  return buffer
}

func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
func round1(_ x: Double) -> Double { (x * 10).rounded() / 10 }
func round3(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }
