#!/usr/bin/env python3
"""The reference's evaluation input, end to end, with TensorFlow: decode_jpeg(channels=3) (default
IDCT), convert_image_dtype, central_crop(0.875), resize_bilinear(align_corners=False), (x-0.5)*2 —
written as raw little-endian float32 [N, S, S, 3] for comparison with Amoeba's loader
(`amoeba data dump --data_dir D --count N --image_size S`, which reads the validation shards in
sorted order: pass the same files sorted, and N covering every record).

    python3 Scripts/peers/tf_eval_preprocess.py --size 224 --out /tmp/tf.f32 validation-00000-of-00001 ...
"""
import argparse
import numpy as np
import tensorflow as tf

p = argparse.ArgumentParser()
p.add_argument("--size", type=int, default=224)
p.add_argument("--out", required=True)
p.add_argument("files", nargs="+")
a = p.parse_args()
spec = {"image/encoded": tf.io.FixedLenFeature((), tf.string, "")}
images = []
for path in a.files:
    for record in tf.data.TFRecordDataset(path):
        image = tf.io.decode_jpeg(tf.io.parse_single_example(record, spec)["image/encoded"], channels=3)
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = tf.image.central_crop(image, central_fraction=0.875)
        image = tf.compat.v1.image.resize_bilinear(image[None], [a.size, a.size], align_corners=False)[0]
        images.append(((image - 0.5) * 2.0).numpy())
np.stack(images).astype("<f4").tofile(a.out)
print(f"{len(images)} images of {a.size}x{a.size}x3 written to {a.out}")
