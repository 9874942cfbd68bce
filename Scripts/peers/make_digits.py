"""A small real-image set no one here drew: scikit-learn's copy of the UCI handwritten digits
(1797 pictures, 8x8, 10 classes; `pip install scikit-learn`), enlarged to 32x32 RGB JPEGs in
ImageNet's raw layout for `amoeba data convert` (train/<synset>/*.JPEG, validation/*.JPEG,
synset_labels.txt; synsets d0..d9, so labels 1..10 of an 11-way head). 80/20 split, seeded.

    python3 Scripts/peers/make_digits.py OUT_DIR
"""
import os, sys
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

out = sys.argv[1]
digits = load_digits()
order = np.random.default_rng(2018).permutation(len(digits.target))
cut = int(len(order) * 0.8)
labels = []
for rank, i in enumerate(order):
    picture = Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).resize((32, 32), Image.BILINEAR).convert("RGB")
    synset = f"d{digits.target[i]}"
    if rank < cut:
        os.makedirs(f"{out}/train/{synset}", exist_ok=True)
        picture.save(f"{out}/train/{synset}/{synset}_{i}.JPEG", quality=95)
    else:
        os.makedirs(f"{out}/validation", exist_ok=True)
        picture.save(f"{out}/validation/val_{rank - cut:05d}.JPEG", quality=95)
        labels.append(synset)
open(f"{out}/synset_labels.txt", "w").write("\n".join(labels) + "\n")
print(f"{cut} training and {len(labels)} validation pictures in {out}")
