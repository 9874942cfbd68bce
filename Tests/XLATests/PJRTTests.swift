import Foundation
import Testing
import Tensor
@testable import XLA

/// StableHLO compiled and run by XLA's CPU compiler through the PJRT C interface, checked against
/// this project's kernels. The plugin comes from Scripts/fetch-pjrt-cpu.sh (`.ci/run` calls it);
/// without it these tests say so and do nothing else.
@Suite struct PJRTTests {
  static let pluginPath: String? = {
    if let path = ProcessInfo.processInfo.environment["AMOEBA_PJRT_CPU_PLUGIN"] { return path }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let path = root.appendingPathComponent(".pjrt/xla_cpu_pjrt.so").path
    return FileManager.default.fileExists(atPath: path) ? path : nil
  }()

  /// One client for the suite: the plugin is loaded once per process.
  static let client: PJRTClient? = {
    guard let pluginPath else {
      print("skipped: no XLA:CPU PJRT plugin; run Scripts/fetch-pjrt-cpu.sh (or set AMOEBA_PJRT_CPU_PLUGIN) to run the PJRT tests")
      return nil
    }
    do { return try PJRTClient(plugin: PJRTPlugin(path: pluginPath), options: ["cpu_device_count": 1]) } catch {
      Issue.record("the plugin at \(pluginPath) did not start: \(error)")
      return nil
    }
  }()

  @Test func thePluginReportsItsVersionAndACPUDevice() throws {
    guard let client = PJRTTests.client else { return }
    #expect(client.plugin.majorVersion == 0 && client.plugin.minorVersion >= 30)
    #expect(client.platformName == "cpu")
    #expect(client.devices.count == 1)
    let attributes = try client.plugin.attributes()
    #expect(attributes["xla_version"] != nil || !attributes.isEmpty, "\(attributes)")
  }

  @Test func elementwiseStableHLOMatchesSwift() throws {
    guard let client = PJRTTests.client else { return }
    let program = """
      module @elementwise {
        func.func public @main(%x: tensor<2x3xf32>, %y: tensor<2x3xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>) {
          %0 = stablehlo.multiply %x, %y : tensor<2x3xf32>
          %1 = stablehlo.add %0, %x : tensor<2x3xf32>
          %2 = stablehlo.maximum %x, %y : tensor<2x3xf32>
          return %1, %2 : tensor<2x3xf32>, tensor<2x3xf32>
        }
      }
      """
    let executable = try client.compile(mlir: program)
    #expect(executable.outputCount == 2)
    let x: [Float] = [1, -2, 3.5, 0, 7, -0.25], y: [Float] = [2, 2, -1, 5, 0.5, 4]
    let outputs = try executable.execute([try client.buffer(x, dims: [2, 3]), try client.buffer(y, dims: [2, 3])])
    #expect(try outputs[0].toHost() == zip(x, y).map { $0 * $1 + $0 })
    #expect(try outputs[1].toHost() == zip(x, y).map { max($0, $1) })
  }

  @Test func aMatrixProductMatchesTheReferenceGEMM() throws {
    guard let client = PJRTTests.client else { return }
    let (m, k, n) = (5, 7, 3)
    let program = """
      module @matmul {
        func.func public @main(%a: tensor<\(m)x\(k)xf32>, %b: tensor<\(k)x\(n)xf32>) -> tensor<\(m)x\(n)xf32> {
          %0 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : (tensor<\(m)x\(k)xf32>, tensor<\(k)x\(n)xf32>) -> tensor<\(m)x\(n)xf32>
          return %0 : tensor<\(m)x\(n)xf32>
        }
      }
      """
    let a = (0..<(m * k)).map { Float(($0 * 37) % 11) / 4 - 1 }, b = (0..<(k * n)).map { Float(($0 * 17) % 13) / 5 - 1 }
    var expected = [Float](repeating: 0, count: m * n)
    GEMM.reference(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0, c: &expected, ldc: n)
    let result = try client.compile(mlir: program).execute([try client.buffer(a, dims: [m, k]), try client.buffer(b, dims: [k, n])])[0].toHost()
    #expect(result.count == m * n)
    #expect(zip(result, expected).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }, "\(result) vs \(expected)")
  }

  @Test func aProgramThatDoesNotParseIsAnErrorNamingTheCall() throws {
    guard let client = PJRTTests.client else { return }
    #expect { _ = try client.compile(mlir: "module { this is not stablehlo }") } throws: { error in
      guard let error = error as? PJRTError else { return false }
      return error.call == "PJRT_Client_Compile" && !error.message.isEmpty
    }
  }

  @Test func aMissingPluginIsAnErrorNamingThePathAndTheScript() {
    #expect { _ = try PJRTPlugin(path: "/nonexistent/pjrt_plugin.so") } throws: { error in
      "\(error)".contains("/nonexistent/pjrt_plugin.so") && "\(error)".contains("fetch-pjrt-cpu.sh")
    }
  }
}
