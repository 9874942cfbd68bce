import Testing
@testable import Cluster
import Collective

/// A worker builds the dataset the coordinator configured: the built-in set as large as the job
/// says (as `amoeba train` makes it), not its default 20,000 training images.
@Suite struct WorkerDataTests {
  @Test func theBuiltInSetHasTheJobsImageCounts() throws {
    let worker = Worker(options: Worker.Options(coordinator: SocketAddress(host: "127.0.0.1", port: 1), token: "t"))
    let job = try Worker.JobSettings(config: ["use_data": "builtin", "num_train_images": "7200", "num_eval_images": "500",
                                              "image_size": "32", "num_cells": "3", "reduction_size": "8"])
    let local = try worker.prepare(job)
    #expect(local.dataset.count(.train) == 7200)
    #expect(local.dataset.count(.validation) == 500)
  }
}
