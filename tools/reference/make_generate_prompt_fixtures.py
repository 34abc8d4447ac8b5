"""Writes tests/fixtures/generate/kohya_gen_options.json and prompt_attention.json from kohya-ss
sd-scripts' own gen_img_diffusers.py, for sdti's option-table and prompt-parser test:

  kohya_gen_options.json   every option of its setup_parser (name, action, type, default,
                           choices, nargs; no help texts), kohya's logging group included;
  dynamic_prompts.json     what its handle_dynamic_prompt_variants returns for DYNAMIC after
                           random.seed(100 + i), and the random stream's next randint;
  py_float_repr.json       Python's str() of a few floats (kohya writes the scale with str()).
  prompt_attention.json    what its parse_prompt_attention returns for PROMPTS (text pieces and
                           weights: the products of 1.1, 1 / 1.1 and the given weights as
                           Python computes them).

sd-scripts is not a PyPI package, so this reads a checkout of it (or the file itself):
    build/refvenv/bin/python tools/reference/make_generate_prompt_fixtures.py /path/to/sd-scripts

Only the two functions (and the re_attention pattern) are taken from the file with Python's ast
module and run; nothing else of the script is imported, so no GPU package is needed.
"""

import argparse
import ast
import itertools
import json
import logging
import random
import os
import re
import sys

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "generate"))

PROMPTS = [
    "normal text",
    "an (important) word",
    "(unbalanced",
    "\\(literal\\]",
    "(unnecessary)(parens)",
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
    "[[low]] and [[[lower]]]",
    "(a:1.2) (b:0.8) (c:-0.5) [d:1.5]",
    "photo:1.2) of a cat",
    "a cat BREAK a dog",
    "BREAKFAST at noon",
    "(BREAK) x",
    "time 12:30 (sharp:1.05)",
    "back\\\\slash and \\x and end\\",
    "]close and )paren",
    "((a) [b (c:1.4)] d)",
    "",
    "(",
    "a (b:.5) c (d:+2) e",
    "caf\u00e9 (\u732b:1.2) [\u72ac]",
]


# (prompt, repeat_count = --images_per_prompt) for handle_dynamic_prompt_variants
DYNAMIC = [
    ("a photo of a cat", 3),
    ("a {red|green|blue} car", 4),
    ("a {red|green|blue} car on a {beach|street}", 3),
    ("{2$$a|b|c|d} and {1-3$$ or $$x|y|z}", 4),
    ("{e$$cat|dog|bird} photo", 2),
    ("{e$$2$$a|b|c} with {u|v}", 1),
    ("{E$$1-2$$ + $$p|q} {same|same}", 2),
    ("{0-5$$a|b|c}", 5),
    ("x {a|b} y {a|b} z", 3),
    ("{3-1$$one|two|three|four}", 3),
    ("no variants {here}", 2),
    ("{1-2$$" + "|".join(f"w{i}" for i in range(30)) + "}", 3),
]


def load_functions(path):
    src = open(path, encoding="utf-8").read()
    tree = ast.parse(src)
    wanted = {"setup_parser", "parse_prompt_attention", "handle_dynamic_prompt_variants"}
    ns = {"re": re, "argparse": argparse, "random": random, "itertools": itertools, "logger": logging.getLogger("kohya")}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) in ("re_attention", "RE_DYNAMIC_PROMPT") for t in node.targets):
            exec(compile(ast.Module([node], []), path, "exec"), ns)
        if isinstance(node, ast.FunctionDef) and node.name in wanted:
            exec(compile(ast.Module([node], []), path, "exec"), ns)
    return ns


def add_logging_arguments(parser):
    """kohya's library.utils.add_logging_arguments, read from the same checkout."""
    parser.add_argument("--console_log_level", type=str, default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    parser.add_argument("--console_log_file", type=str, default=None)
    parser.add_argument("--console_log_simple", action="store_true")


def check_logging_group(root):
    utils = os.path.join(root, "library", "utils.py")
    if os.path.exists(utils):
        text = open(utils, encoding="utf-8").read()
        for name in ["--console_log_level", "--console_log_file", "--console_log_simple"]:
            assert name in text, f"{utils} lacks {name}: update add_logging_arguments here"


def main():
    arg = os.path.abspath(sys.argv[1])
    path = os.path.join(arg, "gen_img_diffusers.py") if os.path.isdir(arg) else arg
    if os.path.isdir(arg):
        check_logging_group(arg)
    ns = load_functions(path)
    ns["add_logging_arguments"] = add_logging_arguments
    ns["SCHEDULER_LINEAR_START"] = 0.00085
    parser = ns["setup_parser"]()
    options = []
    for a in parser._actions:
        if not a.option_strings or a.option_strings[0] == "-h":
            continue
        kind = {"_StoreTrueAction": "store_true", "_StoreAction": "store"}[type(a).__name__]
        options.append(
            {
                "name": a.option_strings[0][2:],
                "action": kind,
                "type": a.type.__name__ if a.type else None,
                "default": a.default,
                "choices": list(a.choices) if a.choices else None,
                "nargs": a.nargs,
            }
        )
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "kohya_gen_options.json"), "w") as f:
        json.dump(options, f, indent=1)
        f.write("\n")
    cases = []
    for p in PROMPTS:
        res = ns["parse_prompt_attention"](p)
        cases.append({"prompt": p, "pieces": [{"text": t, "weight": w} for t, w in res]})
    with open(os.path.join(OUT, "prompt_attention.json"), "w") as f:
        json.dump(cases, f, indent=1, ensure_ascii=False)
        f.write("\n")
    dyn = []
    for i, (p, repeat) in enumerate(DYNAMIC):
        random.seed(100 + i)
        prompts = ns["handle_dynamic_prompt_variants"](p, repeat)
        dyn.append({"prompt": p, "repeat": repeat, "seed": 100 + i, "prompts": prompts,
                    "next_randint": random.randint(0, 0x7FFFFFFF)})
    with open(os.path.join(OUT, "dynamic_prompts.json"), "w") as f:
        json.dump(dyn, f, indent=1, ensure_ascii=False)
        f.write("\n")
    floats = [7.5, 7.0, 1.0, 0.1, 1e-05, 0.0001, 12.25, 1e16, 1.5e16, 123456789.0, 2.5e-07, 1 / 3]
    with open(os.path.join(OUT, "py_float_repr.json"), "w") as f:
        json.dump([[v, repr(v)] for v in floats], f, indent=1)
        f.write("\n")
    print(len(options), "options,", len(cases), "prompts")


if __name__ == "__main__":
    main()
