#!/usr/bin/env python3
"""A photo set no one here encoded, for timing JPEG decoders on ImageNet-like files: crops of the
photographs shipped with scikit-image, resized to ImageNet's common sizes (500×375, 375×500,
500×333, 333×500, 500×400, 400×300, 500×500), encoded by Pillow (libjpeg-turbo) at the qualities
ImageNet's files mostly have (75–95), 4:2:0, half with optimized Huffman tables.
Deterministic: the same set each run.

    python3 Scripts/peers/make_photos.py OUT_DIR [COUNT]     (then: amoeba bench data --photos OUT_DIR --out OUT_DIR)
"""
import io, os, random, sys
import numpy as np
from PIL import Image
from skimage import data

out = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 64
os.makedirs(out, exist_ok=True)
# The colour photographs among them (the synthetic and grey ones would not be like ImageNet's).
names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "immunohistochemistry"]
pictures = []
for name in names:
    try:
        array = getattr(data, name)()
    except Exception:
        continue
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    array = array[..., :3]
    if array.shape[0] >= 300 and array.shape[1] >= 300:
        pictures.append((name, Image.fromarray(array.astype(np.uint8))))
sizes = [(500, 375), (375, 500), (500, 333), (333, 500), (500, 400), (400, 300), (500, 500)]
rng = random.Random(2026)
total = 0
for i in range(count):
    name, picture = pictures[i % len(pictures)]
    width, height = sizes[rng.randrange(len(sizes))]
    # A random crop of at least half the picture's side, then resized: detail like a photograph's.
    scale = rng.uniform(0.5, 1.0)
    cw, ch = int(picture.width * scale), int(picture.height * scale)
    x, y = rng.randrange(picture.width - cw + 1), rng.randrange(picture.height - ch + 1)
    image = picture.crop((x, y, x + cw, y + ch)).resize((width, height), Image.LANCZOS)
    quality = rng.choice([75, 80, 85, 90, 95])
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, subsampling="4:2:0", optimize=(i % 2 == 1))
    with open(os.path.join(out, f"photo-{i:03d}.jpg"), "wb") as f:
        f.write(buffer.getvalue())
    total += buffer.tell()
print(f"wrote {count} photos ({len(pictures)} pictures: {', '.join(n for n, _ in pictures)}) to {out}, mean {total / count / 1000:.1f} KB")
