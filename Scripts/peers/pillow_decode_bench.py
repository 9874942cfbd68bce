#!/usr/bin/env python3
"""Pillow's (libjpeg-turbo) decode rate on the JPEGs `amoeba bench data --out DIR` wrote, one thread,
`Image.open(...).convert('RGB')` as the issue asks, median of N rounds.

    python3 Scripts/peers/pillow_decode_bench.py DIR [ROUNDS]
"""
import glob, io, statistics, sys, time
import PIL
from PIL import Image, features

directory = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
print(f"Pillow {PIL.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}")
for name, pattern in [("fixtures", "fixture-*.jpg"), ("photos", "photo-*.jpg")]:
    files = [open(path, "rb").read() for path in sorted(glob.glob(f"{directory}/{pattern}"))]
    total = sum(len(f) for f in files)
    def one_round():
        start = time.perf_counter()
        for data in files:
            Image.open(io.BytesIO(data)).convert("RGB")
        return time.perf_counter() - start
    one_round()
    seconds = statistics.median(one_round() for _ in range(rounds))
    print(f"  {name} ({len(files)}): {total / seconds / 1e6:.1f} MB/s, {len(files) / seconds:.1f} images/s")
    if name != "photos":
        continue
    # DCT-domain scaling: Image.draft asks libjpeg-turbo for scale 1/2, 1/4, 1/8 (`amoeba ... scale:`).
    for scale in (2, 4, 8):
        def scaled_round():
            start = time.perf_counter()
            for data in files:
                image = Image.open(io.BytesIO(data))
                image.draft("RGB", (image.width // scale, image.height // scale))
                image.convert("RGB")
            return time.perf_counter() - start
        scaled_round()
        seconds = statistics.median(scaled_round() for _ in range(rounds))
        print(f"  photos at 1/{scale} scale: {len(files) / seconds:.1f} images/s")
