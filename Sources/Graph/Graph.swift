import Tensor

/// One output of one node.
public struct Value: Hashable, Sendable, CustomStringConvertible {
  public let node: Int
  public let output: Int
  public init(node: Int, output: Int = 0) { self.node = node; self.output = output }
  public var description: String { output == 0 ? "%\(node)" : "%\(node)#\(output)" }
}

/// An op applied to earlier values, with the shapes of its outputs.
public struct Node: Hashable, Sendable {
  public let op: Op
  public let inputs: [Value]
  public let outputs: [Shape]
  /// Scoped name, e.g. `cell_0/comb_iter_1/left/conv2d`, used in errors and plan dumps.
  public let name: String
}

/// A dataflow graph of float32 tensors: the IR every backend runs.
///
/// Nodes are appended in order and may only use earlier nodes, so the node order is already a
/// topological order. Every append runs shape inference (`Op.inferShapes`): a mismatch throws a
/// `GraphError` naming the op, its inputs and their shapes, so no kernel ever sees a bad shape.
/// Passes (autodiff, memory planning) read the graph; autodiff appends to it.
public struct Graph: Sendable {
  public private(set) var nodes: [Node] = []
  /// Prefix for the names of nodes added next (`withScope`).
  public private(set) var scope: [String] = []

  public init() {}

  public func shape(_ value: Value) -> Shape { nodes[value.node].outputs[value.output] }
  public func node(_ value: Value) -> Node { nodes[value.node] }

  /// Appends a node after checking and inferring its shapes. Returns its first output.
  @discardableResult
  public mutating func add(_ op: Op, _ inputs: [Value], name: String? = nil, outputShapes: [Shape]? = nil) throws(GraphError) -> Value {
    let nodeName = (scope + [name ?? op.name]).joined(separator: "/")
    for value in inputs where value.node >= nodes.count || value.output >= nodes[value.node].outputs.count {
      throw GraphError.unknownValue(op: nodeName, value: value)
    }
    let shapes = try op.inferShapes(inputs.map(shape), declared: outputShapes, name: nodeName)
    nodes.append(Node(op: op, inputs: inputs, outputs: shapes, name: nodeName))
    return Value(node: nodes.count - 1)
  }

  /// Runs `body` with `name` appended to the scope of new node names.
  public mutating func withScope<T, E: Error>(_ name: String, _ body: (inout Graph) throws(E) -> T) throws(E) -> T {
    scope.append(name)
    defer { scope.removeLast() }
    return try body(&self)
  }

  /// Re-runs shape inference on every node and checks that inputs precede their users: the IR's
  /// invariants, checked in tests after every pass.
  public func verify() throws(GraphError) {
    for (index, node) in nodes.enumerated() {
      for value in node.inputs where value.node >= index || value.output >= nodes[value.node].outputs.count {
        throw GraphError.unknownValue(op: node.name, value: value)
      }
      let shapes = try node.op.inferShapes(node.inputs.map(shape), declared: node.outputs, name: node.name)
      if shapes != node.outputs {
        throw GraphError.shapeMismatch(op: node.name, inputs: node.inputs.map(shape),
                                       reason: "recorded outputs \(node.outputs) but inference gives \(shapes)")
      }
    }
  }

  /// One line per node: `%12 = conv2d(%3, %11) [8,16,16,32]  cell_0/…`.
  public var dump: String {
    nodes.enumerated().map { index, node in
      let args = node.inputs.map(\.description).joined(separator: ", ")
      let shapes = node.outputs.map(\.description).joined(separator: ", ")
      return "%\(index) = \(node.op.name)(\(args)) \(shapes)  \(node.name)"
    }.joined(separator: "\n")
  }
}

/// Errors found while building, differentiating or planning a graph. They are the program's bugs or
/// a model configuration that cannot work; each says which op and which shapes.
public enum GraphError: Error, CustomStringConvertible, Equatable {
  case shapeMismatch(op: String, inputs: [Shape], reason: String)
  case unknownValue(op: String, value: Value)
  case notDifferentiable(op: String, reason: String)
  case invalidRequest(String)
  /// The plan needs more memory than the process has (bytes).
  case insufficientMemory(needed: Int, available: Int)

  public var description: String {
    switch self {
    case let .shapeMismatch(op, inputs, reason):
      "\(op): \(reason) (input shapes: \(inputs.map(\.description).joined(separator: ", ")))"
    case let .unknownValue(op, value):
      "\(op): input \(value) does not exist before this node"
    case let .notDifferentiable(op, reason):
      "\(op): cannot differentiate: \(reason)"
    case let .invalidRequest(message):
      message
    case let .insufficientMemory(needed, available):
      "the step needs \(GraphError.gibibytes(needed)) GiB of memory and this process has \(GraphError.gibibytes(available)) GiB"
    }
  }
}

extension GraphError {
  static func gibibytes(_ bytes: Int) -> String {
    let tenths = (Double(bytes) / 1_073_741_824 * 10).rounded() / 10
    return String(tenths)
  }
}
