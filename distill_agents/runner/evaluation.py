"""The runner's evaluation of students and teachers: exact (:class:`Evaluator`) or Monte Carlo.

Exact metrics go through :mod:`distill_agents.planning` on action-row weights, the students'
through the compiled kernel doing the same banded solve (:mod:`distill_agents.runner.eval_kernels`);
:class:`MonteCarloEvaluator` estimates the same metrics from sampled episodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from distill_agents import methods as M
from distill_agents import planning
from distill_agents.numerics import softmax
from distill_agents.updates import rows as RK

if TYPE_CHECKING:
    from distill_agents.runner.chunks import Run

__all__ = [
    "EVAL_BUDGET_BYTES",
    "EVAL_MAX_BATCH",
    "MC_STREAM",
    "METRICS",
    "Evaluator",
    "MonteCarloEvaluator",
    "dense_rows",
]

#: The metrics :func:`~distill_agents.runner.run_distillation` can record (SPEC 4.1).
#: (In the order of the columns of :func:`distill_agents.runner.eval_kernels.evaluate_students`.)
METRICS = ("return", "kl_student", "kl_teacher", "kl_uniform")
#: Bytes of ``[N, A]`` arrays one evaluation batch may use.
EVAL_BUDGET_BYTES = 256e6
#: Largest number of MDPs evaluated in one planning call.
EVAL_MAX_BATCH = 256
#: Second entry of the Monte Carlo evaluation's seeds ``[seed, MC_STREAM, mdp, point + 1]``.
MC_STREAM = 7


def _weighted_sum(visits: NDArray[np.float64], cost: NDArray[np.float64]) -> NDArray[np.float64]:
    # As planning: unvisited states contribute 0 whatever their cost.
    with np.errstate(invalid="ignore"):
        out: NDArray[np.float64] = np.where(visits > 0.0, visits * cost, 0.0).sum(axis=-1)
    return out


def dense_rows(students: RK.StudentTable, sel: NDArray[np.int64]) -> NDArray[np.float64]:
    """Dense logits ``[n, N, A]`` of the students ``sel`` of a stacked student table."""
    picked = RK.StudentTable(
        students.logits[sel], students.bulk[sel], students.n_explicit[sel], students.explicit[sel]
    )
    return RK.dense_logits(picked)


class Evaluator:
    """Exact metrics of students (and teachers) on the models of one chunk of MDPs.

    The planning functions only use a policy through the probability it gives each *action
    row* of the compact model (:func:`distill_agents.planning.expected_visits`), so the
    evaluation works on row weights ``[n, S, K]`` (``K <= 5``) of a copy of each model whose
    actions are its rows, and on per-index quantities ``[n, N, A]`` gathered to states: the
    same numbers as the ``[n, S, A]`` state policies would give (the row sums are taken the
    same way), at a fraction of the cost when ``A`` is large.
    """

    def __init__(
        self,
        models: Any,
        teacher_probs: NDArray[np.float64],
        metrics: Sequence[str],
        like: Evaluator | None = None,
        kl_per_step: bool = False,
    ) -> None:
        self.kl_per_step = kl_per_step
        self.teacher_probs = np.ascontiguousarray(teacher_probs, dtype=np.float64)
        self.teacher_bulk = RK.common_values(self.teacher_probs)
        self.metrics = tuple(metrics)
        if like is not None:  # the same models: share what does not depend on the teacher
            self._share(like)
        else:
            self._build(models)
        per_mdp = 8.0 * teacher_probs.shape[1] * self.n_actions
        self.batch = int(max(1, min(EVAL_MAX_BATCH, EVAL_BUDGET_BYTES // (4 * per_mdp))))
        self.visits: dict[str, NDArray[np.float64]] = {}
        if "kl_teacher" in self.metrics:
            self.visits["teacher"] = self._fixed_visits(self._teacher_rows)
        if "kl_uniform" in self.metrics:
            self.visits["uniform"] = (
                like.visits["uniform"]
                if like is not None and "uniform" in like.visits
                else self._fixed_visits(
                    lambda idx: np.broadcast_to(
                        self.uniform_rows,
                        (*self.state_to_index[idx].shape, self.uniform_rows.size),
                    )
                )
            )

    _SHARED = (
        "row_mdps", "state_to_index", "terminal", "edges", "initial", "action_rows",
        "full_support", "n_actions", "masks", "uniform_rows", "row_rewards", "eval_models",
    )  # fmt: skip

    def _share(self, other: Evaluator) -> None:
        for name in self._SHARED:
            setattr(self, name, getattr(other, name))

    def _build(self, models: Any) -> None:
        from gridworld_env.mdp import TabularMDP

        b = models.n_envs
        n_rows = models.n_rows
        self.row_mdps = [
            TabularMDP(
                models.next_states[i],
                models.next_probs[i],
                models.next_rewards[i],
                np.arange(n_rows),
                models.initial[i],
                models.terminal[i],
            )
            for i in range(b)
        ]
        self.state_to_index = np.ascontiguousarray(models.state_to_index, dtype=np.int64)
        self.terminal = np.ascontiguousarray(models.terminal)
        from distill_agents.runner import eval_kernels as E

        self.edges = E.Edges(
            *E.compact_edges(
                np.ascontiguousarray(models.next_states, dtype=np.int64),
                np.ascontiguousarray(models.next_probs, dtype=np.float64),
            )
        )
        self.initial = np.ascontiguousarray(models.initial, dtype=np.float64)
        rows = np.asarray(models.action_rows)
        self.action_rows = np.ascontiguousarray(rows, dtype=np.int64)
        positive = self.edges.prob[self.edges.prob > 0.0]
        self.full_support = E.FullSupport(
            *E.full_support_structure(self.edges, self.initial, self.terminal, n_rows),
            E.FULL_SUPPORT / float(positive.min()) if positive.size else 1.0,
        )
        self.n_actions = int(rows.size)
        self.masks = (
            None if np.array_equal(rows, np.arange(n_rows)) else [rows == k for k in range(n_rows)]
        )
        self.uniform_rows = self._row_weights(np.full((1, self.n_actions), 1.0 / self.n_actions))[0]
        self.row_rewards = np.ascontiguousarray(
            (np.asarray(models.next_probs) * np.asarray(models.next_rewards)).sum(-1)
        )
        self.eval_models = E.EvalModels(
            self.edges, self.row_rewards, self.initial, self.terminal, self.state_to_index,
            self.action_rows, np.ascontiguousarray(self.uniform_rows),
        )  # fmt: skip

    def _batches(self, n: int) -> Iterable[slice]:
        for lo in range(0, n, self.batch):
            yield slice(lo, min(n, lo + self.batch))

    def _row_weights(self, probs: NDArray[np.float64]) -> NDArray[np.float64]:
        """``[..., K]`` probability of each action row (as ``planning``'s row weights)."""
        if self.masks is None:
            return probs
        out = np.empty((*probs.shape[:-1], len(self.masks)))
        for k, mask in enumerate(self.masks):
            out[..., k] = probs[..., mask].sum(axis=-1)
        return out

    def _to_states(self, idx: NDArray[np.int64], per_index: NDArray, fill: Any) -> NDArray:
        """Gather ``[n, N, ...]`` per-index values to ``[n, S, ...]``; ``fill`` where no index."""
        index = self.state_to_index[idx]
        safe = np.where(index < 0, 0, index)
        extra = per_index.ndim - 2
        out = np.take_along_axis(per_index, safe.reshape(*safe.shape, *([1] * extra)), axis=1)
        out[index < 0] = fill
        return out

    def _teacher_rows(self, idx: NDArray[np.int64]) -> NDArray[np.float64]:
        return self._to_states(idx, self._row_weights(self.teacher_probs[idx]), self.uniform_rows)

    def _fixed_visits(
        self, rows: Callable[[NDArray[np.int64]], NDArray[np.float64]]
    ) -> NDArray[np.float64]:
        """Visits of a policy that does not change during training; NaN rows where undefined."""
        b = len(self.row_mdps)
        out = np.empty(self.state_to_index.shape)
        for sl in self._batches(b):
            idx = np.arange(sl.start, sl.stop)
            out[sl] = self._visits(idx, np.ascontiguousarray(rows(idx)), strict=False)
        return out

    def _visits(self, idx: NDArray[np.int64], rows: NDArray[np.float64], strict: bool) -> NDArray:
        mdps = [self.row_mdps[i] for i in idx]
        try:
            return np.asarray(planning.expected_visits(mdps, rows))
        except ValueError:
            if strict:
                raise
        out = np.empty(rows.shape[:2])
        for r, i in enumerate(idx):
            try:
                out[r] = planning.expected_visits(self.row_mdps[i], rows[r])
            except ValueError:
                out[r] = np.nan
        return out

    def _rewards(self, idx: NDArray[np.int64], rows: NDArray[np.float64]) -> NDArray:
        """Expected immediate reward per state ``[n, S]`` (as ``planning.expected_return``)."""
        weights = rows.copy()
        weights[self.terminal[idx]] = 0.0
        out: NDArray = (weights * self.row_rewards[idx]).sum(axis=-1)
        return out

    def students(
        self,
        idx: NDArray[np.int64],
        students: RK.StudentTable,
        sel: NDArray[np.int64] | None = None,
        points: Any = None,
    ) -> dict[str, NDArray[np.float64]]:
        """Metrics ``{name: [n]}`` of the students ``sel`` of ``students`` on MDPs ``idx``.

        ``students`` is a stacked ``[M, ...]`` student table (:mod:`distill_agents.updates.rows`;
        :func:`~distill_agents.updates.rows.dense_table` views dense logits as one), ``sel``
        which of them (default ``0 .. n - 1``). ``points`` (the evaluation points) is not needed
        for exact values. Computed by the compiled
        :func:`distill_agents.runner.eval_kernels.evaluate_students` (the values of
        :meth:`students_planning` to rounding); a student it cannot evaluate (its episodes may
        not end) goes through :meth:`students_planning`, which raises the error.

        Raises:
            ValueError: a student whose episodes do not end (no exact values).
        """
        from distill_agents.runner import eval_kernels as E

        idx = np.ascontiguousarray(idx, dtype=np.int64)
        n = idx.size
        sel = np.arange(n) if sel is None else np.ascontiguousarray(sel, dtype=np.int64)
        if self.kl_per_step and any(name.startswith("kl_") for name in self.metrics):
            return self.students_planning(idx, dense_rows(students, sel))
        values = np.full((n, 4), np.nan)
        status = np.zeros(n, dtype=np.int64)
        need = np.array([name in self.metrics for name in METRICS])
        none = np.zeros((0, 0))
        teachers = E.EvalTeachers(
            self.teacher_probs, self.teacher_bulk, self.visits.get("teacher", none),
            self.visits.get("uniform", none),
        )  # fmt: skip
        E.evaluate_students(
            self.eval_models, self.full_support, teachers, idx, students, sel, need, values, status
        )
        out = {name: values[:, METRICS.index(name)].copy() for name in self.metrics}
        bad = np.flatnonzero(status)
        if bad.size:
            slow = self.students_planning(idx[bad], dense_rows(students, sel[bad]))
            for name in self.metrics:
                out[name][bad] = slow[name]
        return out

    def students_planning(
        self, idx: NDArray[np.int64], logits: NDArray[np.float64]
    ) -> dict[str, NDArray[np.float64]]:
        """:meth:`students` through :mod:`distill_agents.planning` (the reference path).

        Raises:
            ValueError: a student whose episodes do not end (no exact values).
        """
        out = {name: np.empty(len(idx)) for name in self.metrics}
        need_visits = "return" in self.metrics or "kl_student" in self.metrics
        for sl in self._batches(len(idx)):
            part = idx[sl]
            probs = softmax(logits[sl])
            if need_visits:
                rows = self._to_states(part, self._row_weights(probs), self.uniform_rows)
                visits = self._visits(part, rows, strict=True)
                if "return" in self.metrics:
                    out["return"][sl] = _weighted_sum(visits, self._rewards(part, rows))
            if any(name.startswith("kl_") for name in self.metrics):
                kl = self._to_states(part, planning.policy_kl(self.teacher_probs[part], probs), 0.0)
                if "kl_student" in self.metrics:
                    out["kl_student"][sl] = _weighted_sum(visits, kl)
                    if self.kl_per_step:
                        out["kl_student"][sl] /= visits.sum(axis=-1)
                for name, key in (("kl_teacher", "teacher"), ("kl_uniform", "uniform")):
                    if name in self.metrics:
                        fixed = self.visits[key][part]
                        values = _weighted_sum(fixed, kl)
                        if self.kl_per_step:
                            values = values / fixed.sum(axis=-1)
                        values[np.isnan(fixed).any(axis=-1)] = np.nan
                        out[name][sl] = values
        return out

    def teachers(self) -> dict[str, NDArray[np.float64]]:
        """The teachers' own metrics ``{name: [b]}``: their return (NaN if undefined), 0 KLs."""
        b = len(self.row_mdps)
        out = {name: np.zeros(b) for name in self.metrics}
        if "return" in self.metrics:
            for sl in self._batches(b):
                idx = np.arange(sl.start, sl.stop)
                rows = self._teacher_rows(idx)
                visits = self._visits(idx, rows, strict=False)
                values = _weighted_sum(visits, self._rewards(idx, rows))
                values[np.isnan(visits).any(axis=-1)] = np.nan
                out["return"][sl] = values
        return out


class MonteCarloEvaluator:
    """Monte Carlo estimates of the metrics, in place of :class:`Evaluator`'s exact values.

    ``n_episodes`` episodes per control policy and evaluation
    (:func:`distill_agents.runner.eval_kernels.monte_carlo_students`), sampled from the vector env's
    outcome tables with a stream per (MDP, evaluation point) derived from the run's seed
    (:data:`MC_STREAM`), so the estimates do not depend on chunks either and never touch the
    training streams.
    """

    def __init__(
        self, envs: Any, run: Run, ids: NDArray[np.int64], teacher_probs: NDArray[np.float64]
    ) -> None:
        from distill_agents.runner.loop_kernels import EnvTables

        self.env = EnvTables._make((*envs.outcome_tables(), int(envs.max_episode_steps)))
        self.metrics = run.metrics
        self.n_episodes = int(run.mc_episodes or 0)
        self.global_ids = run.first_mdp + np.asarray(ids, dtype=np.int64)
        self.seed = run.seed
        self.teacher_probs = np.ascontiguousarray(teacher_probs, dtype=np.float64)
        self.need = np.array([name in self.metrics for name in METRICS])

    def _seeds(self, idx: NDArray[np.int64], points: Any) -> NDArray[np.uint64]:
        keys = np.broadcast_to(np.asarray(points, dtype=np.int64), idx.shape)
        return np.array(
            [
                np.random.SeedSequence(
                    [self.seed, MC_STREAM, int(self.global_ids[i]), int(point) + 1]
                ).generate_state(1, np.uint64)[0]
                for i, point in zip(idx, keys, strict=True)
            ],
            dtype=np.uint64,
        )

    def _estimate(
        self,
        idx: NDArray[np.int64],
        logits: NDArray[np.float64],
        points: Any,
        need: Any,
        control: int,
    ) -> NDArray[np.float64]:
        from distill_agents.runner import eval_kernels as E

        idx = np.ascontiguousarray(idx, dtype=np.int64)
        out = np.zeros((idx.size, 4))
        E.monte_carlo_students(
            self.env, idx, np.ascontiguousarray(logits, dtype=np.float64), self.teacher_probs,
            self._seeds(idx, points), self.n_episodes, need, control, out,
        )  # fmt: skip
        return out

    def students(
        self,
        idx: NDArray[np.int64],
        students: RK.StudentTable,
        sel: NDArray[np.int64] | None = None,
        points: Any = 0,
    ) -> dict[str, NDArray[np.float64]]:
        """Estimates ``{name: [n]}`` for the students at evaluation ``points`` (as the exact)."""
        sel = np.arange(len(idx)) if sel is None else np.asarray(sel, dtype=np.int64)
        logits = dense_rows(students, sel)
        values = self._estimate(idx, logits, points, self.need, M.CONTROL_STUDENT)
        return {name: values[:, METRICS.index(name)].copy() for name in self.metrics}

    def teachers(self) -> dict[str, NDArray[np.float64]]:
        """The teachers' estimated return (its own episodes) and 0 KLs."""
        b = self.teacher_probs.shape[0]
        out = {name: np.zeros(b) for name in self.metrics}
        if "return" in self.metrics:
            idx = np.arange(b)
            need = np.array([True, False, False, False])
            values = self._estimate(idx, self.teacher_probs, -1, need, M.CONTROL_TEACHER)
            out["return"] = values[:, 0].copy()
        return out
