#!/usr/bin/env python3
"""TensorBoard hparams fixtures for tests/test_tb_hparams.c (`sdti train --log_config`), made
with torch's own SummaryWriter.add_hparams code path (torch.utils.tensorboard.summary.hparams,
what accelerate's TensorBoardTracker.store_init_configuration calls with metric_dict={}) and
tensorboard's TFRecord writer.

Writes tests/fixtures/train_log/:
  hparams_cases.txt  one case a line:
                       wall <wall_time float.hex()>
                       hparam <name> none|bool|int|float|str <value: 0/1, int, float.hex(), text>
                       repr <float.hex()> <Python repr>      (str(time.time()) folder names)
  hparams.bin        the three events add_hparams writes for the hparam lines' dict, in order
                     (experiment, session_start_info, session_end_info), each an Event with the
                     wall time and no step, framed by tensorboard's RecordWriter. The plugin
                     content is re-serialized with deterministic=True (map entries sorted by
                     key): Python's writer emits the map in hash order, which is not stable.

Run: build/refvenv/bin/python tools/reference/make_tb_hparams_fixtures.py
"""
import io
import os

from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard.summary import hparams

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "train_log")

# kohya's get_sanitized_config_or_none value kinds: bool, int, float, str, None, and lists /
# tuples / objects as their str()
VALUES = {
    "v2": False,
    "v_parameterization": True,
    "max_train_steps": 1600,
    "learning_rate": 5e-06,
    "seed": 0,
    "scale_weight_norms": None,
    "output_name": "mychar",
    "resolution": "(512, 512)",
    "optimizer_args": "['weight_decay=0.1', 'betas=0.9,0.99']",
    "metadata_title": "",
    "metadata_author": "Zoë ✓",
    "noise_offset": -0.0357,
    "zz_last": 1e300,
}
WALL = 1796315716.625
REPRS = [1796315716.625, 1796315716.1234567, 1733250000.0, 2.0, 0.1, 1e-05, 0.0001, 1e16,
         1.5e20, 123456789.0, -0.0, 5e-324]


def kind(v):
    if v is None:
        return "none", ""
    if isinstance(v, bool):
        return "bool", str(int(v))
    if isinstance(v, int):
        return "int", str(v)
    if isinstance(v, float):
        return "float", v.hex()
    return "str", v


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = [f"wall {WALL.hex()}"]
    for k, v in VALUES.items():
        t, text = kind(v)
        lines.append(f"hparam {k} {t} {text}".rstrip(" ") if t == "none" else f"hparam {k} {t} {text}")
    for x in REPRS:
        lines.append(f"repr {x.hex()} {x!r}")

    buf = io.BytesIO()
    writer = RecordWriter(buf)
    for summary in hparams(VALUES, {}):
        for value in summary.value:
            data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
            value.metadata.plugin_data.content = data.SerializeToString(deterministic=True)
        ev = event_pb2.Event(wall_time=WALL, summary=summary)
        writer.write(ev.SerializeToString())
    with open(os.path.join(OUT, "hparams.bin"), "wb") as f:
        f.write(buf.getvalue())
    with open(os.path.join(OUT, "hparams_cases.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {OUT}/hparams.bin ({len(buf.getvalue())} bytes) and hparams_cases.txt")


if __name__ == "__main__":
    main()
