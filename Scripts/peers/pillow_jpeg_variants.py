#!/usr/bin/env python3
"""Writes a TFRecord file of JPEG variants encoded by Pillow (libjpeg-turbo): subsamplings 4:4:4,
4:2:2, 4:2:0, 4:4:0 and 4:1:1 (where Pillow can write them), progressive, optimized tables, restart
intervals, grayscale, odd sizes, qualities 5 to 100. Then compare decoders with
`amoeba data inspect --hashes FILE` against `pillow_decode_hashes.py FILE`.

    python3 Scripts/peers/pillow_jpeg_variants.py OUT.tfrecord
"""
import io, struct, sys, random
from PIL import Image

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

def varint(n):
    out = b""
    while True:
        b = n & 0x7F; n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n: return out

def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload

def example(jpeg, label):
    def feature(key, value):
        return field(1, field(1, key) + field(2, value))
    bytes_feature = field(1, field(1, jpeg))
    int_feature = field(3, varint(0 << 3 | 0)[:0] + field(1, varint(label)))
    return field(1, feature(b"image/encoded", bytes_feature) + feature(b"image/class/label", int_feature))

random.seed(5)
def picture(w, h, mode):
    image = Image.new("RGB", (w, h))
    px = image.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 7 + y * 3) % 256, (x * y) % 256, (255 - x * 5 + random.randint(0, 40)) % 256)
    return image.convert(mode)

variants = []
for (w, h) in [(1, 1), (7, 5), (17, 33), (64, 48), (101, 67), (250, 13)]:
    for mode in ["RGB", "L"]:
        for subsampling in ([0, 1, 2] if mode == "RGB" else [0]):
            for options in [{}, {"progressive": True}, {"optimize": True}, {"restart_marker_blocks": 3},
                            {"progressive": True, "restart_marker_rows": 1}]:
                for quality in [5, 75, 100]:
                    buffer = io.BytesIO()
                    picture(w, h, mode).save(buffer, "JPEG", quality=quality, subsampling=subsampling, **options)
                    variants.append(buffer.getvalue())

with open(sys.argv[1], "wb") as out:
    for i, jpeg in enumerate(variants):
        record = example(jpeg, 1 + i % 1000)
        header = struct.pack("<Q", len(record))
        out.write(header + struct.pack("<I", masked(header)) + record + struct.pack("<I", masked(record)))
print(f"{len(variants)} JPEGs written to {sys.argv[1]}")
