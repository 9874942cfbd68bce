/// Why a JPEG could not be decoded. Every case says what was found and where, so a data loader can
/// report the record and move on; decoding never traps on bad input.
public enum JPEGError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The bytes end (or reach the next marker) before the image is complete.
  case truncated(String)
  /// The bytes contradict the JPEG format: bad marker, table, header or entropy-coded data.
  case corrupt(String)
  /// A valid JPEG this decoder does not handle (12-bit, lossless, hierarchical, 2-component …).
  case unsupported(String)
  /// The image is larger than the decoder was allowed to allocate.
  case tooLarge(width: Int, height: Int, limit: Int)
  /// The memory for the image's coefficients could not be had.
  case outOfMemory(bytes: Int)

  public var description: String {
    switch self {
    case let .truncated(what): "truncated JPEG: \(what)"
    case let .corrupt(what): "corrupt JPEG: \(what)"
    case let .unsupported(what): "unsupported JPEG: \(what)"
    case let .tooLarge(width, height, limit):
      "JPEG of \(width)x\(height) pixels exceeds the decoder's limit of \(limit) pixels"
    case let .outOfMemory(bytes): "cannot allocate \(bytes) bytes for the JPEG's coefficients"
    }
  }
}
