"""Make the JSON files under results folders strict (RFC 8259): NaN and ±Infinity tokens become
null, nothing else in the file changes. For run folders written before train.py wrote strict
JSON (their summary.json has "calibration_target": NaN); readers take null for NaN.

    python -m scripts.strict_json [--check] [DIR ...]      (default: results)

--check changes nothing and exits 1 when a file is not strict. A file whose tokens cannot be
replaced safely (the result would parse differently) is left alone and named (exit 1).
"""
import argparse
import glob
import json
import os
import sys

from sparsecs import fileio

TOKENS = ("-Infinity", "Infinity", "NaN")


def _replace_tokens(text):
    """The text with every NaN / Infinity / -Infinity outside a string written as null."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':                      # copy the string as it is, escapes included
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
            continue
        tok = next((t for t in TOKENS if text.startswith(t, i)), None)
        if tok:
            out.append("null")
            i += len(tok)
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _refuse(token):
    raise ValueError(token)


def is_strict(text):
    try:
        json.loads(text, parse_constant=_refuse)
        return True
    except ValueError:
        return False


def fixed(text):
    """The text with its non-finite tokens as null, or None when that would change the data."""
    new = _replace_tokens(text)
    if not is_strict(new) or json.loads(new) != fileio.finite(json.loads(text)):
        return None
    return new


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="*", default=["results"])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not strict")
    args = p.parse_args(argv)
    bad = changed = 0
    for d in args.dirs:
        for f in sorted(glob.glob(os.path.join(d, "**", "*.json"), recursive=True)):
            with open(f, encoding="utf-8") as fh:
                text = fh.read()
            if is_strict(text):
                continue
            new = None if args.check else fixed(text)
            if new is None:
                bad += 1
                print(f"{f}: not strict JSON" + ("" if args.check else " (left alone: cannot fix safely)"))
                continue
            fileio.atomic_write(f, new)
            changed += 1
    if not args.check:
        print(f"{changed} file(s) made strict")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
