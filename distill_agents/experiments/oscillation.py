"""Fig. 2: the exact expected update on the 7-state oscillation MDP (PAPER.md 3.2, appendix C)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from distill_agents.experiments import figures as X
from distill_agents.numerics import softmax
from distill_agents.results import CurveRow, curve_rows

__all__ = ["oscillation_rows"]


def oscillation_rows(
    exp: X.Experiment, iterations: int, eval_every: int, panels: Sequence[str] | None = None
) -> list[CurveRow]:
    """Fig. 2: integrate the exact expected update of each panel's method (PAPER.md 3.2).

    The student of the oscillation MDP has two rows of logits (``s0``, and the aliased second
    step ``sL``/``sR``), starts at ``pi(L|s0) = pi(L|sR) = 0.9`` and takes ``iterations`` steps
    ``theta <- theta - lr * E[update]`` with the exact expected update
    (:func:`distill_agents.updates.expected_update`: every trajectory enumerated, ``gamma = 1``,
    the information-potential loss in ``sR`` only, the teacher on R in ``sR``). Metrics:
    ``prob_R_s0``, ``prob_R_sR`` (the shared second-step row) and ``loss`` (the expected
    per-episode loss, :func:`distill_agents.updates.expected_loss`), at iterations
    ``0, k, 2k, ..., iterations``; one "MDP", so the intervals are NaN. The teacher's rows are
    the same metrics of the teacher's own policy (uniform at ``s0``, R in ``sR``).
    """
    from distill_agents import planning
    from distill_agents.runner import eval_iterations
    from distill_agents.updates import expected_loss, expected_update
    from gridworld_env import oscillation_mdp, oscillation_observation_table

    mdp = oscillation_mdp()
    index = oscillation_observation_table()
    s_r = 2
    teacher = np.full((mdp.n_states, 2), 0.5)
    teacher[s_r] = [0.0, 1.0]
    weights = (np.arange(mdp.n_states) == s_r).astype(np.float64)
    common = {
        "teacher_probs": teacher,
        "teacher_index": np.arange(mdp.n_states),
        "teacher_weights": weights,
        "distill_loss": "information_potential",
    }
    points = eval_iterations(iterations, eval_every)
    wanted = set(points.tolist())
    rows: list[CurveRow] = []
    teacher_loss = planning.expected_sum(mdp, teacher, weights * -4.0 * (teacher**2).sum(-1))
    teacher_level = {"prob_R_s0": 0.5, "prob_R_sR": 1.0, "loss": teacher_loss}
    for panel in exp.panels:
        if panels is not None and panel.name not in panels:
            continue
        method = panel.curves[0].method
        theta = np.array([[math.log(9.0), 0.0], [math.log(9.0), 0.0]])
        values: dict[str, list[float]] = {m: [] for m in exp.metrics}
        for step in range(iterations + 1):
            if step in wanted:
                probs = softmax(theta)
                values["prob_R_s0"].append(float(probs[0, 1]))
                values["prob_R_sR"].append(float(probs[1, 1]))
                values["loss"].append(expected_loss(mdp, index, theta, method, **common))
            if step < iterations:
                field_ = expected_update(mdp, index, theta, method, gamma=exp.gamma, **common)
                theta = theta - exp.lr * field_.logits
        for metric in exp.metrics:
            rows += curve_rows(
                exp.figure, panel.name, method, metric, points, np.array([values[metric]])
            )
        for metric in exp.metrics:
            level = np.full((1, points.size), teacher_level[metric])
            rows += curve_rows(exp.figure, panel.name, "teacher", metric, points, level)
    return rows
