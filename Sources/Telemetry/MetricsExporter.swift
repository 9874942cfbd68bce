#if canImport(Glibc)
import Glibc
#endif

/// The Prometheus text exposition of the job's latest metrics, served at `http://host:port/metrics`
/// by a small HTTP/1.0 responder on its own thread. Values are set by the coordinator; every line
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

  /// Listens on `host:port` (0 picks a free port).
  public init(host: String = "0.0.0.0", port: Int = 0) throws(TelemetryError) {
    pthread_mutex_init(mutex, nil)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, host, &address.sin_addr)
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard bound == 0, listen(fd, 16) == 0 else {
      let error = String(cString: strerror(errno))
      close(fd)
      throw .io("metrics port \(host):\(port): \(error); choose another --metrics_port")
    }
    var actual = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    self.port = Int(UInt16(bigEndian: actual.sin_port))
    self.fd = fd
    let context = Unmanaged.passUnretained(self).toOpaque()
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

  private func serve() {
    while true {
      let client = accept(fd, nil, nil)
      if client < 0 { if errno == EINTR { continue }; return }
      var timeout = timeval(tv_sec: 5, tv_usec: 0)
      setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
      var request = [UInt8](repeating: 0, count: 4096)
      let n = recv(client, &request, request.count, 0)
      let line = n > 0 ? String(decoding: request[0..<n], as: UTF8.self).split(separator: "\r\n").first.map(String.init) ?? "" : ""
      let body: String, status: String
      if line.hasPrefix("GET /metrics") {
        (status, body) = ("200 OK", exposition())
      } else {
        (status, body) = ("404 Not Found", "only /metrics is served here\n")
      }
      let response = "HTTP/1.0 \(status)\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
      _ = Array(response.utf8).withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      close(client)
    }
  }
}
