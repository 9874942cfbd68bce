"""Writes the PNG fixtures of PNGTests (run in this folder; needs numpy, Pillow and optipng). The
expected pixels in the tests are TensorFlow 2.21's tf.io.decode_png(bytes, channels=3)."""
import struct, subprocess, zlib, os
import numpy as np
from PIL import Image

rng = np.random.default_rng(7)


def pic(w, h, c=3):
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 7) % 256, (xx * yy) % 256], -1)[..., :c]
    return np.clip(a + rng.integers(-25, 25, a.shape), 0, 255).astype(np.uint8)


def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def filtered(rows, bpp):
    """Each row with filter type row % 5 (None, Sub, Up, Average, Paeth)."""
    out, prev = b"", bytes(len(rows[0]))
    for r, row in enumerate(rows):
        cur = bytearray()
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c
            cur.append((x - [0, a, b, (a + b) // 2, paeth][r % 5]) % 256)
        out += bytes([r % 5]) + bytes(cur)
        prev = row
    return out


def write(name, w, h, depth, colour, raw, level, extra=b""):
    with open(name, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)) + extra
                + chunk(b"IDAT", zlib.compress(raw, level)) + chunk(b"IEND", b""))


Image.fromarray(pic(61, 47)).save("rgb8.png")
Image.fromarray(pic(33, 21, 4), "RGBA").save("rgba8.tmp.png")
Image.fromarray(pic(29, 19, 4)[..., [0, 3]], "LA").save("la8.tmp.png")
Image.fromarray(pic(30, 17)).quantize(colors=12).save("palette4.png", bits=4, transparency=3)
Image.fromarray(pic(27, 13)[..., 0] > 128).save("gray1.png")
Image.fromarray((pic(23, 11)[..., 0].astype(np.uint16) * 257 + rng.integers(0, 256, (11, 23))).astype(np.uint16)).save("gray16.png")
# Adam7 interlacing, by optipng.
for src, dst in [("rgba8.tmp.png", "rgba8-interlaced.png"), ("la8.tmp.png", "la8-interlaced.png"), ("palette4.png", "palette4-interlaced.png")]:
    subprocess.run(["optipng", "-quiet", "-i1", "-out", dst, src], check=True)
os.remove("rgba8.tmp.png"); os.remove("la8.tmp.png")
# 16-bit RGB, every filter type, with Python's zlib: noise in stored blocks, and a smooth one compressed.
w, h = 19, 12
noisy = (pic(w, h).astype(np.uint16) * 257 + rng.integers(0, 256, (h, w, 3))).astype(">u2")
write("rgb16-stored.png", w, h, 16, 2, filtered([noisy[y].tobytes() for y in range(h)], 6), 0, chunk(b"tEXt", b"Comment\x00fixture"))
yy, xx = np.mgrid[0:h, 0:w]
smooth = np.stack([xx * 3000, yy * 5000, (xx + yy) * 1500], -1).astype(">u2")
write("rgb16.png", w, h, 16, 2, filtered([smooth[y].tobytes() for y in range(h)], 6), 9)
# 2-bit grey, Sub filter.
w, h = 35, 20
yy, xx = np.mgrid[0:h, 0:w]
v = ((xx // 9 + yy // 7) % 4).astype(np.uint8)
raw = b""
for y in range(h):
    s = np.zeros(((w * 2 + 7) // 8) * 4, np.uint8); s[:w] = v[y]
    packed = bytes(int(s[4 * i]) << 6 | int(s[4 * i + 1]) << 4 | int(s[4 * i + 2]) << 2 | int(s[4 * i + 3]) for i in range(len(s) // 4))
    raw += b"\x01" + bytes((packed[i] - (packed[i - 1] if i else 0)) % 256 for i in range(len(packed)))
write("gray2.png", w, h, 2, 0, raw, 1)
