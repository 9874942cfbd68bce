#if canImport(Glibc)
import Glibc
#endif

/// Monotonic clock in seconds: deadlines never move with wall-clock changes.
public func monotonicNow() -> Double {
  var t = timespec()
  clock_gettime(CLOCK_MONOTONIC, &t)
  return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// A host and port, IPv4 or IPv6.
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
  public var host: String
  public var port: Int

  public init(host: String, port: Int) { self.host = host; self.port = port }

  /// `host:port`, `[v6]:port`.
  public init(parsing text: String) throws(CollectiveError) {
    if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
      let rest = text[text.index(after: close)...]
      guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (0...65535).contains(port) else { throw .badAddress(text) }
      host = String(text[text.index(after: text.startIndex)..<close]); self.port = port
    } else {
      guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port),
            !text[..<colon].isEmpty else { throw .badAddress(text) }
      host = String(text[..<colon]); self.port = port
    }
  }

  public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

  /// The address of network interface `name` (as `ip addr` lists it): IPv4 first, else a global
  /// IPv6 one — binding a ring to a NIC by name, as Gloo's `GLOO_SOCKET_IFNAME` or Horovod's
  /// `--network-interface` do. Nil when there is no such interface.
  public static func interfaceAddress(_ name: String) -> String? { interface(name).address }

  /// Whether an interface of that name exists, and its address as `interfaceAddress` picks it.
  public static func interface(_ name: String) -> (exists: Bool, address: String?) {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0 else { return (false, nil) }
    defer { freeifaddrs(list) }
    var v4: String?, v6: String?, exists = false
    var cursor = list
    while let entry = cursor {
      defer { cursor = entry.pointee.ifa_next }
      guard String(cString: entry.pointee.ifa_name) == name else { continue }
      exists = true
      guard let address = entry.pointee.ifa_addr else { continue }
      var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
      switch Int32(address.pointee.sa_family) {
      case AF_INET:
        var ip = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
        if v4 == nil, inet_ntop(AF_INET, &ip, &text, socklen_t(text.count)) != nil { v4 = decode(text) }
      case AF_INET6:
        var ip = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
        let linkLocal = withUnsafeBytes(of: ip) { $0[0] == 0xFE && $0[1] & 0xC0 == 0x80 }
        if v6 == nil, !linkLocal, inet_ntop(AF_INET6, &ip, &text, socklen_t(text.count)) != nil { v6 = decode(text) }
      default: break
      }
    }
    return (exists, v4 ?? v6)
  }

  /// A NUL-terminated C string in a buffer.
  fileprivate static func decode(_ text: [CChar]) -> String {
    String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  /// getaddrinfo for a TCP stream socket.
  func resolve() throws(CollectiveError) -> (family: Int32, storage: sockaddr_storage, length: socklen_t) {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_family = AF_UNSPEC
    var result: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &result)
    guard rc == 0, let info = result else { throw .badAddress("\(description) (\(String(cString: gai_strerror(rc))))") }
    defer { freeaddrinfo(result) }
    var storage = sockaddr_storage()
    withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: info.pointee.ai_addr, count: Int(info.pointee.ai_addrlen))) }
    return (info.pointee.ai_family, storage, info.pointee.ai_addrlen)
  }
}

/// A connected TCP socket in non-blocking mode; every read and write waits with `poll` against a
/// deadline. Not thread-safe: one owner at a time.
public final class TCPConnection {
  public let fd: Int32
  /// Who is on the other side, for error messages: "rank 3 at 10.0.0.4:5000".
  public var peerRank: Int
  public var peerAddress: String
  /// The wait each deadline was computed from, reported when it passes.
  public var timeout: Double = 30
  private var closed = false

  init(fd: Int32, peerRank: Int, peerAddress: String) {
    self.fd = fd; self.peerRank = peerRank; self.peerAddress = peerAddress
    TCPConnection.configure(fd)
  }

  deinit { close() }

  public func close() {
    if !closed { closed = true; Glibc.close(fd) }
  }

  /// Ends both directions without releasing the descriptor: a thread blocked on it wakes up and
  /// sees the connection closed (closing it under that thread would not wake it).
  public func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

  static func configure(_ fd: Int32) {
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    if let text = getenv("AMOEBA_SOCKET_BUFFER"), let size = Int(String(cString: text)), size > 0 { setBuffers(fd, size) }
    let flags = fcntl(fd, F_GETFL, 0)
    _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
  }

  /// Fixes the send and receive buffers at `bytes` (the kernel doubles it for bookkeeping and caps
  /// it at `net.core.wmem_max`/`rmem_max`); this turns off the kernel's autotuning.
  public func setBuffers(_ bytes: Int) { TCPConnection.setBuffers(fd, bytes) }

  static func setBuffers(_ fd: Int32, _ bytes: Int) {
    var size = Int32(clamping: bytes)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
  }

  var peer: String { "rank \(peerRank) at \(peerAddress)" }

  /// Writes all of `bytes` before `deadline`.
  public func sendAll(_ bytes: UnsafeRawBufferPointer, deadline: Double) throws(CollectiveError) {
    var offset = 0
    while offset < bytes.count {
      let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
      if n > 0 { offset += n; continue }
      if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { throw failure("send") }
      try wait(POLLOUT, deadline: deadline)
    }
  }

  public func sendAll(_ bytes: [UInt8], deadline: Double) throws(CollectiveError) {
    var offset = 0
    while offset < bytes.count {
      let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
      if n > 0 { offset += n; continue }
      if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { throw failure("send") }
      try wait(POLLOUT, deadline: deadline)
    }
  }

  public func receive(count: Int, deadline: Double) throws(CollectiveError) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    var offset = 0
    while offset < count {
      let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, count - offset, 0) }
      if n > 0 { offset += n; continue }
      if n == 0 { throw .peerClosed(rank: peerRank, address: peerAddress) }
      if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { throw failure("recv") }
      try wait(POLLIN, deadline: deadline)
    }
    return bytes
  }

  /// Reads exactly `bytes.count` bytes before `deadline`.
  public func receiveAll(_ bytes: UnsafeMutableRawBufferPointer, deadline: Double) throws(CollectiveError) {
    var offset = 0
    while offset < bytes.count {
      let n = recv(fd, bytes.baseAddress! + offset, bytes.count - offset, 0)
      if n > 0 { offset += n; continue }
      if n == 0 { throw .peerClosed(rank: peerRank, address: peerAddress) }
      if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { throw failure("recv") }
      try wait(POLLIN, deadline: deadline)
    }
  }

  func wait(_ events: Int32, deadline: Double) throws(CollectiveError) {
    let remaining = deadline - monotonicNow()
    if remaining <= 0 { throw .peerTimedOut(rank: peerRank, address: peerAddress, waited: timeout) }
    var p = pollfd(fd: fd, events: Int16(events), revents: 0)
    let rc = poll(&p, 1, Int32(min(remaining * 1000 + 1, 60_000)))
    if rc < 0 && errno != EINTR { throw failure("poll") }
  }

  func failure(_ call: String) -> CollectiveError {
    let code = errno
    if code == ECONNRESET || code == EPIPE { return .peerClosed(rank: peerRank, address: peerAddress) }
    return .systemCall(call: call, error: String(cString: strerror(code)), peer: peer)
  }
}

/// A listening TCP socket.
public final class TCPListener {
  public let fd: Int32
  public let address: SocketAddress

  /// Binds `host:port` (port 0 picks a free one; `address` reports the real port).
  public init(host: String, port: Int = 0) throws(CollectiveError) {
    let resolved = try SocketAddress(host: host, port: port).resolve()
    let fd = socket(resolved.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw .systemCall(call: "socket", error: String(cString: strerror(errno)), peer: host) }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var storage = resolved.storage
    let rc = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, resolved.length) } }
    guard rc == 0, listen(fd, 64) == 0 else {
      let error = String(cString: strerror(errno))
      Glibc.close(fd)
      throw .systemCall(call: "bind/listen", error: error, peer: "\(host):\(port)")
    }
    var bound = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    // sin_port and sin6_port both sit at offset 2.
    let boundPort = withUnsafeBytes(of: &bound) { Int(UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self))) }
    self.fd = fd
    self.address = SocketAddress(host: host, port: boundPort)
    let flags = fcntl(fd, F_GETFL, 0)
    _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
  }

  deinit { Glibc.close(fd) }

  /// Accepts one connection before `deadline`.
  public func accept(deadline: Double, expecting: String) throws(CollectiveError) -> TCPConnection {
    let started = monotonicNow()
    while true {
      if let connection = try acceptIfReady() { return connection }
      let remaining = deadline - monotonicNow()
      if remaining <= 0 { throw .acceptTimedOut(listening: address.description, expecting: expecting, waited: monotonicNow() - started) }
      var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      _ = poll(&p, 1, Int32(min(remaining * 1000 + 1, 60_000)))
    }
  }

  /// A connection waiting in the backlog, or nil; its `peerAddress` is the source `host:port`.
  /// Running out of descriptors (EMFILE/ENFILE) or a connection reset before it was accepted is
  /// not an error here: the caller polls again (a flood of connections must not end a job).
  public func acceptIfReady() throws(CollectiveError) -> TCPConnection? {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let client = withUnsafeMutablePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(fd, $0, &length) }
    }
    if client >= 0 {
      _ = fcntl(client, F_SETFD, FD_CLOEXEC)
      return TCPConnection(fd: client, peerRank: -1, peerAddress: SocketAddress.text(of: storage))
    }
    switch errno {
    case EAGAIN, EWOULDBLOCK, EINTR, ECONNABORTED, EPROTO, EMFILE, ENFILE, ENOBUFS, ENOMEM: return nil
    default: throw .systemCall(call: "accept", error: String(cString: strerror(errno)), peer: address.description)
    }
  }
}

extension SocketAddress {
  /// `host:port` of a socket address as accept or getpeername return it.
  static func text(of storage: sockaddr_storage) -> String {
    var storage = storage
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    switch Int32(storage.ss_family) {
    case AF_INET:
      let (ip, port) = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { ($0.pointee.sin_addr, $0.pointee.sin_port) } }
      var address = ip
      guard inet_ntop(AF_INET, &address, &text, socklen_t(text.count)) != nil else { return "unknown" }
      return SocketAddress(host: decode(text), port: Int(UInt16(bigEndian: port))).description
    case AF_INET6:
      let (ip, port) = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { ($0.pointee.sin6_addr, $0.pointee.sin6_port) } }
      var address = ip
      guard inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { return "unknown" }
      return SocketAddress(host: decode(text), port: Int(UInt16(bigEndian: port))).description
    default:
      return "unknown"
    }
  }
}

/// Connects to `address`, retrying refused or unreachable attempts until `deadline` (peers start in
/// any order). The connect itself is non-blocking and waits against the deadline, so an address
/// that drops SYNs fails at the deadline, not after the kernel's retries (minutes).
public func connect(to address: SocketAddress, rank: Int, deadline: Double,
                    cancellation: Cancellation? = nil) throws(CollectiveError) -> TCPConnection {
  let started = monotonicNow()
  var lastError = "none"
  while true {
    try cancellation?.check()
    let resolved = try address.resolve()
    let fd = socket(resolved.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    guard fd >= 0 else { throw .systemCall(call: "socket", error: String(cString: strerror(errno)), peer: address.description) }
    var storage = resolved.storage
    let rc = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, resolved.length) } }
    var connected = rc == 0
    if rc != 0 && errno == EINPROGRESS {
      lastError = "no answer (connection attempt timed out)"
      while !connected {
        let remaining = deadline - monotonicNow()
        if remaining <= 0 { break }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let slice = cancellation == nil ? remaining : min(remaining, Cancellation.pollSeconds)
        let ready = poll(&p, 1, Int32(slice * 1000 + 1))
        if let cancellation, cancellation.isCancelled { Glibc.close(fd); try cancellation.check() }
        guard ready > 0 else { continue }
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length)
        if code == 0 { connected = true } else { lastError = String(cString: strerror(code)); break }
      }
    } else if rc != 0 {
      lastError = String(cString: strerror(errno))
    }
    if connected { return TCPConnection(fd: fd, peerRank: rank, peerAddress: address.description) }
    Glibc.close(fd)
    if monotonicNow() >= deadline {
      throw .connectFailed(rank: rank, address: address.description, waited: monotonicNow() - started, lastError: lastError)
    }
    usleep(20_000)
  }
}
