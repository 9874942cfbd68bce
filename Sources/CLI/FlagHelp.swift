/// One line for every flag `--help` lists, under the group it belongs to. The groups follow the
/// reference's `amoeba_net.py` (its model and training hyperparameters, its TPU flags), then what
/// this project adds. A flag that means something else in one command is keyed "command/flag".
/// `Scripts/multiprocess-checks.sh` asks every command for `--help` and fails on a flag missing here.
public enum FlagHelp {
  public static let sections = ["Model (the reference's)", "Training (the reference's)", "Data", "Job and cluster",
                                "Gradient exchange", "Device", "Accepted for the reference's command lines, ignored",
                                "This command"]

  static let reference = "Accepted for the reference's command lines, ignored"

  static let lines: [String: (section: String, text: String)] = {
    var t: [String: (String, String)] = [:]
    func add(_ section: String, _ entries: [(String, String)]) { for (name, text) in entries { t[name] = (section, text) } }
    add("Model (the reference's)", [
      ("cell_name", "cell genotype: amoeba_net_d (AmoebaNet-D), amoeba_net_a/b/c (or their evol_net_* names), or a genotype file (path.json: `amoeba genotype` prints one)"),
      ("num_cells", "normal cells over the three stacks (N6 in DAWNBench's N6F256 is 6)"),
      ("reduction_size", "F: filters of the first stack's cells (doubled at each reduction)"),
      ("stem_reduction_size", "filters of the stem's 3x3 convolution"),
      ("image_size", "input height and width in pixels"),
      ("num_label_classes", "classes of the head (ImageNet: 1001, label 0 is background)"),
      ("use_aux_head", "the auxiliary head after cell int(2N/3) - 1, weight 0.4 in the loss"),
      ("aux_scaling", "width factor of the aux head's 128 and 768 channels"),
      ("dense_dropout_keep_prob", "dropout keep probability before the final layer"),
      ("drop_connect_keep_prob", "drop-path keep probability, reached linearly over training (1 = off)"),
      ("batch_norm_epsilon", "batch-norm epsilon (raised to 1.001e-5 as TensorFlow's fused kernel does)"),
      ("batch_norm_decay", "momentum of the batch-norm moving statistics"),
      ("weight_decay", "L2 factor on every conv and FC kernel, in the loss as factor * sum(w^2)/2"),
      ("fc_init", "FC weights of the heads: fan_out (the reference's, for 1001 classes) or zeros (loss starts at ln(classes))"),
    ])
    add("Training (the reference's)", [
      ("train_batch_size", "global batch, split over the workers"),
      ("eval_batch_size", "global evaluation batch"),
      ("lr", "peak learning rate (the reference scales it as 0.0025 * batch)"),
      ("lr_decay_value", "factor per decay period (DAWNBench: 0.88)"),
      ("lr_num_epochs_per_decay", "epochs per staircase step"),
      ("lr_decay_method", "exponential (staircase), cosine or constant"),
      ("lr_warmup_epochs", "linear warm-up length (default: 1% of the steps, the reference's 0.35 epochs at 35)"),
      ("num_epochs", "training length in epochs"),
      ("num_train_images", "training images per epoch (counted from --data_dir when not given)"),
      ("num_eval_images", "validation images evaluated (counted from --data_dir when not given)"),
      ("optimizer", "rmsprop (decay 0.9, momentum 0.9, epsilon 1.0), momentum or sgd"),
      ("moving_average_decay", "decay of the weight averages evaluation uses"),
      ("iterations_per_loop", "steps between checkpoints unless --save_checkpoints_steps is given"),
      ("num_epochs_per_eval", "epochs between evaluations"),
      ("mode", "train_and_eval, train or eval"),
      ("keep_checkpoint_max", "newest checkpoints kept in --model_dir"),
      ("micro_batch_size", "whole, N or auto: accumulate gradients over passes of N examples (BN per pass)"),
      ("model_dir", "checkpoints, TensorBoard events and metrics.jsonl; a restart resumes from it"),
      ("seed", "seed of the initial weights, the data order and every mask"),
    ])
    add("Data", [
      ("data_dir", "the TFRecord shards imagenet_to_gcs.py writes (train-*, validation-*)"),
      ("use_data", "builtin (procedural shapes), fake (random pixels) or real (--data_dir)"),
      ("on_bad_record", "skip (count and name a damaged record) or fail"),
      ("dct_method", "JPEG IDCT: INTEGER_FAST (TensorFlow's default) or INTEGER_ACCURATE"),
      ("input_threads", "threads decoding and augmenting per worker"),
      ("prefetch_batches", "batches prepared ahead of the step"),
      ("shuffle_buffer", "records shuffled together within each epoch's file order"),
      ("jpeg_downscale", "decode large JPEGs at 1/2 to 1/8 when the crop allows"),
      ("train_preprocessing", "inception (the reference's: 5-100% crops, flip, colour), crop_flip (50-100%, flip) or center (the evaluation's)"),
    ])
    add("Job and cluster", [
      ("workers", "number of worker processes the coordinator waits for"),
      ("port", "coordinator's TCP port (0: any free one, see --port_file)"),
      ("host", "address the coordinator listens on"),
      ("port_file", "file the coordinator writes its port to once listening"),
      ("log_every", "steps between progress lines"),
      ("heartbeat_timeout", "seconds of silence before a worker is declared dead (the job stops, or an elastic one re-forms without it)"),
      ("min_workers", "elastic: the fewest workers the job trains on; a lost worker's ring re-forms from the survivors, state in memory"),
      ("coordinator_grace", "seconds workers that lose the coordinator keep their state and reconnect (a restarted one resumes from its journal in --model_dir)"),
      ("max_workers", "elastic: the most workers the job trains on; more wait as spares, a worker joining later is admitted at a step boundary"),
      ("straggler_margin", "a worker whose own work (compute + input wait) is this share over the others' median is slow (0.5: 50%)"),
      ("straggler_steps", "slow steps in a row before a worker is named a straggler"),
      ("evict_stragglers", "treat a straggler as a failed worker (the job stops, or an elastic one re-forms without it)"),
      ("join_timeout", "seconds the coordinator waits for all workers to join (and an elastic job below --min_workers for replacements)"),
      ("handshake_timeout", "seconds a connection may take to prove the job token"),
      ("metrics_port", "serve Prometheus text at /metrics on this port"),
      ("metrics_host", "address of the metrics server (0.0.0.0 for a scraper on another host)"),
      ("job_token_file", "file with the job token (created with a fresh one, mode 0600, if missing)"),
      ("job_token", "the job token itself (prefer --job_token_file or AMOEBA_JOB_TOKEN: ps shows command lines)"),
      ("coordinator", "HOST:PORT of the coordinator"),
      ("listen", "this worker's address (or interface name) for the gradient ring"),
      ("connect_timeout", "seconds a worker waits for the coordinator and the start"),
      ("ring_timeout", "seconds a worker waits on a ring neighbour"),
      ("threads", "compute threads per process"),
      ("threads_per_worker", "compute threads of each worker launch starts"),
      ("save_checkpoints_steps", "steps between checkpoints (default: --iterations_per_loop)"),
      ("eval_on_moving_averages", "evaluate the moving-average weights (false: the live ones)"),
    ])
    add("Gradient exchange", [
      ("bucket_cap_mb", "gradient bucket size in MiB, overlapped with the backward pass"),
      ("gradient_compression", "none, bf16 or fp16 on the wire (averaged in float32)"),
      ("allreduce_chunk_kb", "each rank's share of a ring slice in KiB"),
      ("ring_mac", "a Poly1305 tag on every gradient frame (for networks not yours alone)"),
    ])
    add("Device", [
      ("device", "cpu (Swift kernels), xla_cpu, gpu or tpu (the whole step as XLA programs through PJRT)"),
      ("pjrt_plugin", "path of the PJRT plugin (default: where pip installs it)"),
      ("precision", "float32 or bfloat16 (bf16 contractions, float32 master weights)"),
      ("compilation_cache_dir", "where compiled XLA programs are kept between runs"),
      ("local_devices", "devices of this host one worker drives (all, or N; default 1): the step replicated over them, the batch split"),
    ])
    for name in ["tpu", "tpu_name", "master", "gcp_project", "tpu_zone", "use_tpu", "use_bp16", "num_shards",
                 "enable_hostcall", "transpose_enabled", "distributed_group_size", "export_dir", "export_to_tpu", "eval_timeout"] {
      t[name] = (reference, "the reference's TPU/Cloud flag; reported as ignored")
    }
    add("This command", [
      ("out", "output path"),
      ("steps", "steps to run"),
      ("json", "print JSON instead of a table"),
      ("repeats", "repetitions; the median is reported"),
      ("profile", "time per op kind"),
      ("preset", "bench-small (N6F64@128, batch 32) or tiny (N3F16@32, batch 64)"),
      ("lr-schedule/steps", "steps to print the learning rate at"),
      ("bench step/batch", "batch size"), ("bench step/image_size", "input size"), ("bench step/filters", "filters F"),
      ("bench step/cells", "normal cells"), ("fuse_bn_relu", "fuse each batch norm with the ReLU after it"),
      ("bench kernels/threads", "thread counts to measure, comma-separated"),
      ("passes", "also time each convolution's forward, input-gradient and filter-gradient pass alone"),
      ("bench allreduce/ranks", "processes in the ring on this machine"), ("sizes", "message sizes (K, M suffixes)"),
      ("chunk", "ring slice share per rank"), ("compression", "none, bf16 or fp16"), ("mac", "Poly1305 on every frame"),
      ("addresses", "HOST:PORT of every rank, comma-separated"), ("rank", "this process's rank"), ("bind", "address to listen on"),
      ("bench scaling/workers", "worker counts to measure, comma-separated"),
      ("bench scaling/local_devices", "devices per worker to measure, comma-separated (with --device xla_cpu, gpu or tpu)"),
      ("images", "images to write (training split)"), ("validation_images", "validation images to write"),
      ("bench data/images", "images per repetition"), ("train_shards", "training shards"), ("validation_shards", "validation shards"),
      ("raw_data_dir", "ImageNet as it ships: train/<synset>/*.JPEG, validation/*.JPEG, synset_labels.txt"),
      ("quality", "JPEG quality 1-100"), ("jpeg_dir", "also write the validation pictures as JPEG files here"),
      ("raw_dir", "also write every picture in ImageNet's layout (train/<synset>/, validation/, synset_labels.txt)"),
      ("fixtures", "ImageNet-format shards whose JPEGs are decoded"),
      ("photos", "a folder of JPEGs made elsewhere to decode instead of the built photo set (Scripts/peers/make_photos.py)"),
      ("split", "train (epoch 0's augmented order) or validation"), ("count", "examples to dump"),
      ("target", "parser to fuzz, or all"), ("iterations", "mutated inputs per target"),
      ("platform", "tpu (libtpu, no TPU needed) or cpu"), ("topology", "TPU topology, e.g. v5e:2x2"),
      ("xla compile/batch", "per-device batch"),
      ("xla compile/local_devices", "chips one replicated program spans (in-program all-reduce), e.g. 8 for v5e:2x4"), ("bench xla/steps", "steps to time"),
      ("weights", "an amoeba export file"), ("inputs", "an amoeba data dump file"), ("labels", "one label per input image"),
      ("global_step", "the step to take (sets the learning rate and the drop-path keep probability)"),
      ("synsets", "synsets file: label k is line k (imagenet_to_gcs.py's numbering)"),
      ("metadata", "imagenet_metadata.txt: words for each synset"), ("top", "classes to print per image"),
      ("data make-fake/image_size", "pictures are drawn at 1.25x this and cut to 75-100% of that each way"),
      ("data make-fake/seed", "seed of the pictures"),
      ("hashes", "print each record's decoded size and the SHA-256 of its pixels"),
      ("data inspect/scale", "with --hashes: decode at 1/2, 1/4 or 1/8 (1: full size)"),
      ("dct", "with --hashes: --dct=fast for libjpeg's fast IDCT (TensorFlow's default)"),
      ("rendezvous", "HOST:PORT where the ranks of a cross-host run meet"),
      ("step_compute_ms", "compute per step in ms (bench allreduce: a stand-in that sleeps; plan: the device's time at --hosts)"),
      ("backward_share", "the share of a step's compute that is backward, over which gradient buckets become ready"),
      ("link_gbps", "link rate in Gbit/s the prediction assumes"), ("latency_us", "one-way latency per ring hop in µs"),
      ("hosts", "hosts in the ring"), ("devices_per_host", "devices per host (they reduce inside their program first)"),
      ("device_price_per_hour", "price of one device per hour, for the projected cost"),
      ("host_price_per_hour", "price of one host (without its devices) per hour"),
      ("every", "a table row every N children"), ("search report/top", "best children to print"),
      ("search report/out", "where the SVG plot goes (default: --model_dir/search-report.svg)"),
      ("population", "search: members of the population (--mode=search)"), ("sample", "search: members sampled per tournament"),
      ("cycles", "search: children trained in all, the initial population included"), ("search_seed", "search: the seed of the search"),
      ("aging", "search: remove the oldest member (regularized evolution); false: the worst"),
    ])
    return t
  }()

  /// The line for `flag` in `command` ("bench step", "" for an executable's own flags).
  public static func line(_ flag: String, command: String) -> (section: String, text: String)? {
    lines[command + "/" + flag] ?? lines[flag]
  }
}
