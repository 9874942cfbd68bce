#!/usr/bin/env python3
"""Decoded-pixel SHA-256 of every JPEG in TFRecord files, by Pillow (libjpeg-turbo, ISLOW IDCT,
fancy upsampling): the same lines as `amoeba data inspect --hashes`, for comparing the decoders.

    python3 Scripts/peers/pillow_decode_hashes.py FILE...
"""
import hashlib, io, struct, sys
from PIL import Image

def records(path):
    data = open(path, "rb").read()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        yield data[offset + 12: offset + 12 + length]
        offset += 16 + length

def varint(b, i):
    shift = value = 0
    while True:
        byte = b[i]; i += 1
        value |= (byte & 0x7F) << shift; shift += 7
        if byte < 0x80: return value, i

def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        if key & 7 == 2:
            n, i = varint(b, i); yield key >> 3, b[i:i + n]; i += n
        elif key & 7 == 0:
            _, i = varint(b, i)
        else:
            raise ValueError("unexpected wire type")

def encoded_image(example):
    for _, features in fields(example):
        for _, entry in fields(features):
            parts = dict(fields(entry))
            if parts.get(1) == b"image/encoded":
                for kind, blist in fields(parts[2]):
                    for _, value in fields(blist):
                        return value

for path in sys.argv[1:]:
    print(path)
    for index, record in enumerate(records(path)):
        image = Image.open(io.BytesIO(encoded_image(record))).convert("RGB")
        print(f"  record {index}: {image.width}x{image.height} decoded sha256 {hashlib.sha256(image.tobytes()).hexdigest()}")
