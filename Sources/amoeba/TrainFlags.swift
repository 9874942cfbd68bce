import CLI
import Train

/// `amoeba lr-schedule [training flags] --steps 0,100,437`: the learning rate at each step, one
/// `step lr` line each.
struct LearningRateCommand {
  var config: TrainingConfig
  var steps: [Int]

  init(flags: Flags) throws {
    var flags = flags
    config = try flags.trainingConfig()
    let text = flags.string("steps", default: "0")
    steps = try text.split(separator: ",").map {
      guard let step = Int($0), step >= 0 else { throw UsageError("--steps must be comma-separated non-negative integers, got '\(text)'") }
      return step
    }
    try flags.finish()
    try config.validate()
  }

  func run() {
    let schedule = LearningRateSchedule(config)
    for step in steps { print("\(step) \(schedule.learningRate(at: step))") }
  }
}
