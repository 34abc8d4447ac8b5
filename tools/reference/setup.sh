#!/usr/bin/env bash
# Creates the pinned PyTorch reference venv in build/refvenv (idempotent; quiet when done).
# Only the fixture generators need it: `make test` never does.
#   bash tools/reference/setup.sh        then    build/refvenv/bin/python tools/reference/<script>.py
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/build/refvenv"
req="$root/tools/reference/requirements.txt"
stamp="$venv/.requirements.sha256"

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

# A venv made without this script (or before the stamp existed): accept it, without asking
# the network, when every pinned package is installed at its pinned version.
satisfied() {
    "$venv/bin/python" - "$req" <<'PY' 2>/dev/null
import re, sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, op, ver = re.match(r"([A-Za-z0-9_.-]+)\s*(==|<|>=|<=|>)?\s*(\S*)", line).groups()
    have = version(name)
    if op == "==" and have != ver:
        sys.exit(1)
PY
}
if [ -x "$venv/bin/python" ] && satisfied; then
    echo "$want" >"$stamp"
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup.sh: creating $venv"
    python3 -m venv "$venv"
fi
echo "setup.sh: installing $req (torch is large: this takes a few minutes)"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$req"
"$venv/bin/python" -c "import torch, diffusers, transformers, safetensors, ftfy, yaml" ||
    { echo "setup.sh: the venv cannot import its packages" >&2; exit 1; }
echo "$want" >"$stamp"
echo "setup.sh: ready: $venv"
