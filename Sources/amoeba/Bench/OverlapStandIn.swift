#if canImport(Glibc)
import Glibc
#endif
import Collective
import Foundation
import Model

/// Steps of the DAWNBench network's gradient exchange with the compute replaced by a stand-in of a
/// stated duration, so that many ranks fit on a machine of few cores: each step sleeps through the
/// forward share, then finishes the real gradient tensors (46.8 M floats of N6F256@224, in
/// backward's order) at an even pace over the backward share, copying each into its bucket and
/// handing full buckets to `GradientBuckets` as the trainer does, then waits for the ring. The
/// compute "runs" on a device, not these cores: sleeping leaves them to the ring, as an accelerator
/// does. Rank 0 prints the medians and what `OverlapModel` predicts for the same buckets.
struct OverlapStandIn {
  var computeSeconds: Double
  var backwardShare: Double
  var bucketBytes: Int
  var steps: Int
  /// The link rate the prediction assumes (the shaped rate); 0: no prediction.
  var linkGbps: Double
  var latencySeconds: Double

  var flags: [String] {
    ["--step_compute_ms", String(computeSeconds * 1000), "--backward_share", String(backwardShare),
     "--bucket_cap_mb", String(Double(bucketBytes) / Double(1 << 20)), "--steps", String(steps),
     "--link_gbps", String(linkGbps), "--latency_us", String(latencySeconds * 1e6)]
  }

  /// The DAWNBench network's trainable tensors (N6F256 at 224, aux head included), in the order
  /// backward finishes them: the reverse of the forward order.
  static func gradientSizes() throws -> [Int] {
    var config = NetworkConfig()
    config.numCells = 6; config.reductionSize = 256; config.imageSize = 224
    let model = try AmoebaNet(config: config, batchSize: 1, mode: .training)
    return model.parameters.filter(\.isTrainable).map(\.shape.elementCount).reversed()
  }

  func measure(_ ring: Ring, rank: Int, compression: WireCompression, where place: String) throws {
    let sizes = try OverlapStandIn.gradientSizes()
    let plan = GradientBuckets.plan(tensorSizes: sizes, bucketBytes: bucketBytes)
    let bucketSizes = plan.map { $0.reduce(0) { $0 + sizes[$1] } }
    let total = sizes.reduce(0, +)
    let source = UnsafeMutablePointer<Float>.allocate(capacity: sizes.max()!)
    defer { source.deallocate() }
    for i in 0..<sizes.max()! { source[i] = Float(i % 7) }
    let buckets = GradientBuckets(ring: ring, bucketSizes: bucketSizes, operation: .mean, compression: compression)
    defer { buckets.shutDown() }
    var rows: [(step: Double, exposed: Double, communication: Double, hidden: Double)] = []
    for step in 0...steps {
      try ring.barrier()
      let start = monotonicNow()
      var finished = 0
      for (b, members) in plan.enumerated() {
        var offset = 0
        for k in members {
          finished += sizes[k]
          OverlapStandIn.sleep(until: start + computeSeconds * (1 - backwardShare + backwardShare * Double(finished) / Double(total)))
          (buckets.buffer(b).baseAddress! + offset).update(from: source, count: sizes[k])
          offset += sizes[k]
        }
        buckets.markReady(b)
      }
      OverlapStandIn.sleep(until: start + computeSeconds)
      let statistics = try buckets.waitAll()
      let seconds = monotonicNow() - start
      if step > 0 { rows.append((seconds, seconds - computeSeconds, statistics.communicationSeconds, statistics.hiddenFraction)) }
    }
    guard rank == 0 else { return }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    let wire = compression == .none ? 4 : 2
    print("step stand-in: \(ring.size) ranks \(place), N6F256@224's \(sizes.count) gradient tensors (\(total) floats) in \(plan.count) buckets (cap \(Double(bucketBytes) / Double(1 << 20)) MiB), wire \(compression == .none ? "float32" : compression.rawValue), compute \(round1(computeSeconds * 1000)) ms (backward \(round1(backwardShare * 100))%), \(steps) steps; \(machineDescription())")
    let busbw = Double(total * wire) * 2 * Double(ring.size - 1) / Double(ring.size) / median(rows.map(\.communication)) / 1e9
    print("measured: step \(round1(median(rows.map(\.step)) * 1000)) ms, exposed communication \(round1(median(rows.map(\.exposed)) * 1000)) ms, all-reduce \(round1(median(rows.map(\.communication)) * 1000)) ms (busbw \(round3(busbw)) GB/s), hidden \(round1(median(rows.map(\.hidden)) * 100))% (medians)")
    guard linkGbps > 0 else { return }
    let model = OverlapModel(bucketSizes: bucketSizes, ranks: ring.size, bandwidth: linkGbps * 1e9 / 8, latency: latencySeconds,
                             wireBytes: wire, computeSeconds: computeSeconds, backwardShare: backwardShare)
    let predicted = model.prediction
    let error = (predicted.stepSeconds - median(rows.map(\.step))) / median(rows.map(\.step))
    print("predicted (OverlapModel, \(linkGbps) Gbit/s, \(round1(latencySeconds * 1e6)) µs a hop): step \(round1(predicted.stepSeconds * 1000)) ms, exposed \(round1(predicted.exposedSeconds * 1000)) ms, all-reduce \(round1(predicted.communicationSeconds * 1000)) ms; step error \(round1(error * 100))%")
  }

  static func sleep(until deadline: Double) {
    let left = deadline - monotonicNow()
    if left > 0 { usleep(useconds_t(left * 1e6)) }
  }
}
