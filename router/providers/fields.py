"""The request-field tables of every wire format, and the command that prints the README's table.

    python -m router.providers.fields --markdown

The tables and the gate live in ``router.providers._fields`` (imported by the providers); this module is
their public face, kept out of the package's own imports so that running it with ``-m`` loads it once.
"""

from __future__ import annotations

import sys

from router.providers._fields import TABLES, FieldGate, Rule, UnsupportedField, markdown, unsupported

__all__ = ["TABLES", "FieldGate", "Rule", "UnsupportedField", "main", "markdown", "unsupported"]


def main(argv: list[str]) -> int:
    if argv[1:] != ["--markdown"]:
        print("usage: python -m router.providers.fields --markdown", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
