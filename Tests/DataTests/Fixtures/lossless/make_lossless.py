"""Lossless JPEGs (SOF3, Huffman) from synthetic pixels, written by this project's own encoder
(T.81 Annex H), for the decoder's tests: python3 make_lossless.py OUT_DIR"""
import os, struct, sys

# The standard DC luminance table (T.81 K.3) extended to size 16: counts per code length, symbols.
BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
VALS = list(range(17))

def huffman_codes():
    table, code, k = {}, 0, 0
    for length, count in enumerate(BITS, 1):
        for _ in range(count):
            table[VALS[k]] = (code, length); code += 1; k += 1
        code <<= 1
    return table

def predict(p, ra, rb, rc):
    return [None, ra, rb, rc, ra + rb - rc, ra + ((rb - rc) >> 1), rb + ((ra - rc) >> 1), (ra + rb) >> 1][p]

class Bits:
    def __init__(self): self.bits, self.out = [], bytearray()
    def put(self, value, n):
        for i in range(n - 1, -1, -1): self.bits.append((value >> i) & 1)
    def flush(self):
        while len(self.bits) % 8: self.bits.append(1)
        for i in range(0, len(self.bits), 8):
            b = int("".join(map(str, self.bits[i:i + 8])), 2)
            self.out.append(b)
            if b == 0xFF: self.out.append(0)
        self.bits = []

def scan_data(planes, comps, w, h, predictor, pt, precision, restart_rows):
    table, out = huffman_codes(), Bits()
    first, interval = 0, 0
    for y in range(h):
        if restart_rows and y and y % restart_rows == 0:
            out.flush(); out.out += bytes([0xFF, 0xD0 + interval % 8]); interval += 1; first = y
        for x in range(w):
            for c in comps:
                s = planes[c]
                if y == first: p = (1 << (precision - pt - 1)) if x == 0 else s[y][x - 1]
                elif x == 0: p = s[y - 1][0]
                else: p = predict(predictor, s[y][x - 1], s[y - 1][x], s[y - 1][x - 1])
                d = (s[y][x] - p) % 65536
                if d >= 32768: d -= 65536
                size = 0 if d == 0 else min(abs(d).bit_length(), 16)
                code, length = table[size]
                out.put(code, length)
                if 0 < size < 16: out.put(d if d > 0 else d - 1 + (1 << size), size)
    out.flush()
    return bytes(out.out)

def encode(path, w, h, comps=3, predictor=1, pt=0, precision=8, restart_rows=0, interleaved=True, jfif=False, seed=1):
    rng = seed
    def noise():
        nonlocal rng
        rng = (rng * 1103515245 + 12345) % (1 << 31)
        return (rng >> 16) % 31 - 15
    full = [[[min(255, max(0, ((x * 255 // w) * (c + 1) + (y * 255 // h) * (2 - c % 2) + (x * y) % 29) % 256 + noise()))
              for x in range(w)] for y in range(h)] for c in range(comps)]
    planes = [[[v >> (8 - precision) >> pt for v in row] for row in plane] for plane in full]
    out = bytearray(b"\xff\xd8")
    if jfif: out += b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dht = bytes([0x00]) + bytes(BITS) + bytes(VALS)
    out += b"\xff\xc4" + struct.pack(">H", len(dht) + 2) + dht
    sof = bytes([precision]) + struct.pack(">HH", h, w) + bytes([comps]) + b"".join(bytes([c + 1, 0x11, 0]) for c in range(comps))
    out += b"\xff\xc3" + struct.pack(">H", len(sof) + 2) + sof
    if restart_rows: out += b"\xff\xdd\x00\x04" + struct.pack(">H", restart_rows * w)
    for group in ([list(range(comps))] if interleaved else [[c] for c in range(comps)]):
        sos = bytes([len(group)]) + b"".join(bytes([c + 1, 0x00]) for c in group) + bytes([predictor, 0, pt])
        out += b"\xff\xda" + struct.pack(">H", len(sos) + 2) + sos + scan_data(planes, group, w, h, predictor, pt, precision, restart_rows)
    out += b"\xff\xd9"
    open(path, "wb").write(out)

if __name__ == "__main__":
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    for p in range(1, 8):
        encode(f"{d}/rgb-p{p}.jpg", 23, 17, predictor=p, seed=p)
    encode(f"{d}/gray-p6-pt2.jpg", 31, 9, comps=1, predictor=6, pt=2)
    encode(f"{d}/rgb-p4-restart2.jpg", 19, 12, predictor=4, restart_rows=2)
    encode(f"{d}/rgb-p7-separate-scans-restart3.jpg", 16, 13, predictor=7, restart_rows=3, interleaved=False)
    encode(f"{d}/ycbcr-jfif-p5.jpg", 20, 15, predictor=5, jfif=True)
