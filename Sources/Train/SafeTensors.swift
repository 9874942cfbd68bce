import Foundation
import Tensor

/// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
/// mapping each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets into the
/// data that follows) plus an optional `"__metadata__"` map of strings, then the raw little-endian
/// data. Only F32 tensors are written and read here.
public enum SafeTensors {
  public struct Tensor: Sendable {
    public var name: String
    public var shape: Shape
    public var values: [Float]
    public init(name: String, shape: Shape, values: [Float]) { self.name = name; self.shape = shape; self.values = values }
  }

  /// The bytes of a safetensors file holding `tensors` in the given order.
  public static func encode(_ tensors: [(name: String, shape: Shape, data: UnsafePointer<Float>)],
                            metadata: [String: String] = [:]) -> [UInt8] {
    var out = header(tensors.map { ($0.name, "F32", $0.shape.dims, $0.shape.elementCount * 4) }, metadata: metadata)
    for t in tensors { out.append(contentsOf: UnsafeRawBufferPointer(start: t.data, count: t.shape.elementCount * 4)) }
    return out
  }

  /// `bytes`: U8 tensors (flat), written after the F32 ones.
  public static func encode(_ tensors: [Tensor], bytes: [(name: String, values: [UInt8])] = [],
                            metadata: [String: String] = [:]) -> [UInt8] {
    var out = header(tensors.map { ($0.name, "F32", $0.shape.dims, $0.shape.elementCount * 4) }
                     + bytes.map { ($0.name, "U8", [$0.values.count], $0.values.count) }, metadata: metadata)
    for t in tensors { t.values.withUnsafeBytes { out.append(contentsOf: $0) } }
    for b in bytes { out.append(contentsOf: b.values) }
    return out
  }

  /// The length prefix and the JSON header (padded with spaces to 8 bytes), offsets in order.
  static func header(_ tensors: [(name: String, dtype: String, dims: [Int], bytes: Int)], metadata: [String: String]) -> [UInt8] {
    var header = "{"
    if !metadata.isEmpty {
      header += "\"__metadata__\":{" + metadata.keys.sorted().map { "\(quote($0)):\(quote(metadata[$0]!))" }.joined(separator: ",") + "},"
    }
    var offset = 0
    var entries: [String] = []
    for (name, dtype, dims, bytes) in tensors {
      entries.append("\(quote(name)):{\"dtype\":\"\(dtype)\",\"shape\":[\(dims.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
      offset += bytes
    }
    header += entries.joined(separator: ",") + "}"
    var headerBytes = Array(header.utf8)
    while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
    var out = [UInt8]()
    out.reserveCapacity(8 + headerBytes.count + offset)
    var length = UInt64(headerBytes.count).littleEndian
    withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
    out.append(contentsOf: headerBytes)
    return out
  }

  /// Parses a safetensors file; every length and offset is checked against the file size before use.
  public static func decode(_ bytes: [UInt8], file: String) throws(TrainError) -> (tensors: [String: Tensor], metadata: [String: String]) {
    func corrupt(_ why: String) -> TrainError { .checkpoint("\(file): not a valid safetensors file: \(why)") }
    guard bytes.count >= 8 else { throw corrupt("\(bytes.count) bytes, shorter than the 8-byte header length") }
    var length: UInt64 = 0
    for i in 0..<8 { length |= UInt64(bytes[i]) << (8 * UInt64(i)) }
    guard length <= UInt64(bytes.count - 8), length <= 100_000_000 else {
      throw corrupt("header length \(length) exceeds the file (\(bytes.count) bytes); the file is truncated")
    }
    let dataStart = 8 + Int(length)
    guard let json = try? JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart])) as? [String: Any] else {
      throw corrupt("the header is not a JSON object")
    }
    var tensors: [String: Tensor] = [:]
    var metadata: [String: String] = [:]
    for (name, value) in json {
      if name == "__metadata__" {
        metadata = (value as? [String: String]) ?? [:]
        continue
      }
      guard let entry = value as? [String: Any], entry["dtype"] as? String == "F32",
            let dims = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2,
            dims.allSatisfy({ $0 >= 0 }) else { throw corrupt("tensor '\(name)' has a malformed or non-F32 entry") }
      // A crafted header can name dimensions whose product overflows: checked, never trapped.
      var byteCount = 4
      for d in dims {
        let (product, overflow) = byteCount.multipliedReportingOverflow(by: d)
        guard !overflow, product <= bytes.count else {
          throw corrupt("tensor '\(name)' has shape \(dims), larger than the whole file")
        }
        byteCount = product
      }
      let shape = Shape(dims)
      let begin = offsets[0], end = offsets[1]
      guard begin >= 0, end >= begin, begin <= bytes.count, end <= bytes.count, end - begin == byteCount, dataStart + end <= bytes.count else {
        throw corrupt("tensor '\(name)' has offsets \(begin)..<\(end) outside the \(bytes.count - dataStart) data bytes (truncated?)")
      }
      var values = [Float](repeating: 0, count: shape.elementCount)
      values.withUnsafeMutableBytes { raw in
        bytes.withUnsafeBytes { source in
          raw.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[(dataStart + begin)..<(dataStart + end)]))
        }
      }
      tensors[name] = Tensor(name: name, shape: shape, values: values)
    }
    return (tensors, metadata)
  }

  static func quote(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      default:
        if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
      }
    }
    return out + "\""
  }
}
