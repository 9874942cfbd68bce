/// `tf.train.Example` decoding and encoding, written here (no protobuf library):
///
///     Example  { Features features = 1; }
///     Features { map<string, Feature> feature = 1; }        (map entry: key = 1, value = 2)
///     Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
///     BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1; }  Int64List { repeated int64 value = 1; }
///
/// Packed and unpacked repeated numbers are both accepted; unknown fields are skipped. Every length
/// is checked against the bytes that remain before it is used.
public struct Example: Equatable, Sendable {
  public enum Feature: Equatable, Sendable {
    case bytes([[UInt8]])
    case floats([Float])
    case int64s([Int64])
  }

  public var features: [String: Feature]

  public init(features: [String: Feature]) { self.features = features }

  public func bytes(_ key: String) -> [UInt8]? { if case let .bytes(v)? = features[key] { return v.first } else { return nil } }
  public func int64(_ key: String) -> Int64? { if case let .int64s(v)? = features[key] { return v.first } else { return nil } }
  public func string(_ key: String) -> String? { bytes(key).map { String(decoding: $0, as: UTF8.self) } }

  public init<C: RandomAccessCollection>(decoding data: C) throws(ProtobufError) where C.Element == UInt8, C.Index == Int {
    var reader = ProtobufReader(Array(data))
    var features: [String: Feature] = [:]
    while let (field, wire) = try reader.key() {
      guard field == 1, wire == 2 else { try reader.skip(wire); continue }
      var featuresReader = ProtobufReader(try reader.lengthDelimited())
      while let (entryField, entryWire) = try featuresReader.key() {
        guard entryField == 1, entryWire == 2 else { try featuresReader.skip(entryWire); continue }
        var entry = ProtobufReader(try featuresReader.lengthDelimited())
        var key = "", value: Feature = .bytes([])
        while let (f, w) = try entry.key() {
          if f == 1 && w == 2 { key = String(decoding: try entry.lengthDelimited(), as: UTF8.self) }
          else if f == 2 && w == 2 { value = try Example.feature(try entry.lengthDelimited()) }
          else { try entry.skip(w) }
        }
        features[key] = value
      }
    }
    self.features = features
  }

  static func feature(_ bytes: [UInt8]) throws(ProtobufError) -> Feature {
    var reader = ProtobufReader(bytes)
    var result: Feature = .bytes([])
    while let (field, wire) = try reader.key() {
      guard wire == 2, (1...3).contains(field) else { try reader.skip(wire); continue }
      var list = ProtobufReader(try reader.lengthDelimited())
      switch field {
      case 1:
        var values: [[UInt8]] = []
        while let (f, w) = try list.key() { if f == 1 && w == 2 { values.append(try list.lengthDelimited()) } else { try list.skip(w) } }
        result = .bytes(values)
      case 2:
        var values: [Float] = []
        while let (f, w) = try list.key() {
          if f == 1 && w == 2 {
            var packed = ProtobufReader(try list.lengthDelimited())
            while !packed.atEnd { values.append(Float(bitPattern: try packed.fixed32())) }
          } else if f == 1 && w == 5 {
            values.append(Float(bitPattern: try list.fixed32()))
          } else { try list.skip(w) }
        }
        result = .floats(values)
      default:
        var values: [Int64] = []
        while let (f, w) = try list.key() {
          if f == 1 && w == 2 {
            var packed = ProtobufReader(try list.lengthDelimited())
            while !packed.atEnd { values.append(Int64(bitPattern: try packed.varint())) }
          } else if f == 1 && w == 0 {
            values.append(Int64(bitPattern: try list.varint()))
          } else { try list.skip(w) }
        }
        result = .int64s(values)
      }
    }
    return result
  }

  /// The serialized message (keys sorted, numbers packed, as TensorFlow writes them).
  public func encoded() -> [UInt8] {
    var featuresBytes = [UInt8]()
    for key in features.keys.sorted() {
      var list = [UInt8]()
      let field: UInt64
      switch features[key]! {
      case let .bytes(values):
        field = 1
        for v in values { list += [0x0A] + ProtobufReader.varintBytes(UInt64(v.count)) + v }
      case let .floats(values):
        field = 2
        var packed = [UInt8]()
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { packed.append(contentsOf: $0) } }
        list = [0x0A] + ProtobufReader.varintBytes(UInt64(packed.count)) + packed
      case let .int64s(values):
        field = 3
        var packed = [UInt8]()
        for v in values { packed += ProtobufReader.varintBytes(UInt64(bitPattern: v)) }
        list = [0x0A] + ProtobufReader.varintBytes(UInt64(packed.count)) + packed
      }
      let feature = [UInt8(field << 3 | 2)] + ProtobufReader.varintBytes(UInt64(list.count)) + list
      let keyBytes = Array(key.utf8)
      let entry = [0x0A] + ProtobufReader.varintBytes(UInt64(keyBytes.count)) + keyBytes + [0x12] + ProtobufReader.varintBytes(UInt64(feature.count)) + feature
      featuresBytes += [0x0A] + ProtobufReader.varintBytes(UInt64(entry.count)) + entry
    }
    return [0x0A] + ProtobufReader.varintBytes(UInt64(featuresBytes.count)) + featuresBytes
  }
}

public struct ProtobufError: Error, CustomStringConvertible, Equatable {
  public let reason: String
  public var description: String { reason }
}

/// A cursor over protobuf wire data; every read is bounds-checked.
struct ProtobufReader {
  let bytes: [UInt8]
  var position = 0

  init(_ bytes: [UInt8]) { self.bytes = bytes }

  var atEnd: Bool { position >= bytes.count }

  mutating func varint() throws(ProtobufError) -> UInt64 {
    var value: UInt64 = 0, shift: UInt64 = 0
    while true {
      guard position < bytes.count else { throw ProtobufError(reason: "truncated varint at byte \(position)") }
      guard shift < 64 else { throw ProtobufError(reason: "varint longer than 10 bytes at byte \(position)") }
      let byte = bytes[position]
      position += 1
      value |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { return value }
      shift += 7
    }
  }

  mutating func key() throws(ProtobufError) -> (Int, Int)? {
    if atEnd { return nil }
    let key = try varint()
    guard key >> 3 > 0 else { throw ProtobufError(reason: "field number 0 at byte \(position)") }
    return (Int(key >> 3), Int(key & 7))
  }

  mutating func lengthDelimited() throws(ProtobufError) -> [UInt8] {
    let length = try varint()
    guard length <= UInt64(bytes.count - position) else {
      throw ProtobufError(reason: "a field announces \(length) bytes but \(bytes.count - position) remain")
    }
    defer { position += Int(length) }
    return Array(bytes[position..<position + Int(length)])
  }

  mutating func fixed32() throws(ProtobufError) -> UInt32 {
    guard bytes.count - position >= 4 else { throw ProtobufError(reason: "truncated fixed32 at byte \(position)") }
    defer { position += 4 }
    return UInt32(bytes[position]) | UInt32(bytes[position + 1]) << 8 | UInt32(bytes[position + 2]) << 16 | UInt32(bytes[position + 3]) << 24
  }

  mutating func skip(_ wire: Int) throws(ProtobufError) {
    switch wire {
    case 0: _ = try varint()
    case 1: guard bytes.count - position >= 8 else { throw ProtobufError(reason: "truncated fixed64") }; position += 8
    case 2: _ = try lengthDelimited()
    case 5: _ = try fixed32()
    default: throw ProtobufError(reason: "unsupported wire type \(wire) at byte \(position)")
    }
  }

  static func varintBytes(_ value: UInt64) -> [UInt8] {
    var v = value, out = [UInt8]()
    while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
    out.append(UInt8(v))
    return out
  }
}
