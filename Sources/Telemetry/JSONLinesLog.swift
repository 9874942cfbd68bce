#if canImport(Glibc)
import Glibc
#endif

/// One JSON object per line: the machine-readable twin of the progress line.
public final class JSONLinesLog {
  private let file: UnsafeMutablePointer<FILE>
  public let path: String

  public init(path: String) throws(TelemetryError) {
    guard let file = fopen(path, "a") else { throw .io("cannot open \(path): \(String(cString: strerror(errno)))") }
    self.file = file
    self.path = path
  }

  deinit { fclose(file) }

  /// Writes `{"key": value, …}` with numbers as numbers and everything else as strings.
  public func write(_ fields: [(String, Any)]) {
    let body = fields.map { key, value -> String in
      switch value {
      case let number as Double: return "\"\(key)\":\(number.isFinite ? String(number) : "null")"
      case let number as Int: return "\"\(key)\":\(number)"
      default: return "\"\(key)\":\"\(String(describing: value).replacingAll("\"", with: "'"))\""
      }
    }.joined(separator: ",")
    fputs("{\(body)}\n", file)
    fflush(file)
  }
}

extension String {
  func replacingAll(_ target: Character, with replacement: String) -> String {
    var out = ""
    for c in self { if c == target { out += replacement } else { out.append(c) } }
    return out
  }
}
