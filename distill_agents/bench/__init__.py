"""Benchmarks against Gymnasium's FrozenLake and plain compiled loops (SPEC 6).

- :mod:`~distill_agents.bench.envs`: env-steps per second of one environment and of the native
  vector env against FrozenLake (single and ``SyncVectorEnv``);
- :mod:`~distill_agents.bench.students`: the student runner (both loops) against a plain
  compiled loop doing the same updates, and the Q-learning yardstick
  (:mod:`~distill_agents.bench.yardsticks`);
- :mod:`~distill_agents.bench.actions`: the compiled loop's cost per env-step by action count;
- the teacher trainer against a plain compiled Q-learning loop
  (:func:`distill_agents.teachers.bench.bench_q_learning`, ``--teachers``);
- :mod:`~distill_agents.bench.report` and :mod:`~distill_agents.bench.command`: the printed
  tables.

``python -m distill_agents.bench [--quick]`` or ``distill-grid bench`` prints the tables.
Importing this package has no side effects.
"""

from __future__ import annotations

from distill_agents.bench.command import bench_students_table, bench_teachers_table, main
from distill_agents.bench.envs import (
    QUICK,
    BenchConfig,
    Measurement,
    bench_single,
    bench_vector,
    format_table,
    run,
)
from distill_agents.bench.report import format_actions, format_students, format_teachers

__all__ = [
    "QUICK",
    "BenchConfig",
    "Measurement",
    "bench_single",
    "bench_students_table",
    "bench_teachers_table",
    "bench_vector",
    "format_actions",
    "format_students",
    "format_table",
    "format_teachers",
    "main",
    "run",
]
