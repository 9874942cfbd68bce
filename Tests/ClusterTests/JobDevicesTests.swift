import Testing
@testable import Cluster
@testable import Collective

@Suite struct JobDevicesTests {
  @Test func hostsTimesDevicesAndTheRankTable() throws {
    let pod = JobDevices(kinds: ["XLA:tpu (PJRT 0.117)", "XLA:tpu (PJRT 0.117)"], counts: [8, 8])
    #expect(pod.summary == "2 hosts × 8 devices (XLA:tpu (PJRT 0.117))")
    #expect(pod.total == 16 && pod.hosts == 2)
    let mixed = JobDevices(kinds: ["cpu", "XLA:cpu (PJRT 0.81)", "XLA:cpu (PJRT 0.81)"], counts: [1, 2, 2])
    #expect(mixed.summary == "3 hosts, 5 devices (4× XLA:cpu (PJRT 0.81), 1× cpu)")
    #expect(JobDevices(kinds: ["cpu"], counts: [1]).summary == "1 host × 1 device (cpu)")
    #expect(pod.table(hosts: [("t1v-0", "10.0.0.2:41000"), ("t1v-1", "10.0.0.3:41000")], globalBatch: 1024) == [
      "rank  host   ring address    devices                  batch/device",
      "0     t1v-0  10.0.0.2:41000  8× XLA:tpu (PJRT 0.117)  64",
      "1     t1v-1  10.0.0.3:41000  8× XLA:tpu (PJRT 0.117)  64",
    ])
    // Each rank's own share over its devices: 1024 over 3 hosts is 342, 341, 341, and 341 does not split over 2.
    let rows = mixed.table(hosts: [("a", "x:1"), ("b", "x:2"), ("c", "x:3")], globalBatch: 1024)
    #expect(rows[1].hasSuffix(" 342") && rows[2].hasSuffix(" ?") && rows[3].hasSuffix(" ?"), "\(rows)")
    #expect(mixed.table(hosts: [("a", "x:1"), ("b", "x:2"), ("c", "x:3")], globalBatch: 1026).map { $0.split(separator: " ").last! } == ["batch/device", "342", "171", "171"])
  }

  @Test func deviceTimesSpreadOverRanksAndSkipTheUnknown() {
    let reports = [StepMetrics(rank: 0, step: 1, loss: 1, learningRate: 0.1, imagesPerSecond: 1, stepSeconds: 1, deviceSeconds: [0.02, 0.03]),
                   StepMetrics(rank: 1, step: 1, loss: 1, learningRate: 0.1, imagesPerSecond: 1, stepSeconds: 1, deviceSeconds: [-1, 0.05])]
    let spread = JobDevices.spread(reports)
    #expect(spread?.fastest == 0.02 && spread?.slowest == 0.05)
    #expect(JobDevices.spread([StepMetrics(rank: 0, step: 1, loss: 1, learningRate: 0.1, imagesPerSecond: 1, stepSeconds: 1)]) == nil)
  }
}
