import Tensor

/// The built-in dataset: ten procedurally drawn classes of shapes and patterns — disc, square,
/// triangle, ring, cross, horizontal stripes, vertical stripes, checkerboard, diagonal stripes and
/// frame — each varying in position, scale, colour, stripe period and noise. Deterministic in
/// (seed, split, index), any image size, a fixed validation split. Learnable, so a user with no
/// data sees accuracy climb; small enough to generate on the fly.
public struct BuiltInDataset: Dataset {
  public static let classNames = ["disc", "square", "triangle", "ring", "cross", "horizontal_stripes",
                                  "vertical_stripes", "checkerboard", "diagonal_stripes", "frame"]
  public let imageSize: Int
  public let trainCount: Int
  public let validationCount: Int
  public let seed: UInt64
  public var classCount: Int { BuiltInDataset.classNames.count }

  public init(imageSize: Int, trainCount: Int = 20_000, validationCount: Int = 2_000, seed: UInt64 = 2018) {
    self.imageSize = imageSize
    self.trainCount = trainCount
    self.validationCount = validationCount
    self.seed = seed
  }

  public func count(_ split: Split) -> Int { split == .train ? trainCount : validationCount }

  public func example(_ split: Split, _ index: Int, epoch: Int = 0, into pixels: UnsafeMutablePointer<Float>) -> Int {
    let stream: UInt64 = split == .train ? 1 : 2
    var draw = 0
    func uniform() -> Float {
      defer { draw += 1 }
      return CounterRandom.uniform(seed: seed, stream: stream, index: UInt64(index) << 5 | UInt64(draw))
    }
    let label = Int(uniform() * Float(classCount)) % classCount
    let s = Float(imageSize)
    let size = (0.5 + 0.35 * uniform()) * s             // shape extent
    let cx = size / 2 + uniform() * (s - size), cy = size / 2 + uniform() * (s - size)
    let period = max(2, (0.25 + 0.1 * uniform()) * size) // stripe period: about 3 to 4 stripes across the shape
    let noise = 0.03 + 0.1 * uniform()
    // Foreground and background colours with enough contrast to see the shape.
    var fg = (uniform() * 2 - 1, uniform() * 2 - 1, uniform() * 2 - 1)
    let bg = (uniform() * 2 - 1, uniform() * 2 - 1, uniform() * 2 - 1)
    if abs(fg.0 - bg.0) + abs(fg.1 - bg.1) + abs(fg.2 - bg.2) < 1.2 {
      fg = (bg.0 > 0 ? bg.0 - 1 : bg.0 + 1, bg.1 > 0 ? bg.1 - 1 : bg.1 + 1, bg.2 > 0 ? bg.2 - 1 : bg.2 + 1)
    }
    let r = size / 2
    for y in 0..<imageSize {
      for x in 0..<imageSize {
        let px = Float(x) + 0.5 - cx, py = Float(y) + 0.5 - cy
        let inside: Bool
        switch label {
        case 0: inside = px * px + py * py <= r * r
        case 1: inside = abs(px) <= r * 0.85 && abs(py) <= r * 0.85
        case 2: inside = py <= r * 0.8 && py >= -r * 0.8 && abs(px) <= (py + r * 0.8) * 0.62
        case 3: let d = (px * px + py * py).squareRoot(); inside = d <= r && d >= r * 0.55
        case 4: inside = (abs(px) <= r * 0.28 && abs(py) <= r) || (abs(py) <= r * 0.28 && abs(px) <= r)
        case 5: inside = abs(px) <= r && abs(py) <= r && Int(((py + r) / period).rounded(.down)) % 2 == 0
        case 6: inside = abs(px) <= r && abs(py) <= r && Int(((px + r) / period).rounded(.down)) % 2 == 0
        case 7: inside = abs(px) <= r && abs(py) <= r
          && (Int(((px + r) / period).rounded(.down)) + Int(((py + r) / period).rounded(.down))) % 2 == 0
        case 8: inside = abs(px) <= r && abs(py) <= r && Int(((px + py + 2 * r) / (period * 1.4)).rounded(.down)) % 2 == 0
        default: inside = abs(px) <= r && abs(py) <= r && (abs(px) >= r * 0.6 || abs(py) >= r * 0.6)
        }
        let c = inside ? fg : bg
        let o = (y * imageSize + x) * 3
        pixels[o] = clamp(c.0 + noise * (uniform() * 2 - 1))
        pixels[o + 1] = clamp(c.1 + noise * (uniform() * 2 - 1))
        pixels[o + 2] = clamp(c.2 + noise * (uniform() * 2 - 1))
      }
    }
    return label
  }

  private func clamp(_ v: Float) -> Float { min(1, max(-1, v)) }
}

/// The reference's `--use_data=fake`: uniform images in [−1, 1] and uniform labels in [0, 999)
/// (capped by the class count), deterministic in (seed, split, index).
public struct FakeDataset: Dataset {
  public let imageSize: Int
  public let classCount: Int
  public let trainCount: Int
  public let validationCount: Int
  public let seed: UInt64

  public init(imageSize: Int, classCount: Int, trainCount: Int = 1_281_167, validationCount: Int = 50_000, seed: UInt64 = 7) {
    self.imageSize = imageSize; self.classCount = classCount
    self.trainCount = trainCount; self.validationCount = validationCount; self.seed = seed
  }

  public func count(_ split: Split) -> Int { split == .train ? trainCount : validationCount }

  public func example(_ split: Split, _ index: Int, epoch: Int = 0, into pixels: UnsafeMutablePointer<Float>) -> Int {
    let stream: UInt64 = split == .train ? 11 : 12
    let values = imageSize * imageSize * 3
    for i in 0..<values {
      pixels[i] = CounterRandom.uniform(seed: seed, stream: stream, index: UInt64(index) * UInt64(values + 1) + UInt64(i)) * 2 - 1
    }
    let label = CounterRandom.uniform(seed: seed, stream: stream &+ 100, index: UInt64(index))
    return Int(label * Float(min(999, classCount))) % classCount
  }
}
