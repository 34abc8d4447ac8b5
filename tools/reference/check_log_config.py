#!/usr/bin/env python3
"""`sdti train --log_config` against kohya's own get_sanitized_config_or_none: parses the same
command line with sd-scripts' train_textual_inversion parser (modules sd-scripts imports but
this venv lacks are replaced by mocks: only the parser and the argument checks run), applies
what kohya does to args before init_trackers (output_name default, verify_training_args,
prepare_dataset_args, the max_train_epochs override given the run's steps per epoch), trains
the tiny fixture model with sdti and the same options, and compares the hparams TensorBoard's
hparams plugin reads from sdti's file with kohya's dict: the same keys (None left out), the
same values (bool/int/float as numbers), the same order.

Usage: build/refvenv/bin/python tools/reference/check_log_config.py SD_SCRIPTS_DIR [OPTION ...]
       (SDTI_BIN or build/sdti; the options are added to a tiny run's own)
Exit status 0 when they agree. Not run by `make test` (it needs Python and sd-scripts).
"""
import glob
import math
import os
import subprocess
import sys
import tempfile
from unittest import mock

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import metadata as hp

from check_tensorboard_log import write_tiny_dataset

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def kohya_config(kohya, argv, steps_per_epoch):
    sys.path.insert(0, kohya)
    for _ in range(60):
        try:
            import train_textual_inversion as ti
            break
        except ImportError as e:  # a module this venv lacks: a mock stands in
            sys.modules[e.name] = mock.MagicMock()
            for k in [k for k in sys.modules if k.startswith("library") or k.startswith("train_")]:
                del sys.modules[k]
    args = ti.setup_parser().parse_args(argv)
    from library import train_util
    if args.output_name is None:
        args.output_name = args.token_string
    train_util.verify_training_args(args)
    train_util.prepare_dataset_args(args, True)
    if args.max_train_epochs is not None:
        args.max_train_steps = args.max_train_epochs * math.ceil(
            steps_per_epoch / args.gradient_accumulation_steps)
    return {k: v for k, v in train_util.get_sanitized_config_or_none(args).items() if v is not None}


def sdti_hparams(logs):
    path = glob.glob(os.path.join(logs, "*", "*", "*", "events.out.tfevents.*"))
    if len(path) != 1:
        sys.exit(f"want one hparams event file under {logs}, found {path}")
    names, values = [], {}
    for event in EventFileLoader(path[0]).Load():
        for v in event.summary.value:
            content = v.metadata.plugin_data.content
            if v.tag == hp.EXPERIMENT_TAG:
                names = [h.name for h in hp.parse_experiment_plugin_data(content).hparam_infos]
            elif v.tag == hp.SESSION_START_INFO_TAG:
                for k, x in hp.parse_session_start_info_plugin_data(content).hparams.items():
                    values[k] = getattr(x, x.WhichOneof("kind"))
    return names, values


def main():
    kohya, extra = sys.argv[1], sys.argv[2:]
    sdti = os.environ.get("SDTI_BIN", os.path.join(ROOT, "build", "sdti"))
    with tempfile.TemporaryDirectory() as tmp:
        write_tiny_dataset(os.path.join(tmp, "train", "1_mytok"))
        logs = os.path.join(tmp, "logs")
        argv = ["--pretrained_model_name_or_path",
                os.path.join(ROOT, "tests/fixtures/models/sd1-tiny/ldm.safetensors"),
                "--train_data_dir", os.path.join(tmp, "train"), "--caption_extension", ".txt",
                "--resolution", "64", "--token_string", "mytok", "--init_word", "cat",
                "--max_train_steps", "2", "--output_dir", os.path.join(tmp, "out"),
                "--logging_dir", logs, "--log_config"] + extra
        run = subprocess.run([sdti, "train"] + argv, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"sdti train failed:\n{run.stderr}")
        names, got = sdti_hparams(logs)
    want = kohya_config(kohya, argv, steps_per_epoch=3)
    failures = []
    if sorted(want) != sorted(got):
        failures.append(f"keys only kohya's: {sorted(set(want) - set(got))}, "
                        f"only sdti's: {sorted(set(got) - set(want))}")
    for k, v in want.items():
        w = float(v) if isinstance(v, (bool, int, float)) else v
        if k in got and got[k] != w:
            failures.append(f"{k}: sdti {got[k]!r}, kohya {v!r}")
    if names != [k for k in want if k in got]:
        failures.append("the hparams' order differs from kohya's")
    for f in failures:
        print("FAIL", f)
    print(f"{len(got)} hparams, kohya {len(want)}: {'ok' if not failures else 'FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
