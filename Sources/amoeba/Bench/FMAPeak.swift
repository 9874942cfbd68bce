import CLI
import Tensor

/// The machine's measured FMA peak: twelve independent FMA chains per thread, enough to hide the
/// FMA latency on two pipes, in the same vector width as the kernels. Kernel figures are reported
/// as a fraction of this, measured in the same run.
enum FMAPeak {
  static func gflops(threads: Int, context: KernelContext) -> Double {
    let iterations = 20_000_000
    var sink = [Float](repeating: 0, count: threads)
    let seconds = medianSeconds(repeats: 3) {
      sink.withUnsafeMutableBufferPointer { out in
        context.pool.parallelFor(threads) { task, _ in out[task] = chains(iterations) }
      }
    }
    precondition(sink.allSatisfy { $0.isFinite })
    return Double(iterations) * 12 * Double(vectorWidth) * 2 * Double(threads) / seconds / 1e9
  }

  @inline(never)
  private static func chains(_ iterations: Int) -> Float {
    var a0 = FloatVector(repeating: 1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0
    var a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0
    let b = FloatVector(repeating: 0.999_999), c = FloatVector(repeating: 1e-7)
    for _ in 0..<iterations {
      a0.addProduct(b, c); a1.addProduct(b, c); a2.addProduct(b, c); a3.addProduct(b, c)
      a4.addProduct(b, c); a5.addProduct(b, c); a6.addProduct(b, c); a7.addProduct(b, c)
      a8.addProduct(b, c); a9.addProduct(b, c); a10.addProduct(b, c); a11.addProduct(b, c)
    }
    return (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11).sum()
  }
}
