"""Writes tests/toml/expected.json: what Python's tomllib reads from our own TOML test cases.

Run with the reference venv (any Python >= 3.11 works, only the standard library is used):
    build/refvenv/bin/python tools/reference/make_toml_expected.py

- tests/toml/valid/*.toml: each file's value tree in toml-test's tagged form
  ({"type": "integer", "value": "42"}, tables as objects in source order, arrays as lists).
  Floats are repr() of tomllib's float (shortest text that reads back to the same double);
  strings also carry "hex" (their UTF-8 bytes) because JSON readers in C stop at U+0000;
  date-times carry "fields" ([year, month, day, hour, minute, second, microsecond, offset in
  minutes], the parts that exist for the kind) as tomllib's datetime objects hold them.
- Two valid cases are written here as bytes first, so their line endings and byte order mark
  cannot be changed by an editor or a checkout: crlf.toml and bom.toml.
- tests/toml/invalid/*.toml: each must be rejected by tomllib too, except the cases listed in
  TOMLLIB_ACCEPTS where tomllib is more lenient than the TOML 1.0.0 text (with the reason).
  Their expected messages live in the files themselves ("# expect: line:col: reason").
"""

import datetime
import json
import os
import sys
import tomllib

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CASES = os.path.join(ROOT, "tests", "toml")

GENERATED = {
    "crlf.toml": (b"# CRLF line endings everywhere (TOML: newline is LF or CRLF)\r\n"
                  b"a = 1\r\n"
                  b"ml = \"\"\"\r\nline one\r\nline two\\\r\n   joined\"\"\"\r\n"
                  b"lit = '''\r\nx\r\ny'''\r\n"
                  b"arr = [\r\n  1, # one\r\n  2,\r\n]\r\n"
                  b"[t] # comment\r\n"
                  b"b = \"two\"\r\n"),
    "bom.toml": "\ufeff# starts with a UTF-8 byte order mark\nkey = \"value\"\n".encode("utf-8"),
}

# tomllib keeps Python's unbounded integers, so it accepts integers outside the 64-bit range
# that TOML 1.0.0 says must be an error ("If an integer cannot be represented losslessly, an
# error must be thrown").
TOMLLIB_ACCEPTS = {
    "int_too_big.toml": "Python integers are unbounded",
    "int_too_small.toml": "Python integers are unbounded",
    "hex_too_big.toml": "Python integers are unbounded",
}


def tagged(value):
    if isinstance(value, bool):
        return {"type": "bool", "value": "true" if value else "false"}
    if isinstance(value, int):
        return {"type": "integer", "value": str(value)}
    if isinstance(value, float):
        return {"type": "float", "value": repr(value)}
    if isinstance(value, str):
        return {"type": "string", "value": value, "hex": value.encode("utf-8").hex()}
    if isinstance(value, datetime.datetime):
        fields = [value.year, value.month, value.day, value.hour, value.minute, value.second,
                  value.microsecond]
        if value.tzinfo is None:
            return {"type": "datetime-local", "value": value.isoformat(), "fields": fields}
        offset = value.utcoffset().total_seconds() // 60
        return {"type": "datetime", "value": value.isoformat(), "fields": fields + [int(offset)]}
    if isinstance(value, datetime.date):
        return {"type": "date-local", "value": value.isoformat(),
                "fields": [value.year, value.month, value.day]}
    if isinstance(value, datetime.time):
        return {"type": "time-local", "value": value.isoformat(),
                "fields": [value.hour, value.minute, value.second, value.microsecond]}
    if isinstance(value, list):
        return [tagged(v) for v in value]
    if isinstance(value, dict):
        return {k: tagged(v) for k, v in value.items()}
    raise TypeError(f"unexpected {type(value)}")


def main():
    valid_dir = os.path.join(CASES, "valid")
    invalid_dir = os.path.join(CASES, "invalid")
    for name, data in GENERATED.items():
        with open(os.path.join(valid_dir, name), "wb") as f:
            f.write(data)

    out = {"valid": {}, "invalid": {}}
    for name in sorted(os.listdir(valid_dir)):
        if not name.endswith(".toml"):
            continue
        with open(os.path.join(valid_dir, name), "rb") as f:
            # tomllib.load decodes plain UTF-8 and would keep the byte order mark as a
            # character; 'utf-8-sig' drops it, as TOML readers (and sdti) do.
            out["valid"][name] = tagged(tomllib.loads(f.read().decode("utf-8-sig")))

    failures = []
    for name in sorted(os.listdir(invalid_dir)):
        if not name.endswith(".toml"):
            continue
        with open(os.path.join(invalid_dir, name), "rb") as f:
            data = f.read()
        if not data.startswith(b"# expect: "):
            failures.append(f"{name}: first line must be '# expect: line:col: reason'")
        try:
            tomllib.loads(data.decode("utf-8"))
            verdict = "accepts"
        except tomllib.TOMLDecodeError as e:
            verdict = f"rejects: {e}"
        if verdict == "accepts" and name not in TOMLLIB_ACCEPTS:
            failures.append(f"{name}: tomllib accepts it, so it is not a clear-cut invalid case")
        out["invalid"][name] = {"tomllib": verdict,
                                "note": TOMLLIB_ACCEPTS.get(name, "")}

    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    with open(os.path.join(CASES, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(out['valid'])} valid and {len(out['invalid'])} invalid cases "
          f"to {os.path.relpath(os.path.join(CASES, 'expected.json'), ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
