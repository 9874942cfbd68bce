import Tensor
import Foundation
for threads in [1, 2] {
  let ctx = KernelContext(threads: threads)
  for n in [512, 1024, 2048] {
    let a = UnsafeMutablePointer<Float>.allocateAligned(n*n), b = UnsafeMutablePointer<Float>.allocateAligned(n*n), c = UnsafeMutablePointer<Float>.allocateAligned(n*n)
    for i in 0..<n*n { a[i] = Float.random(in: -1...1); b[i] = Float.random(in: -1...1) }
    var times: [Double] = []
    for _ in 0..<5 {
      let t = Date()
      GEMM.compute(transA: false, transB: false, m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, c: c, ldc: n, context: ctx)
      times.append(Date().timeIntervalSince(t))
    }
    times.sort()
    print(threads, n, 2.0*Double(n*n*n)/times[2]/1e9)
  }
}
