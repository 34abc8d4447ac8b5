#!/usr/bin/env python3
"""Reads a run folder that `sdti train --logging_dir` wrote with TensorBoard's own reader
(tensorboard's EventAccumulator, what `tensorboard --logdir` uses) and checks it against the
loss.csv beside it:

  RUN/<tracker name>/events.out.tfevents.*   exactly one event file per tracker folder
  file_version "brain.Event:2"; scalar tags loss, lr, loss/epoch (kohya TI's tags)
  "loss" and "lr": one event per CSV row, same steps in the same order, values equal to the
  CSV's as float32 (TensorBoard's simple_value is a float32)
  "loss/epoch": one event per epoch in the CSV, at steps 1, 2, ... (kohya logs it at epoch + 1)
  --log_config (when RUN/<tracker name>/<time>/events.out.tfevents.* exists): read with
  tensorboard's event loader and its hparams plugin parsers: exactly the three summaries
  add_hparams writes, the experiment's hparam names equal the session's keys (and
  EXPECT_HPARAMS's, when given as name=value pairs: the value as the hparams plugin reads it),
  none of kohya's filtered-out keys (paths, API keys)

Usage: build/refvenv/bin/python tools/reference/check_tensorboard_log.py RUN_FOLDER [...]
       (with no folder: trains 3 steps of the tiny fixture model with build/sdti, or $SDTI_BIN,
       into a temporary folder and checks that)
Exit status 0 when every check passes. Not run by `make test` (it needs Python).
"""
import csv
import glob
import os
import struct
import subprocess
import sys
import tempfile

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import metadata as hp_metadata

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def f32(x):
    return struct.unpack("<f", struct.pack("<f", float(x)))[0]


def check_run(run):
    failures = []
    with open(os.path.join(run, "loss.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        failures.append("loss.csv has no rows")
    event_files = glob.glob(os.path.join(run, "*", "events.out.tfevents.*"))
    if len(event_files) != 1:
        return failures + [f"want one event file under {run}/*/, found {event_files}"]
    acc = EventAccumulator(event_files[0], size_guidance={"scalars": 0})
    acc.Reload()
    if acc.file_version != 2.0:
        failures.append(f"file_version {acc.file_version}, want 2 (brain.Event:2)")
    tags = set(acc.Tags()["scalars"])
    if tags != {"loss", "lr", "loss/epoch"}:
        failures.append(f"scalar tags {sorted(tags)}, want ['loss', 'loss/epoch', 'lr']")
    for tag, column in (("loss", "loss"), ("lr", "lr")):
        events = acc.Scalars(tag) if tag in tags else []
        got = [(e.step, e.value) for e in events]
        want = [(int(r["step"]), f32(r[column])) for r in rows]
        if got != want:
            failures.append(f"{tag}: {len(got)} events differ from the CSV's {len(want)} rows; "
                            f"first events {got[:3]}, first rows {want[:3]}")
    epochs = sorted({int(r["epoch"]) for r in rows})
    epoch_events = acc.Scalars("loss/epoch") if "loss/epoch" in tags else []
    if [e.step for e in epoch_events] != epochs:
        failures.append(f"loss/epoch at steps {[e.step for e in epoch_events]}, want {epochs}")
    print(f"{run}: {len(rows)} rows, tags {sorted(tags)}, "
          f"{len(acc.Scalars('loss')) if 'loss' in tags else 0} loss events read by "
          f"TensorBoard's EventAccumulator: {'ok' if not failures else 'FAILED'}")
    return failures


HIDDEN = {"wandb_api_key", "huggingface_token", "pretrained_model_name_or_path", "vae",
          "tokenizer_cache_dir", "train_data_dir", "conditioning_data_dir", "reg_data_dir",
          "output_dir", "logging_dir"}


def check_hparams(run, expect=None):
    """--log_config's hparams folder(s) in run; returns failures (none when there is none)."""
    failures = []
    for path in glob.glob(os.path.join(run, "*", "*", "events.out.tfevents.*")):
        data = {}
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                parse = {
                    hp_metadata.EXPERIMENT_TAG: hp_metadata.parse_experiment_plugin_data,
                    hp_metadata.SESSION_START_INFO_TAG:
                        hp_metadata.parse_session_start_info_plugin_data,
                    hp_metadata.SESSION_END_INFO_TAG: hp_metadata.parse_session_end_info_plugin_data,
                }.get(value.tag)
                if parse and value.metadata.plugin_data.plugin_name == hp_metadata.PLUGIN_NAME:
                    data[value.tag] = parse(value.metadata.plugin_data.content)
        want_tags = {hp_metadata.EXPERIMENT_TAG, hp_metadata.SESSION_START_INFO_TAG,
                     hp_metadata.SESSION_END_INFO_TAG}
        if set(data) != want_tags:
            failures.append(f"{path}: hparams tags {sorted(data)}, want {sorted(want_tags)}")
            continue
        names = [h.name for h in data[hp_metadata.EXPERIMENT_TAG].hparam_infos]
        session = data[hp_metadata.SESSION_START_INFO_TAG].hparams
        if data[hp_metadata.SESSION_END_INFO_TAG].status != 1:
            failures.append(f"{path}: session end status is not STATUS_SUCCESS")
        if sorted(names) != sorted(session.keys()):
            failures.append(f"{path}: experiment names differ from the session's keys")
        if HIDDEN & set(names):
            failures.append(f"{path}: holds filtered-out keys {sorted(HIDDEN & set(names))}")
        for key, want in (expect or {}).items():
            got = session.get(key)
            got = None if got is None else getattr(got, got.WhichOneof("kind"))
            if str(got) != want and not (isinstance(got, float) and float(want) == got):
                failures.append(f"{path}: hparam {key} = {got!r}, want {want}")
        print(f"{path}: {len(names)} hparams read by the hparams plugin: "
              f"{'ok' if not failures else 'FAILED'}")
    return failures


def write_tiny_dataset(images):
    """Three flat 64x64 images captioned with the token "mytok" in the folder `images`."""
    os.makedirs(images)
    from PIL import Image
    for i in range(3):
        Image.new("RGB", (64, 64), (40 * i, 120, 200 - 30 * i)).save(f"{images}/img{i}.png")
        with open(f"{images}/img{i}.txt", "w") as f:
            f.write("a photo of mytok")


def train_tiny(tmp):
    sdti = os.environ.get("SDTI_BIN", os.path.join(ROOT, "build", "sdti"))
    write_tiny_dataset(os.path.join(tmp, "train", "2_mytok"))
    logs = os.path.join(tmp, "logs")
    subprocess.run([sdti, "train", "--pretrained_model_name_or_path",
                    os.path.join(ROOT, "tests/fixtures/models/sd1-tiny/ldm.safetensors"),
                    "--train_data_dir", os.path.join(tmp, "train"), "--caption_extension", ".txt",
                    "--resolution", "64", "--token_string", "mytok", "--init_word", "cat",
                    "--max_train_steps", "5", "--gradient_accumulation_steps", "2",
                    "--lr_scheduler", "linear", "--learning_rate", "1e-2", "--seed", "1",
                    "--output_dir", os.path.join(tmp, "out"), "--logging_dir", logs,
                    "--log_config", "--optimizer_args", "weight_decay=0.1"],
                   check=True)
    return glob.glob(os.path.join(logs, "*"))


def main():
    runs = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        if not runs:
            runs = train_tiny(tmp)
        failed = 0
        for run in runs:
            failures = check_run(run) + check_hparams(run, {
                "output_name": "mytok", "resolution": "(64, 64)",
                "optimizer_args": "['weight_decay=0.1']"} if not sys.argv[1:] else None)
            failed += bool(failures)
            for m in failures:
                print(f"FAIL {run}: {m}")
    print(f"{len(runs) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
