#!/usr/bin/env python3
"""TensorBoard event-file fixtures for tests/test_train_log.c, written with the `tensorboard`
package's own protobuf classes and TFRecord code (its RecordWriter's framing, its crc32c).

Writes tests/fixtures/train_log/:
  cases.txt   one case a line:
                crc <data hex> <crc32c hex> <masked crc32c hex>
                version <wall_time repr>
                scalar <wall_time repr> <step> <tag> <float32 bits hex>
  events.bin  the version and scalar cases, each an Event serialized by tensorboard's protobuf
              and framed as a TFRecord by tensorboard's RecordWriter, in the order of cases.txt

sdti's encoder must give events.bin byte for byte. Run: build/refvenv/bin/python
tools/reference/make_tb_event_fixtures.py
"""
import io
import os
import struct

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c, masked_crc32c
from tensorboard.summary.writer.record_writer import RecordWriter

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "train_log")


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = []
    crc_inputs = [b"", b"a", b"123456789", bytes(range(32)), bytes(32 * [0xFF]),
                  b"brain.Event:2", struct.pack("<Q", 1234)]
    for data in crc_inputs:
        lines.append(f"crc {data.hex() or '-'} {crc32c(data):08x} {masked_crc32c(data):08x}")

    buf = io.BytesIO()
    writer = RecordWriter(buf)
    wall = 1796315716.25
    ev = event_pb2.Event(wall_time=wall, file_version="brain.Event:2")
    ev.source_metadata.writer = "sdti"
    writer.write(ev.SerializeToString())
    lines.append(f"version {wall!r}")

    # kohya's tags; steps 0 (left out by proto3), small and large; values: ordinary, zero,
    # negative, tiny, huge, an lr
    scalars = [
        (wall + 0.5, 0, "loss", 0.1234567),
        (wall + 1.0, 1, "loss", 0.0),
        (wall + 1.0, 1, "lr", 5e-3),
        (wall + 2.0, 2, "loss", -1.5),
        (wall + 3.0, 127, "loss", 1e-30),
        (wall + 4.0, 128, "lr", 3.0e38),
        (wall + 5.0, 300000, "loss/epoch", 0.0625),
        (wall + 6.0, 2**40 + 3, "lr/d*lr", 1.0),
    ]
    for wt, step, tag, value in scalars:
        v = f32(value)
        ev = event_pb2.Event(wall_time=wt, step=step)
        ev.summary.value.add(tag=tag, simple_value=v)
        writer.write(ev.SerializeToString())
        lines.append(f"scalar {wt!r} {step} {tag} {f32_bits(v):08x}")

    with open(os.path.join(OUT, "events.bin"), "wb") as f:
        f.write(buf.getvalue())
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {OUT}/events.bin ({len(buf.getvalue())} bytes) and cases.txt")


if __name__ == "__main__":
    main()
