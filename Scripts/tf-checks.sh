#!/usr/bin/env bash
# TensorFlow reads what this project writes: `amoeba data make-fake --raw_dir` gives ImageNet's own
# layout (train/<synset>/*.JPEG, validation/*.JPEG, synset_labels.txt), `amoeba data convert` turns
# it into imagenet_to_gcs.py's shards, and Scripts/peers/tf_read_shards.py parses every record with
# the reference's feature spec and decodes it with tf.io.decode_jpeg; its lines (size, SHA-256 of the
# decoded pixels, label) must equal `amoeba data inspect --hashes` plus the labels the converter
# gave. Skips, saying so, without TensorFlow (pip install tensorflow-cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import tensorflow' 2>/dev/null; then
  echo "tf-checks: skipped: TensorFlow is not installed (pip install tensorflow-cpu)"
  exit 0
fi
swift build -c release --product amoeba >/dev/null
amoeba=$(swift build -c release --show-bin-path)/amoeba
work=$(mktemp -d /tmp/amoeba-tf-checks.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$amoeba" data make-fake --out "$work/fake" --images 240 --validation_images 40 --image_size 48 --raw_dir "$work/raw" >/dev/null
# Arithmetic-coded JPEGs among them (lossless transcodes by libjpeg-turbo's jpegtran: sequential,
# progressive, with restart markers), which imagenet_to_gcs.py passes through as they are.
arithmetic=0
if command -v jpegtran >/dev/null 2>&1; then
  modes=("-arithmetic" "-arithmetic -progressive" "-arithmetic -restart 1" "-arithmetic -progressive -restart 3B")
  i=0
  for f in $(find "$work/raw/train" -name '*.JPEG' | sort | awk 'NR % 3 == 0'); do
    # shellcheck disable=SC2086
    jpegtran ${modes[$((i % 4))]} "$f" > "$f.tmp" && mv "$f.tmp" "$f"
    i=$((i + 1))
  done
  arithmetic=$i
else
  echo "tf-checks: no arithmetic-coded JPEGs in this run: jpegtran is not installed (apt-get install libjpeg-turbo-progs)"
fi
# A PNG named .JPEG, as ImageNet has one: the shards hold it re-encoded as a JPEG.
cp Tests/DataTests/Fixtures/png/rgba8-interlaced.png "$(find "$work/raw/train" -name '*.JPEG' | sort | head -1)"
# A lossless JPEG (SOF3), which TensorFlow cannot decode: the shards hold it re-encoded.
cp Tests/DataTests/Fixtures/lossless/rgb-p1.jpg "$(find "$work/raw/train" -name '*.JPEG' | sort | sed -n 2p)"
"$amoeba" data convert --raw_data_dir "$work/raw" --out "$work/shards" --train_shards 8 --validation_shards 2 | tail -1
shards=("$work"/shards/*)
python3 Scripts/peers/tf_read_shards.py "${shards[@]}" 2>/dev/null | grep -v '^/' | sed 's/ label [0-9]*$//' > "$work/tf.txt"
"$amoeba" data inspect --hashes "${shards[@]}" | grep '^  record' > "$work/ours.txt"
records=$(wc -l < "$work/tf.txt")
[ "$records" = 280 ] || { echo "tf-checks: FAILED: TensorFlow read $records records, not 280"; exit 1; }
diff "$work/tf.txt" "$work/ours.txt" > /dev/null || { diff "$work/tf.txt" "$work/ours.txt" | head; echo "tf-checks: FAILED: TensorFlow's decode differs"; exit 1; }
# Labels: TensorFlow's parse of image/class/label against the synset each record names.
python3 - "${shards[@]}" <<'PY' 2>/dev/null
import sys
import tensorflow as tf
spec = {"image/class/label": tf.io.FixedLenFeature([], tf.int64, -1), "image/class/synset": tf.io.FixedLenFeature([], tf.string, ""),
        "image/filename": tf.io.FixedLenFeature([], tf.string, ""), "image/format": tf.io.FixedLenFeature([], tf.string, "")}
pairs = set()
for path in sys.argv[1:]:
    for record in tf.data.TFRecordDataset(path):
        p = tf.io.parse_single_example(record, spec)
        assert p["image/format"].numpy() == b"JPEG", path
        pairs.add((p["image/class/synset"].numpy().decode(), int(p["image/class/label"])))
synsets = sorted({s for s, _ in pairs})
assert all(label == synsets.index(s) + 1 for s, label in pairs), pairs
print(f"tf-checks: {len(synsets)} synsets labelled 1..{len(synsets)} in sorted order")
PY
# A lossless JPEG (SOF3): TensorFlow refuses it (so the converter re-encodes one, above); our
# decoder gives libjpeg-turbo 3's pixels (LosslessJPEGTests).
python3 - Tests/DataTests/Fixtures/lossless/rgb-p1.jpg <<'PY' 2>/dev/null || { echo "tf-checks: FAILED: TensorFlow decoded a lossless JPEG; the converter need not re-encode them"; exit 1; }
import sys, tensorflow as tf
try:
    tf.io.decode_jpeg(open(sys.argv[1], "rb").read(), channels=3)
except tf.errors.InvalidArgumentError:
    sys.exit(0)
sys.exit(1)
PY
echo "tf-checks: TensorFlow refuses a lossless JPEG (SOF3); the converted shards hold it re-encoded"
echo "tf-checks: ok (TensorFlow $(python3 -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null) read all $records records of the converted shards, $arithmetic of them arithmetic-coded, one a PNG and one a lossless JPEG re-encoded; every decode identical to ours)"
