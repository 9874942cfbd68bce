#if canImport(Glibc)
import Glibc
#endif
import Train

/// A wrong command line: the message names the flag and what it accepts.
public struct UsageError: Error, CustomStringConvertible {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// `--help` was given: `listing` holds every flag the command reads, with its default, in the
/// order it reads them — taken from the parsing code itself, so the help cannot fall behind it.
public struct HelpRequested: Error, CustomStringConvertible {
  public let listing: [(name: String, defaultValue: String)]
  public init(listing: [(name: String, defaultValue: String)]) { self.listing = listing }
  public var description: String { rendered(command: "") }

  /// The flags under their groups (`FlagHelp.sections`), each with its default and its line.
  public func rendered(command: String) -> String {
    let width = min(max(listing.map(\.name.count).max() ?? 0, 8) + 4, 36)
    var groups: [String: [String]] = [:]
    for flag in listing {
      let line = FlagHelp.line(flag.name, command: command)
      let name = "  --" + flag.name
      let value = flag.defaultValue.isEmpty ? "" : " (default \(flag.defaultValue))"
      groups[line?.section ?? "This command", default: []].append(
        name + String(repeating: " ", count: max(1, width - name.count + 2)) + (line?.text ?? "(no description)") + value)
    }
    return FlagHelp.sections.compactMap { section in groups[section].map { "\(section):\n" + $0.joined(separator: "\n") } }
      .joined(separator: "\n\n")
  }
}

/// `--name=value`, `--name value` and bare `--name` (true) flags, in the reference's snake_case.
/// Every flag must be read by the command (`finish()`), so a misspelt flag is an error, not ignored.
/// With `--help` (or `-h`) every read returns its default and `finish()` throws `HelpRequested`.
public struct Flags {
  private var values: [String: String] = [:]
  private var read: Set<String> = []
  private let helpRequested: Bool
  private var listing: [(name: String, defaultValue: String)] = []

  public init(_ arguments: [String]) throws {
    helpRequested = arguments.contains("--help") || arguments.contains("-h")
    if helpRequested { return }
    var index = 0
    while index < arguments.count {
      let argument = arguments[index]
      guard argument.hasPrefix("--"), argument.count > 2 else {
        throw UsageError("unexpected argument '\(argument)'; flags look like --name=value")
      }
      let body = argument.dropFirst(2)
      if let equals = body.firstIndex(of: "=") {
        values[String(body[..<equals])] = String(body[body.index(after: equals)...])
      } else if index + 1 < arguments.count, !arguments[index + 1].hasPrefix("--") {
        values[String(body)] = arguments[index + 1]
        index += 1
      } else {
        values[String(body)] = "true"
      }
      index += 1
    }
  }

  /// Whether the flag was given (marks it read).
  public mutating func has(_ name: String) -> Bool {
    note(name, "")
    return values[name] != nil
  }

  public mutating func string(_ name: String, default value: String) -> String {
    note(name, value)
    return values[name] ?? value
  }

  public mutating func int(_ name: String, default value: Int) throws -> Int {
    note(name, String(value))
    guard let text = values[name] else { return value }
    guard let parsed = Int(text) else { throw UsageError("--\(name) must be an integer, got '\(text)'") }
    return parsed
  }

  /// `--NAME` as a seed: a whole number ≥ 0.
  public mutating func seed(_ name: String = "seed", default value: Int = 0) throws -> UInt64 {
    let seed = try int(name, default: value)
    guard seed >= 0 else { throw UsageError("--\(name) must be a whole number ≥ 0, got \(seed)") }
    return UInt64(seed)
  }

  public mutating func intList(_ name: String, default value: [Int]) throws -> [Int] {
    note(name, value.map(String.init).joined(separator: ","))
    guard let text = values[name] else { return value }
    let parts = text.split(separator: ",").map { Int($0) }
    guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0! > 0 }) else {
      throw UsageError("--\(name) must be a comma-separated list of positive integers, got '\(text)'")
    }
    return parts.map { $0! }
  }

  public mutating func bool(_ name: String, default value: Bool = false) throws -> Bool {
    note(name, String(value))
    switch values[name] {
    case nil: return value
    case "false", "False", "0": return false
    case "true", "True", "1": return true
    case let other?: throw UsageError("--\(name) is true or false, got '\(other)'")
    }
  }

  public mutating func double(_ name: String, default value: Double) throws -> Double {
    note(name, String(value))
    guard let text = values[name] else { return value }
    guard let parsed = Double(text), parsed.isFinite else { throw UsageError("--\(name) must be a number, got '\(text)'") }
    return parsed
  }

  /// Marks a flag read; in help mode, lists it (a flag read twice, once by `has`, keeps its default).
  private mutating func note(_ name: String, _ defaultValue: String) {
    read.insert(name)
    guard helpRequested else { return }
    if let index = listing.firstIndex(where: { $0.name == name }) {
      if listing[index].defaultValue.isEmpty { listing[index].defaultValue = defaultValue }
    } else {
      listing.append((name, defaultValue))
    }
  }

  /// Throws for any flag the command did not read; with `--help`, throws the listing instead.
  public func finish() throws {
    if helpRequested { throw HelpRequested(listing: listing) }
    let unknown = values.keys.filter { !read.contains($0) }.sorted()
    if !unknown.isEmpty {
      throw UsageError("unknown flag\(unknown.count > 1 ? "s" : "") \(unknown.map { "--" + $0 }.joined(separator: ", "))")
    }
  }
}

/// Writes a line to standard error.
public func printError(_ message: String) {
  var line = message + "\n"
  line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// One exit-status convention for every executable: 0 success, 1 a failure while running (a dead
/// peer, a corrupt file), 2 a wrong command line or configuration value — so a script can tell
/// "fix the flags" from "look at the logs".
public enum ExitStatus {
  public static let failure: Int32 = 1
  public static let usage: Int32 = 2

  /// Whether `error` is the command line's fault.
  public static func isUsage(_ error: Error) -> Bool {
    if error is UsageError { return true }
    if case .invalidConfig? = error as? TrainError { return true }
    return false
  }
}

/// The release, printed by every executable's `--version` beside the wire protocol version.
public enum AmoebaVersion {
  public static let release = "0.13.0"

  /// True when the command line asks for the version (the executables answer before parsing).
  public static func requested(_ arguments: [String]) -> Bool { arguments.contains("--version") }
}
