import Tensor

/// Named float32 tensors: optimizer slots, moving averages, batch-norm statistics. Names follow
/// TensorFlow's (`<var>/RMSProp`, `<var>/ExponentialMovingAverage`) so a
/// checkpoint reads like the reference's. Insertion order is kept: it is the checkpoint order.
public final class TensorStore {
  public struct Entry {
    public let name: String
    public let shape: Shape
    public let pointer: UnsafeMutablePointer<Float>
  }

  public private(set) var entries: [Entry] = []
  private var index: [String: Int] = [:]
  private var owned: [UnsafeMutablePointer<Float>] = []

  public init() {}

  deinit { for pointer in owned { pointer.deallocate() } }

  /// Adds a tensor filled with `value` and returns its storage.
  @discardableResult
  public func add(_ name: String, _ shape: Shape, filledWith value: Float) -> UnsafeMutablePointer<Float> {
    precondition(index[name] == nil, "tensor store: \(name) added twice")
    let pointer = UnsafeMutablePointer<Float>.allocateAligned(shape.elementCount)
    pointer.initialize(repeating: value, count: shape.elementCount)
    owned.append(pointer)
    adopt(name, shape, pointer)
    return pointer
  }

  /// Adds a name for memory owned elsewhere (a graph parameter of an executor that outlives the store).
  public func adopt(_ name: String, _ shape: Shape, _ pointer: UnsafeMutablePointer<Float>) {
    precondition(index[name] == nil, "tensor store: \(name) added twice")
    index[name] = entries.count
    entries.append(Entry(name: name, shape: shape, pointer: pointer))
  }

  public subscript(name: String) -> Entry? { index[name].map { entries[$0] } }
}
