import Testing
import Foundation
import Checksums
@testable import Data

@Suite(.enabled(if: testdataPresent, "the TensorFlow fixtures (../shared/testdata or $AMOEBA_TESTDATA) are not here"))
struct PreprocessingTests {
  struct Image: Decodable {
    struct Crop: Decodable { let offset_height: Int, offset_width: Int, target_height: Int, target_width: Int }
    let input_pixels: String, input_height: Int, input_width: Int, central_crop: Crop, values: [Float]
  }

  @Test func evaluationPreprocessingMatchesTensorFlow() throws {
    let json = try Data(contentsOf: URL(fileURLWithPath: testdata + "/imagenet-format/preprocessed.json"))
    struct Root: Decodable { let images: [Image] }
    let images = try JSONDecoder().decode(Root.self, from: json).images
    #expect(images.count == 2)
    for image in images {
      let crop = InceptionPreprocessing.centralCrop(width: image.input_width, height: image.input_height)
      #expect(crop == .init(x: image.central_crop.offset_width, y: image.central_crop.offset_height,
                            width: image.central_crop.target_width, height: image.central_crop.target_height))
      let pixels = try [UInt8](Data(contentsOf: URL(fileURLWithPath: testdata + "/imagenet-format/" + image.input_pixels)))
      var out = [Float](repeating: .nan, count: 32 * 32 * 3)
      InceptionPreprocessing.evaluation(pixels, width: image.input_width, height: image.input_height, size: 32, out: &out)
      let worst = zip(out, image.values).map { abs($0 - $1) }.max()!
      #expect(worst <= 1e-5, "\(image.input_pixels): largest difference \(worst)")
    }
  }
}

struct DistortedCropTests {
  @Test func cropsStayInsideTheImageAndRespectAreaAndAspect() {
    let options = InceptionPreprocessing.DistortionOptions()
    for (width, height) in [(500, 375), (37, 53), (256, 256), (1, 1), (3, 200)] {
      for stream in 0..<200 {
        var draws = InceptionPreprocessing.Draws(seed: 9, stream: UInt64(stream))
        let crop = InceptionPreprocessing.sampleDistortedBoundingBox(width: width, height: height, options: options, draws: &draws)
        #expect(crop.x >= 0 && crop.y >= 0 && crop.width >= 1 && crop.height >= 1)
        #expect(crop.x + crop.width <= width && crop.y + crop.height <= height)
        let whole = crop == .init(x: 0, y: 0, width: width, height: height)
        if !whole {
          // min_object_covered 0.1 with the image as the box: at least a tenth of the area.
          let area = Double(crop.width * crop.height) / Double(width * height)
          #expect(area >= 0.1 - 1e-6 && area <= 1)
          let aspect = Double(crop.width) / Double(crop.height)
          // Rounding to whole pixels moves the aspect ratio by at most one pixel's worth.
          #expect(aspect >= 0.75 - 1.0 / Double(crop.height) && aspect <= 4.0 / 3.0 + 1.0 / Double(crop.height))
        }
      }
    }
  }

  @Test func cropsAreSpreadOverAreasAndPositions() {
    var areas: [Double] = [], lefts = Set<Int>()
    for stream in 0..<500 {
      var draws = InceptionPreprocessing.Draws(seed: 1, stream: UInt64(stream))
      let crop = InceptionPreprocessing.sampleDistortedBoundingBox(width: 500, height: 375, options: .init(), draws: &draws)
      areas.append(Double(crop.width * crop.height) / (500 * 375)); lefts.insert(crop.x)
    }
    #expect(areas.min()! < 0.2 && areas.max()! > 0.9 && lefts.count > 100)
  }

  /// TensorFlow 2.21's `sample_distorted_bounding_box` on a 500×375 image with the reference's
  /// arguments, 3000 seeds: mean area fraction 0.394, median 0.358, 10th percentile 0.138, 90th
  /// 0.707, mean aspect 1.044, never the whole-image fallback. Ours must have the same distribution.
  @Test func cropDistributionMatchesTensorFlows() {
    var areas: [Double] = [], aspects: [Double] = [], whole = 0
    var options = InceptionPreprocessing.DistortionOptions()
    options.aspectRatioRange = 0.75...1.33   // as in the TensorFlow run quoted above
    for stream in 0..<3000 {
      var draws = InceptionPreprocessing.Draws(seed: 11, stream: UInt64(stream))
      let crop = InceptionPreprocessing.sampleDistortedBoundingBox(width: 500, height: 375, options: options, draws: &draws)
      if crop.width == 500 && crop.height == 375 { whole += 1 }
      areas.append(Double(crop.width * crop.height) / (500 * 375)); aspects.append(Double(crop.width) / Double(crop.height))
    }
    areas.sort()
    let mean = areas.reduce(0, +) / 3000, aspect = aspects.reduce(0, +) / 3000
    #expect(abs(mean - 0.394) < 0.015 && abs(areas[1500] - 0.358) < 0.02, "mean \(mean), median \(areas[1500])")
    #expect(abs(areas[300] - 0.138) < 0.015 && abs(areas[2700] - 0.707) < 0.03, "p10 \(areas[300]), p90 \(areas[2700])")
    #expect(abs(aspect - 1.044) < 0.015 && whole < 15, "aspect \(aspect), whole \(whole)")
  }

  @Test func trainingOutputIsInRangeAndDeterministicPerStream() {
    let picture = syntheticPicture(width: 61, height: 47)
    func run(_ stream: UInt64) -> [Float] {
      var draws = InceptionPreprocessing.Draws(seed: 3, stream: stream)
      var out = [Float](repeating: .nan, count: 24 * 24 * 3)
      InceptionPreprocessing.training(picture, width: 61, height: 47, size: 24, draws: &draws, out: &out)
      return out
    }
    let a = run(5), b = run(5), c = run(6)
    #expect(a == b && a != c)
    #expect(a.allSatisfy { $0 >= -1 && $0 <= 1 })
  }

  @Test func flipMirrorsTheResizedImage() {
    let picture = syntheticPicture(width: 30, height: 20)
    var plain = [Float](repeating: 0, count: 16 * 16 * 3), mirrored = plain
    let crop = InceptionPreprocessing.Crop(x: 3, y: 2, width: 20, height: 15)
    InceptionPreprocessing.resizeBilinear(picture, width: 30, crop: crop, size: 16, flip: false, out: &plain)
    InceptionPreprocessing.resizeBilinear(picture, width: 30, crop: crop, size: 16, flip: true, out: &mirrored)
    for y in 0..<16 { for x in 0..<16 { for c in 0..<3 { #expect(plain[(y * 16 + x) * 3 + c] == mirrored[(y * 16 + 15 - x) * 3 + c]) } } }
  }
}
