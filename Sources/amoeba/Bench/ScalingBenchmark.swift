import CLI
import Foundation

/// `amoeba bench scaling --preset bench-small|tiny --workers 1,2,4 [--device xla_cpu --local_devices 1,2,4]
/// [--steps N]`: the same job with each worker count (and each number of devices per worker) on this
/// machine (fake data, global batch fixed by the preset), reporting the median images/s and the
/// share of step time spent in communication that backward did not hide. XLA:CPU's virtual
/// devices share this machine's cores: the figure measures the replicated program's overhead, not
/// a speed-up.
struct ScalingBenchmark {
  var preset: String
  var workerCounts: [Int]
  var deviceCounts: [Int]
  var device: String
  var steps: Int

  init(flags: Flags) throws {
    var flags = flags
    preset = flags.string("preset", default: "bench-small")
    device = flags.string("device", default: "cpu")
    deviceCounts = try flags.intList("local_devices", default: [1])
    workerCounts = try flags.intList("workers", default: deviceCounts == [1] ? [1, 2, 4] : [1])
    steps = try flags.int("steps", default: 12)
    try flags.finish()
    guard deviceCounts == [1] || device != "cpu" else { throw UsageError("--local_devices needs --device xla_cpu, gpu or tpu") }
    guard ["bench-small", "tiny"].contains(preset) else { throw UsageError("--preset must be bench-small or tiny") }
    guard steps >= 3 else { throw UsageError("--steps must be at least 3") }
  }

  func run() throws {
    let presetFlags = preset == "bench-small"
      ? ["--num_cells=6", "--reduction_size=64", "--image_size=128", "--use_aux_head=true", "--train_batch_size=32"]
      : ["--num_cells=3", "--reduction_size=16", "--image_size=32", "--use_aux_head=false", "--train_batch_size=64", "--num_label_classes=10"]
    let batch = preset == "bench-small" ? 32 : 64
    print("scaling, preset \(preset) (global batch \(batch), fake data) on \(machineDescription()); workers share the machine's cores")
    print(pad("workers", 9) + pad("devices", 9) + pad("threads/worker", 16) + pad("images/s", 11) + pad("step ms", 10) + "exposed communication")
    for workers in workerCounts {
     for devices in deviceCounts {
      guard batch % (workers * devices) == 0 else { print("\(workers) x \(devices): skipped, batch \(batch) is not divisible"); continue }
      let directory = NSTemporaryDirectory() + "amoeba-scaling-\(getpid())-\(workers)-\(devices)"
      defer { try? FileManager.default.removeItem(atPath: directory) }
      // lr 0.04: at the preset's scaled 0.64 the XLA step's fake-data loss goes to NaN by step 3.
      let deviceFlags = device == "cpu" ? [] : ["--device", device, "--local_devices", String(devices), "--compilation_cache_dir=", "--lr=0.04"]
      var launch = try LaunchCommand(arguments: ["--workers", String(workers)] + deviceFlags + presetFlags + [
        "--use_data=fake", "--num_train_images=\(batch * steps)", "--num_epochs=1", "--mode=train", "--log_every=1",
        "--model_dir=\(directory)", "--iterations_per_loop=100000"])
      launch.quiet = true
      guard try launch.run() == 0 else { throw BenchmarkError("the \(workers)-worker job on \(devices) device(s) each failed") }
      let lines = (try String(contentsOfFile: directory + "/metrics.jsonl", encoding: .utf8)).split(separator: "\n")
      let records = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        .filter { $0["images_per_sec"] != nil }.dropFirst()  // the first step pays one-time costs
      func median(_ key: String) -> Double {
        let values = records.compactMap { $0[key] as? Double }.sorted()
        return values.isEmpty ? .nan : values[values.count / 2]
      }
      let stepSeconds = median("step_seconds"), exposed = median("exposed_communication_seconds")
      print(pad(String(workers), 9) + pad(String(devices), 9) + pad(String(launch.threadsPerWorker), 16)
            + pad(String(round1(median("images_per_sec"))), 11) + pad(String(round1(stepSeconds * 1000)), 10)
            + "\(round1(100 * exposed / max(stepSeconds, 1e-9)))%")
     }
    }
  }
}
