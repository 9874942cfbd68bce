import Collective

/// How workers average gradients, as flags a Horovod or DDP user looks for: `--bucket_cap_mb`
/// (DDP's name; Horovod's fusion threshold), `--gradient_compression=none|bf16|fp16` (Horovod's
/// fp16 compression, DDP's bf16 hook; off by default, as the reference averages in float32) and
/// `--allreduce_chunk_kb` (each rank's chunk of a ring slice, `Ring.chunkBytes`).
///
/// The coordinator sends these with the rest of the job's flags, so every rank uses the same values:
/// the ring's frames only line up when every rank cuts buckets and slices alike.
public struct CommunicationOptions: Sendable, Equatable {
  public var bucketCapMB: Double = 25
  public var compression: WireCompression = .none
  public var chunkKB: Int = 512
  /// A Poly1305 tag on every ring frame (`--ring_mac`), keyed per link from the job token.
  public var ringMAC = false

  public init() {}

  public var bucketBytes: Int { Int(bucketCapMB * Double(1 << 20)) }
  public var chunkBytes: Int { chunkKB << 10 }

  public var flagValues: [String: String] {
    ["bucket_cap_mb": String(bucketCapMB), "gradient_compression": compression.rawValue, "allreduce_chunk_kb": String(chunkKB), "ring_mac": String(ringMAC)]
  }
}

extension Flags {
  public mutating func communicationOptions() throws -> CommunicationOptions {
    var options = CommunicationOptions()
    options.bucketCapMB = try double("bucket_cap_mb", default: options.bucketCapMB)
    guard options.bucketCapMB > 0, options.bucketCapMB <= 4096 else {
      throw UsageError("--bucket_cap_mb must be in (0, 4096], got \(options.bucketCapMB)")
    }
    let compression = string("gradient_compression", default: "none")
    guard let wire = WireCompression(rawValue: compression) else {
      throw UsageError("--gradient_compression must be none, bf16 or fp16, got '\(compression)'")
    }
    options.compression = wire
    options.chunkKB = try int("allreduce_chunk_kb", default: options.chunkKB)
    guard (4...(1 << 20)).contains(options.chunkKB) else {
      throw UsageError("--allreduce_chunk_kb must be in 4...1048576 (KiB per rank and slice), got \(options.chunkKB)")
    }
    options.ringMAC = try bool("ring_mac", default: options.ringMAC)
    return options
  }
}
