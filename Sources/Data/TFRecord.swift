#if canImport(Glibc)
import Glibc
#endif
import Checksums

/// TFRecord files, as TensorFlow writes them. Per record, little-endian:
///
///     ┌──────────────┬────────────────────────┬────────────────┬──────────────────────┐
///     │ uint64 length│ uint32 masked CRC(len) │ data[length]   │ uint32 masked CRC(data)│
///     └──────────────┴────────────────────────┴────────────────┴──────────────────────┘
///     masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8, c = CRC-32C
///
/// The reader checks the length's CRC before it believes the length, checks the length against
/// the bytes left in the file before it reads, and checks the data's CRC before it returns the
/// record; any failure is an error naming the file, the record's index and its offset.
public enum TFRecord {
  public static func maskedCRC(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    let crc = CRC32C.update(0, bytes)
    return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
  }

  /// Why a record cannot be used, for the reader to put with the file, index and offset.
  struct Damage: Error { let reason: String }

  /// The data length a record's 12-byte header announces, believed only after the header's own CRC
  /// matches, and checked against the `remaining` bytes of the file from the header on — so that
  /// no length from a damaged header is ever used to read or allocate.
  static func dataLength(header: UnsafeRawBufferPointer, remaining: Int) -> Result<Int, Damage> {
    guard remaining >= 12, header.count >= 12 else { return .failure(Damage(reason: "truncated header (\(remaining) of 12 bytes)")) }
    let length = header.loadUnaligned(as: UInt64.self).littleEndian
    let lengthCRC = header.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
    guard maskedCRC(UnsafeRawBufferPointer(rebasing: header[0..<8])) == lengthCRC else {
      return .failure(Damage(reason: "length CRC mismatch (the length field cannot be trusted)"))
    }
    guard remaining >= 16, length <= UInt64(remaining - 16) else {
      return .failure(Damage(reason: "truncated record: \(length) data bytes announced, \(max(remaining - 16, 0)) present"))
    }
    return .success(Int(length))
  }

  /// Checks a record's data against the CRC stored after it; `dataOffset` is for the message.
  static func verify(data: UnsafeRawBufferPointer, crc: UInt32, dataOffset: Int) -> Damage? {
    maskedCRC(data) == crc ? nil : Damage(reason: "data CRC mismatch (data at offset \(dataOffset))")
  }

  /// The framed bytes of `records`.
  public static func encode(_ records: [[UInt8]]) -> [UInt8] {
    var out = [UInt8]()
    for record in records {
      var length = [UInt8]()
      withUnsafeBytes(of: UInt64(record.count).littleEndian) { length.append(contentsOf: $0) }
      out += length
      withUnsafeBytes(of: length.withUnsafeBytes { maskedCRC($0) }.littleEndian) { out.append(contentsOf: $0) }
      out += record
      withUnsafeBytes(of: record.withUnsafeBytes { maskedCRC($0) }.littleEndian) { out.append(contentsOf: $0) }
    }
    return out
  }
}

public enum DataError: Error, CustomStringConvertible, Equatable {
  case corruptRecord(file: String, index: Int, offset: Int, reason: String)
  case io(file: String, reason: String)
  case malformedExample(file: String, index: Int, reason: String)
  /// A record that frames and parses but cannot be used: a JPEG that does not decode, a missing
  /// feature, a label out of range. `record` says which ("FILE: record I at offset O").
  case unusableExample(record: String, reason: String)
  /// A directory without the shards it should have.
  case missingShards(directory: String, reason: String)

  public var description: String {
    switch self {
    case let .corruptRecord(file, index, offset, reason):
      "\(file): record \(index) at offset \(offset): \(reason); the file is damaged — re-copy or regenerate it"
    case let .io(file, reason): "\(file): \(reason)"
    case let .malformedExample(file, index, reason): "\(file): record \(index) is not a valid tf.train.Example: \(reason)"
    case let .unusableExample(record, reason): "\(record): \(reason)"
    case let .missingShards(directory, reason): "\(directory): \(reason)"
    }
  }
}

/// Reads the records of one TFRecord file in order. The whole file is read into memory once (shards
/// are ~100 MB); records are returned as slices of it.
public struct TFRecordReader {
  public let file: String
  private let bytes: [UInt8]
  public private(set) var offset = 0
  public private(set) var index = 0

  public init(path: String) throws(DataError) {
    file = path
    guard let f = fopen(path, "rb") else { throw .io(file: path, reason: String(cString: strerror(errno))) }
    defer { fclose(f) }
    var data = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
      let n = fread(&chunk, 1, chunk.count, f)
      if n > 0 { data += chunk[0..<n] }
      if n < chunk.count { break }
    }
    if ferror(f) != 0 { throw .io(file: path, reason: "read error") }
    bytes = data
  }

  public init(bytes: [UInt8], name: String) { file = name; self.bytes = bytes }

  /// The next record, nil at a clean end of file.
  public mutating func next() throws(DataError) -> ArraySlice<UInt8>? {
    let remaining = bytes.count - offset
    if remaining == 0 { return nil }
    func corrupt(_ reason: String) -> DataError { .corruptRecord(file: file, index: index, offset: offset, reason: reason) }
    let header = bytes.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[offset..<min(offset + 12, bytes.count)]) }
    let length: Int
    do { length = try TFRecord.dataLength(header: header, remaining: remaining).get() } catch { throw corrupt(error.reason) }
    let start = offset + 12, end = start + length
    let damage = bytes.withUnsafeBytes {
      TFRecord.verify(data: UnsafeRawBufferPointer(rebasing: $0[start..<end]),
                      crc: $0.loadUnaligned(fromByteOffset: end, as: UInt32.self).littleEndian, dataOffset: start)
    }
    if let damage { throw corrupt(damage.reason) }
    offset = end + 4
    index += 1
    return bytes[start..<end]
  }
}
