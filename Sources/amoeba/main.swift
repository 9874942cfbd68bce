#if canImport(Glibc)
import Glibc
#endif
import CLI
import Cluster

/// `amoeba`: the tools CLI. Subcommands grow with the project; each prints its own usage.
let usage = """
  usage: amoeba <command> [flags]

  commands:
    summary [model flags]                                  per-stage shapes, parameter counts, multiply-adds
    search report --model_dir D [--top 5] [--every 10] [--out FILE.svg]
                                                          a search's best genotypes, its accuracy-by-children table and plot
    genotype [--cell_name NAME|FILE.json]                  a genotype as file JSON (a built-in one to start from, or a file checked)
    lr-schedule [training flags] --steps 0,100,437         the learning rate at each step
    launch --workers N [--device cpu|xla_cpu|gpu|tpu] [--precision …] [model, training and data flags]
                                                          a coordinator and N workers on this machine
    train [model, training and data flags]                 single-process training with progress and evaluation
    data inspect FILE...                                   TFRecord record counts, labels, image sizes, damage
    data dump --data_dir D [--split validation] [--image_size 224] [--count 16] --out FILE
                                                          the model's input tensors (float32) for a look or a comparison
    data convert --raw_data_dir D --out DIR [--train_shards 1024 --validation_shards 128]
                                                          ImageNet's JPEG folders into imagenet_to_gcs.py's shards (resumable)
    data make-fake --out DIR [--train_shards 2 --validation_shards 1 --images 1000 --image_size 64]
                                                          ImageNet-format shards with real JPEGs, for tests
    export --model_dir DIR --out FILE.safetensors          the moving-average weights of the newest checkpoint
    predict --model_dir DIR [--data_dir DIR | --synsets FILE [--metadata FILE]] [--top 5] IMAGE.JPEG...
                                                          each image's top classes from the moving-average weights
    crosscheck --weights W.safetensors --inputs X.f32 --labels 3,1 [--global_step S] [model and training flags] --out R.safetensors
                                                          eval logits and one training step's losses, gradients, state and masks,
                                                          for an independent implementation to recompute (Scripts/crosscheck.sh)
    fuzz [--target all|NAME] [--iterations 100000] [--seed 1]
                                                          mutated inputs for every parser of outside bytes
    bench kernels [--threads 1,2] [--repeats N] [--json]   GFLOP/s of the CPU kernels vs the FMA peak
    bench allreduce --ranks N --sizes 64K,1M,256M [--chunk 512K] [--compression none|bf16|fp16] [--mac] [--json]
                                                          ring all-reduce over loopback: time, algbw, busbw, #wrong
    bench allreduce --addresses H0:P0,H1:P1,... --rank R [--bind H:P] [--sizes ...]
                                                          the same across hosts: run once per host, rank 0 prints
    bench allreduce --ranks N | --addresses … --rank R  --step_compute_ms C [--bucket_cap_mb 25] [--steps 8] [--link_gbps L]
                                                          the DAWNBench gradients in buckets behind a compute stand-in: exposed communication
    plan --hosts H [--devices_per_host D] --link_gbps L --step_compute_ms C [--gradient_compression none|bf16]
         [--latency_us 50] [--device_price_per_hour P] [--host_price_per_hour Q]
                                                          predicted step time, exposed communication, efficiency, DAWNBench time and cost
    bench scaling --preset bench-small|tiny --workers 1,2,4 [--device xla_cpu --local_devices 1,2,4] [--steps N]
                                                          images/s and exposed communication per worker count
    bench train --preset bench-small|tiny [--steps N] [--threads N] [--profile] [--device cpu|xla_cpu]
                                                          whole-model training images/s and peak RSS
    bench data [--out DIR] [--image_size 224] [--images 64] [--repeats 5]
                                                          JPEG decode MB/s and images/s, pipeline images/s on 1 and 2 threads
    bench xla --preset tiny|bench-small [--steps 5] [--pjrt_plugin .pjrt/xla_cpu_pjrt.so]
                                                          forward, loss and gradients on XLA:CPU vs the Swift executor
    xla compile --platform tpu|cpu [--topology v5e:2x2] [model and training flags] [--batch 128 (per device)] [--precision float32|bfloat16] [--out FILE]
                                                          the train step compiled ahead of time (libtpu needs no TPU): time, size, device memory
    bench step [--batch 32] [--image_size 32] [--filters 64] [--cells 3] [--steps 5] [--threads N] [--profile]
                  [--fuse_bn_relu true|false]
                                                          one training step of a small NASNet-style network
  """

var arguments = Array(CommandLine.arguments.dropFirst())
if AmoebaVersion.requested(arguments) {
  print("amoeba \(AmoebaVersion.release) (cluster protocol \(Handshake.protocolVersion))")
  exit(0)
}
do {
  switch (arguments.first, arguments.dropFirst().first) {
  case ("lr-schedule", _):
    try LearningRateCommand(flags: try Flags(Array(arguments.dropFirst()))).run()
  case ("fuzz", _):
    exit(try FuzzCommand(arguments: Array(arguments.dropFirst())).run())
  case ("launch", _):
    exit(try LaunchCommand(arguments: Array(arguments.dropFirst())).run())
  case ("data", "make-fake"):
    try DataMakeFakeCommand(flags: try Flags(Array(arguments.dropFirst(2)))).run()
  case ("data", "convert"):
    exit(try DataConvertCommand(flags: try Flags(Array(arguments.dropFirst(2)))).run())
  case ("data", "dump"):
    try DataDumpCommand(flags: try Flags(Array(arguments.dropFirst(2)))).run()
  case ("data", "inspect"):
    exit(try DataInspectCommand(arguments: Array(arguments.dropFirst(2))).run())
  case ("predict", _):
    exit(try PredictCommand(arguments: Array(arguments.dropFirst())).run())
  case ("crosscheck", _):
    try CrossCheckCommand(flags: try Flags(Array(arguments.dropFirst()))).run()
  case ("export", _):
    try ExportCommand(flags: try Flags(Array(arguments.dropFirst()))).run()
  case ("search", "report"):
    try SearchReportCommand(flags: try Flags(Array(arguments.dropFirst(2)))).run()
  case ("plan", _):
    try PlanCommand(flags: try Flags(Array(arguments.dropFirst()))).run()
  case ("genotype", _):
    try GenotypeCommand(flags: try Flags(Array(arguments.dropFirst()))).run()
  case ("train", _):
    try TrainCommand(flags: try Flags(Array(arguments.dropFirst()))).run()
  case ("summary", _):
    try SummaryCommand(flags: try Flags(Array(arguments.dropFirst()))).run()
  case ("bench", "kernels"):
    try KernelBenchmark(flags: try Flags(Array(arguments.dropFirst(2)))).run()
  case ("bench", "allreduce"):
    try AllReduceBenchmark(flags: try Flags(Array(arguments.dropFirst(2)))).run()
  case ("bench", "scaling"):
    try ScalingBenchmark(flags: try Flags(Array(arguments.dropFirst(2)))).run()
  case ("bench", "train"):
    try TrainBenchmark(flags: try Flags(Array(arguments.dropFirst(2)))).run()
  case ("bench", "data"):
    try DataBenchmark(flags: try Flags(Array(arguments.dropFirst(2)))).run()
  case ("bench", "xla"):
    try XLABenchmark(flags: try Flags(Array(arguments.dropFirst(2)))).run()
  case ("xla", "compile"):
    try XLACompileCommand(flags: try Flags(Array(arguments.dropFirst(2)))).run()
  case ("bench", "step"):
    try StepBenchmark(flags: try Flags(Array(arguments.dropFirst(2)))).run()
  case ("help", _), ("--help", _), ("-h", _), (nil, _):
    print(usage)
  default:
    throw UsageError("unknown command '\(arguments.joined(separator: " "))'")
  }
} catch let help as HelpRequested {
  let command = arguments.prefix { !$0.hasPrefix("-") }.joined(separator: " ")
  print("usage: amoeba \(command) [flags]\n\n\(help.rendered(command: command))"
        + (command == "launch" ? "\n  and every amoeba-coordinator flag (amoeba-coordinator --help), passed on to the coordinator" : ""))
  exit(0)
} catch let error as UsageError {
  printError("amoeba: \(error.message)\n\(usage)")
  exit(ExitStatus.usage)
} catch where ExitStatus.isUsage(error) {
  printError("amoeba: \(error)")
  exit(ExitStatus.usage)
} catch {
  printError("amoeba: \(error)")
  exit(ExitStatus.failure)
}
