import Testing
import Graph
import Tensor

/// Deterministic test data: uniform in [lo, hi) from `CounterRandom`.
func uniform(_ count: Int, seed: UInt64, in range: ClosedRange<Float> = -1...1) -> [Float] {
  (0..<count).map { range.lowerBound + CounterRandom.uniform(seed: seed, stream: 3, index: UInt64($0)) * (range.upperBound - range.lowerBound) }
}

/// Values at least `gap` apart in random order, with random signs kept away from 0: no ties for max
/// pooling and no ReLU kinks within a finite-difference step.
func distinct(_ count: Int, seed: UInt64, gap: Float = 0.05) -> [Float] {
  var values = (0..<count).map { Float($0) * gap + 0.1 }
  for i in stride(from: count - 1, to: 0, by: -1) {
    let j = Int(CounterRandom.bits(seed: seed, stream: 5, index: UInt64(i)) % UInt64(i + 1))
    values.swapAt(i, j)
  }
  return values.enumerated().map { i, v in CounterRandom.uniform(seed: seed, stream: 6, index: UInt64(i)) < 0.5 ? -v : v }
}

struct Parameter {
  var name: String
  var shape: Shape
  var values: [Float]
  init(_ name: String, _ shape: Shape, _ values: [Float]? = nil, seed: UInt64 = 1) {
    self.name = name; self.shape = shape
    self.values = values ?? uniform(shape.elementCount, seed: seed)
  }
}

/// Checks reverse-mode gradients against central differences of the same float32 graph.
///
/// Tolerance: central differences with step h have truncation error O(h²·f‴) and rounding error
/// about ε_f32·|loss|/h. With h = 1e-2 and losses of order 10–100 the rounding term is ≈ 1e-4–1e-3
/// absolute, so a gradient passes when |numeric − analytic| ≤ 3e-3 + 1e-2·|analytic|. A wrong rule
/// (a missing term, a transposed index, a lost fan-out contribution) misses by far more.
struct GradientChecker {
  var context = KernelContext(threads: 2)
  var step: Float = 1e-2
  var absoluteTolerance: Float = 3e-3
  var relativeTolerance: Float = 1e-2
  /// Elements checked per parameter (spread evenly); all when the parameter is smaller.
  var elementsPerParameter = 48

  /// `build` returns the tensor under test; the checked loss is Σ (y + noise)² / 2 with fixed noise,
  /// so every output element gets its own random weight in the gradient.
  func checkOp(_ parameters: [Parameter], inputs: [(String, Shape, [Float])] = [], sourceLocation: SourceLocation = #_sourceLocation,
               _ build: (inout Graph, [Value], [Value]) throws -> Value) throws {
    try checkLoss(parameters, inputs: inputs, sourceLocation: sourceLocation) { g, p, i in
      let y = try build(&g, p, i)
      let noise = try g.input("noise", g.shape(y))
      return (try g.l2Loss(g.add(y, noise)), [(noise, uniform(g.shape(y).elementCount, seed: 99))])
    }
  }

  /// `build` returns a scalar loss plus any extra inputs it declared, with their values.
  func checkLoss(_ parameters: [Parameter], inputs: [(String, Shape, [Float])] = [], sourceLocation: SourceLocation = #_sourceLocation,
                 _ build: (inout Graph, [Value], [Value]) throws -> (Value, [(Value, [Float])])) throws {
    var g = Graph()
    let p = try parameters.map { try g.parameter($0.name, $0.shape) }
    let i = try inputs.map { try g.input($0.0, $0.1) }
    let (loss, extra) = try build(&g, p, i)
    try checkGraph(g, loss: loss, parameters: Array(zip(p, parameters)),
                   feeds: Array(zip(i, inputs.map(\.2))) + extra, sourceLocation: sourceLocation)
  }

  /// Checks the gradients of `loss` with respect to the given parameters of an already built graph.
  func checkGraph(_ graph: Graph, loss: Value, parameters list: [(Value, Parameter)], feeds: [(Value, [Float])],
                  sourceLocation: SourceLocation = #_sourceLocation) throws {
    var g = graph
    let p = list.map(\.0), parameters = list.map(\.1)
    let grads = try g.gradients(of: loss, withRespectTo: p)
    try g.verify()
    let executor = try Executor(graph: g, outputs: [loss] + grads, context: context)
    for (value, parameter) in list { executor.write(value, parameter.values) }
    for (value, data) in feeds { executor.write(value, data) }
    try executor.run()
    let analytic = grads.map { executor.read($0) }

    for (index, parameter) in parameters.enumerated() {
      let storage = executor.pointer(p[index])
      let count = parameter.shape.elementCount
      let stride = max(1, count / elementsPerParameter)
      var worst: (Float, Int, Float, Float) = (0, 0, 0, 0)
      for e in Swift.stride(from: 0, to: count, by: stride) {
        let original = storage[e]
        storage[e] = original + step
        try executor.run()
        let plus = executor.read(loss)[0]
        storage[e] = original - step
        try executor.run()
        let minus = executor.read(loss)[0]
        storage[e] = original
        let numeric = (plus - minus) / (2 * step)
        let exact = analytic[index][e]
        let excess = abs(numeric - exact) - (absoluteTolerance + relativeTolerance * abs(exact))
        if excess > worst.0 { worst = (excess, e, numeric, exact) }
      }
      #expect(worst.0 <= 0, "\(parameter.name)[\(worst.1)]: numeric \(worst.2) vs analytic \(worst.3)", sourceLocation: sourceLocation)
    }
  }
}
