/// The extent of a tensor along each axis, outermost first.
///
/// Image tensors are NHWC (`[batch, height, width, channels]`), convolution filters HWIO
/// (`[kh, kw, in, out]`) and depthwise filters `[kh, kw, channels]`, as in TensorFlow.
/// A scalar has no dimensions and one element.
public struct Shape: Hashable, Sendable, CustomStringConvertible, ExpressibleByArrayLiteral {
  public var dims: [Int]

  public init(_ dims: [Int]) { self.dims = dims }
  public init(arrayLiteral elements: Int...) { self.dims = elements }

  public static let scalar = Shape([])

  public var rank: Int { dims.count }
  public var elementCount: Int { dims.reduce(1, *) }
  public var byteCount: Int { elementCount * MemoryLayout<Float>.stride }
  public subscript(axis: Int) -> Int { dims[axis] }

  public var description: String { "[" + dims.map(String.init).joined(separator: ",") + "]" }
}

/// TensorFlow's padding rules for windowed ops.
public enum Padding: String, Hashable, Sendable {
  /// Output size `ceil(in / stride)`; the odd pixel of padding goes at the bottom/right.
  case same = "SAME"
  /// No padding: only windows that fit entirely inside the input.
  case valid = "VALID"

  /// Output size and padding before the first element along one axis.
  /// Returns nil when the window does not fit (VALID with an input smaller than the window).
  public func window(input: Int, size: Int, stride: Int, dilation: Int = 1) -> (output: Int, padBefore: Int)? {
    let effective = (size - 1) * dilation + 1
    switch self {
    case .same:
      let output = (input + stride - 1) / stride
      let total = max((output - 1) * stride + effective - input, 0)
      return (output, total / 2)
    case .valid:
      guard input >= effective else { return nil }
      return ((input - effective) / stride + 1, 0)
    }
  }
}

/// Everything a windowed NHWC kernel (convolution, depthwise convolution, pooling) needs to know
/// about where each window reads. Built once at graph-build time; kernels never recompute padding.
public struct WindowGeometry: Hashable, Sendable {
  public var batch: Int
  public var inH: Int, inW: Int, inC: Int
  public var outH: Int, outW: Int, outC: Int
  public var kh: Int, kw: Int
  public var strideH: Int, strideW: Int
  public var dilationH: Int, dilationW: Int
  public var padTop: Int, padLeft: Int

  /// Nil when the window does not fit the input (VALID padding on too small an input).
  public init?(input: Shape, window: (Int, Int), strides: (Int, Int), dilations: (Int, Int) = (1, 1),
               padding: Padding, outChannels: Int) {
    guard input.rank == 4 else { return nil }
    guard let h = padding.window(input: input[1], size: window.0, stride: strides.0, dilation: dilations.0),
          let w = padding.window(input: input[2], size: window.1, stride: strides.1, dilation: dilations.1)
    else { return nil }
    batch = input[0]; inH = input[1]; inW = input[2]; inC = input[3]
    outH = h.output; outW = w.output; outC = outChannels
    kh = window.0; kw = window.1
    strideH = strides.0; strideW = strides.1
    dilationH = dilations.0; dilationW = dilations.1
    padTop = h.padBefore; padLeft = w.padBefore
  }

  public var inputShape: Shape { [batch, inH, inW, inC] }
  public var outputShape: Shape { [batch, outH, outW, outC] }
  /// Output pixels over the whole batch: the M of the convolution's GEMM.
  public var outputPixels: Int { batch * outH * outW }
  /// Multiply-adds of a dense convolution with this geometry.
  public var convMultiplyAdds: Int { outputPixels * outC * kh * kw * inC }
}
