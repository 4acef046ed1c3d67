"""``distill-grid ablate``: one figure under several readings, side by side on the same MDPs.

```
distill-grid ablate FIGURE --set KEY=V1,V2[,...] [--set KEY2=...] [--base KEY=VALUE ...]
                    [reproduce's options: --mdps, --iterations, --panels, --seed, ...]
```

Every value of every ``--set`` key is one *reading*: the base readings (``--base``, default
the package's) with that one key changed; the base itself is always run too. Each reading is a
``reproduce`` run of the figure (:func:`distill_agents.experiments.reproduce.reproduce_figure`) in
``DIR/<reading>/`` (``base``, ``teacher_prob_floor=0.01``, ...), all sharing ``DIR/.state``,
so an interrupted ablation resumes and pieces that a reading does not change are computed
once. Then ``DIR/ablate_<fig>.csv`` (the rows of every reading, the panel column
``<reading> | <panel>``), ``DIR/ablate_<fig>.png`` (a panel per reading and panel) and
``DIR/ablate_<fig>.json`` (the readings, and each reading's analysis) are written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill_agents.experiments import figures as X
from distill_agents.experiments import reproduce
from distill_agents.experiments.readings import READING_NAMES, Readings

__all__ = ["ablation_readings", "add_arguments", "run"]

#: Output directory by default.
DEFAULT_OUT = "runs/ablate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``ablate``'s arguments (reproduce's, with ``--set`` taking comma-separated values)."""
    reproduce.add_arguments(
        parser,
        helps={  # reproduce's help texts, as ablate reads them
            "set": "KEY=V1,V2,...: run the figure with each value of KEY (repeatable; keys: "
            f"{', '.join(READING_NAMES)})",
            "out": f"output directory (default {DEFAULT_OUT})",
            "figure": f"one of {', '.join(X.FIGURES)}",
        },
    )
    parser.add_argument(
        "--base",
        action="append",
        metavar="KEY=VALUE",
        help="the reading every alternative changes one key of (repeatable; default: the "
        "package's readings)",
    )


def ablation_readings(
    items: Sequence[str], base_items: Sequence[str] = ()
) -> list[tuple[str, Readings]]:
    """``(name, readings)`` of an ablation: the base first, then one per listed value.

    Raises:
        ValueError: no ``--set``, a bad key or value (one line), or a value equal to the base.
    """
    base = Readings.parse(list(base_items))
    out = [("base", base)]
    if not items:
        raise ValueError("--set: give at least one KEY=V1,V2 to compare with the base")
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"--set: expected KEY=V1,V2,..., got {item!r}")
        for value in values.split(","):
            readings = Readings.parse([f"{key}={value}"], base=base)
            if readings == base:
                raise ValueError(f"--set {key}={value}: that is the base reading")
            name = f"{key.strip()}={value.strip()}"
            if all(name != n for n, _ in out):
                out.append((name, readings))
    return out


def run(args: argparse.Namespace) -> int:
    """Execute ``distill-grid ablate`` with parsed ``args``; returns 0.

    Raises:
        ValueError: a bad argument (one-line message).
    """
    from distill_agents import plotting
    from distill_agents.results import read_csv, write_csv

    figure = args.figure
    if figure not in X.FIGURES or X.get_experiment(figure).kind != "curves":
        curves = [f for f in X.FIGURES if X.get_experiment(f).kind == "curves"]
        raise ValueError(f"figure must be one of {', '.join(curves)}; got {figure!r}")
    readings = ablation_readings(args.set or [], args.base or [])
    out = Path(args.out if args.out is not None else DEFAULT_OUT)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    t0 = time.perf_counter()
    rows: list[Any] = []
    summaries = {}
    arguments = {k: v for k, v in vars(args).items() if k != "func"}
    for name, reading in readings:
        sub = out / name
        # One state for all readings: their pieces have other keys where they differ.
        sub.mkdir(parents=True, exist_ok=True)
        if not (sub / ".state").exists():
            (out / ".state").mkdir(exist_ok=True)
            (sub / ".state").symlink_to(Path("..", ".state"), target_is_directory=True)
        items = [f"{key}={value}" for key, value in reading.changed().items()]
        one = {k: v for k, v in arguments.items() if k != "base"}
        reproduce.run(argparse.Namespace(**{**one, "out": str(sub), "set": items}))
        summaries[name] = json.loads((sub / f"{figure}.json").read_text())
        rows += [
            dataclasses.replace(r, panel=f"{name} | {r.panel}")
            for r in read_csv(sub / f"{figure}.csv")
        ]
    write_csv(out / f"ablate_{figure}.csv", rows)
    plotting.plot_rows(rows, out / f"ablate_{figure}.png", title=f"{figure}: readings")
    summary = {
        "command": "ablate",
        "figure": figure,
        "arguments": arguments,
        "readings": {name: r.changed() for name, r in readings},
        "analysis": {name: s.get("analysis", []) for name, s in summaries.items()},
        "wall_seconds": time.perf_counter() - t0,
    }
    path = out / f"ablate_{figure}.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"wrote {out / f'ablate_{figure}.csv'}, {out / f'ablate_{figure}.png'}, {path}")
    return 0
