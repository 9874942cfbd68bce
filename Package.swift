// swift-tools-version:6.0
import PackageDescription

// CPU code generation for the numeric targets.
//
// Without a CPU flag swiftc targets baseline SSE2 and every `SIMD.addProduct` becomes a libm `fmaf`
// call, so the default build asks for AVX2+FMA on x86-64 (every x86-64 server since 2013; arm64 needs
// nothing: NEON is baseline). Set AMOEBA_SIMD=avx512 to build 512-bit kernels (AVX-512F/DQ/BW/VL): the
// binary then runs only on CPUs that have them. Use a separate scratch path for that build so the
// two never mix: `AMOEBA_SIMD=avx512 swift build -c release --scratch-path .build-avx512`.
let numericFlags: [SwiftSetting] = {
  #if arch(x86_64)
  var flags = ["-Xcc", "-mavx2", "-Xcc", "-mfma", "-Xcc", "-mf16c"]
  if Context.environment["AMOEBA_SIMD"] == "avx512" {
    flags += ["-Xcc", "-mavx512f", "-Xcc", "-mavx512dq", "-Xcc", "-mavx512bw", "-Xcc", "-mavx512vl"]
    return [.unsafeFlags(flags), .define("AMOEBA_AVX512")]
  }
  return [.unsafeFlags(flags)]
  #else
  return []
  #endif
}()

// The GEMM's wide register tile compiled for AVX-512 into a binary that otherwise targets AVX2: it
// runs only where the CPU has AVX-512 (chosen at start, Sources/Tensor/GEMMKernel.swift).
let avx512Flags: [SwiftSetting] = {
  #if arch(x86_64)
  return [.unsafeFlags(["-Xcc", "-mavx2", "-Xcc", "-mfma", "-Xcc", "-mf16c", "-Xcc", "-mavx512f", "-Xcc", "-mavx512dq",
                        "-Xcc", "-mavx512bw", "-Xcc", "-mavx512vl"])]
  #else
  return []
  #endif
}()

let package = Package(
  name: "Amoeba",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "amoeba", targets: ["amoeba"]),
    .executable(name: "amoeba-coordinator", targets: ["amoeba-coordinator"]),
    .executable(name: "amoeba-worker", targets: ["amoeba-worker"]),
  ],
  targets: [
    .target(name: "Tensor", dependencies: ["WideTile", "WideTileAVX512"], swiftSettings: numericFlags),
    .target(name: "WideTile", swiftSettings: numericFlags),
    .target(name: "WideTileAVX512", dependencies: ["WideTile"], swiftSettings: avx512Flags),
    .target(name: "Graph", dependencies: ["Tensor"], swiftSettings: numericFlags),
    .target(name: "Model", dependencies: ["Graph", "Tensor"], swiftSettings: numericFlags),
    .target(name: "Train", dependencies: ["Model", "Graph", "Tensor", "Collective", "Checksums"], swiftSettings: numericFlags),
    .target(name: "Search", dependencies: ["Model", "Tensor"], swiftSettings: numericFlags),
    .target(name: "JPEG", swiftSettings: numericFlags),
    .target(name: "PNG", dependencies: ["Checksums"], swiftSettings: numericFlags),
    .target(name: "Data", dependencies: ["Tensor", "Checksums", "JPEG", "PNG"], swiftSettings: numericFlags),
    .target(name: "Checksums", swiftSettings: numericFlags),
    .target(name: "Collective", dependencies: ["Checksums"], swiftSettings: numericFlags),
    .target(name: "Telemetry", dependencies: ["Checksums"], swiftSettings: numericFlags),
    .target(name: "CLI", dependencies: ["Model", "Train", "Data", "JPEG", "Tensor", "Collective"], swiftSettings: numericFlags),
    .target(name: "Cluster", dependencies: ["Collective", "Train", "Model", "Data", "Tensor", "CLI", "Telemetry", "Checksums", "XLA", "Search"], swiftSettings: numericFlags),
    .target(name: "CPJRT"),
    .target(name: "XLA", dependencies: ["CPJRT", "Graph", "Tensor", "Checksums"], swiftSettings: numericFlags),
    .target(name: "Fuzzing", dependencies: ["Cluster", "Collective", "Data", "JPEG", "Train", "Tensor"], swiftSettings: numericFlags),
    .executableTarget(name: "amoeba", dependencies: ["Tensor", "Graph", "Model", "Train", "Data", "JPEG", "PNG", "Checksums", "Collective", "CLI", "Cluster", "Fuzzing", "XLA", "Search"], swiftSettings: numericFlags),
    .executableTarget(name: "amoeba-coordinator", dependencies: ["Cluster", "CLI"], swiftSettings: numericFlags),
    .executableTarget(name: "amoeba-worker", dependencies: ["Cluster", "CLI", "Collective", "Tensor", "XLA"], swiftSettings: numericFlags),
    .testTarget(name: "TensorTests", dependencies: ["Tensor"], swiftSettings: numericFlags),
    .testTarget(name: "GraphTests", dependencies: ["Graph", "Tensor"], swiftSettings: numericFlags),
    .testTarget(name: "SearchTests", dependencies: ["Search", "Model"], swiftSettings: numericFlags),
    .testTarget(name: "ModelTests", dependencies: ["Model", "Graph", "Tensor", "CLI"], swiftSettings: numericFlags),
    .testTarget(name: "TrainTests", dependencies: ["Train", "Model", "Data", "Graph", "Tensor", "Collective", "Checksums"], swiftSettings: numericFlags),
    .testTarget(name: "CollectiveTests", dependencies: ["Collective"], swiftSettings: numericFlags),
    .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Checksums", "CLI", "Collective", "Train", "Tensor"], swiftSettings: numericFlags),
    .testTarget(name: "ChecksumsTests", dependencies: ["Checksums"], swiftSettings: numericFlags),
    .testTarget(name: "TelemetryTests", dependencies: ["Telemetry"], swiftSettings: numericFlags),
    .testTarget(name: "XLATests", dependencies: ["XLA", "Graph", "Model", "Tensor", "Train", "Data", "Collective"], swiftSettings: numericFlags),
    .testTarget(name: "FuzzingTests", dependencies: ["Fuzzing"], swiftSettings: numericFlags),
    .testTarget(name: "DataTests", dependencies: ["Data", "Tensor", "Checksums", "JPEG", "PNG"], exclude: ["Fixtures"], swiftSettings: numericFlags),
  ]
)
