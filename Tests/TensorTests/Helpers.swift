import Tensor

/// Deterministic test data: uniform in [-1, 1) from `CounterRandom`.
func randomArray(_ count: Int, seed: UInt64) -> [Float] {
  (0..<count).map { CounterRandom.uniform(seed: seed, stream: 7, index: UInt64($0)) * 2 - 1 }
}

/// Largest |a − b| relative to max(1, |b|).
func maxRelativeError(_ a: [Float], _ b: [Float]) -> Float {
  precondition(a.count == b.count)
  var worst: Float = 0
  for i in a.indices { worst = max(worst, abs(a[i] - b[i]) / max(1, abs(b[i]))) }
  return worst
}


