"""``distill-grid bench`` (and ``python -m distill_agents.bench``): print the benchmark tables."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill_agents.bench.envs import QUICK, BenchConfig, format_table, run
from distill_agents.bench.report import format_students, format_teachers, provenance

__all__ = ["bench_students_table", "bench_teachers_table", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Print both tables; ``--quick`` uses small counts (a few seconds). Returns 0."""
    parser = argparse.ArgumentParser(
        prog="distill-grid bench",
        description="Env-steps per second of DistillGrid-v0 against FrozenLake-v1 (SPEC 6).",
    )
    parser.add_argument("--quick", action="store_true", help="small counts (a few seconds)")
    parser.add_argument(
        "--vector-envs", type=int, default=None, help="sub-envs of the native vector env"
    )
    parser.add_argument(
        "--students",
        action="store_true",
        help="also the student runner (both loops) against plain compiled loops, and its cost "
        "per env-step at |A| = 4, 40, 400 and 4000",
    )
    parser.add_argument(
        "--teachers",
        action="store_true",
        help="also the teacher trainer (Q-learning through the vector env, 1000 MDPs x 30 000 "
        "episodes) against a plain compiled loop",
    )
    parser.add_argument(
        "--fig3",
        metavar="JSON",
        default=None,
        help="with --students: the fig3.json of a reproduce run, whose effective rate is set "
        "against the Q-learning loop",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the tables as Markdown, after a line naming the command, the code version "
        "and the machine (for pasting into the docs)",
    )
    args = parser.parse_args(argv)
    fig3 = None
    if args.fig3 is not None:
        try:
            fig3 = json.loads(Path(args.fig3).read_text())
            fig3 = {k: fig3[k] for k in ("env_steps", "wall_seconds", "settings")}
        except (OSError, ValueError, KeyError, TypeError) as err:
            parser.error(f"--fig3: not a reproduce summary ({err})")
    config = QUICK if args.quick else BenchConfig()
    if args.vector_envs is not None:
        if args.vector_envs < 1:
            parser.error("--vector-envs must be >= 1")
        config = BenchConfig(**{**config.__dict__, "vector_envs": args.vector_envs})
    md = bool(args.markdown)
    results = run(config)
    single, vector = results["single"], results["vector"]
    if md:
        print(provenance(sys.argv[1:] if argv is None else argv) + "\n")
    print("(a) one environment, gym.make(...).step, random actions, reset on episode end")
    print(("\n" if md else "") + format_table(single, single[-1], md))
    print()
    print(
        "(b) batched, random actions; ratios against Gymnasium's SyncVectorEnv "
        "(env-steps = step calls x sub-envs)"
    )
    print(("\n" if md else "") + format_table(vector, vector[-1], md))
    if args.students:
        print()
        print(format_students(bench_students_table(quick=bool(args.quick)), fig3, md))
    if args.teachers:
        print()
        print(format_teachers(bench_teachers_table(quick=bool(args.quick)), md))
    return 0


def bench_students_table(quick: bool = False) -> dict[str, Any]:
    """:func:`distill_agents.bench.students.bench_students` at the benchmark's size."""
    from distill_agents.bench.students import bench_students

    if quick:
        return bench_students(n_mdps=50, iterations=200, action_mdps=2, action_iterations=100)
    return bench_students(n_mdps=1000, iterations=2000, action_mdps=20, action_iterations=2000)


def bench_teachers_table(quick: bool = False) -> dict[str, Any]:
    """:func:`distill_agents.teachers.bench.bench_q_learning` at the benchmark's size."""
    from distill_agents.teachers.bench import bench_q_learning

    if quick:
        return bench_q_learning(n_mdps=20, episodes=500)
    return bench_q_learning(n_mdps=1000, episodes=30_000)
