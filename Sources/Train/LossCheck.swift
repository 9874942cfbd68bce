#if canImport(Glibc)
import Glibc
#endif

/// The first logged loss against what a K-class model starts at (ln K, uniform logits). The
/// reference's recipe is made for ImageNet: its FC initialisation scales by fan-out, so a model with
/// few classes starts its logits large (a 10-class run starts near 12, not ln 10 = 2.3), and its
/// crops of 5–100% of the picture wreck small images. Far above ln K, say which switches exist.
public enum LossCheck {
  /// Nil when `loss` (the total, with the aux head's 0.4 share and the weight decay) is within
  /// 2·ln K + 2 of zero — the reference's ImageNet start is well inside.
  public static func warning(loss: Double, step: Int, classes: Int) -> String? {
    let start = log(Double(max(classes, 2)))
    guard loss.isFinite, loss > 2 * start + 2 else { return nil }
    return "warning: the loss at step \(step) is \((loss * 100).rounded() / 100), far above ln(\(classes)) = \((start * 100).rounded() / 100), where a model with \(classes) classes starts: "
      + "the reference's FC initialisation (made for 1001 classes) starts the logits large — --fc_init=zeros starts them at 0; "
      + "for small pictures the Inception crops (5–100% of the area) may leave little of them — --train_preprocessing=crop_flip or center"
  }
}
