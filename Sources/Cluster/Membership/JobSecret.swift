import Checksums
import Collective
import Synchronization

/// The job token, stretched once per process, and everything keyed by it: the handshake's proofs,
/// each control connection's session keys, the ring's job id and link proofs. The token itself
/// never crosses the wire and keys nothing directly, so a recorded handshake costs a guesser
/// `iterations` HMACs per guess, and the keys of one connection say nothing about another's.
public struct JobSecret: Sendable {
  let key: [UInt8]
  /// PBKDF2 iterations: a fraction of a second once per process, paid again by every offline guess.
  static let iterations = 4096
  private static let cache = Mutex<[String: [UInt8]]>([:])

  public init(token: String) {
    if let key = JobSecret.cache.withLock({ $0[token] }) { self.key = key; return }
    let key = PBKDF2.derive(password: Array(token.utf8), salt: Array("amoeba job token v4".utf8),
                            iterations: JobSecret.iterations, count: 32)
    JobSecret.cache.withLock { $0[token] = key }
    self.key = key
  }

  /// A fresh random job token (256 bits, hex).
  public static func generateToken() throws -> String { try SecureRandom.bytes(32).hexString }

  /// Tokens shorter than this are worth a warning: a recorded handshake lets them be guessed offline.
  public static let recommendedTokenLength = 16

  func workerProof(serverNonce: [UInt8], clientNonce: [UInt8]) -> [UInt8] {
    HMACSHA256.authenticationCode(key: key, message: Array("amoeba-worker-proof".utf8) + serverNonce + clientNonce)
  }

  func coordinatorProof(serverNonce: [UInt8], clientNonce: [UInt8]) -> [UInt8] {
    HMACSHA256.authenticationCode(key: key, message: Array("amoeba-coordinator-proof".utf8) + clientNonce + serverNonce)
  }

  /// One key per direction for a control connection, from both nonces (HKDF).
  func sessionKeys(serverNonce: [UInt8], clientNonce: [UInt8]) -> (workerToCoordinator: [UInt8], coordinatorToWorker: [UInt8]) {
    let prk = HKDF.extract(salt: serverNonce + clientNonce, inputKey: key)
    return (HKDF.expand(key: prk, info: Array("amoeba control worker to coordinator".utf8), count: 32),
            HKDF.expand(key: prk, info: Array("amoeba control coordinator to worker".utf8), count: 32))
  }

  /// A ring identity both neighbours derive from the secret and the configuration: a neighbour with
  /// another token or another configuration is refused at the ring greeting.
  public func ringJobID(configHash: String) -> UInt64 {
    let mac = HMACSHA256.authenticationCode(key: key, message: Array("amoeba-ring-id:\(configHash)".utf8))
    return mac.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
  }

  /// The ring links' authenticator; with `macFrames`, every frame also carries a Poly1305 tag under
  /// a key of its link's own (`--ring_mac`).
  public func ringAuthenticator(configHash: String, macFrames: Bool = false) -> TokenRingAuthenticator {
    TokenRingAuthenticator(key: HKDF.expand(key: key, info: Array("amoeba ring links".utf8), count: 32), configHash: configHash,
                           macFrames: macFrames)
  }

  public static func configHash(_ config: [String: String]) -> String {
    SHA256.hash(Array(config.keys.sorted().map { "\($0)=\(config[$0]!)" }.joined(separator: "\n").utf8)).hexString
  }
}

/// The ring links' challenge–response: HMAC-SHA256 under a key derived from the job secret, over
/// the role, the nonce, the prover's rank and the configuration hash, so a neighbour with another
/// token or another configuration cannot join the ring.
public struct TokenRingAuthenticator: RingAuthenticator {
  let key: [UInt8]
  let configHash: String
  let macFrames: Bool

  public init(token: String, configHash: String, macFrames: Bool = false) {
    self = JobSecret(token: token).ringAuthenticator(configHash: configHash, macFrames: macFrames)
  }
  init(key: [UInt8], configHash: String, macFrames: Bool) { self.key = key; self.configHash = configHash; self.macFrames = macFrames }

  public func frameKey(connectorNonce: [UInt8], acceptorChallenge: [UInt8], connectorRank: Int) -> [UInt8]? {
    guard macFrames else { return nil }
    let prk = HKDF.extract(salt: connectorNonce + acceptorChallenge, inputKey: key)
    return HKDF.expand(key: prk, info: Array("amoeba ring frames from rank \(connectorRank)".utf8), count: 32)
  }

  public func proof(role: String, nonce: [UInt8], rank: Int) -> [UInt8] {
    HMACSHA256.authenticationCode(key: key, message: Array("amoeba-ring-\(role):\(rank):\(configHash):".utf8) + nonce)
  }

  public func verify(_ proof: [UInt8], role: String, nonce: [UInt8], rank: Int) -> Bool {
    HMACSHA256.constantTimeEqual(proof, self.proof(role: role, nonce: nonce, rank: rank))
  }
}
