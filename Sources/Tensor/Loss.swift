/// Softmax cross-entropy with label smoothing, as `tf.losses.softmax_cross_entropy(label_smoothing=ε)`:
/// the target of example n is `(1 − ε)·onehot(label_n) + ε/classes`, and the loss is the batch mean
/// of `−Σ target · log_softmax(logits)`. Log-softmax subtracts the row maximum first, so large logits
/// never overflow.
///
/// Labels are class indices stored as floats (exact below 2²⁴), one per example.
public enum SoftmaxCrossEntropy {
  public static func loss(logits: UnsafePointer<Float>, labels: UnsafePointer<Float>, batch: Int, classes: Int,
                          labelSmoothing: Float) -> Float {
    var total = 0.0
    let off = Double(labelSmoothing) / Double(classes), on = 1 - Double(labelSmoothing) + off
    for n in 0..<batch {
      let row = logits + n * classes
      let (maximum, logSum) = logSumExp(row, classes)
      let label = Int(labels[n])
      var rowLoss = 0.0
      for k in 0..<classes {
        let logP = Double(row[k]) - maximum - logSum
        rowLoss -= (k == label ? on : off) * logP
      }
      total += rowLoss
    }
    return Float(total / Double(max(batch, 1)))
  }

  /// d loss / d logits = (softmax − target) · dLoss / batch.
  public static func gradient(logits: UnsafePointer<Float>, labels: UnsafePointer<Float>, batch: Int, classes: Int,
                              labelSmoothing: Float, lossGradient: Float, into dLogits: UnsafeMutablePointer<Float>) {
    let off = Double(labelSmoothing) / Double(classes), on = 1 - Double(labelSmoothing) + off
    let scale = Double(lossGradient) / Double(max(batch, 1))
    for n in 0..<batch {
      let row = logits + n * classes, out = dLogits + n * classes
      let (maximum, logSum) = logSumExp(row, classes)
      let label = Int(labels[n])
      for k in 0..<classes {
        let p = (Double(row[k]) - maximum - logSum).exp()
        out[k] = Float((p - (k == label ? on : off)) * scale)
      }
    }
  }

  /// Whether every label is a whole number in `0..<classes` (checked before the loss is computed).
  public static func labelsAreValid(_ labels: UnsafePointer<Float>, batch: Int, classes: Int) -> Bool {
    for n in 0..<batch {
      let v = labels[n]
      if !(v >= 0 && v < Float(classes) && v == v.rounded()) { return false }
    }
    return true
  }

  private static func logSumExp(_ row: UnsafePointer<Float>, _ count: Int) -> (Double, Double) {
    var maximum = -Double.infinity
    for k in 0..<count { maximum = max(maximum, Double(row[k])) }
    var sum = 0.0
    for k in 0..<count { sum += (Double(row[k]) - maximum).exp() }
    return (maximum, sum.log())
  }
}

extension Double {
  @inline(__always) func exp() -> Double { libmExp(self) }
  @inline(__always) func log() -> Double { libmLog(self) }
}
