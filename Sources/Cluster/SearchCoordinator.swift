#if canImport(Glibc)
import Glibc
#endif
import Collective
import Foundation
import Model
import Search
import Train

/// `amoeba-coordinator --mode=search`: regularized evolution as a distributed job. The coordinator
/// keeps the population (`RegularizedEvolution`) and its history in --model_dir; every worker
/// that joins — at the start or at any time — gets a child to train alone on the proxy task, and
/// the next as soon as it reports (no barrier per cycle). A worker that fails, closes or goes
/// silent past --heartbeat_timeout has its child handed to the next free worker. A restarted
/// coordinator resumes from the history. At the end the best genotype is written to
/// `best.json` in --model_dir, ready for `--cell_name`.
public final class SearchCoordinator {
  public struct Options: Sendable {
    public var host = "0.0.0.0"
    public var port = 0
    public var token: String
    /// The proxy task's flags (model, training, data); each child's genotype replaces `cell_name`.
    public var config: [String: String]
    public var settings: SearchSettings
    /// Where the history and best.json live (--model_dir).
    public var directory: String
    public var heartbeatTimeout = 10.0
    public var handshakeTimeout = 10.0
    /// How long the search may have no worker at all before it gives up (--join_timeout).
    public var joinTimeout = 120.0
    public init(token: String, config: [String: String], settings: SearchSettings, directory: String) {
      self.token = token; self.config = config; self.settings = settings; self.directory = directory
    }
  }

  struct SearchWorker {
    var member: Member
    var child: Child?
    var since = 0.0
  }

  public let options: Options
  let listener: TCPListener
  let secret: JobSecret
  public var log: (String) -> Void = { print($0); fflush(nil) }

  public init(options: Options) throws {
    self.options = options
    secret = JobSecret(token: options.token)
    listener = try TCPListener(host: options.host, port: options.port)
  }

  public var port: Int { listener.address.port }

  public static func bestPath(in directory: String) -> String { directory + "/best.json" }

  public func run() -> Int32 {
    let historyPath = SearchHistory.path(in: options.directory)
    var search: RegularizedEvolution
    do {
      try FileIO.makeDirectory(options.directory)
      try SearchHistory.record(options.settings, in: options.directory)
      let history = try SearchHistory.read(historyPath)
      search = RegularizedEvolution(settings: options.settings, history: history)
      if !history.isEmpty { log("search: resuming from \(historyPath): \(history.count) children trained") }
    } catch {
      log("search: error: \(error)")
      return 1
    }
    let s = options.settings
    log("search: regularized evolution\(s.aging ? "" : " without aging (the worst removed)"), population \(s.populationSize), sample \(s.sampleSize), \(s.cycles) children, seed \(s.seed); waiting for workers on port \(port)")
    let admission = Admission(listener: listener, secret: secret, handshakeTimeout: options.handshakeTimeout,
                              heartbeatTimeout: options.heartbeatTimeout, log: log)
    var workers: [SearchWorker] = []
    let beat = max(0.05, min(1, options.heartbeatTimeout / 4))
    var lastBeat = 0.0, alone = monotonicNow()
    var best = search.history.max { $0.accuracy < $1.accuracy }
    while !search.finished {
      let now = monotonicNow()
      if workers.isEmpty {
        if now - alone > options.joinTimeout {
          log("search: error: no worker for \(Int(options.joinTimeout)) s (--join_timeout); \(search.history.count) of \(s.cycles) children trained, the history is in \(historyPath): start the coordinator again to resume")
          return 1
        }
      } else {
        alone = now
      }
      if now - lastBeat >= beat {
        lastBeat = now
        for worker in workers { try? worker.member.channel.send(.heartbeat(rank: -1), timeout: 5) }
      }
      // Hand out children to the free workers.
      for i in workers.indices where workers[i].child == nil {
        guard let child = search.nextChild() else { break }
        var config = options.config
        config["cell_name"] = child.genotype.json
        do {
          try workers[i].member.channel.send(.task(SearchTask(id: child.id, config: config, heartbeatTimeout: options.heartbeatTimeout)))
          workers[i].child = child; workers[i].since = now
        } catch {
          search.requeue(id: child.id)
        }
      }
      var fds = admission.descriptors
      let own = fds.count
      fds += workers.map { pollfd(fd: $0.member.channel.connection.fd, events: Int16(POLLIN), revents: 0) }
      _ = poll(&fds, nfds_t(fds.count), Int32(beat * 1000))
      var dropped: [(Int, String)] = []
      for (i, fd) in fds[own...].enumerated() {
        if fd.revents == 0 {
          if monotonicNow() - workers[i].member.lastHeard > options.heartbeatTimeout {
            dropped.append((i, "sent nothing for \(format(options.heartbeatTimeout, 1)) s (--heartbeat_timeout)"))
          }
          continue
        }
        workers[i].member.lastHeard = monotonicNow()
        let message: ControlMessage
        do { message = try workers[i].member.channel.receive(timeout: 30) } catch {
          dropped.append((i, "is gone: \(error)"))
          continue
        }
        switch message {
        case .heartbeat: break
        case let .taskResult(result):
          guard let child = workers[i].child, child.id == result.id else {
            dropped.append((i, "sent a result for child \(result.id), which it was not training"))
            continue
          }
          do {
            let entry = try search.report(id: result.id, accuracy: result.top1, trainSeconds: result.trainSeconds, worker: workers[i].member.ringAddress,
                                          at: Date().timeIntervalSince1970)
            try SearchHistory.append(entry, to: historyPath)
            if best == nil || entry.accuracy > best!.accuracy {
              best = entry
              try FileIO.writeAtomically(Array(entry.child.genotype.json.utf8), to: SearchCoordinator.bestPath(in: options.directory))
            }
            let accuracies = search.population.map(\.accuracy).sorted()
            log("search: child \(entry.child.id)" + (entry.child.parent.map { " (of \($0), \(entry.child.mutation!.rawValue) mutation)" } ?? " (random)")
                + ": top-1 \(format(entry.accuracy)) in \(Int(entry.trainSeconds)) s on \(workers[i].member.ringAddress); \(search.history.count)/\(s.cycles) trained, "
                + "population median \(format(accuracies[accuracies.count / 2])) best \(format(accuracies.last!)), best ever \(format(best!.accuracy)) (child \(best!.child.id))")
          } catch {
            log("search: error: \(error)")
            return 1
          }
          workers[i].child = nil
        case let .failure(_, text):
          dropped.append((i, "failed: \(text)"))
        default:
          dropped.append((i, "sent an unexpected \(message)"))
        }
      }
      for (i, why) in dropped.reversed() {
        let worker = workers.remove(at: i)
        worker.member.channel.connection.close()
        if let child = worker.child {
          search.requeue(id: child.id)
          log("search: \(worker.member.name) \(why); child \(child.id) goes to the next free worker")
        } else {
          log("search: \(worker.member.name) \(why)")
        }
      }
      admission.expire(now: monotonicNow())
      for member in admission.serve(Array(fds.prefix(own))) {
        log("search: \(member.name) joined (\(workers.count + 1) worker\(workers.isEmpty ? "" : "s"))")
        workers.append(SearchWorker(member: member))
      }
    }
    for worker in workers { try? worker.member.channel.send(.stop(reason: "finished")) }
    if let best {
      log("search: done: \(search.history.count) children; the best, child \(best.child.id) at top-1 \(format(best.accuracy)), is in \(SearchCoordinator.bestPath(in: options.directory)) (train it with --cell_name=\(SearchCoordinator.bestPath(in: options.directory))); `amoeba search report --model_dir \(options.directory)` for the curve")
    }
    return 0
  }
}
