import Testing
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import Telemetry

@Suite struct EventFileTests {
  @Test func recordsAreFramedWithMaskedCRCsAndCarryScalars() throws {
    let directory = NSTemporaryDirectory() + "amoeba-events-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let writer = try EventFileWriter(directory: directory)
    writer.add(step: 7, scalars: [("loss", 2.5), ("learning_rate", 0.125)])
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: writer.path)))
    var offset = 0, records: [[UInt8]] = []
    while offset < bytes.count {
      let length = Int(bytes[offset..<offset + 8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
      let lengthCRC = bytes[offset + 8..<offset + 12].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
      #expect(lengthCRC == TFRecordFrame.maskedCRC(Array(bytes[offset..<offset + 8])))
      let record = Array(bytes[offset + 12..<offset + 12 + length])
      let dataCRC = bytes[offset + 12 + length..<offset + 16 + length].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
      #expect(dataCRC == TFRecordFrame.maskedCRC(record))
      records.append(record)
      offset += 16 + length
    }
    #expect(records.count == 2)
    // The first is the file-version event; the second has step 7 and both tags and values.
    #expect(String(decoding: records[0], as: UTF8.self).contains("brain.Event:2"))
    let second = records[1]
    #expect(second[9] == 0x10 && second[10] == 7)
    #expect(String(decoding: second, as: UTF8.self).contains("learning_rate"))
    var value: Float = 2.5
    let encoded = withUnsafeBytes(of: &value) { Array($0) }
    #expect(second.indices.contains { i in i + 5 <= second.count && second[i] == 0x15 && Array(second[i + 1..<i + 5]) == encoded })
  }

  @Test func maskedCRCMatchesTensorFlowsForAnEmptyRecord() {
    // crc32c("") = 0, masked: rotate right 15 then add 0xa282ead8.
    #expect(TFRecordFrame.maskedCRC([]) == 0xA282_EAD8)
    #expect(TFRecordFrame.crc32c(Array("123456789".utf8)) == 0xE306_9283)
  }
}

@Suite struct MetricsExporterTests {
  @Test func servesTheExpositionOverHTTP() throws {
    let exporter = try MetricsExporter(host: "127.0.0.1", port: 0)
    exporter.set("amoeba_loss", help: "Mean training loss.", samples: [.init(labels: [:], value: 1.5)])
    exporter.set("amoeba_step_seconds", help: "Step time.", samples: [.init(labels: ["rank": "0"], value: 0.25), .init(labels: ["rank": "1"], value: 0.5)])
    let text = httpGet(port: exporter.port, path: "/metrics")
    #expect(text.hasPrefix("HTTP/1.0 200 OK"))
    #expect(httpGet(port: exporter.port, path: "/other").hasPrefix("HTTP/1.0 404"))
    #expect(text.contains("# HELP amoeba_loss Mean training loss.\n# TYPE amoeba_loss gauge\namoeba_loss 1.5\n"))
    #expect(text.contains("amoeba_step_seconds{rank=\"1\"} 0.5\n"))
  }
}

extension MetricsExporterTests {
  @Test func idleClientsDoNotHoldUpAScrape() throws {
    let exporter = try MetricsExporter(host: "127.0.0.1", port: 0)
    exporter.set("amoeba_loss", help: "Mean training loss.", samples: [.init(labels: [:], value: 2)])
    // 200 connections that never send a request: the old server served one client at a time with a
    // 5 s read timeout, so a scrape behind them waited 200 × 5 s.
    var idle: [Int32] = []
    for _ in 0..<200 { idle.append(rawConnect(port: exporter.port)) }
    defer { idle.forEach { close($0) } }
    let started = monotonicSeconds()
    let text = httpGet(port: exporter.port, path: "/metrics")
    #expect(text.contains("amoeba_loss 2.0\n"))
    // Answered before even one idle client's deadline (MetricsExporter.clientSeconds) ran out.
    #expect(monotonicSeconds() - started < MetricsExporter.clientSeconds - 1)
  }
}

func monotonicSeconds() -> Double {
  var t = timespec()
  clock_gettime(CLOCK_MONOTONIC, &t)
  return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

func rawConnect(port: Int) -> Int32 {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = in_port_t(UInt16(port).bigEndian)
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
  _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
  return fd
}

/// A bare HTTP/1.0 GET over a loopback socket (FoundationNetworking is not a dependency).
func httpGet(port: Int, path: String) -> String {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = in_port_t(UInt16(port).bigEndian)
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
  let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
  guard rc == 0 else { return "connect failed" }
  let request = Array("GET \(path) HTTP/1.0\r\n\r\n".utf8)
  _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
  var response = [UInt8](), buffer = [UInt8](repeating: 0, count: 4096)
  while true {
    let n = recv(fd, &buffer, buffer.count, 0)
    if n <= 0 { break }
    response += buffer[0..<n]
  }
  return String(decoding: response, as: UTF8.self)
}
