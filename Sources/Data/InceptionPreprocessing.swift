#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensor

/// The reference's image preprocessing (`inception_preprocessing.py`, `fast_mode=True`), from
/// decoded RGB bytes to `[S, S, 3]` floats in [−1, 1]:
///
/// - training: a random crop with `sample_distorted_bounding_box` semantics (whole image as the
///   box, `min_object_covered` 0.1, area 0.05–1, aspect 3/4–4/3, 100 attempts, the whole image as
///   the fallback), bilinear resize, random left-right flip, the fast YCbCr colour jitter;
/// - evaluation: `central_crop(0.875)`, bilinear resize.
///
/// Resizing is TensorFlow 1's `resize_bilinear` with `align_corners=False` (source coordinate =
/// destination coordinate × in/out, neighbours clamped at the edge), reading the crop straight
/// from the bytes so no cropped copy is made.
public enum InceptionPreprocessing {
  public struct Crop: Equatable, Sendable {
    public var x: Int, y: Int, width: Int, height: Int
    public init(x: Int, y: Int, width: Int, height: Int) { self.x = x; self.y = y; self.width = width; self.height = height }
  }

  /// `--train_preprocessing`: what training does to an image. The reference's Inception
  /// distortions are made for ImageNet's large photographs; a random crop of 5% of a small image
  /// leaves little of it, so datasets of small images want a milder one or none.
  public enum Mode: String, Sendable, CaseIterable {
    /// Crop of 5–100% of the area (aspect 3/4–4/3), resize, flip, brightness and colour jitter.
    case inception
    /// Crop of 50–100% of the area (aspect 3/4–4/3), resize, flip; no colour jitter.
    case cropFlip = "crop_flip"
    /// The evaluation's: central crop 0.875 and resize, nothing random.
    case center
  }

  public struct DistortionOptions: Sendable {
    public var mode = Mode.inception
    public var minObjectCovered: Float = 0.1
    public var aspectRatioRange: ClosedRange<Float> = 0.75...(4.0 / 3.0)
    /// DAWNBench's (0.05, 1.0); the reference's HEAD uses (0.1, 1.0).
    public var areaRange: ClosedRange<Float> = 0.05...1.0
    public var maxAttempts = 100
    public var brightness: Float = 32.0 / 255.0
    public var chroma: Float = 0.1
    public init() {}

    public init(mode: Mode) {
      self.mode = mode
      if mode == .cropFlip { areaRange = 0.5...1.0; minObjectCovered = 0.5; brightness = 0; chroma = 0 }
    }
  }

  /// A source of uniform numbers in [0, 1); training draws from a counter-based stream so that any
  /// worker reproduces any example's augmentation.
  public struct Draws {
    let seed: UInt64, stream: UInt64
    var index: UInt64 = 0
    public init(seed: UInt64, stream: UInt64) { self.seed = seed; self.stream = stream }
    public mutating func uniform() -> Float {
      defer { index += 1 }
      return CounterRandom.uniform(seed: seed, stream: stream, index: index)
    }
    /// Uniform integer in 0..<n.
    public mutating func below(_ n: Int) -> Int { min(n - 1, Int(uniform() * Float(n))) }
  }

  /// `tf.image.central_crop(image, fraction)`.
  public static func centralCrop(width: Int, height: Int, fraction: Double = 0.875) -> Crop {
    let offsetY = Int((Double(height) - Double(height) * fraction) / 2)
    let offsetX = Int((Double(width) - Double(width) * fraction) / 2)
    return Crop(x: offsetX, y: offsetY, width: width - 2 * offsetX, height: height - 2 * offsetY)
  }

  /// `tf.image.sample_distorted_bounding_box` with the whole image as the only box: per attempt an
  /// aspect ratio, then a height uniform among those whose area fits the range, kept if the crop
  /// covers at least `minObjectCovered` of the image.
  public static func sampleDistortedBoundingBox(width: Int, height: Int, options: DistortionOptions, draws: inout Draws) -> Crop {
    let imageArea = Float(width * height)
    let minArea = options.areaRange.lowerBound * imageArea, maxArea = options.areaRange.upperBound * imageArea
    for _ in 0..<options.maxAttempts {
      let aspect = options.aspectRatioRange.lowerBound
        + draws.uniform() * (options.aspectRatioRange.upperBound - options.aspectRatioRange.lowerBound)
      guard let crop = randomCrop(width: width, height: height, minArea: minArea, maxArea: maxArea, aspect: aspect, draws: &draws)
      else { continue }
      // Coverage of the one box (the whole image) by the crop.
      if Float(crop.width * crop.height) >= 1, Float(crop.width * crop.height) / imageArea >= options.minObjectCovered {
        return crop
      }
    }
    return Crop(x: 0, y: 0, width: width, height: height)
  }

  /// One attempt (TensorFlow's `GenerateRandomCrop`): nil when rounding leaves no height whose
  /// crop fits the area range and the image.
  static func randomCrop(width: Int, height: Int, minArea: Float, maxArea: Float, aspect: Float, draws: inout Draws) -> Crop? {
    func round(_ x: Float) -> Int { Int(lrintf(x)) }
    var h = round((minArea / aspect).squareRoot())
    var maxH = round((maxArea / aspect).squareRoot())
    if round(Float(maxH) * aspect) > width {
      maxH = Int((Float(width) + 0.5 - 0.0000001) / aspect)
      if round(Float(maxH) * aspect) > width { maxH -= 1 }
    }
    maxH = min(maxH, height)
    if h >= maxH { h = maxH }
    if h < maxH { h += draws.below(maxH - h + 1) }
    var w = round(Float(h) * aspect)
    var area = Float(w * h)
    if area < minArea { h += 1; w = round(Float(h) * aspect); area = Float(w * h) }
    if area > maxArea { h -= 1; w = round(Float(h) * aspect); area = Float(w * h) }
    guard area >= minArea, area <= maxArea, w <= width, h <= height, w > 0, h > 0 else { return nil }
    let y = h < height ? draws.below(height - h) : 0
    let x = w < width ? draws.below(width - w) : 0
    return Crop(x: x, y: y, width: w, height: h)
  }

  /// Bilinear resize of `crop` of the RGB bytes (row stride `width * 3`) to `size × size`, values
  /// scaled to [0, 1]; `flip` mirrors the output left to right.
  public static func resizeBilinear(_ pixels: UnsafePointer<UInt8>, width: Int, crop: Crop, size: Int, flip: Bool,
                                    out: UnsafeMutablePointer<Float>) {
    let scaleY = Float(crop.height) / Float(size), scaleX = Float(crop.width) / Float(size)
    // Per output column: the two source columns and the weight, computed once.
    var left = [Int](repeating: 0, count: size), right = left, weights = [Float](repeating: 0, count: size)
    for x in 0..<size {
      let source = Float(x) * scaleX
      let x0 = Int(source.rounded(.down))
      left[x] = (crop.x + x0) * 3
      right[x] = (crop.x + min(x0 + 1, crop.width - 1)) * 3
      weights[x] = source - Float(x0)
    }
    let inverse: Float = 1.0 / 255.0
    for y in 0..<size {
      let source = Float(y) * scaleY
      let y0 = Int(source.rounded(.down)), y1 = min(y0 + 1, crop.height - 1)
      let dy = source - Float(y0)
      let top = pixels + (crop.y + y0) * width * 3, bottom = pixels + (crop.y + y1) * width * 3
      let line = out + y * size * 3
      for x in 0..<size {
        let dx = weights[x], l = left[x], r = right[x]
        let o = (flip ? size - 1 - x : x) * 3
        for c in 0..<3 {
          let tl = Float(top[l + c]) * inverse, tr = Float(top[r + c]) * inverse
          let bl = Float(bottom[l + c]) * inverse, br = Float(bottom[r + c]) * inverse
          let t = tl + (tr - tl) * dx, b = bl + (br - bl) * dx
          line[o + c] = t + (b - t) * dy
        }
      }
    }
  }

  /// Evaluation: central crop 0.875, resize, scale to [−1, 1].
  public static func evaluation(_ pixels: UnsafePointer<UInt8>, width: Int, height: Int, size: Int, out: UnsafeMutablePointer<Float>) {
    evaluation(pixels, width: width, crop: centralCrop(width: width, height: height), size: size, out: out)
  }

  /// Training: distorted crop, resize, random flip, fast colour jitter, scale to [−1, 1].
  public static func training(_ pixels: UnsafePointer<UInt8>, width: Int, height: Int, size: Int,
                              options: DistortionOptions = DistortionOptions(), draws: inout Draws,
                              out: UnsafeMutablePointer<Float>) {
    let crop = sampleDistortedBoundingBox(width: width, height: height, options: options, draws: &draws)
    training(pixels, width: width, crop: crop, size: size, options: options, draws: &draws, out: out)
  }

  /// Training after the crop was sampled (on the image's full size; `crop` is in `pixels`' own
  /// coordinates, which differ when the JPEG was decoded at a reduced scale).
  public static func training(_ pixels: UnsafePointer<UInt8>, width: Int, crop: Crop, size: Int,
                              options: DistortionOptions = DistortionOptions(), draws: inout Draws,
                              out: UnsafeMutablePointer<Float>) {
    if options.mode == .center { return evaluation(pixels, width: width, crop: crop, size: size, out: out) }
    let flip = draws.uniform() < 0.5
    resizeBilinear(pixels, width: width, crop: crop, size: size, flip: flip, out: out)
    // Brightness and a shift in Cb and Cr, as one offset per channel (the reference's fast mode).
    let brightness = (draws.uniform() * 2 - 1) * options.brightness
    let cb = (draws.uniform() * 2 - 1) * options.chroma, cr = (draws.uniform() * 2 - 1) * options.chroma
    let shift = (1.402 * cr + brightness, -0.344136 * cb - 0.714136 * cr + brightness, 1.772 * cb + brightness)
    for i in 0..<(size * size) {
      let p = out + 3 * i
      p[0] = (min(1, max(0, p[0] + shift.0)) - 0.5) * 2
      p[1] = (min(1, max(0, p[1] + shift.1)) - 0.5) * 2
      p[2] = (min(1, max(0, p[2] + shift.2)) - 0.5) * 2
    }
  }

  /// Evaluation with the crop given (see `training(_:width:crop:…)`).
  public static func evaluation(_ pixels: UnsafePointer<UInt8>, width: Int, crop: Crop, size: Int, out: UnsafeMutablePointer<Float>) {
    resizeBilinear(pixels, width: width, crop: crop, size: size, flip: false, out: out)
    for i in 0..<(size * size * 3) { out[i] = (out[i] - 0.5) * 2 }
  }

  /// The largest JPEG scale (8, 4, 2 or 1) at which `crop` still spans at least `size` pixels each
  /// way, so that decoding smaller loses nothing the resize would keep.
  public static func decodeScale(for crop: Crop, size: Int) -> Int {
    for k in [8, 4, 2] where crop.width / k >= size && crop.height / k >= size { return k }
    return 1
  }

  /// `crop` in the coordinates of the image decoded at 1/`scale` (each side rounded up there).
  public static func scaled(_ crop: Crop, by scale: Int, width: Int, height: Int) -> Crop {
    guard scale > 1 else { return crop }
    let w = (width + scale - 1) / scale, h = (height + scale - 1) / scale
    let x0 = min(crop.x / scale, w - 1), y0 = min(crop.y / scale, h - 1)
    let x1 = min(w, (crop.x + crop.width + scale - 1) / scale), y1 = min(h, (crop.y + crop.height + scale - 1) / scale)
    return Crop(x: x0, y: y0, width: max(1, x1 - x0), height: max(1, y1 - y0))
  }
}
