#if canImport(Glibc)
import Glibc
#endif
import Cluster
import Collective
import Data
import Foundation
import JPEG
import Tensor
import Train

/// Every parser that reads bytes another machine or a file chose, driven with mutated valid inputs:
/// each input must be accepted or refused with an error, never trap (a trap ends the process, so
/// finishing is the proof), and never take longer than `hangSeconds`.
public struct FuzzTarget: Sendable {
  public let name: String
  /// Valid inputs the mutations start from.
  public let seeds: [[UInt8]]
  /// True when the input was accepted; throws (or returns false) when it was refused.
  public let run: @Sendable ([UInt8]) throws -> Bool

  public static let hangSeconds = 1.0

  public struct Report: Sendable, CustomStringConvertible {
    public var target: String
    public var inputs = 0, accepted = 0, refused = 0, hangs = 0
    public var slowestSeconds = 0.0
    public var description: String {
      "\(target): \(inputs) inputs, \(accepted) accepted, \(refused) refused, 0 crashes, \(hangs) hangs (slowest \(String(format: "%.2f", slowestSeconds * 1000)) ms)"
    }
  }

  /// `iterations` mutated inputs from `seed`.
  public func fuzz(iterations: Int, seed: UInt64) -> Report {
    var mutator = Mutator(seed: seed)
    var report = Report(target: name)
    for i in 0..<iterations {
      let input = mutator.mutate(seeds[i % seeds.count], other: seeds[mutator.below(seeds.count)])
      let started = monotonicNow()
      let accepted = (try? run(input)) ?? false
      let elapsed = monotonicNow() - started
      report.inputs += 1
      if accepted { report.accepted += 1 } else { report.refused += 1 }
      report.slowestSeconds = max(report.slowestSeconds, elapsed)
      if elapsed > FuzzTarget.hangSeconds { report.hangs += 1 }
    }
    return report
  }

  public static let all: [FuzzTarget] = [handshake, controlFrames, authenticatedControlBodies, ringGreetings, ringFrameHeaders,
                                         example, tfRecord, jpeg, safeTensors, sidecar]

  static let key = [UInt8](repeating: 0x42, count: 32)

  static let messages: [ControlMessage] = [
    .join(ringAddress: "10.0.0.2:40000", host: "worker-1"),
    .assignment(Assignment(rank: 1, size: 2, ringAddresses: ["10.0.0.1:1", "10.0.0.2:2"], config: ["lr": "0.04", "num_cells": "3"], jobID: "123",
                           heartbeatTimeout: 10, generation: 2, abandonStep: true)),
    .standby(reason: "spare"), .interrupted(rank: 1, step: 7, reason: "rank 0 closed the connection", generation: 2),
    .metrics(StepMetrics(rank: 0, step: 5, loss: 2.5, learningRate: 0.1, imagesPerSecond: 100, stepSeconds: 0.1, communicationSeconds: 0.01,
                         hiddenFraction: 0.5, busBandwidth: 1e9, inputWaitSeconds: 0, ringWaitSeconds: 0.004, badRecords: 0,
                         deviceSeconds: [0.09, 0.1])),
    .started(rank: 0, step: 5, source: 1, device: "XLA:cpu (PJRT 0.81)", localDevices: 2, generation: 3), .heartbeat(rank: 0), .evaluation(rank: 0, step: 5, top1: 3, top5: 4, count: 5, generation: 1),
    .done(rank: 1), .failure(rank: 1, message: "x"), .stop(reason: "finished"),
  ]

  static let handshake = FuzzTarget(name: "handshake", seeds: [
    Handshake.hello(magic: Handshake.workerMagic, nonce: [UInt8](repeating: 1, count: 32)),
    Handshake.hello(magic: Handshake.coordinatorMagic, nonce: [UInt8](repeating: 2, count: 32)),
  ]) { bytes in
    Handshake.parseHello(bytes, magic: Handshake.workerMagic) != nil || Handshake.parseHello(bytes, magic: Handshake.coordinatorMagic) != nil
  }

  /// Frames as a relay might alter them: the MAC must refuse all but the untouched.
  static let controlFrames = FuzzTarget(name: "control-frames", seeds: messages.map {
    ControlChannel.seal(Array(try! JSONEncoder().encode($0)), key: key, sequence: 7)
  }) { bytes in
    guard bytes.count >= ControlChannel.headerBytes else { return false }
    let header = Array(bytes.prefix(ControlChannel.headerBytes))
    let length = try ControlChannel.bodyLength(header, from: "fuzz")
    let rest = Array(bytes.dropFirst(ControlChannel.headerBytes))
    guard rest.count == length + ControlChannel.macBytes else { return false }
    _ = try ControlChannel.open(header: header, rest: rest, key: key, sequence: 7, from: "fuzz")
    return true
  }

  /// Bodies from a peer that holds the key (a buggy or hostile worker): sealed again after the
  /// mutation, so the JSON decoder itself is what is tested.
  static let authenticatedControlBodies = FuzzTarget(name: "control-bodies", seeds: messages.map { Array(try! JSONEncoder().encode($0)) }) { body in
    let frame = ControlChannel.seal(body, key: key, sequence: 0)
    _ = try ControlChannel.open(header: Array(frame.prefix(ControlChannel.headerBytes)), rest: Array(frame.dropFirst(ControlChannel.headerBytes)),
                                key: key, sequence: 0, from: "fuzz")
    return true
  }

  static let ringGreetings = FuzzTarget(name: "ring-greetings", seeds: [
    TCPRing.greeting(rank: 1, size: 4, jobID: 99, nonce: [UInt8](repeating: 3, count: 32)),
  ]) { bytes in TCPRing.greetingMatches(bytes, rank: 1, size: 4, jobID: 99) }

  static let ringFrameHeaders = FuzzTarget(name: "ring-frame-headers", seeds: [
    [0x41, 0x4D, 0x52, 0x47, 5, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0],
  ]) { bytes in bytes.withUnsafeBytes { TCPRing.problem(header: $0, sequence: 5, length: 1 << 18) == nil } }

  static let exampleSeed = Example(features: [
    "image/encoded": .bytes([[0xFF, 0xD8, 1, 2, 3]]), "image/format": .bytes([Array("JPEG".utf8)]),
    "image/class/label": .int64s([417]), "image/object/bbox/xmin": .floats([0.1, 0.2]), "image/height": .int64s([-1, Int64.max]),
  ]).encoded()

  static let example = FuzzTarget(name: "tf.Example", seeds: [exampleSeed]) { bytes in
    let example = try Example(decoding: bytes)
    _ = example.int64("image/class/label")
    return true
  }

  static let tfRecord = FuzzTarget(name: "tfrecord", seeds: [TFRecord.encode([exampleSeed, [], [1, 2, 3]]), TFRecord.encode([exampleSeed])]) { bytes in
    var reader = TFRecordReader(bytes: bytes, name: "fuzz.tfrecord")
    while let record = try reader.next() { _ = record.count }
    return true
  }

  static let jpeg = FuzzTarget(name: "jpeg", seeds: [
    JPEGEncoder(quality: 80).encode(picture(width: 21, height: 13, channels: 3), width: 21, height: 13, channels: 3),
    JPEGEncoder(quality: 60, subsampling: .none, restartInterval: 2).encode(picture(width: 17, height: 9, channels: 3), width: 17, height: 9, channels: 3),
    JPEGEncoder(quality: 95, restartInterval: 1).encode(picture(width: 16, height: 16, channels: 1), width: 16, height: 16, channels: 1),
  ]) { bytes in
    let image = try JPEG.decode(bytes, scale: [1, 2, 4, 8][Int(bytes.count % 4)], pixelLimit: 1 << 20)
    return image.pixels.count == image.width * image.height * 3
  }

  static func picture(width: Int, height: Int, channels: Int) -> [UInt8] {
    (0..<(width * height * channels)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ ($0 / width) &* 11) }
  }

  static let safeTensors = FuzzTarget(name: "safetensors", seeds: [
    SafeTensors.encode([SafeTensors.Tensor(name: "cell_0/1x1/weights", shape: Shape([2, 3]), values: [1, 2, 3, 4, 5, 6]),
                        SafeTensors.Tensor(name: "global_step", shape: Shape([]), values: [7])], metadata: ["format": "amoeba"]),
  ]) { bytes in
    _ = try SafeTensors.decode(bytes, file: "fuzz.safetensors")
    return true
  }

  static let sidecar = FuzzTarget(name: "checkpoint-sidecar", seeds: [
    Array(try! JSONEncoder().encode(CheckpointStore.Sidecar(globalStep: 40, tensorsFile: "model.ckpt-40.safetensors", tensorsBytes: 1000,
                                                            tensorsCRC32C: 123, seed: 0, dataPosition: 1280, config: ["num_cells": "3"]))),
  ]) { bytes in
    let sidecar = try JSONDecoder().decode(CheckpointStore.Sidecar.self, from: Data(bytes))
    return sidecar.format == "amoeba-checkpoint"
  }
}
