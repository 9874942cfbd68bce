#!/usr/bin/env python3
"""Reads ImageNet-format shards with TensorFlow the way the reference's input pipeline does
(TFRecordDataset, parse_single_example with imagenet_to_gcs.py's features, decode_jpeg(channels=3))
and prints, per record, the label, size and SHA-256 of the INTEGER_ACCURATE decode — the same
lines as `amoeba data inspect --hashes`, so `make-fake` output can be checked against TensorFlow.

    python3 Scripts/peers/tf_read_shards.py FILE...
"""
import hashlib, sys
import tensorflow as tf

features = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string, ""),
    "image/format": tf.io.FixedLenFeature((), tf.string, "jpeg"),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64, -1),
    "image/class/synset": tf.io.FixedLenFeature([], tf.string, ""),
    "image/height": tf.io.FixedLenFeature([], tf.int64, -1),
    "image/width": tf.io.FixedLenFeature([], tf.int64, -1),
}
for path in sys.argv[1:]:
    print(path)
    for index, record in enumerate(tf.data.TFRecordDataset(path)):
        parsed = tf.io.parse_single_example(record, features)
        image = tf.io.decode_jpeg(parsed["image/encoded"], channels=3, dct_method="INTEGER_ACCURATE").numpy()
        assert image.shape[0] == parsed["image/height"] and image.shape[1] == parsed["image/width"], path
        print(f"  record {index}: {image.shape[1]}x{image.shape[0]} decoded sha256 {hashlib.sha256(image.tobytes()).hexdigest()} label {int(parsed['image/class/label'])}")
