// libFuzzer's entry point over the same targets as `amoeba fuzz` (Sources/Fuzzing): built by
// Scripts/libfuzzer.sh with `swiftc -sanitize=fuzzer`, the target named by AMOEBA_FUZZ_TARGET.
import Fuzzing
import Glibc

let target: FuzzTarget = {
  let name = getenv("AMOEBA_FUZZ_TARGET").map { String(cString: $0) } ?? "control-frames"
  guard let target = FuzzTarget.all.first(where: { $0.name == name }) else {
    fputs("AMOEBA_FUZZ_TARGET=\(name): one of \(FuzzTarget.all.map(\.name).joined(separator: ", "))\n", stderr)
    exit(2)
  }
  return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
  _ = try? target.run(Array(UnsafeBufferPointer(start: data, count: size)))
  return 0
}

/// Seeds the corpus directory (AMOEBA_FUZZ_CORPUS) with the target's valid inputs, once.
@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
  guard let corpus = getenv("AMOEBA_FUZZ_CORPUS").map({ String(cString: $0) }) else { return 0 }
  for (i, seed) in target.seeds.enumerated() {
    let path = "\(corpus)/seed-\(i)"
    guard access(path, F_OK) != 0, let file = fopen(path, "wb") else { continue }
    _ = seed.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
    fclose(file)
  }
  return 0
}
