"""What a run of the batched runner returns: :class:`RunResult` (per-MDP arrays)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from distill_agents.policy import TabularPolicy
from distill_agents.results import CurveRow, curve_rows

__all__ = ["RunResult"]


@dataclass(frozen=True, eq=False)
class RunResult:
    """What :func:`run_distillation` returns (per-MDP arrays; see :meth:`to_rows`).

    Attributes:
        method: the method id.
        control: the control policy used.
        iterations: training episodes per MDP.
        eval_every: ``k``.
        eval_iterations: ``[E]`` iterations of the evaluation points.
        metrics: metric name -> ``[B, E]`` per-MDP values of the student.
        teacher_metrics: metric name -> ``[B]`` the teacher's own value (``return``; 0 for KLs).
        env_steps: ``[B]`` environment steps each MDP's episodes took (resets not counted).
        mdp_indices: ``[B]`` global MDP indices (``first_mdp + i``).
        layout_seeds: ``[B]`` layout seed of each MDP (-1: none).
        settings: JSON record of the run's settings.
        wall_seconds: wall time.
        step_calls: vector-env ``step`` calls (0 with ``loop="compiled"``).
        env_builds: vector envs built (1 per chunk, plus compactions).
        sub_env_steps: sub-env steps of all ``step`` calls (idle and autoreset ones included;
            with ``loop="compiled"``, the MDPs' env-steps).
        build_seconds: part of ``wall_seconds`` spent building vector envs and their models.
        eval_seconds: part of ``wall_seconds`` spent evaluating students and teachers.
        setup_seconds: part of ``wall_seconds`` spent setting up the chunks' teacher and student
            tables (O(S A) per MDP: floored logs, common values, explicit lists).
        logits: ``[B, N, A]`` final student logits (only with ``keep_students=True``).
        critic: ``[B, N]`` final critics (only with ``keep_students=True``).
        n_indices: ``[B]`` table indices per MDP.
        row_work: the training's work per student row (:mod:`distill_agents.updates.rows`):
            ``rows`` prepared (once per distinct row and episode), their ``entries`` (explicit
            actions, the per-row cost) and ``splits`` (bulk actions made explicit).
    """

    method: str
    control: str
    iterations: int
    eval_every: int
    eval_iterations: NDArray[np.int64]
    metrics: Mapping[str, NDArray[np.float64]]
    teacher_metrics: Mapping[str, NDArray[np.float64]]
    env_steps: NDArray[np.int64]
    mdp_indices: NDArray[np.int64]
    layout_seeds: NDArray[np.int64]
    n_indices: NDArray[np.int64]
    settings: Mapping[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    step_calls: int = 0
    env_builds: int = 0
    sub_env_steps: int = 0
    build_seconds: float = 0.0
    eval_seconds: float = 0.0
    setup_seconds: float = 0.0
    logits: NDArray[np.float64] | None = None
    critic: NDArray[np.float64] | None = None
    row_work: Mapping[str, int] = field(default_factory=dict)

    @property
    def n_mdps(self) -> int:
        """Number of MDPs ``B``."""
        return int(self.mdp_indices.shape[0])

    @property
    def train_seconds(self) -> float:
        """``wall_seconds`` less building, table setup and evaluation: the training itself."""
        return self.wall_seconds - self.build_seconds - self.setup_seconds - self.eval_seconds

    def student(self, i: int) -> TabularPolicy:
        """MDP ``i``'s final student over its ``n_indices[i]`` table indices.

        Raises:
            ValueError: the run did not keep the students (``keep_students=False``).
        """
        if self.logits is None or self.critic is None:
            raise ValueError("the run did not keep the students: pass keep_students=True")
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.n_mdps:
            raise ValueError(f"i must be an MDP index in [0, {self.n_mdps}), got {i!r}")
        n = int(self.n_indices[i])
        values = self.critic[i, :n] if self.settings.get("critic") != "none" else None
        return TabularPolicy(self.logits[i, :n], values)

    def to_rows(
        self,
        figure: str,
        panel: str,
        method: str | None = None,
        include_teacher: bool = True,
        level: float = 0.95,
    ) -> list[CurveRow]:
        """Long-format rows: mean and 95% t-interval across MDPs per iteration and metric.

        Args:
            figure: the ``figure`` column.
            panel: the ``panel`` column.
            method: the ``method`` column (default: the method id).
            include_teacher: also emit the teacher's rows (method ``"teacher"``, the same value
                at every evaluation point); pass False for all but one run sharing a teacher.
            level: confidence level.

        Returns:
            Rows ordered by metric, then (student, teacher), then iteration.
        """
        label = self.method if method is None else method
        rows: list[CurveRow] = []
        for name, values in self.metrics.items():
            rows += curve_rows(figure, panel, label, name, self.eval_iterations, values, level)
            if include_teacher:
                teacher = np.repeat(
                    self.teacher_metrics[name][:, None], len(self.eval_iterations), 1
                )
                rows += curve_rows(
                    figure, panel, "teacher", name, self.eval_iterations, teacher, level
                )
        return rows

    @classmethod
    def concatenate(cls, parts: Iterable[RunResult]) -> RunResult:
        """Join the results of runs on disjoint sets of MDPs with the same settings.

        The per-MDP streams make ``run(teachers[a:b], first_mdp=a)`` for consecutive pieces,
        joined, equal to one run over all MDPs.
        """
        parts = list(parts)
        if not parts:
            raise ValueError("parts must hold at least one RunResult")
        first = parts[0]

        def same(p: RunResult) -> bool:
            keys = set(first.settings) - {"first_mdp", "n_mdps", "chunk_size"}
            return (
                p.method == first.method
                and p.control == first.control
                and p.iterations == first.iterations
                and np.array_equal(p.eval_iterations, first.eval_iterations)
                and set(p.metrics) == set(first.metrics)
                and all(p.settings.get(k) == first.settings.get(k) for k in keys)
            )

        for i, p in enumerate(parts[1:], start=1):
            if not same(p):
                raise ValueError(f"parts[{i}] has other settings than parts[0]; cannot join them")
        keep = all(p.logits is not None for p in parts)
        n = max(p.logits.shape[1] for p in parts) if keep else 0  # type: ignore[union-attr]

        def pad(array: NDArray) -> NDArray:
            width = [(0, 0)] * array.ndim
            width[1] = (0, n - array.shape[1])
            return np.pad(array, width)

        settings = dict(first.settings)
        settings["n_mdps"] = int(sum(p.n_mdps for p in parts))
        return cls(
            method=first.method,
            control=first.control,
            iterations=first.iterations,
            eval_every=first.eval_every,
            eval_iterations=first.eval_iterations,
            metrics={k: np.concatenate([p.metrics[k] for p in parts]) for k in first.metrics},
            teacher_metrics={
                k: np.concatenate([p.teacher_metrics[k] for p in parts])
                for k in first.teacher_metrics
            },
            env_steps=np.concatenate([p.env_steps for p in parts]),
            mdp_indices=np.concatenate([p.mdp_indices for p in parts]),
            layout_seeds=np.concatenate([p.layout_seeds for p in parts]),
            n_indices=np.concatenate([p.n_indices for p in parts]),
            settings=settings,
            wall_seconds=float(sum(p.wall_seconds for p in parts)),
            step_calls=int(sum(p.step_calls for p in parts)),
            env_builds=int(sum(p.env_builds for p in parts)),
            sub_env_steps=int(sum(p.sub_env_steps for p in parts)),
            build_seconds=float(sum(p.build_seconds for p in parts)),
            eval_seconds=float(sum(p.eval_seconds for p in parts)),
            setup_seconds=float(sum(p.setup_seconds for p in parts)),
            logits=np.concatenate([pad(p.logits) for p in parts]) if keep else None,  # type: ignore[arg-type]
            critic=np.concatenate([pad(p.critic) for p in parts]) if keep else None,  # type: ignore[arg-type]
            row_work={k: int(sum(p.row_work.get(k, 0) for p in parts)) for k in first.row_work},
        )
