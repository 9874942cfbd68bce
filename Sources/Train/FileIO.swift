#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Durable file writes and whole-file reads, errors naming the path and the errno text.
public enum FileIO {
  /// Writes `bytes` to `path` so that a crash leaves either the old file or the new one, never a mix:
  /// a temporary file in the same directory, fsync, rename over `path`, fsync of the directory.
  public static func writeAtomically(_ bytes: [UInt8], to path: String) throws(TrainError) {
    let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    let temporary = path + ".tmp-\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw failure("open", temporary) }
    var written = 0
    while written < bytes.count {
      let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
      if n < 0 {
        if errno == EINTR { continue }
        let error = failure("write", temporary)
        close(fd); unlink(temporary)
        throw error
      }
      written += n
    }
    if fsync(fd) != 0 { let error = failure("fsync", temporary); close(fd); unlink(temporary); throw error }
    close(fd)
    if rename(temporary, path) != 0 { let error = failure("rename", path); unlink(temporary); throw error }
    let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 { fsync(dfd); close(dfd) }
  }

  public static func read(_ path: String) throws(TrainError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw failure("open", path) }
    defer { close(fd) }
    var bytes = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
      let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
      if n < 0 { if errno == EINTR { continue }; throw failure("read", path) }
      if n == 0 { break }
      bytes.append(contentsOf: chunk[0..<n])
    }
    return bytes
  }

  /// `mkdir -p`.
  public static func makeDirectory(_ path: String) throws(TrainError) {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
      prefix += part + "/"
      if mkdir(prefix, 0o755) != 0 && errno != EEXIST { throw failure("mkdir", prefix) }
    }
  }

  static func list(_ directory: String) -> [String] {
    guard let dir = opendir(directory) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }

  static func remove(_ path: String) { unlink(path) }

  static func failure(_ call: String, _ path: String) -> TrainError {
    .checkpoint("\(call)(\(path)) failed: \(String(cString: strerror(errno))); check that the directory exists, is writable and has space")
  }
}
