"""The README's key tables, generated from schema.py and summaries.SUMMARY_FIELDS.

    python -m scripts.readme_tables           # exit 1 and name the table if README differs
    python -m scripts.readme_tables --write   # rewrite the tables in README.md

Each table sits between `<!-- generated: NAME -->` and `<!-- end: NAME -->`;
tests/test_schema.py fails when one differs from what this script generates.
"""
import os
import re
import sys

from sparsecs import schema

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

README = os.path.join(REPO, "README.md")


def generated():
    top, ident, optim = schema.tables()
    return {"config keys": top, "optim keys": optim, "identity keys": ident,
            "summary fields": schema.summary_table()}


def block(name):
    return re.compile(rf"(<!-- generated: {re.escape(name)} -->\n)(.*?)(<!-- end: {re.escape(name)} -->)", re.S)


def stale(text):
    """The names of the tables that differ in `text` (a README), or are missing from it."""
    out = []
    for name, table in generated().items():
        m = block(name).search(text)
        if m is None or m.group(2) != table:
            out.append(name)
    return out


def rewrite(text):
    for name, table in generated().items():
        text, n = block(name).subn(lambda m: m.group(1) + table + m.group(3), text)
        if n != 1:
            raise SystemExit(f"error: README.md has no '<!-- generated: {name} -->' block")
    return text


def main(argv):
    with open(README, encoding="utf-8") as f:
        text = f.read()
    if "--write" in argv:
        with open(README, "w", encoding="utf-8") as f:
            f.write(rewrite(text))
        return 0
    bad = stale(text)
    if bad:
        print(f"error: README.md tables out of date: {', '.join(bad)} (run python "
              f"scripts/readme_tables.py --write)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
