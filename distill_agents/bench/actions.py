"""The compiled loop's cost per env-step for every action count (Fig. 4's action counts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from distill_agents.bench.grids import grid_teachers
from distill_agents.runner.distillation import run_distillation
from gridworld_env.base import check_int

__all__ = ["ACTION_COUNTS", "ACTION_METHODS", "bench_actions"]

#: The action counts of Fig. 4's panels (:func:`bench_actions`).
ACTION_COUNTS = (4, 40, 400, 4000)
#: Fig. 4's curves (:func:`bench_actions`).
ACTION_METHODS = (
    "on_policy_distill",
    "entropy_regularised",
    "expected_entropy_regularised",
    "baseline",
)


def bench_actions(
    action_counts: Sequence[int] = ACTION_COUNTS,
    n_mdps: int = 20,
    iterations: int = 2000,
    methods: Sequence[str] = ACTION_METHODS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The compiled loop's cost per env-step for every action count, on the same grids.

    ``n_mdps`` random 20x20 grids (layout seeds ``seed ..``) with ``n_actions`` set to each of
    ``action_counts`` (actions 4 and above leave the agent in place: the same layouts), optimal
    (planned) teachers, ``iterations`` episodes of each method with the compiled loop
    (evaluated at the start and the end only). Kernels are compiled on a tiny run first.

    Returns:
        One dict per (method, action count): ``method``, ``n_actions``, ``env_steps``,
        ``train_seconds`` (wall time less building, table setup and evaluation),
        ``setup_seconds_per_mdp`` (the O(S A) table setup), ``ns_per_step`` (training
        nanoseconds per env-step), ``rows_per_episode`` and ``entries_per_row`` (the student
        rows prepared per episode and their explicit actions, :attr:`RunResult.row_work`),
        ``final_return``.
    """
    n_mdps = check_int("n_mdps", n_mdps, 1)
    iterations = check_int("iterations", iterations, 1)
    rows = []
    for n_actions in action_counts:
        teachers, _ = grid_teachers(n_mdps, seed, {"n_actions": int(n_actions)})
        for method in methods:
            kw: dict[str, Any] = {"eval_every": iterations, "seed": seed}
            run_distillation(teachers.subset(0, 1), method, iterations=2, **kw)  # compile
            result = run_distillation(teachers, method, iterations=iterations, **kw)
            train = result.train_seconds
            steps = int(result.env_steps.sum())
            work = result.row_work
            rows.append(
                {
                    "method": method,
                    "n_actions": int(n_actions),
                    "env_steps": steps,
                    "train_seconds": train,
                    "setup_seconds_per_mdp": result.setup_seconds / n_mdps,
                    "ns_per_step": 1e9 * train / steps,
                    "rows_per_episode": work.get("rows", 0) / (n_mdps * iterations),
                    "entries_per_row": work.get("entries", 0) / max(1, work.get("rows", 0)),
                    "final_return": float(np.mean(result.metrics["return"][:, -1])),
                }
            )
    return rows
