/// What every fast kernel needs besides its operands: the thread pool and scratch memory that is
/// allocated once, so that no kernel allocates while a step runs.
///
/// Scratch is split by the pool's thread index (`packedA(thread:)`) or shared between the two
/// phases of one kernel call (`packedB`); either way it is only touched inside a kernel call, and
/// kernels are called one at a time. That is why the class may be shared across threads.
public final class KernelContext: @unchecked Sendable {
  public let pool: ThreadPool
  private let packedABuffers: UnsafeMutablePointer<Float>
  private let panelBBuffers: UnsafeMutablePointer<Float>
  public let packedB: UnsafeMutablePointer<Float>
  /// The GEMM's register tile, for every call with this context (packing follows its shape).
  public let gemm: GEMMKernel
  /// The GEMM's block sizes around that tile (the scratch above is sized by them).
  public let blocking: GEMMBlocking

  /// `blocking` nil: the one chosen for `gemm` from this host's caches (`GEMMBlocking.forThisHost`).
  public init(threads: Int = ThreadPool.onlineCores, gemm: GEMMKernel = .detected, blocking: GEMMBlocking? = nil) {
    pool = ThreadPool(threadCount: threads)
    self.gemm = gemm
    let blocking = blocking ?? GEMMBlocking.forThisHost(gemm)
    self.blocking = blocking
    packedABuffers = .allocateAligned(blocking.packedAElements * threads)
    packedB = .allocateAligned(blocking.packedBElements)
    panelBBuffers = .allocateAligned(blocking.panelBElements(nr: gemm.nr) * threads)
  }

  deinit {
    packedABuffers.deallocate()
    panelBBuffers.deallocate()
    packedB.deallocate()
  }

  public var threadCount: Int { pool.threadCount }

  /// This thread's buffer for one packed MC×KC block of A.
  @inline(__always)
  public func packedA(thread: Int) -> UnsafeMutablePointer<Float> {
    packedABuffers + thread * blocking.packedAElements
  }

  /// This thread's buffer for the B panel of GEMM's column-panel path.
  @inline(__always)
  public func panelB(thread: Int) -> UnsafeMutablePointer<Float> {
    panelBBuffers + thread * blocking.panelBElements(nr: gemm.nr)
  }
}

extension UnsafeMutablePointer where Pointee == Float {
  /// Uninitialised floats on a 64-byte (cache-line, zmm) boundary. Free with `deallocate()`.
  public static func allocateAligned(_ count: Int) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer.allocate(byteCount: Swift.max(count, 1) * 4, alignment: 64)
      .bindMemory(to: Float.self, capacity: Swift.max(count, 1))
  }
}
