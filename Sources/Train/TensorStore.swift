import Tensor

/// Named float32 tensors that live outside any graph: optimizer slots, moving averages, batch-norm
/// statistics. Names follow TensorFlow's (`<var>/RMSProp`, `<var>/ExponentialMovingAverage`) so a
/// checkpoint reads like the reference's. Insertion order is kept: it is the checkpoint order.
public final class TensorStore {
  public struct Entry {
    public let name: String
    public let shape: Shape
    public let pointer: UnsafeMutablePointer<Float>
  }

  public private(set) var entries: [Entry] = []
  private var index: [String: Int] = [:]

  public init() {}

  deinit { for entry in entries { entry.pointer.deallocate() } }

  /// Adds a tensor filled with `value` and returns its storage.
  @discardableResult
  public func add(_ name: String, _ shape: Shape, filledWith value: Float) -> UnsafeMutablePointer<Float> {
    precondition(index[name] == nil, "tensor store: \(name) added twice")
    let pointer = UnsafeMutablePointer<Float>.allocateAligned(shape.elementCount)
    pointer.initialize(repeating: value, count: shape.elementCount)
    index[name] = entries.count
    entries.append(Entry(name: name, shape: shape, pointer: pointer))
    return pointer
  }

  public subscript(name: String) -> Entry? { index[name].map { entries[$0] } }
}
