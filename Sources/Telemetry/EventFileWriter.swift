#if canImport(Glibc)
import Glibc
#endif
import Checksums

/// TensorBoard event files: TFRecord framing (little-endian 64-bit length, masked CRC-32C of the
/// length, the record, masked CRC-32C of the record) of `tensorflow.Event` protocol buffers, each
/// carrying a `Summary` of scalar values. The first record is the file-version event
/// ("brain.Event:2"). Written by hand: the messages need three protobuf field types.
///
///     Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
///     Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
public final class EventFileWriter {
  public let path: String
  private let file: UnsafeMutablePointer<FILE>

  /// Creates `directory/events.out.tfevents.<time>.<host>` (the name TensorBoard looks for).
  public init(directory: String) throws(TelemetryError) {
    var host = [CChar](repeating: 0, count: 256)
    gethostname(&host, 255)
    path = "\(directory)/events.out.tfevents.\(Int(time(nil))).\(String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))"
    guard let file = fopen(path, "wb") else {
      throw .io("cannot create \(path): \(String(cString: strerror(errno))); check that --model_dir exists and is writable")
    }
    self.file = file
    write(EventFileWriter.event(step: 0, wallTime: EventFileWriter.now(), fileVersion: "brain.Event:2", scalars: []))
  }

  deinit { fclose(file) }

  /// One event with the given scalars at `step`.
  public func add(step: Int, scalars: [(tag: String, value: Float)]) {
    write(EventFileWriter.event(step: step, wallTime: EventFileWriter.now(), fileVersion: nil, scalars: scalars))
    fflush(file)
  }

  static func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_REALTIME, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
  }

  private func write(_ record: [UInt8]) {
    let framed = TFRecordFrame.frame(record)
    _ = framed.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
  }

  static func event(step: Int, wallTime: Double, fileVersion: String?, scalars: [(tag: String, value: Float)]) -> [UInt8] {
    var out = [UInt8]()
    out.append(0x09)  // field 1, fixed64
    withUnsafeBytes(of: wallTime.bitPattern.littleEndian) { out.append(contentsOf: $0) }
    out.append(0x10)  // field 2, varint
    out += Protobuf.varint(UInt64(bitPattern: Int64(step)))
    if let fileVersion {
      out.append(0x1A)  // field 3, length-delimited
      out += Protobuf.lengthDelimited(Array(fileVersion.utf8))
    }
    if !scalars.isEmpty {
      var summary = [UInt8]()
      for (tag, value) in scalars {
        var v = [UInt8]()
        v.append(0x0A)  // Value.tag
        v += Protobuf.lengthDelimited(Array(tag.utf8))
        v.append(0x15)  // Value.simple_value, fixed32
        withUnsafeBytes(of: value.bitPattern.littleEndian) { v.append(contentsOf: $0) }
        summary.append(0x0A)  // Summary.value
        summary += Protobuf.lengthDelimited(v)
      }
      out.append(0x2A)  // field 5, length-delimited
      out += Protobuf.lengthDelimited(summary)
    }
    return out
  }
}

enum Protobuf {
  static func varint(_ value: UInt64) -> [UInt8] {
    var v = value, out = [UInt8]()
    while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
    out.append(UInt8(v))
    return out
  }

  static func lengthDelimited(_ bytes: [UInt8]) -> [UInt8] { varint(UInt64(bytes.count)) + bytes }
}

/// TFRecord framing with TensorFlow's masked CRC-32C.
public enum TFRecordFrame {
  public static func frame(_ record: [UInt8]) -> [UInt8] {
    var length = [UInt8]()
    withUnsafeBytes(of: UInt64(record.count).littleEndian) { length.append(contentsOf: $0) }
    var out = length
    withUnsafeBytes(of: maskedCRC(length).littleEndian) { out.append(contentsOf: $0) }
    out += record
    withUnsafeBytes(of: maskedCRC(record).littleEndian) { out.append(contentsOf: $0) }
    return out
  }

  public static func maskedCRC(_ bytes: [UInt8]) -> UInt32 {
    let crc = crc32c(bytes)
    return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
  }

  static func crc32c(_ bytes: [UInt8]) -> UInt32 { CRC32C.checksum(bytes) }
}

public enum TelemetryError: Error, CustomStringConvertible {
  case io(String)
  public var description: String { switch self { case let .io(message): message } }
}
