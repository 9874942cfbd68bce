import Foundation
import Train

/// What a coordinator must know to take over a running job after a restart, kept in the job's
/// --model_dir: which configuration it runs, the last membership's number, the last step every
/// rank reported and the last one evaluated. Written atomically (a crash leaves the old journal or the new one) when a
/// membership forms, at most once a second as steps complete, and when the job ends.
struct JobJournal: Codable, Equatable {
  var configHash: String
  var generation: Int
  var lastCompletedStep: Int
  /// The last step whose evaluation every rank reported (nil in a journal from before it was kept).
  var lastEvaluatedStep: Int?
  var finished: Bool

  static func path(in directory: String) -> String { directory + "/coordinator-journal.json" }

  /// The journal in `directory`, nil when there is none. A journal that does not parse, or that is
  /// of another configuration, is an error naming the file (the coordinator warns and starts the
  /// job as new: its checkpoints are checked on their own).
  static func read(in directory: String, configHash: String) throws -> JobJournal? {
    let path = path(in: directory)
    guard access(path, F_OK) == 0 else { return nil }
    let journal: JobJournal
    do { journal = try JSONDecoder().decode(JobJournal.self, from: Data(try FileIO.read(path))) } catch {
      throw ControlError("\(path) is not a readable coordinator journal (\(error))")
    }
    guard journal.configHash == configHash else {
      throw ControlError("\(path) is the journal of a job with another configuration")
    }
    return journal
  }

  func write(in directory: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    try FileIO.writeAtomically(Array(try encoder.encode(self)), to: JobJournal.path(in: directory))
  }
}
