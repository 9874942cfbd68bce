import CLI
import Collective
import Foundation

/// `amoeba plan --hosts H [--devices_per_host D] --link_gbps L --step_compute_ms C [--latency_us 50]
/// [--gradient_compression none|bf16] [--bucket_cap_mb 25] [--backward_share 0.67]
/// [--device_price_per_hour P] [--host_price_per_hour Q]`: the step time, exposed communication and
/// scaling efficiency `OverlapModel` predicts for the DAWNBench network's gradients over a ring of
/// H hosts (a host's D devices reduce inside their program first), for H and for the powers of two
/// below it at the same global batch (a device's compute grows as hosts fall: C·H/h), and the
/// projected time and cost of the DAWNBench run to 93% top-5.
struct PlanCommand {
  var hosts: Int
  var devicesPerHost: Int
  var linkGbps: Double
  var computeSeconds: Double
  var latencySeconds: Double
  var wireBytes: Int
  var bucketBytes: Int
  var backwardShare: Double
  var devicePrice: Double
  var hostPrice: Double

  /// The reference's DAWNBench entry reached 93% top-5 after epoch 33 of 35, at a global batch of
  /// 1024: ceil(1,281,167 / 1024) = 1252 steps an epoch.
  static let stepsTo93 = 33 * 1252

  init(flags: Flags) throws {
    var flags = flags
    hosts = try flags.int("hosts", default: 0)
    devicesPerHost = try flags.int("devices_per_host", default: 1)
    linkGbps = try flags.double("link_gbps", default: 0)
    computeSeconds = try flags.double("step_compute_ms", default: 0) / 1000
    latencySeconds = try flags.double("latency_us", default: 50) / 1e6
    let compression = flags.string("gradient_compression", default: "none")
    guard let wire = ["none": 4, "bf16": 2, "fp16": 2][compression] else {
      throw UsageError("--gradient_compression must be none, bf16 or fp16, got '\(compression)'")
    }
    wireBytes = wire
    bucketBytes = Int(try flags.double("bucket_cap_mb", default: 25) * Double(1 << 20))
    backwardShare = try flags.double("backward_share", default: 2.0 / 3)
    devicePrice = try flags.double("device_price_per_hour", default: 0)
    hostPrice = try flags.double("host_price_per_hour", default: 0)
    try flags.finish()
    guard hosts >= 1, devicesPerHost >= 1 else { throw UsageError("--hosts and --devices_per_host must be at least 1 (--hosts is required)") }
    guard linkGbps > 0 else { throw UsageError("--link_gbps must be a positive link rate in Gbit/s (e.g. 10, 25, 100)") }
    guard computeSeconds > 0 else { throw UsageError("--step_compute_ms must be the device time of one step at this size, in ms") }
    guard latencySeconds >= 0, bucketBytes > 0, (0...1).contains(backwardShare) else {
      throw UsageError("--latency_us ≥ 0, --bucket_cap_mb > 0 and --backward_share in [0, 1]")
    }
  }

  func run() throws {
    let sizes = try OverlapStandIn.gradientSizes()
    let plan = GradientBuckets.plan(tensorSizes: sizes, bucketBytes: bucketBytes)
    let bucketSizes = plan.map { $0.reduce(0) { $0 + sizes[$1] } }
    print("plan: N6F256@224 (\(sizes.reduce(0, +)) gradient floats in \(plan.count) buckets of ≤ \(Double(bucketBytes) / Double(1 << 20)) MiB), "
          + "\(wireBytes == 4 ? "float32" : "16-bit") on the wire, \(linkGbps) Gbit/s links, \(round1(latencySeconds * 1e6)) µs a hop, "
          + "global batch 1024, \(devicesPerHost) device\(devicesPerHost == 1 ? "" : "s") a host; \(round1(computeSeconds * 1000)) ms of compute a step at \(hosts) hosts")
    print(pad("hosts", 7) + pad("devices", 9) + pad("compute ms", 12) + pad("all-reduce ms", 15) + pad("exposed ms", 12) + pad("step ms", 10)
          + pad("efficiency", 12) + pad("images/s", 11) + "to 93% top-5")
    var counts: [Int] = []
    var h = 1
    while h < hosts { counts.append(h); h *= 2 }
    counts.append(hosts)
    for h in counts {
      let model = OverlapModel(bucketSizes: bucketSizes, ranks: h, bandwidth: linkGbps * 1e9 / 8, latency: latencySeconds,
                               wireBytes: wireBytes, computeSeconds: computeSeconds * Double(hosts) / Double(h), backwardShare: backwardShare)
      let p = model.prediction
      let hours = Double(PlanCommand.stepsTo93) * p.stepSeconds / 3600
      print(pad(String(h), 7) + pad(String(h * devicesPerHost), 9) + pad(String(round1(p.computeSeconds * 1000)), 12)
            + pad(String(round1(p.communicationSeconds * 1000)), 15) + pad(String(round1(p.exposedSeconds * 1000)), 12)
            + pad(String(round1(p.stepSeconds * 1000)), 10) + pad("\(round1(p.efficiency * 100))%", 12)
            + pad(String(Int((1024 / p.stepSeconds).rounded())), 11) + "\(round2(hours)) h" + cost(hours: hours, hosts: h))
    }
    print("(\(PlanCommand.stepsTo93) steps: the reference's DAWNBench entry passed 93% top-5 after epoch 33 of 35, in 7.47 h on one TPU v2-8 for $49.30; "
          + "compute is the device's alone, the input pipeline assumed to keep up)")
  }

  func cost(hours: Double, hosts: Int) -> String {
    let perHour = Double(hosts) * (Double(devicesPerHost) * devicePrice + hostPrice)
    return perHour > 0 ? ", $\(round2(hours * perHour))" : ""
  }

  func round2(_ x: Double) -> Double { (x * 100).rounded() / 100 }
}
