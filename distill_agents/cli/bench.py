"""``distill-grid bench``: env (and student) throughput, run by :mod:`distill_agents.bench`."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Declare ``bench`` and its options."""
    bench = subparsers.add_parser("bench", help="measure env throughput against FrozenLake")
    bench.add_argument("--quick", action="store_true", help="small counts (a few seconds)")
    bench.add_argument(
        "--students",
        action="store_true",
        help="also the student runner against plain compiled loops, and its cost per env-step "
        "at |A| = 4, 40, 400 and 4000",
    )
    bench.add_argument(
        "--teachers",
        action="store_true",
        help="also the teacher trainer (Q-learning through the vector env, 1000 MDPs x 30 000 "
        "episodes) against a plain compiled loop",
    )
    bench.add_argument(
        "--fig3",
        metavar="JSON",
        help="with --students: a reproduce run's fig3.json, set against the Q-learning loop",
    )
    bench.add_argument(
        "--markdown",
        action="store_true",
        help="the tables as Markdown, after a line naming the command, code version and machine",
    )
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with the parsed options; returns its exit status."""
    from distill_agents import bench

    argv = ["--quick"] if args.quick else []
    argv += ["--students"] if args.students else []
    argv += ["--teachers"] if args.teachers else []
    argv += ["--fig3", args.fig3] if args.fig3 is not None else []
    argv += ["--markdown"] if args.markdown else []
    return int(bench.main(argv))
