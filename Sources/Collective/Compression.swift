/// Gradient compression on the wire: 16-bit floats halve the bytes each all-reduce sends. Off by
/// default. bfloat16 keeps float32's exponent range (no overflow; 8 bits of mantissa); float16 keeps
/// 11 bits of mantissa but overflows above 65504, so values are pre-scaled by 1/ranks before they are
/// sent — a sum of n scaled values stays within the range any one value had (Horovod's prescale).
/// Additions are done in float32; only the wire carries 16 bits.
public enum WireCompression: String, Sendable, CaseIterable {
  case none, bf16, fp16

  var bytesPerElement: Int { self == .none ? 4 : 2 }

  /// float32 → bfloat16 with round-to-nearest-even (NaN stays NaN).
  @inline(__always)
  static func bfloat16(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    if x.isNaN { return UInt16(bits >> 16) | 0x40 }
    let rounding = 0x7FFF + ((bits >> 16) & 1)
    return UInt16((bits &+ rounding) >> 16)
  }

  @inline(__always)
  static func float(bfloat16 h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

  func encode(_ source: UnsafePointer<Float>, count: Int, into wire: UnsafeMutableRawPointer) {
    let out = wire.assumingMemoryBound(to: UInt16.self)
    switch self {
    case .bf16: for i in 0..<count { out[i] = WireCompression.bfloat16(source[i]) }
    case .fp16: for i in 0..<count { out[i] = Float16(source[i]).bitPattern }
    case .none: wire.copyMemory(from: source, byteCount: count * 4)
    }
  }

  /// target[i] += wire[i] for i in range (adding) or target[i] = wire[i] (copying), one tight loop
  /// per format so the conversions vectorise.
  func decode(_ wire: UnsafeRawPointer, range: Range<Int>, into target: UnsafeMutablePointer<Float>, adding: Bool) {
    let halves = wire.assumingMemoryBound(to: UInt16.self)
    switch (self, adding) {
    case (.bf16, true): for i in range { target[i] += Float(bitPattern: UInt32(halves[i]) << 16) }
    case (.bf16, false): for i in range { target[i] = Float(bitPattern: UInt32(halves[i]) << 16) }
    case (.fp16, true): for i in range { target[i] += Float(Float16(bitPattern: halves[i])) }
    case (.fp16, false): for i in range { target[i] = Float(Float16(bitPattern: halves[i])) }
    case (.none, true): let f = wire.assumingMemoryBound(to: Float.self); for i in range { target[i] += f[i] }
    case (.none, false): let f = wire.assumingMemoryBound(to: Float.self); for i in range { target[i] = f[i] }
    }
  }

  /// What a value becomes after a round trip through the wire format.
  func rounded(_ x: Float) -> Float {
    switch self {
    case .bf16: WireCompression.float(bfloat16: WireCompression.bfloat16(x))
    case .fp16: Float(Float16(x))
    case .none: x
    }
  }
}

extension Ring {
  /// All-reduce with 16-bit values on the wire. Every rank still ends with the same bits: the owner
  /// of each chunk rounds its sum to the wire format before sending it around, as the others
  /// receive it. `.mean` divides once; `.sum` with fp16 scales by 1/n on the way and back.
  public func allReduce(_ data: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation,
                        compression: WireCompression) throws(CollectiveError) {
    if compression == .none { return try allReduce(data, operation) }
    let n = size, count = data.count
    guard n > 1, count > 0 else { return }
    let base = data.baseAddress!
    let prescale = 1 / Float(n)
    if compression == .fp16 { for i in 0..<count { base[i] *= prescale } }
    try run(schedule(count: count), on: data, operation, wire: compression)
    // A sum in fp16 was carried as a mean: scale back, the same way on every rank.
    if compression == .fp16 && operation == .sum { for i in 0..<count { base[i] *= Float(n) } }
  }
}
