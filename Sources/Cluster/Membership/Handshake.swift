/// The fixed-size frames a control connection opens with, before either side knows the other holds
/// the job token. Nothing here has a length field: an unauthenticated peer can make the
/// coordinator read at most 72 bytes and compare them, never allocate or parse anything it chose.
///
///     worker      → coordinator   hello:  "AMCH", protocol version, client nonce   (40 bytes)
///     coordinator → worker        hello:  "AMCS", protocol version, server nonce   (40 bytes)
///     worker      → coordinator   proof:  HMAC(secret, worker label, nonces)       (32 bytes)
///     coordinator → worker        proof:  HMAC(secret, coordinator label, nonces)  (32 bytes)
///
/// Then both derive the session keys (`JobSecret.sessionKeys`) and every further message is an
/// authenticated `ControlChannel` frame. A coordinator of another version answers its hello with
/// its own version and closes, so the worker can say which build to run.
public enum Handshake {
  public static let workerMagic: [UInt8] = Array("AMCH".utf8)
  public static let coordinatorMagic: [UInt8] = Array("AMCS".utf8)
  public static let helloBytes = 40
  public static let proofBytes = 32

  /// Raised whenever the handshake, the control messages or the ring's frames change (4: fixed-size
  /// handshake, session keys, authenticated control frames, heartbeats), so mixed builds are refused.
  public static let protocolVersion: UInt32 = 10

  public static func hello(magic: [UInt8], nonce: [UInt8], version: UInt32 = protocolVersion) -> [UInt8] {
    magic + withUnsafeBytes(of: version.littleEndian) { Array($0) } + nonce
  }

  /// The version and nonce of a hello with the expected magic; nil for anything else.
  public static func parseHello(_ bytes: [UInt8], magic: [UInt8]) -> (version: UInt32, nonce: [UInt8])? {
    guard bytes.count == helloBytes, Array(bytes.prefix(4)) == magic else { return nil }
    let version = UInt32(bytes[4]) | UInt32(bytes[5]) << 8 | UInt32(bytes[6]) << 16 | UInt32(bytes[7]) << 24
    return (version, Array(bytes.suffix(32)))
  }
}
