"""Digest every figure's CSV at small scale, to show a change keeps the numbers.

    python scripts/same_numbers.py --write same_numbers.json
    python scripts/same_numbers.py --check same_numbers.json

runs ``distill-grid reproduce all --quick`` (every figure, every panel, at the small scale of
``--quick``) into a new temporary directory (so no earlier piece is reused) and prints the
SHA-256 of each ``<fig>.csv``. ``--write`` saves them as JSON; ``--check`` compares them with
a saved JSON and exits 1 naming every figure whose bytes differ. Run it with ``--write``
before a change that must not move a number and with ``--check`` after it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def digests(out: Path) -> dict[str, str]:
    """SHA-256 of every ``<fig>.csv`` in ``out``, by figure."""
    return {
        path.stem: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.glob("fig*.csv"))
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, help="save the digests to this JSON file")
    group.add_argument("--check", type=Path, help="compare with the digests in this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="same_numbers_") as out:
        command = ["distill-grid", "reproduce", "all", "--quick", "--out", out, "--no-progress"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        found = digests(Path(out))
    for figure, digest in found.items():
        print(f"{figure:6s} {digest}")
    if args.write is not None:
        args.write.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    if args.check is not None:
        expected = json.loads(args.check.read_text())
        names = expected.keys() | found.keys()
        differ = sorted(f for f in names if expected.get(f) != found.get(f))
        if differ:
            print(f"bytes differ: {', '.join(differ)}", file=sys.stderr)
            return 1
        print(f"all {len(found)} figures byte-identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
