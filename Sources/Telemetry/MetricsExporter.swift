#if canImport(Glibc)
import Glibc
#endif

/// The Prometheus text exposition of the job's latest metrics, served at `http://host:port/metrics`
/// by a small HTTP/1.0 responder on its own thread, serving every client concurrently. Values are set by the coordinator; every line
/// carries a `rank` label where it is per worker.
public final class MetricsExporter: @unchecked Sendable {
  // @unchecked: `families` is guarded by `mutex`; the socket is used only by the serving thread.
  public struct Sample: Sendable {
    public var labels: [String: String]
    public var value: Double
    public init(labels: [String: String], value: Double) { self.labels = labels; self.value = value }
  }

  private var families: [String: (help: String, type: String, samples: [Sample])] = [:]
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  private let fd: Int32
  public let port: Int
  private var thread = pthread_t()

  /// Listens on `host:port` (an IPv4 address; 0 picks a free port). Loopback by default: the
  /// metrics say what the job is doing, so exposing them (0.0.0.0) is the operator's choice.
  public init(host: String = "127.0.0.1", port: Int = 0) throws(TelemetryError) {
    pthread_mutex_init(mutex, nil)
    var probe = in_addr()
    guard inet_pton(AF_INET, host, &probe) == 1 else {
      throw .io("--metrics_host \(host) is not an IPv4 address (127.0.0.1 for this host only, 0.0.0.0 for every interface)")
    }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw .io("metrics server: socket: \(String(cString: strerror(errno)))") }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, host, &address.sin_addr)
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard bound == 0, listen(fd, 128) == 0 else {
      let error = String(cString: strerror(errno))
      close(fd)
      throw .io("metrics port \(host):\(port): \(error); choose another --metrics_port")
    }
    var actual = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    self.port = Int(UInt16(bigEndian: actual.sin_port))
    self.fd = fd
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK)
    // The serving thread keeps the exporter alive: it runs as long as the process.
    let context = Unmanaged.passRetained(self).toOpaque()
    pthread_create(&thread, nil, { raw in
      Unmanaged<MetricsExporter>.fromOpaque(raw!).takeUnretainedValue().serve()
      return nil
    }, context)
    pthread_detach(thread)
  }

  /// Replaces the samples of one metric family.
  public func set(_ name: String, help: String, type: String = "gauge", samples: [Sample]) {
    pthread_mutex_lock(mutex)
    families[name] = (help, type, samples)
    pthread_mutex_unlock(mutex)
  }

  /// The exposition text (format version 0.0.4).
  public func exposition() -> String {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    var text = ""
    for name in families.keys.sorted() {
      let family = families[name]!
      text += "# HELP \(name) \(family.help)\n# TYPE \(name) \(family.type)\n"
      for sample in family.samples {
        let labels = sample.labels.keys.sorted().map { "\($0)=\"\(sample.labels[$0]!)\"" }.joined(separator: ",")
        text += labels.isEmpty ? "\(name) \(sample.value)\n" : "\(name){\(labels)} \(sample.value)\n"
      }
    }
    return text
  }

  /// How long a client may take to send its request and read the answer.
  public static let clientSeconds = 5.0
  /// Clients served at once; more wait in the backlog.
  static let clientLimit = 512

  private struct Client {
    let fd: Int32
    let deadline: Double
    var request: [UInt8] = []
    var response: [UInt8] = []
    var sent = 0
  }

  /// One poll loop for every client, each with its own deadline: an idle or slow client delays
  /// nobody else's scrape, and is closed when its time is up.
  private func serve() {
    var clients: [Client] = []
    while true {
      let now = Self.now()
      clients.removeAll { client in
        guard client.deadline <= now else { return false }
        close(client.fd)
        return true
      }
      var fds = [pollfd(fd: fd, events: clients.count < Self.clientLimit ? Int16(POLLIN) : 0, revents: 0)]
      fds += clients.map { pollfd(fd: $0.fd, events: Int16($0.response.isEmpty ? POLLIN : POLLOUT), revents: 0) }
      let wait = (clients.map(\.deadline).min() ?? now + 1) - now
      _ = poll(&fds, nfds_t(fds.count), Int32(max(0, min(wait, 1)) * 1000 + 1))
      var index = 0
      while index < clients.count {
        if fds[1 + index].revents == 0 { index += 1; continue }
        if advance(&clients[index]) {
          close(clients[index].fd)
          clients.remove(at: index); fds.remove(at: 1 + index)
        } else {
          index += 1
        }
      }
      if fds[0].revents != 0 {
        while clients.count < Self.clientLimit {
          let client = accept(fd, nil, nil)
          if client < 0 {
            // Out of descriptors: the listener stays readable, so wait a little instead of spinning.
            if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM { usleep(50_000) }
            break
          }
          _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL, 0) | O_NONBLOCK)
          clients.append(Client(fd: client, deadline: Self.now() + Self.clientSeconds))
        }
      }
    }
  }

  /// Reads the request or writes the answer; true when the client is finished with.
  private func advance(_ client: inout Client) -> Bool {
    if client.response.isEmpty {
      var chunk = [UInt8](repeating: 0, count: 4096)
      let n = recv(client.fd, &chunk, chunk.count, 0)
      if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return true }
      if n > 0 { client.request += chunk.prefix(n) }
      let complete = client.request.count >= 8192 || String(decoding: client.request, as: UTF8.self).contains("\r\n\r\n")
        || String(decoding: client.request, as: UTF8.self).contains("\n\n")
      guard complete else { return false }
      let line = String(decoding: client.request, as: UTF8.self).split(separator: "\r\n").first.map(String.init) ?? ""
      client.response = Array(MetricsExporter.response(for: line, exposition: line.hasPrefix("GET /metrics") ? exposition() : "").utf8)
    }
    let n = client.response.withUnsafeBytes { send(client.fd, $0.baseAddress! + client.sent, $0.count - client.sent, Int32(MSG_NOSIGNAL)) }
    if n < 0 && errno != EAGAIN && errno != EINTR { return true }
    if n > 0 { client.sent += n }
    return client.sent == client.response.count
  }

  static func response(for requestLine: String, exposition: String) -> String {
    let (status, body) = requestLine.hasPrefix("GET /metrics") ? ("200 OK", exposition) : ("404 Not Found", "only /metrics is served here\n")
    return "HTTP/1.0 \(status)\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
  }

  private static func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
  }
}
