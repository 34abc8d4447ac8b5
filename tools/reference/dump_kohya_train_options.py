"""Writes tests/fixtures/train_options/kohya_ti_options.json: every option of kohya-ss
sd-scripts' train_textual_inversion.py as its argparse parser defines it (name, action, type,
default, choices, nargs; no help texts), for sdti's option-table test.

sd-scripts is not a PyPI package, so this reads a checkout of it:
    build/refvenv/bin/python tools/reference/dump_kohya_train_options.py /path/to/sd-scripts

Only setup_parser() is run. Modules the parser's imports need but the reference venv lacks
(cv2, voluptuous, torchvision, ...) are replaced by inert stand-ins before the import; none of
them takes part in building the parser. Deterministic: the output depends on the checkout only.
"""

import importlib.abc
import importlib.machinery
import json
import os
import subprocess
import sys
from unittest import mock

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "tests", "fixtures", "train_options", "kohya_ti_options.json"))
STAND_INS = {"toml", "cv2", "voluptuous", "imagesize", "einops", "open_clip", "bitsandbytes",
             "lion_pytorch", "prodigyopt", "schedulefree", "dadaptation", "easygui", "rich",
             "ftfy", "pytorch_optimizer", "wandb", "tensorboard", "timm", "sentencepiece",
             "torchvision"}


class StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in STAND_INS:
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        m = mock.MagicMock(name=spec.name)
        m.__path__ = []
        m.__spec__ = spec
        m.__name__ = spec.name
        return m

    def exec_module(self, module):
        pass


def main():
    root = os.path.abspath(sys.argv[1])
    sys.path.insert(0, root)
    sys.meta_path.insert(0, StandIn())
    import train_textual_inversion

    parser = train_textual_inversion.setup_parser()
    options = []
    for a in parser._actions:
        if not a.option_strings or a.option_strings[0] == "-h":
            continue
        kind = {"_StoreTrueAction": "store_true", "_StoreAction": "store"}[type(a).__name__]
        default = a.default
        if default is not None and not isinstance(default, (bool, int, float, str)):
            default = str(default)
        options.append({
            "name": a.option_strings[0][2:],
            "action": kind,
            "type": getattr(a.type, "__name__", None),
            "default": default,
            "choices": list(a.choices) if a.choices is not None else None,
            "nargs": a.nargs,
        })
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fp:
        json.dump({"sd_scripts_commit": commit, "options": options}, fp, indent=1)
        fp.write("\n")
    print(f"{len(options)} options -> {OUT}")


if __name__ == "__main__":
    main()
