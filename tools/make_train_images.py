#!/usr/bin/env python3
"""Writes the small demo image set tests/fixtures/train/demo/ (standard library only, same
bytes on every run): four 64x64 RGB PNGs of a coloured disc on a gradient, each with a
caption naming the token "mytok". `make demo` trains an embedding on them with the tiny
fixture model."""
import os
import struct
import zlib

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "train", "demo", "4_mytok")
CAPTIONS = [
    "a photo of mytok, red",
    "mytok on a blue background",
    "a close-up photo of mytok",
    "mytok, centered",
]


def png(path, w, h, pixel):
    raw = bytearray()
    for y in range(h):
        raw.append(0)
        for x in range(w):
            raw += bytes(pixel(x, y))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, caption in enumerate(CAPTIONS):
        cx, cy, r = 20 + 8 * i, 36 - 4 * i, 12 + 2 * i
        colour = [(220, 40, 40), (40, 160, 60), (230, 200, 30), (150, 60, 200)][i]

        def pixel(x, y):
            if (x - cx) ** 2 + (y - cy) ** 2 <= r * r:
                return colour
            return (x * 3, y * 3, 120 + 30 * i)

        png(os.path.join(OUT, f"img{i}.png"), 64, 64, pixel)
        with open(os.path.join(OUT, f"img{i}.txt"), "w") as f:
            f.write(caption)


if __name__ == "__main__":
    main()
