#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization
import Tensor

/// Where every record of a set of TFRecord files starts, found by reading only the 12-byte headers
/// (each length's CRC checked before the length is followed), so that any record can be read on
/// its own: examples are then addressed by number, any worker can read any shard of any epoch, and
/// a resumed job reads exactly the records it would have read.
///
/// A header that fails its check ends the scan of that file: the records after it cannot be
/// located. The failure is kept in `damage` (file, record index, offset) and the records before it
/// stay usable.
public final class TFRecordIndex: Sendable {
  struct Location: Sendable {
    let file: Int32
    let indexInFile: Int32
    let offset: Int64
    let length: Int64
  }

  public let files: [String]
  let locations: [Location]
  /// The first record of each file in `locations`, and one past the end.
  let fileStarts: [Int]
  public let damage: [DataError]
  let descriptors: DescriptorCache

  public var count: Int { locations.count }

  /// Scans the files' headers, `threads` files at a time: each header is a small random read, so
  /// on network or cold storage the latency, not the bandwidth, is what the threads overlap.
  /// `openFiles`: how many shard files stay open for reading (see `DescriptorCache`).
  public init(files: [String], threads: Int = 16, openFiles: Int = 128) throws(DataError) {
    self.files = files
    descriptors = DescriptorCache(capacity: openFiles)
    let scans = UnsafeMutablePointer<Result<FileScan, DataError>>.allocate(capacity: max(files.count, 1))
    defer { scans.deallocate() }
    let pool = ThreadPool(threadCount: max(1, min(threads, files.count)))
    pool.parallelFor(files.count) { f, _ in
      (scans + f).initialize(to: Result { () throws(DataError) in try TFRecordIndex.scan(files[f], file: Int32(f)) })
    }
    var locations: [Location] = [], starts: [Int] = [], damage: [DataError] = []
    var failure: DataError?
    for f in files.indices {
      let result = (scans + f).move()
      switch result {
      case let .success(scan):
        starts.append(locations.count)
        locations += scan.locations
        if let problem = scan.damage { damage.append(problem) }
      case let .failure(error):
        starts.append(locations.count)
        if failure == nil { failure = error }
      }
    }
    if let failure { throw failure }
    starts.append(locations.count)
    self.locations = locations
    self.fileStarts = starts
    self.damage = damage
  }

  struct FileScan {
    var locations: [Location] = []
    var damage: DataError?
  }

  /// One file's records, up to the first header that fails its check.
  static func scan(_ path: String, file f: Int32) throws(DataError) -> FileScan {
    var result = FileScan()
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw .io(file: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw .io(file: path, reason: "cannot stat: \(String(cString: strerror(errno)))") }
    let size = Int64(info.st_size)
    var offset: Int64 = 0, index: Int32 = 0
    var header = [UInt8](repeating: 0, count: 12)
    while offset < size {
      func corrupt(_ reason: String) -> DataError { .corruptRecord(file: path, index: Int(index), offset: Int(offset), reason: reason) }
      let available = Int(min(size - offset, 12))
      let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, available, off_t(offset)) }
      guard n == available else { throw .io(file: path, reason: "read error at offset \(offset): \(String(cString: strerror(errno)))") }
      let checked = header.withUnsafeBytes {
        TFRecord.dataLength(header: UnsafeRawBufferPointer(rebasing: $0[0..<available]), remaining: Int(size - offset))
      }
      let length: Int
      do { length = try checked.get() } catch { result.damage = corrupt(error.reason); break }
      result.locations.append(Location(file: f, indexInFile: index, offset: offset, length: Int64(length)))
      offset += 16 + Int64(length)
      index += 1
    }
    return result
  }

  /// Records in file `f`.
  public func count(inFile f: Int) -> Int { fileStarts[f + 1] - fileStarts[f] }

  /// The file and the record's index within it, for messages.
  public func describe(_ i: Int) -> String { "\(files[Int(locations[i].file)]): \(location(i))" }

  /// The record's index within its file and its offset.
  public func location(_ i: Int) -> String { "record \(locations[i].indexInFile) at offset \(locations[i].offset)" }

  /// Record `i`'s data, its CRC checked.
  public func read(_ i: Int) throws(DataError) -> [UInt8] {
    let l = locations[i]
    let path = files[Int(l.file)]
    let fd = try descriptors.acquire(Int(l.file), path: path)
    defer { descriptors.release(Int(l.file)) }
    var bytes = [UInt8](repeating: 0, count: Int(l.length) + 4)
    let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(l.offset + 12)) }
    guard n == bytes.count else {
      throw .corruptRecord(file: path, index: Int(l.indexInFile), offset: Int(l.offset),
                           reason: n < 0 ? "read error: \(String(cString: strerror(errno)))" : "the file shrank since it was indexed")
    }
    let damage = bytes.withUnsafeBytes {
      TFRecord.verify(data: UnsafeRawBufferPointer(rebasing: $0[0..<Int(l.length)]),
                      crc: $0.loadUnaligned(fromByteOffset: Int(l.length), as: UInt32.self).littleEndian, dataOffset: Int(l.offset) + 12)
    }
    if let damage { throw .corruptRecord(file: path, index: Int(l.indexInFile), offset: Int(l.offset), reason: damage.reason) }
    bytes.removeLast(4)
    return bytes
  }
}

/// Open shard files shared by the reading threads (`pread` needs no seek), so that a record read
/// is one system call instead of three — an open on network storage is a round trip. Once more
/// than `capacity` are open (ImageNet has 1,152 shards, above the usual 1,024-descriptor limit), the
/// least recently used idle ones are closed at the next open; never one a thread is reading from.
final class DescriptorCache: Sendable {
  struct Entry { var descriptor: Int32; var users: Int; var lastUse: UInt64 }
  struct State { var entries: [Int: Entry] = [:]; var clock: UInt64 = 0 }
  let capacity: Int
  private let state = Mutex(State())

  init(capacity: Int) { self.capacity = capacity }

  deinit { state.withLock { for entry in $0.entries.values { close(entry.descriptor) } } }

  /// The file's descriptor, held until `release(file)`.
  func acquire(_ file: Int, path: String) throws(DataError) -> Int32 {
    let cached: Int32? = state.withLock { s in
      guard var entry = s.entries[file] else { return nil }
      s.clock += 1
      entry.users += 1; entry.lastUse = s.clock
      s.entries[file] = entry
      return entry.descriptor
    }
    if let cached { return cached }
    let opened = open(path, O_RDONLY | O_CLOEXEC)
    guard opened >= 0 else { throw .io(file: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
    let (descriptor, surplus) = state.withLock { s -> (Int32, [Int32]) in
      s.clock += 1
      if var entry = s.entries[file] {
        // Another thread opened it meanwhile: use theirs.
        entry.users += 1; entry.lastUse = s.clock
        s.entries[file] = entry
        return (entry.descriptor, [opened])
      }
      s.entries[file] = Entry(descriptor: opened, users: 1, lastUse: s.clock)
      var closing: [Int32] = []
      while s.entries.count > capacity,
            let idle = s.entries.filter({ $0.value.users == 0 }).min(by: { $0.value.lastUse < $1.value.lastUse }) {
        closing.append(idle.value.descriptor)
        s.entries[idle.key] = nil
      }
      return (opened, closing)
    }
    for fd in surplus { close(fd) }
    return descriptor
  }

  func release(_ file: Int) {
    state.withLock { $0.entries[file]?.users -= 1 }
  }
}
