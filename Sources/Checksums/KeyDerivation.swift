#if canImport(Glibc)
import Glibc
#endif

/// HKDF (RFC 5869) over HMAC-SHA256: session keys from a shared secret and both sides' nonces, so
/// every connection is keyed differently and a recorded session gives nothing for the next one.
public enum HKDF {
  /// A pseudorandom key from input keying material and a salt.
  public static func extract(salt: [UInt8], inputKey: [UInt8]) -> [UInt8] {
    HMACSHA256.authenticationCode(key: salt, message: inputKey)
  }

  /// `count` bytes (at most 255 · 32) bound to `info`.
  public static func expand(key: [UInt8], info: [UInt8], count: Int) -> [UInt8] {
    precondition(count <= 255 * 32, "HKDF-Expand is limited to 255 blocks")
    var output: [UInt8] = [], block: [UInt8] = []
    var counter: UInt8 = 1
    while output.count < count {
      block = HMACSHA256.authenticationCode(key: key, message: block + info + [counter])
      output += block
      counter &+= 1
    }
    return Array(output.prefix(count))
  }
}

/// PBKDF2-HMAC-SHA256 (RFC 8018): stretches a job token typed by a person, so that guessing it from
/// a recorded handshake costs `iterations` HMACs per guess.
public enum PBKDF2 {
  public static func derive(password: [UInt8], salt: [UInt8], iterations: Int, count: Int) -> [UInt8] {
    var output: [UInt8] = []
    var blockIndex: UInt32 = 1
    while output.count < count {
      var u = HMACSHA256.authenticationCode(key: password, message: salt + withUnsafeBytes(of: blockIndex.bigEndian) { Array($0) })
      var t = u
      for _ in 1..<max(iterations, 1) {
        u = HMACSHA256.authenticationCode(key: password, message: u)
        for i in t.indices { t[i] ^= u[i] }
      }
      output += t
      blockIndex += 1
    }
    return Array(output.prefix(count))
  }
}

/// Secrets (nonces, generated job tokens) from the kernel's CSPRNG. Fails closed: a failed read is
/// an error, never a buffer of zeros.
public enum SecureRandom {
  public struct Failure: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "could not read random bytes from the kernel: \(reason)" }
  }

  private typealias GetRandom = @convention(c) (UnsafeMutableRawPointer?, Int, UInt32) -> Int
  /// getrandom(2) is in glibc ≥ 2.25 but not in the Glibc module Swift imports; looked up once.
  private static let getrandom: GetRandom? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "getrandom") else { return nil }
    return unsafeBitCast(symbol, to: GetRandom.self)
  }()

  public static func bytes(_ count: Int) throws(Failure) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    var filled = 0
    if let getrandom {
      while filled < count {
        let n = bytes.withUnsafeMutableBytes { getrandom($0.baseAddress! + filled, count - filled, 0) }
        if n > 0 { filled += n; continue }
        if n < 0 && errno == EINTR { continue }
        if n < 0 && errno == ENOSYS { break }
        throw Failure(reason: "getrandom: \(String(cString: strerror(errno)))")
      }
    }
    if filled < count {
      let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else { throw Failure(reason: "/dev/urandom: \(String(cString: strerror(errno)))") }
      defer { close(fd) }
      while filled < count {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, count - filled) }
        if n > 0 { filled += n; continue }
        if n < 0 && errno == EINTR { continue }
        throw Failure(reason: "/dev/urandom: \(n == 0 ? "end of file" : String(cString: strerror(errno)))")
      }
    }
    return bytes
  }
}
