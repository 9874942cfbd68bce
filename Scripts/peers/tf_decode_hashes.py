#!/usr/bin/env python3
"""TensorFlow's decoded-pixel SHA-256 of every JPEG in TFRecord files, optionally downscaled in the
DCT domain (`decode_jpeg(ratio=R)`), with INTEGER_ACCURATE or INTEGER_FAST (TensorFlow's default):
the same lines as `amoeba data inspect --hashes [--scale R] [--dct fast] FILE...`.

    python3 Scripts/peers/tf_decode_hashes.py [--ratio 1|2|4|8] [--dct accurate|fast] FILE...
"""
import argparse, hashlib
import tensorflow as tf

p = argparse.ArgumentParser()
p.add_argument("--ratio", type=int, default=1)
p.add_argument("--dct", choices=["accurate", "fast"], default="accurate")
p.add_argument("files", nargs="+")
a = p.parse_args()
spec = {"image/encoded": tf.io.FixedLenFeature((), tf.string, "")}
for path in a.files:
    print(path)
    for index, record in enumerate(tf.data.TFRecordDataset(path)):
        jpeg = tf.io.parse_single_example(record, spec)["image/encoded"]
        image = tf.io.decode_jpeg(jpeg, channels=3, ratio=a.ratio, dct_method="INTEGER_ACCURATE" if a.dct == "accurate" else "INTEGER_FAST").numpy()
        print(f"  record {index}: {image.shape[1]}x{image.shape[0]} decoded sha256 {hashlib.sha256(image.tobytes()).hexdigest()}")
