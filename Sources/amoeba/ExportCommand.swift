import CLI
import Train

/// `amoeba export --model_dir D --out F.safetensors`: the moving-average weights and batch-norm
/// statistics of the newest valid checkpoint, under the reference's variable names (see
/// docs/CHECKPOINTS.md) — what evaluation uses.
struct ExportCommand {
  var modelDir: String
  var out: String

  init(flags: Flags) throws {
    var flags = flags
    modelDir = flags.string("model_dir", default: "")
    out = flags.string("out", default: "")
    try flags.finish()
    guard !modelDir.isEmpty, !out.isEmpty else { throw UsageError("export needs --model_dir DIR and --out FILE.safetensors") }
  }

  func run() throws {
    let exported = try CheckpointStore(directory: modelDir).exportAverages(to: out, report: { print("warning: \($0)") })
    print("wrote \(exported.count) tensors from step \(exported.step) to \(out)")
  }
}
