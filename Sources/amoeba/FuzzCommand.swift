import CLI
import Fuzzing

/// `amoeba fuzz [--target NAME|all] [--iterations N] [--seed S]`: the seeded mutation harness over
/// every parser of outside bytes (control handshake and frames, ring greetings and frame headers,
/// tf.Example, TFRecord framing, JPEG, safetensors, checkpoint sidecars). Prints one line per
/// target; a crash would end the process, so the final line is the proof that there was none.
struct FuzzCommand {
  var targets: [FuzzTarget]
  var iterations: Int
  var seed: UInt64

  init(arguments: [String]) throws {
    var flags = try Flags(arguments)
    let name = flags.string("target", default: "all")
    iterations = try flags.int("iterations", default: 100_000)
    seed = try flags.seed("seed", default: 1)
    try flags.finish()
    guard iterations >= 1 else { throw UsageError("--iterations must be at least 1") }
    if name == "all" {
      targets = FuzzTarget.all
    } else if let target = FuzzTarget.all.first(where: { $0.name == name }) {
      targets = [target]
    } else {
      throw UsageError("--target \(name): one of all, \(FuzzTarget.all.map(\.name).joined(separator: ", "))")
    }
  }

  func run() -> Int32 {
    var total = 0, hangs = 0
    for target in targets {
      let report = target.fuzz(iterations: iterations, seed: seed)
      print("fuzz \(report)")
      total += report.inputs; hangs += report.hangs
    }
    print("fuzz: \(total) inputs over \(targets.count) targets (seed \(seed)): 0 crashes, \(hangs) hangs (> \(FuzzTarget.hangSeconds) s)")
    return hangs == 0 ? 0 : 1
  }
}
