"""The batched runner: one distillation method on many MDPs through the vector env (SPEC 4).

:func:`run_distillation` trains one tabular student per MDP of a
:class:`~distill_agents.teachers.Teachers` (``B = teachers.n_mdps``) with one method of
:mod:`distill_agents.methods`, through the native vector env's ``reset``/``step``
(:mod:`gridworld_env.vector`, table-index observations matching the teachers' tables), and
evaluates every student *exactly* on its MDP's model at iterations ``0, k, 2k, ..., iterations``.
The per-episode update is :func:`distill_agents.row_kernels.episode_update_tables`, the kernel of
the single-env :func:`~distill_agents.distill` too: Eq. 1 accumulated per distinct student row
of the episode, so a step costs O(1) and a row O(its explicit actions) once per episode
(:mod:`distill_agents.row_kernels`); actions are drawn by the same
:func:`~distill_agents.row_kernels.draw_action` (binary search, O(log A)).

Iterations
    One iteration of MDP ``m`` = one full episode of the control policy on ``m``, then the
    update of ``m``'s student. Sub-envs run asynchronously under Gymnasium's next-step
    autoreset: each keeps its own episode buffer and its MDP is updated when its episode ends
    (:mod:`distill_agents._runner_kernels`).

Randomness: one stream per MDP, so results do not depend on how MDPs are batched
    MDP ``g`` (its index among all MDPs: ``first_mdp + i`` for the teachers' ``i``) has the
    seed :func:`mdp_seed` ``(seed, g)`` and from it, exactly as
    ``distill(env_g, teacher_g, method, seed=mdp_seed(seed, g))`` does
    (:func:`distill_agents.distill.seed_streams`), an environment seed and an action
    generator. The action generator gives one uniform per step, turned into the control
    policy's action by inverse CDF. The environment stream (Gymnasium's
    ``np_random(env_seed)``) gives one uniform per reset and per step: the vector env draws
    its uniforms in blocks of ``[R, Bp]`` with one ``np_random.random(out=...)`` call, sub-env
    ``j`` reading only column ``j`` (documented in :mod:`gridworld_env.vector`), so the runner
    installs a :class:`PerMDPUniforms` generator that fills column ``j`` from the stream of the
    MDP sub-env ``j`` runs, starting at the first uniform that MDP has not consumed yet.
    Consequently each MDP's learning is a function of ``(seed, g)``, its teacher and its
    model alone: identical, bit for bit, whatever ``chunk_size``, the order or number of
    MDPs run together, the compaction schedule, or the number of threads. With deterministic
    dynamics it is also exactly ``distill``'s learning on the single env with
    ``seed=mdp_seed(seed, g)``; with stochastic dynamics the single env and the vector env
    map a uniform to an outcome in different orders (model order versus outcomes sorted by
    probability), so the two agree in distribution only (see ``tests/test_runner.py``).

Finished MDPs, and compaction
    An MDP that has completed ``iterations`` episodes stops learning; its sub-env keeps being
    stepped (with action 0, results ignored) while others run. When at most half of a vector
    env's sub-envs are still in use and the cost model (:data:`BUILD_COST`) says it pays off,
    the runner *drains* (starts no new episodes, lets the running ones end) and continues with
    a new vector env holding only the unfinished MDPs (built from their cached layouts); with
    per-MDP streams this changes no result. Cost model decisions depend on counts only.

Evaluation
    When MDP ``m`` completes iteration ``e * k`` (or the last iteration) its logits are copied
    to a snapshot slot; snapshots are evaluated in batches with :mod:`distill_agents.planning`
    on the exact model: the student's policy over table indices is mapped to states through
    ``state_to_index``, then ``return`` is the expected undiscounted return from the start
    (``planning.expected_return``), and ``kl_student``/``kl_teacher``/``kl_uniform`` are the
    expected per-episode sums of ``KL(pi || pi_theta)`` along trajectories of the student, the
    teacher and the uniform policy (``planning.expected_kl``; Fig. 3's columns). The visits of
    the teacher and of the uniform policy are computed once per MDP. The teacher's own values
    (``return``; 0 for the KLs) are recorded too. The computation goes through
    ``planning.expected_visits`` on action-row weights (see :class:`_Evaluator`), which gives
    the values of ``planning.expected_return``/``expected_kl`` (to ~1e-14 relative) without
    building ``[S, A]`` arrays; the students' values come from a compiled kernel doing the same
    banded solve (:mod:`distill_agents._eval_kernels`). With ``mc_episodes=n`` every metric
    is instead a Monte Carlo estimate from ``n`` sampled episodes (:class:`_MonteCarlo`).

Loops
    ``loop="vector"`` steps the vector env through ``reset``/``step`` (above);
    ``loop="compiled"`` (what ``reproduce`` and ``distill`` use) runs each MDP's episodes in
    one compiled function over the same vector env's outcome tables with the same per-MDP
    uniforms, so it trains the same students bit for bit, several times faster.

Groups
    :func:`run_distillation_group` trains ``G`` students per MDP (one per set of teachers of
    the same MDPs) from the same episodes, when the control policy does not depend on the
    student (``uniform``; ``teacher`` with equal teachers): the compiled loop generates each
    episode once and updates the ``G`` students in turn. With the per-MDP streams the episodes
    are those each student's own run would see, so the results are the separate runs', bit
    for bit.

Memory
    MDPs are processed in chunks of consecutive MDPs, each with its own vector env; the chunk
    size comes from :func:`gridworld_env.vector.chunk_size_for` with
    :data:`CHUNK_BUDGET_BYTES` (per MDP: logits, floored teacher log-probabilities, two
    snapshot slots and room for the evaluation, ``[N, A]`` float64 each, plus the env: 77 MB
    per 20x20 MDP with 4000 actions, so about 50 MDPs per 4 GB chunk). Chunking changes no result
    (see above). The :class:`~distill_agents.teachers.Teachers` passed in hold ``[B, N, A]``
    probabilities for all their MDPs (12.8 GB for 1000 MDPs with 4000 actions): for such sizes
    make and distil the teachers piece by piece, calling :func:`run_distillation` with
    ``first_mdp`` set to each piece's first MDP, and join the pieces with
    :meth:`RunResult.concatenate` (the same numbers as one run).
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from numpy.typing import NDArray

import gridworld_env
from distill_agents import _runner_kernels as K
from distill_agents import methods as M
from distill_agents import planning
from distill_agents import row_kernels as RK
from distill_agents.distill import seed_streams
from distill_agents.policy import TabularPolicy
from distill_agents.results import CurveRow, curve_rows
from distill_agents.teachers import Teachers
from distill_agents.updates import TEACHER_PROB_FLOOR, floored_log
from gridworld_env.base import check_int
from gridworld_env.registration import MAX_EPISODE_STEPS
from gridworld_env.vector import chunk_size_for

del gridworld_env  # imported to register the environment ids

__all__ = [
    "ACTION_COUNTS",
    "ACTION_METHODS",
    "CHUNK_BUDGET_BYTES",
    "KL_METRICS",
    "METRICS",
    "STUDENT_STREAM",
    "PerMDPUniforms",
    "RunResult",
    "bench_actions",
    "bench_students",
    "early_iterations",
    "eval_iterations",
    "mdp_seed",
    "run_distillation",
    "run_distillation_group",
]

#: The metrics :func:`run_distillation` can record (SPEC 4.1).
#: (In the order of the columns of :func:`distill_agents._eval_kernels.evaluate_students`.)
METRICS = ("return", "kl_student", "kl_teacher", "kl_uniform")
#: Default memory budget of one chunk of MDPs (bytes).
CHUNK_BUDGET_BYTES = 4e9
#: ``[N, A]`` float64 tables per MDP when sizing chunks: logits, floored teacher log-probs,
#: two snapshot slots, and two for the evaluation's per-index arrays.
TABLES_PER_MDP = 6
#: Bytes of ``[N, A]`` arrays one evaluation batch may use.
EVAL_BUDGET_BYTES = 256e6
#: Largest number of MDPs evaluated in one planning call.
EVAL_MAX_BATCH = 256
#: Second entry of the Monte Carlo evaluation's seeds ``[seed, MC_STREAM, mdp, point + 1]``.
MC_STREAM = 7
#: First ``spawn_key`` entry of the per-MDP seeds (:func:`mdp_seed`); distinct from the
#: teachers' streams (0: training, 1: agent uniforms, 2: noise).
STUDENT_STREAM = 3
#: Action uniforms drawn per MDP at a time.
ACTION_BUFFER = 1024
#: Environment uniforms buffered per MDP.
ENV_BUFFER = 2048
#: Uniforms of each stream buffered per MDP by the compiled loop (``loop="compiled"``); a
#: buffer is refilled when a whole episode might not fit in what is left of it.
COMPILED_BUFFER = 8192
#: Builds of chunks kept per process for the compiled loop (:func:`_built_chunk`; 20x20 grids:
#: ~215 MB per 500 MDPs with 4 actions, ~290 MB with 40) ...
BUILT_CACHE_ENTRIES = 4
#: ... if their models and outcome tables take at most this many bytes.
BUILT_CACHE_BYTES = 400e6
#: The runner's loops (:func:`run_distillation`).
LOOPS = ("vector", "compiled")
#: Compaction is considered every this many ``step`` calls ...
PLAN_EVERY = 256
#: ... when at most this share of the sub-envs is still in use ...
DRAIN_BELOW = 0.5
#: ... and saves more sub-env steps than twice this cost per sub-env of the new vector env
#: (building one 20x20 grid sub-env takes about as long as 40 000 sub-env steps).
BUILD_COST = 40_000.0
_GRID = "DistillGrid-v0"
_SHARED_IDS = ("DistillChain-v0", "DistillOscillation-v0")


# ------------------------------------------------------------------------------- seeding
def mdp_seed(seed: int, mdp: int) -> int:
    """The seed of MDP ``mdp`` in a run with ``seed``: ``distill(..., seed=mdp_seed(seed, g))``.

    ``SeedSequence(seed, spawn_key=(STUDENT_STREAM, mdp))`` reduced to one 64-bit integer.
    """
    for name, value in (("seed", seed), ("mdp", mdp)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    sequence = np.random.SeedSequence(int(seed), spawn_key=(STUDENT_STREAM, int(mdp)))
    return int(sequence.generate_state(1, np.uint64)[0])


class PerMDPUniforms(np.random.Generator):
    """A vector env's ``np_random`` whose block of uniforms comes from per-MDP streams.

    The vector env draws its uniforms as ``np_random.random(out=block)`` with ``block`` of
    shape ``[R, Bp]``; this generator hands the block to ``fill(block)`` (the runner writes
    column ``j`` from the stream of sub-env ``j``'s MDP). Any other draw is refused: the
    runner's reproducibility depends on this being the only one.
    """

    def __init__(self, n_sub: int, fill: Callable[[NDArray[np.float64]], None]) -> None:
        super().__init__(np.random.PCG64(0))
        self._n_sub = n_sub
        self._fill = fill

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        """Fill ``out`` (``[R, Bp]`` float64) from the per-MDP streams."""
        if (
            size is not None
            or out is None
            or not isinstance(out, np.ndarray)
            or out.ndim != 2
            or out.shape[1] != self._n_sub
            or out.dtype != np.float64
        ):
            raise RuntimeError(
                "PerMDPUniforms only serves the vector env's blocks random(out=[R, B]); the "
                "vector env drew its randomness in another way (the runner cannot keep per-MDP "
                "streams)"
            )
        self._fill(out)
        return out

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("PerMDPUniforms only serves random(out=...) blocks")

    integers = choice = uniform = normal = standard_normal = _refuse


def eval_iterations(
    iterations: int, eval_every: int, extra: Sequence[int] = ()
) -> NDArray[np.int64]:
    """The evaluation points ``0, k, 2k, ..., iterations`` (the last one always included).

    ``extra`` iterations (within ``[0, iterations]``) are added, e.g. :func:`early_iterations`.
    """
    points = set(range(0, iterations + 1, eval_every))
    points.add(iterations)
    points.update(int(i) for i in extra)
    return np.array(sorted(points), dtype=np.int64)


def early_iterations(eval_every: int, iterations: int) -> tuple[int, ...]:
    """Evaluation points before the first regular one: 10, 20, 50, 100, 200, 500, ... ``< k``.

    Students on 20x20 grids learn most of what they learn in their first few hundred episodes;
    at the paper's scale (``k = 1000``) these points show that part of the curves.
    """
    out: list[int] = []
    base = 10
    while base < eval_every and base < iterations:
        out += [x for x in (base, 2 * base, 5 * base) if x < eval_every and x < iterations]
        base *= 10
    return tuple(out)


# ------------------------------------------------------------------------------- results
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
        row_work: the training's work per student row (:mod:`distill_agents.row_kernels`):
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


# ------------------------------------------------------------------------ environments
class _EnvBuilder:
    """Vector envs whose sub-envs are given MDPs of a :class:`Teachers` (table indices)."""

    def __init__(self, teachers: Teachers, max_episode_steps: int | None, parallel: Any):
        env_id = teachers.env_id
        if env_id is None:
            raise ValueError(
                "teachers record no env_id: the runner needs teachers made for one of "
                f"{(_GRID, *_SHARED_IDS)} (e.g. by distill-grid teach)"
            )
        if env_id not in (_GRID, *_SHARED_IDS):
            raise ValueError(
                f"teachers.env_id must be one of {(_GRID, *_SHARED_IDS)}, got {env_id!r}"
            )
        kwargs = dict(teachers.env_kwargs)
        for key in ("num_envs", "layouts", "render_mode", "max_episode_steps", "parallel"):
            if key in kwargs:
                raise ValueError(f"teachers.env_kwargs must not set {key!r}")
        self.env_id = env_id
        self.layout_seeds = np.asarray(teachers.layout_seeds)
        self.per_mdp_layouts = False
        self._layouts: dict[int, list[str]] = {}
        if env_id == _GRID:
            observation = kwargs.get("observation", "full")
            if observation not in ("full", "partial"):
                raise ValueError(
                    f"teachers.env_kwargs['observation'] must be 'full' or 'partial', got "
                    f"{observation!r}"
                )
            kwargs["observation"] = "index" if observation == "full" else "partial_index"
            if "layout_seed" in kwargs and "layout" not in kwargs:
                single_kwargs = dict(teachers.env_kwargs)
                single = gym.make(env_id, **single_kwargs).unwrapped
                kwargs.pop("layout_seed")
                kwargs["layout"] = list(single.layout)  # type: ignore[attr-defined]
            elif "layout" not in kwargs:
                if (self.layout_seeds < 0).any():
                    raise ValueError(
                        "teachers record no layout seed for some MDPs and no shared layout: "
                        "cannot rebuild their environments"
                    )
                self.per_mdp_layouts = True
        else:
            if "observation" in kwargs:
                raise ValueError(f"teachers.env_kwargs of {env_id} must not set 'observation'")
            kwargs["observation"] = "index"
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = max_episode_steps
        kwargs["parallel"] = parallel
        self.kwargs = kwargs

    def key(self, mdps: Sequence[int] | NDArray[np.int64]) -> tuple[Any, ...]:
        """What :meth:`make`'s vector env for ``mdps`` is a function of (for caches)."""
        which: Any = (
            tuple(int(s) for s in self.layout_seeds[np.asarray(mdps, dtype=np.int64)])
            if self.per_mdp_layouts
            else len(mdps)  # a shared layout, or an env without layouts: the MDPs are equal
        )
        return (self.env_id, json.dumps(self.kwargs, sort_keys=True, default=str), which)

    def make(self, mdps: Sequence[int] | NDArray[np.int64]) -> Any:
        """A vector env whose sub-env ``j`` is the teachers' MDP ``mdps[j]``."""
        mdps = [int(m) for m in mdps]
        kwargs = dict(self.kwargs)
        if self.per_mdp_layouts:
            seeds = self.layout_seeds[mdps]
            consecutive = bool(np.all(np.diff(seeds) == 1))
            if consecutive and not all(m in self._layouts for m in mdps):
                kwargs["layout_seed"] = int(seeds[0])
            else:
                for m in mdps:
                    if m not in self._layouts:
                        single_kwargs = dict(
                            kwargs, observation="full", layout_seed=int(self.layout_seeds[m])
                        )
                        single_kwargs.pop("parallel")
                        single_kwargs.pop("max_episode_steps", None)
                        single = gym.make(self.env_id, **single_kwargs).unwrapped
                        self._layouts[m] = list(single.layout)  # type: ignore[attr-defined]
                kwargs["layouts"] = [self._layouts[m] for m in mdps]
        envs = gym.make_vec(
            self.env_id, num_envs=len(mdps), vectorization_mode="vector_entry_point", **kwargs
        )
        if self.per_mdp_layouts and "layout_seed" in kwargs:
            for m, layout in zip(mdps, envs.layouts, strict=True):  # type: ignore[attr-defined]
                self._layouts[m] = list(layout)
        return envs


@dataclass
class _Built:
    """What the compiled loop and the exact evaluation need of a chunk's vector env."""

    models: Any
    tables: tuple[Any, ...]
    limit: int | None
    evaluator: _Evaluator | None = None  # its model parts are shared by later evaluators


#: Chunks built in this process, most recent last (see :func:`_built_chunk`).
_BUILT: dict[tuple[Any, ...], _Built] = {}


def _built_chunk(builder: _EnvBuilder, mdps: NDArray[np.int64]) -> tuple[_Built, bool]:
    """The models and outcome tables of MDPs ``mdps``; ``(built, whether it was built now)``.

    The last :data:`BUILT_CACHE_ENTRIES` builds of at most :data:`BUILT_CACHE_BYTES` each are
    kept, so runs on the same MDPs in a row (``reproduce``'s curves of a panel, and panels on
    the same MDPs) build them once. Nothing in them is written to after the build.
    """
    key = builder.key(mdps)
    built = _BUILT.pop(key, None)
    fresh = built is None
    if built is None:
        envs = builder.make(mdps)
        built = _Built(envs.models, envs.outcome_tables(), envs.max_episode_steps)
        envs.close()
    size = sum(int(getattr(a, "nbytes", 0)) for a in built.tables) + sum(
        int(getattr(built.models, name).nbytes)
        for name in ("next_states", "next_probs", "next_rewards")
    )
    if size <= BUILT_CACHE_BYTES:
        _BUILT[key] = built
        while len(_BUILT) > BUILT_CACHE_ENTRIES:
            del _BUILT[next(iter(_BUILT))]
    return built, fresh


# --------------------------------------------------------------------------- evaluation
def _softmax(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    out: NDArray[np.float64] = z / z.sum(axis=-1, keepdims=True)
    return out


def _weighted_sum(visits: NDArray[np.float64], cost: NDArray[np.float64]) -> NDArray[np.float64]:
    # As planning: unvisited states contribute 0 whatever their cost.
    with np.errstate(invalid="ignore"):
        out: NDArray[np.float64] = np.where(visits > 0.0, visits * cost, 0.0).sum(axis=-1)
    return out


def _dense_rows(students: RK.StudentTable, sel: NDArray[np.int64]) -> NDArray[np.float64]:
    """Dense logits ``[n, N, A]`` of the students ``sel`` of a stacked student table."""
    picked = RK.StudentTable(
        students.logits[sel], students.bulk[sel], students.n_explicit[sel], students.explicit[sel]
    )
    return RK.dense_logits(picked)


class _Evaluator:
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
        like: _Evaluator | None = None,
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
        "full_support", "full_support_min", "n_actions", "masks", "uniform_rows", "row_rewards",
    )  # fmt: skip

    def _share(self, other: _Evaluator) -> None:
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
        from distill_agents import _eval_kernels as E

        self.edges = E.compact_edges(
            np.ascontiguousarray(models.next_states, dtype=np.int64),
            np.ascontiguousarray(models.next_probs, dtype=np.float64),
        )
        self.initial = np.ascontiguousarray(models.initial, dtype=np.float64)
        rows = np.asarray(models.action_rows)
        self.action_rows = np.ascontiguousarray(rows, dtype=np.int64)
        self.full_support = E.full_support_structure(
            *self.edges, self.initial, self.terminal, n_rows
        )
        positive = self.edges[3][self.edges[3] > 0.0]
        self.full_support_min = E.FULL_SUPPORT / float(positive.min()) if positive.size else 1.0
        self.n_actions = int(rows.size)
        self.masks = (
            None if np.array_equal(rows, np.arange(n_rows)) else [rows == k for k in range(n_rows)]
        )
        self.uniform_rows = self._row_weights(np.full((1, self.n_actions), 1.0 / self.n_actions))[0]
        self.row_rewards = np.ascontiguousarray(
            (np.asarray(models.next_probs) * np.asarray(models.next_rewards)).sum(-1)
        )

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

        ``students`` is a stacked ``[M, ...]`` student table (:mod:`distill_agents.row_kernels`;
        :func:`~distill_agents.row_kernels.dense_table` views dense logits as one), ``sel``
        which of them (default ``0 .. n - 1``). ``points`` (the evaluation points) is not needed
        for exact values. Computed by the compiled
        :func:`distill_agents._eval_kernels.evaluate_students` (the values of
        :meth:`students_planning` to rounding); a student it cannot evaluate (its episodes may
        not end) goes through :meth:`students_planning`, which raises the error.

        Raises:
            ValueError: a student whose episodes do not end (no exact values).
        """
        from distill_agents import _eval_kernels as E

        idx = np.ascontiguousarray(idx, dtype=np.int64)
        n = idx.size
        sel = np.arange(n) if sel is None else np.ascontiguousarray(sel, dtype=np.int64)
        if self.kl_per_step and any(name.startswith("kl_") for name in self.metrics):
            return self.students_planning(idx, _dense_rows(students, sel))
        values = np.full((n, 4), np.nan)
        status = np.zeros(n, dtype=np.int64)
        need = np.array([name in self.metrics for name in METRICS])
        none = np.zeros((0, 0))
        E.evaluate_students(
            *self.edges, self.row_rewards, self.initial, self.terminal,
            self.state_to_index, self.action_rows, np.ascontiguousarray(self.uniform_rows),
            idx, students, sel, self.teacher_probs, self.teacher_bulk,
            self.visits.get("teacher", none), self.visits.get("uniform", none),
            *self.full_support, self.full_support_min, need,
            values, status,
        )  # fmt: skip
        out = {name: values[:, METRICS.index(name)].copy() for name in self.metrics}
        bad = np.flatnonzero(status)
        if bad.size:
            slow = self.students_planning(idx[bad], _dense_rows(students, sel[bad]))
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
            probs = _softmax(logits[sl])
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


class _MonteCarlo:
    """Monte Carlo estimates of the metrics, in place of :class:`_Evaluator`'s exact values.

    ``n_episodes`` episodes per control policy and evaluation
    (:func:`distill_agents._eval_kernels.monte_carlo_students`), sampled from the vector env's
    outcome tables with a stream per (MDP, evaluation point) derived from the run's seed
    (:data:`MC_STREAM`), so the estimates do not depend on chunks either and never touch the
    training streams.
    """

    def __init__(
        self, envs: Any, run: _Run, ids: NDArray[np.int64], teacher_probs: NDArray[np.float64]
    ) -> None:
        self.tables = envs.outcome_tables()
        self.limit = int(envs.max_episode_steps)
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
        from distill_agents import _eval_kernels as E

        idx = np.ascontiguousarray(idx, dtype=np.int64)
        out = np.zeros((idx.size, 4))
        E.monte_carlo_students(  # type: ignore[call-arg]
            *self.tables, self.limit, idx, np.ascontiguousarray(logits, dtype=np.float64),
            self.teacher_probs, self._seeds(idx, points), self.n_episodes, need, control, out,
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
        logits = _dense_rows(students, sel)
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


# ------------------------------------------------------------------------------ running
@dataclass
class _Run:
    """Settings shared by every chunk of one :func:`run_distillation` call.

    ``group`` holds the teachers of every student trained per MDP (``teachers`` is the first):
    one for :func:`run_distillation`, several for :func:`run_distillation_group`.
    """

    teachers: Teachers
    group: Sequence[Teachers]
    builder: _EnvBuilder
    spec: M.MethodSpec
    control: int
    coef: NDArray[np.float64]
    codes: NDArray[np.int64]
    lr: float
    gamma: float
    seed: int
    first_mdp: int
    iterations: int
    eval_index: NDArray[np.int64]
    n_evals: int
    beta_table: NDArray[np.float64]
    metrics: tuple[str, ...]
    floor: float
    compact: bool
    progress: Callable[[int], None] | None
    compiled: bool = False
    mc_episodes: int | None = None
    kl_per_step: bool = False
    step_calls: int = 0
    sub_env_steps: int = 0
    env_builds: int = 0
    build_seconds: float = 0.0
    eval_seconds: float = 0.0
    setup_seconds: float = 0.0
    row_counts: NDArray[np.int64] = field(default_factory=lambda: np.zeros(RK.N_COUNTS, np.int64))


class _Chunk:
    """Students of consecutive MDPs ``start .. start + b - 1`` of the teachers.

    The ``g_*`` arrays stack the group's ``G`` students per MDP (``[G, b, ...]``); ``probs``,
    ``logits``, ``metrics``, ... are the first student's (all the vector-env loop handles).
    """

    def __init__(self, run: _Run, start: int, stop: int) -> None:
        t0 = time.perf_counter()
        self.run = run
        self.ids = np.arange(start, stop)
        teachers = run.teachers
        b = stop - start
        self.b = b
        n_index = teachers.n_index
        group = run.group
        self.g_probs = (
            teachers.probs[None, start:stop]
            if len(group) == 1
            else np.stack([t.probs[start:stop] for t in group])
        )
        g_values = np.stack(
            [np.zeros((b, n_index)) if t.values is None else t.values[start:stop] for t in group]
        )
        self.teachers = RK.teacher_table(
            self.g_probs,
            floored_log(self.g_probs, run.floor),
            g_values,
            np.ones(g_values.shape),
            run.control in M.TEACHER_CONTROLS,
        )
        n_explicit, explicit = RK.initial_explicit(self.g_probs)
        self.students = RK.StudentTable(
            np.zeros((len(group), b, n_index, teachers.n_actions)),
            np.zeros((len(group), b, n_index)),
            n_explicit,
            explicit,
        )
        self.g_critic = np.zeros((len(group), b, n_index))
        run.setup_seconds += time.perf_counter() - t0
        self.mdp_state = np.zeros((b, K.N_MDP_FIELDS), dtype=np.int64)
        self.act_gens: list[np.random.Generator] = []
        self.env_gens: list[np.random.Generator] = []
        for i in self.ids:
            env_seed, action_rng = seed_streams(mdp_seed(run.seed, run.first_mdp + int(i)))
            self.act_gens.append(action_rng)
            self.env_gens.append(seeding.np_random(env_seed)[0])
        self.act_buf = np.empty((b, ACTION_BUFFER))
        for m, gen in enumerate(self.act_gens):
            gen.random(out=self.act_buf[m])
        self.env_buf = np.empty((b, ENV_BUFFER))
        for m, gen in enumerate(self.env_gens):
            gen.random(out=self.env_buf[m])
        self.env_base = np.zeros(b, dtype=np.int64)
        self.g_metrics = [
            {name: np.full((b, run.n_evals), np.nan) for name in run.metrics} for _ in group
        ]
        self.metrics = self.g_metrics[0]
        self.n_slots = 2 * b
        self.snapshots: RK.StudentTable | None = None  # the vector loop's (see _phase)
        self.pending = np.zeros((self.n_slots, 2), dtype=np.int64)
        self.n_pending = 0
        self.sub = np.zeros((0, K.N_SUB_FIELDS), dtype=np.int64)

    def member(self, g: int) -> RK.StudentTable:
        """Group member ``g``'s students of the chunk, a stacked ``[b, ...]`` table."""
        s = self.students
        return RK.StudentTable(s.logits[g], s.bulk[g], s.n_explicit[g], s.explicit[g])

    def dense_logits(self) -> NDArray[np.float64]:
        """``[G, b, N, A]`` the students' logits, every bulk entry written out."""
        return RK.dense_logits(self.students)

    # -------------------------------------------------------------- streams
    def _fill(self, block: NDArray[np.float64]) -> None:
        """The vector env's block of uniforms (see :class:`PerMDPUniforms`)."""
        rows = block.shape[0]
        if rows > ENV_BUFFER:
            raise RuntimeError(f"the vector env asked for {rows} rows of uniforms at once")
        active = self.sub[self.sub[:, K.STATUS] != K.STOPPED, K.MDP]
        used = self.mdp_state[active, K.ENV_USED]
        low = active[used - self.env_base[active] + rows > ENV_BUFFER]
        for m in low:
            offset = int(self.mdp_state[m, K.ENV_USED] - self.env_base[m])
            keep = ENV_BUFFER - offset
            self.env_buf[m, :keep] = self.env_buf[m, offset:]
            self.env_gens[m].random(out=self.env_buf[m, keep:])
            self.env_base[m] += offset
        K.fill_env_uniforms(block, self.sub, self.mdp_state, self.env_buf, self.env_base)

    def _refill_actions(self) -> None:
        for m in np.flatnonzero(self.mdp_state[:, K.ACT_PTR] >= ACTION_BUFFER):
            self.act_gens[m].random(out=self.act_buf[m])
            self.mdp_state[m, K.ACT_PTR] = 0

    # -------------------------------------------------------------- evaluation
    def _flush(self) -> None:
        n = self.n_pending
        if n == 0:
            return
        idx = self.pending[:n, 0].copy()
        evals = self.pending[:n, 1]
        t0 = time.perf_counter()
        assert self.snapshots is not None
        values = self.evaluator.students(idx, self.snapshots, np.arange(n), evals)
        for name, vals in values.items():
            self.metrics[name][idx, evals] = vals
        self.n_pending = 0
        self.run.eval_seconds += time.perf_counter() - t0

    # -------------------------------------------------------------- training
    def run_chunk(self) -> None:
        run = self.run
        t0 = time.perf_counter()
        built: _Built | None = None
        if run.compiled and run.mc_episodes is None:  # only tables: a kept build serves
            built, fresh = _built_chunk(run.builder, self.ids)
            run.env_builds += int(fresh)
            envs: Any = None
            models = built.models
        else:
            envs = run.builder.make(self.ids)
            run.env_builds += 1
            models = envs.models
        run.build_seconds += time.perf_counter() - t0
        expected = run.teachers.n_indices[self.ids]
        bad = np.flatnonzero(np.asarray(models.n_indices) != expected)
        if bad.size:
            i = int(self.ids[bad[0]])
            raise ValueError(
                f"MDP {run.first_mdp + i}: its environment has {int(models.n_indices[bad[0]])} "
                f"table indices but its teacher has {int(expected[bad[0]])}: the teachers do not "
                "match their recorded environment (env_id, env_kwargs, layout_seeds)"
            )
        t0 = time.perf_counter()
        self.evaluators: list[_Evaluator | _MonteCarlo] = []
        for probs in self.g_probs:
            if run.mc_episodes is not None:
                self.evaluators.append(_MonteCarlo(envs, run, self.ids, probs))
                continue
            like = built.evaluator if built is not None else None
            if self.evaluators:
                like = self.evaluators[0]  # type: ignore[assignment]
            evaluator = _Evaluator(
                models, probs, run.metrics, like=like, kl_per_step=run.kl_per_step
            )
            self.evaluators.append(evaluator)
            if built is not None and built.evaluator is None:
                built.evaluator = evaluator
        self.evaluator = self.evaluators[0]
        self.g_teacher_metrics = [ev.teachers() for ev in self.evaluators]
        self.teacher_metrics = self.g_teacher_metrics[0]
        everyone = np.arange(self.b)
        for g, (ev, metrics) in enumerate(zip(self.evaluators, self.g_metrics, strict=True)):
            for name, vals in ev.students(everyone, self.member(g), everyone, 0).items():
                metrics[name][:, 0] = vals
        run.eval_seconds += time.perf_counter() - t0
        if run.iterations == 0:
            return
        if run.compiled:
            if built is None:
                built = _Built(models, envs.outcome_tables(), envs.max_episode_steps)
                envs.close()
            self._run_compiled(built)
            return
        if len(run.group) > 1:
            raise ValueError('a group of students needs loop="compiled"')
        live = np.arange(self.b)
        while live.size:
            self._phase(envs, live)
            live = np.flatnonzero(self.mdp_state[:, K.DONE] < run.iterations)
            if live.size:
                t0 = time.perf_counter()
                envs = run.builder.make(self.ids[live])
                run.env_builds += 1
                run.build_seconds += time.perf_counter() - t0
        self._flush()

    def _run_compiled(self, built: _Built) -> None:
        """Train every MDP of the chunk with the compiled loop (:func:`K.run_mdps`)."""
        run = self.run
        limit = built.limit
        if limit is None:
            raise ValueError("the runner needs a time limit: max_episode_steps must not be None")
        tables = built.tables
        # Longer buffers than the vector loop's: continue each stream where its buffer ends.
        length = max(COMPILED_BUFFER, 2 * (limit + 1))
        self.act_buf = self._extended(self.act_buf, self.act_gens, length)
        self.env_buf = self._extended(self.env_buf, self.env_gens, length)
        n_index, n_actions = self.students.logits.shape[2:]
        env = K.EnvTables._make((*tables, limit))
        streams = K.Streams(self.mdp_state, self.env_buf, self.env_base, self.act_buf)
        schedule = K.Schedule(run.iterations, run.eval_index, run.beta_table, run.control)
        method = K.MethodParams(run.coef, run.codes, run.lr, run.gamma)
        work = RK.make_row_work(n_index, n_actions, limit)
        episode = K.Episode(
            np.zeros(limit + 1, dtype=np.int64), np.zeros(limit, dtype=np.int64), np.zeros(limit)
        )
        events = np.zeros(self.b, dtype=np.int64)
        state = self.mdp_state
        while True:
            episodes = K.run_mdps(
                env, streams, schedule, self.teachers, self.students, self.g_critic, method,
                work, episode, events,
            )  # fmt: skip
            if episodes and run.progress is not None:
                run.progress(episodes * len(run.group))  # each episode trains G students
            at_eval = np.flatnonzero(events == K.EVENT_EVAL)
            if at_eval.size:
                t0 = time.perf_counter()
                points = run.eval_index[state[at_eval, K.DONE]]
                for g, (ev, metrics) in enumerate(
                    zip(self.evaluators, self.g_metrics, strict=True)
                ):
                    for name, vals in ev.students(at_eval, self.member(g), at_eval, points).items():
                        metrics[name][at_eval, points] = vals
                run.eval_seconds += time.perf_counter() - t0
            self._refill_compiled(limit)
            if not (state[:, K.DONE] < run.iterations).any():
                break
        run.row_counts += work.counts
        run.sub_env_steps += int(state[:, K.STEPS].sum())

    @staticmethod
    def _extended(
        buf: NDArray[np.float64], gens: Sequence[np.random.Generator], length: int
    ) -> NDArray[np.float64]:
        out = np.empty((buf.shape[0], max(length, buf.shape[1])))
        out[:, : buf.shape[1]] = buf
        for m, gen in enumerate(gens):
            gen.random(out=out[m, buf.shape[1] :])
        return out

    def _refill_compiled(self, limit: int) -> None:
        """Shift what is left of low uniform buffers to their front and draw the rest."""
        state = self.mdp_state
        env_len, act_len = self.env_buf.shape[1], self.act_buf.shape[1]
        env_off = state[:, K.ENV_USED] - self.env_base
        low_env = env_len - env_off < limit + 1
        low_act = act_len - state[:, K.ACT_PTR] < limit
        for m in np.flatnonzero((low_env | low_act) & (state[:, K.DONE] < self.run.iterations)):
            offset = int(env_off[m])
            keep = env_len - offset
            self.env_buf[m, :keep] = self.env_buf[m, offset:]
            self.env_gens[m].random(out=self.env_buf[m, keep:])
            self.env_base[m] += offset
            ptr = int(state[m, K.ACT_PTR])
            keep = act_len - ptr
            self.act_buf[m, :keep] = self.act_buf[m, ptr:]
            self.act_gens[m].random(out=self.act_buf[m, keep:])
            state[m, K.ACT_PTR] = 0

    def _phase(self, envs: Any, live: NDArray[np.int64]) -> None:
        """Run the MDPs ``live`` on ``envs`` (one sub-env each) until all stop."""
        run = self.run
        n_sub = live.size
        limit = envs.max_episode_steps
        if limit is None:
            raise ValueError("the runner needs a time limit: max_episode_steps must not be None")
        sub = np.zeros((n_sub, K.N_SUB_FIELDS), dtype=np.int64)
        sub[:, K.MDP] = live
        sub[:, K.STATUS] = K.RESETTING
        self.sub = sub
        episode = K.Episode(
            np.zeros((n_sub, limit + 1), dtype=np.int64),
            np.zeros((n_sub, limit), dtype=np.int64),
            np.zeros((n_sub, limit)),
        )
        n_index, n_actions = self.students.logits.shape[2:]
        work = RK.make_row_work(n_index, n_actions, limit)
        if self.snapshots is None:
            p = self.n_slots
            self.snapshots = RK.StudentTable(
                np.empty((p, n_index, n_actions)),
                np.empty((p, n_index)),
                np.empty((p, n_index), dtype=np.int64),
                np.empty((p, *self.students.explicit.shape[2:]), dtype=np.int32),
            )
        envs.np_random = PerMDPUniforms(n_sub, self._fill)
        obs, _ = envs.reset()
        actions = np.zeros(n_sub, dtype=np.int64)
        rewards = np.zeros(n_sub)
        flags = np.zeros(n_sub, dtype=bool)
        streams = K.Streams(self.mdp_state, self.env_buf, self.env_base, self.act_buf)
        schedule = K.Schedule(run.iterations, run.eval_index, run.beta_table, run.control)
        method = K.MethodParams(run.coef, run.codes, run.lr, run.gamma)
        drain = False
        calls = 0
        terminations, truncations = flags, flags
        while True:
            running, refills, episodes, self.n_pending = K.advance(
                obs, rewards, terminations, truncations, actions, sub, episode, streams, drain,
                schedule, self.teachers, self.students, self.g_critic, method, work,
                self.snapshots, self.pending, self.n_pending,
            )  # fmt: skip
            if refills:
                self._refill_actions()
            if self.n_pending + n_sub > self.n_slots:
                self._flush()
            if episodes and run.progress is not None:
                run.progress(episodes)
            if running == 0:
                break
            calls += 1
            if (
                run.compact
                and not drain
                and calls % PLAN_EVERY == 0
                and self._should_drain(running, n_sub)
            ):
                drain = True
                sub[sub[:, K.STATUS] == K.RESETTING, K.STATUS] = K.STOPPED
                if not (sub[:, K.STATUS] != K.STOPPED).any():
                    break
            obs, rewards, terminations, truncations, _ = envs.step(actions)
        run.step_calls += calls
        run.sub_env_steps += calls * n_sub
        run.row_counts += work.counts
        envs.close()

    def _should_drain(self, running: int, n_sub: int) -> bool:
        """The cost model: is a smaller vector env for the unfinished MDPs worth building?"""
        if running > DRAIN_BELOW * n_sub:
            return False
        state = self.mdp_state
        active = self.sub[self.sub[:, K.STATUS] != K.STOPPED, K.MDP]
        done = state[active, K.DONE]
        per_episode = (state[active, K.STEPS] + done) / np.maximum(done, 1)
        remaining = float(((self.run.iterations - done) * per_episode).max())
        return (n_sub - running) * remaining > 2.0 * BUILD_COST * running


def run_distillation(
    teachers: Teachers,
    method: str,
    *,
    control: str | None = None,
    iterations: int,
    eval_every: int,
    lr: float = 0.1,
    gamma: float = 0.99,
    critic: str | None = None,
    seed: int = 0,
    beta: float | M.BetaSchedule | Callable[[int], float] = 0.5,
    metrics: Sequence[str] = ("return",),
    distill_loss: str = "cross_entropy",
    teacher_prob_floor: float = TEACHER_PROB_FLOOR,
    chunk_size: int | None = None,
    memory_budget: float = CHUNK_BUDGET_BYTES,
    first_mdp: int = 0,
    max_episode_steps: int | None = None,
    keep_students: bool = False,
    compact: bool = True,
    parallel: bool | None = False,
    progress: bool | Callable[[int], None] = False,
    loop: str = "vector",
    mc_episodes: int | None = None,
    eval_at: Sequence[int] = (),
    kl_metric: str = "episode_sum",
) -> RunResult:
    """Train one student per MDP of ``teachers`` with one method, evaluating exactly.

    See the module docstring for iterations, seeding, finished MDPs and evaluation.

    Args:
        teachers: one teacher per MDP, with the env id and kwargs that rebuild the MDPs.
        method: a method id (:data:`distill_agents.methods.METHOD_IDS`).
        control: ``"teacher"``, ``"student"``, ``"uniform"``, ``"mixture"``, or ``None`` for the
            method's own control.
        iterations: training episodes per MDP (``>= 0``).
        eval_every: ``k >= 1``: evaluate at iterations ``0, k, 2k, ..., iterations``.
        eval_at: further iterations to evaluate at (e.g. :func:`early_iterations`).
        lr: learning rate.
        gamma: discount in [0, 1].
        critic: ``None`` (the method's default), ``"none"``, ``"mc"`` or ``"td"``.
        seed: seed of the run (MDP ``g`` uses :func:`mdp_seed` ``(seed, g)``).
        beta: teacher weight of the ``mixture`` control (number, schedule or callable).
        metrics: any of :data:`METRICS`.
        distill_loss: ``"cross_entropy"`` or ``"information_potential"``.
        teacher_prob_floor: floor of the teacher's probabilities inside ``log``.
        chunk_size: MDPs per chunk (default from ``memory_budget``); does not change results.
        memory_budget: bytes one chunk may use when ``chunk_size`` is ``None``.
        first_mdp: global index of the teachers' first MDP (for the per-MDP seeds when a run
            is split over processes or machines).
        max_episode_steps: the vector env's time limit (default: the registered 1000).
        keep_students: return the final logits and critics.
        compact: allow compaction (rebuilding a smaller vector env for the unfinished MDPs).
        parallel: the vector env's ``parallel`` flag (``None``: its automatic choice). Results
            do not depend on it.
        progress: ``True`` for a progress bar (tqdm, on stderr), or a callable receiving the
            number of newly completed episodes.
        loop: ``"vector"`` (default): step the vector env through ``reset``/``step``, one
            Python round trip per step of all sub-envs; ``"compiled"``: one compiled loop per
            chunk (:func:`distill_agents._runner_kernels.run_mdps`) that steps each MDP
            through the same vector env's outcome tables with the same uniforms: the same
            numbers bit for bit (tested), several times faster (no lockstep, no idle
            sub-envs, no round trips). ``step_calls`` is 0 with ``"compiled"``.
        mc_episodes: ``None`` (default): exact metrics; ``n``: Monte Carlo estimates from
            ``n`` episodes per control policy and evaluation (:class:`_MonteCarlo`), for the
            teacher's return too.
        kl_metric: ``"episode_sum"`` (default): a KL metric is the expected sum over an
            episode of the control policy of the per-state KL; ``"step_mean"``: that sum over
            the episode's expected length (the mean per step; exact metrics only, evaluated
            through :mod:`distill_agents.planning`).

    Returns:
        :class:`RunResult`.

    Raises:
        ValueError: bad arguments (method, control, critic, metrics, sizes), a method needing
            teacher values the teachers lack, or teachers that do not match their environment.
    """
    if not isinstance(teachers, Teachers):
        raise ValueError(f"teachers must be a Teachers container, got {type(teachers).__name__}")
    # run_distillation's keyword arguments, forwarded as they are (no other local exists yet).
    arguments = dict(locals())
    del arguments["teachers"], arguments["method"]
    return _run_group([teachers], method, **arguments)[0]


def run_distillation_group(
    group: Sequence[Teachers], method: str, **kwargs: Any
) -> list[RunResult]:
    """Train ``G = len(group)`` students per MDP from the *same* episodes; one result each.

    For a control policy that does not depend on the student (``uniform``, or ``teacher`` when
    every set of teachers has the same probabilities) the episodes of
    ``run_distillation(group[g], method, **kwargs)`` are the same for every ``g``: they are
    generated once and each episode updates the ``G`` students in turn. The results are those
    of the ``G`` separate calls, bit for bit (tested); the episodes' share of the time is paid
    once (three uniform-driven students on 100 grids: 0.46 of the time of three runs).

    Args:
        group: teachers of the same MDPs (same ``env_id``, ``env_kwargs``, layout seeds and
            table sizes), e.g. one Q-learning run at several temperatures.
        method: a method id.
        kwargs: :func:`run_distillation`'s keyword arguments; ``loop`` must be
            ``"compiled"``.

    Raises:
        ValueError: as :func:`run_distillation`; an empty group, teachers of other MDPs, a
            control policy that depends on the student, teacher control with teachers that
            differ, or the vector-env loop.
    """
    group = list(group)
    if not group or not all(isinstance(t, Teachers) for t in group):
        raise ValueError("group must be a non-empty sequence of Teachers containers")
    first = group[0]
    for i, t in enumerate(group[1:], 1):
        same = (
            t.env_id == first.env_id
            and dict(t.env_kwargs) == dict(first.env_kwargs)
            and np.array_equal(np.asarray(t.layout_seeds), np.asarray(first.layout_seeds))
            and np.array_equal(np.asarray(t.n_indices), np.asarray(first.n_indices))
            and t.probs.shape == first.probs.shape
        )
        if not same:
            raise ValueError(
                f"group[{i}] holds teachers of other MDPs than group[0] (env_id, env_kwargs, "
                "layout seeds and table sizes must be equal)"
            )
    # run_distillation's defaults for what is not given (and its TypeError for unknown names).
    bound = inspect.signature(run_distillation).bind(first, method, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    del arguments["teachers"], arguments["method"]
    if len(group) > 1:
        control = arguments["control"] or M.parse_method(method).default_control
        if control not in ("uniform", "teacher"):
            raise ValueError(
                f"control {control!r} depends on the student: a group of students needs the "
                "'uniform' or 'teacher' control"
            )
        if control == "teacher" and not all(np.array_equal(t.probs, first.probs) for t in group):
            raise ValueError("teacher control needs teachers with equal probabilities in a group")
        if arguments["loop"] != "compiled":
            raise ValueError('a group of students needs loop="compiled"')
    return _run_group(group, method, **arguments)


def _run_group(
    group: Sequence[Teachers],
    method: str,
    *,
    control: str | None,
    iterations: int,
    eval_every: int,
    lr: float,
    gamma: float,
    critic: str | None,
    seed: int,
    beta: float | M.BetaSchedule | Callable[[int], float],
    metrics: Sequence[str],
    distill_loss: str,
    teacher_prob_floor: float,
    chunk_size: int | None,
    memory_budget: float,
    first_mdp: int,
    max_episode_steps: int | None,
    keep_students: bool,
    compact: bool,
    parallel: bool | None,
    progress: bool | Callable[[int], None],
    loop: str,
    mc_episodes: int | None,
    eval_at: Sequence[int],
    kl_metric: str,
) -> list[RunResult]:
    """:func:`run_distillation` for a group of teachers of the same MDPs (checked by callers).

    Every argument is given (no defaults here: :func:`run_distillation`'s are the only ones).
    """
    t0 = time.perf_counter()
    teachers = group[0]
    spec = M.parse_method(method)
    control_name = spec.default_control if control is None else control
    code = M.control_code(control_name)
    mode = spec.critic_mode(critic)
    coef, codes = spec.params(mode, distill_loss)
    if spec.needs_teacher_values and any(t.values is None for t in group):
        raise ValueError(
            f"method {spec.id!r} needs the teacher's values V_pi, but these {teachers.kind} "
            "teachers have none"
        )
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
    if mc_episodes is not None:
        mc_episodes = check_int("mc_episodes", mc_episodes, 1)
    if kl_metric not in KL_METRICS:
        raise ValueError(f"kl_metric must be one of {list(KL_METRICS)}, got {kl_metric!r}")
    if kl_metric != "episode_sum" and mc_episodes is not None:
        raise ValueError("kl_metric='step_mean' needs exact metrics (mc_episodes=None)")
    iterations = check_int("iterations", iterations, 0)
    eval_every = check_int("eval_every", eval_every, 1)
    seed = check_int("seed", seed, 0)
    first_mdp = check_int("first_mdp", first_mdp, 0)
    if max_episode_steps is not None:
        max_episode_steps = check_int("max_episode_steps", max_episode_steps, 1)
    if (
        isinstance(lr, bool)
        or not isinstance(lr, (int, float))
        or not (math.isfinite(lr) and lr > 0)
    ):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if not metrics or unknown or len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics must be distinct names from {METRICS}, got {metrics!r}")
    floored_log(np.ones(1), teacher_prob_floor)  # validates the floor
    schedule = M.as_beta_schedule(beta)
    beta_table = np.zeros(max(iterations, 1))
    if code == M.CONTROL_MIXTURE:
        beta_table[:iterations] = [M.beta_at(schedule, i, iterations) for i in range(iterations)]
    n_mdps = teachers.n_mdps
    if chunk_size is None:
        if isinstance(memory_budget, bool) or not memory_budget > 0:
            raise ValueError(f"memory_budget must be a positive number, got {memory_budget!r}")
        chunk_size = chunk_size_for(
            teachers.n_actions,
            float(memory_budget),
            n_states=teachers.n_index,
            tables_per_mdp=TABLES_PER_MDP,
        )
    chunk_size = check_int("chunk_size", chunk_size, 1)
    builder = _EnvBuilder(teachers, max_episode_steps, parallel)
    extra = [check_int("eval_at", i, 0) for i in eval_at]
    if any(i > iterations for i in extra):
        raise ValueError(f"eval_at must hold iterations in [0, {iterations}], got {list(eval_at)}")
    points = eval_iterations(iterations, eval_every, extra)
    eval_index = np.full(iterations + 1, -1, dtype=np.int64)
    eval_index[points] = np.arange(points.size)

    bar = None
    callback: Callable[[int], None] | None = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(
            total=len(group) * n_mdps * iterations, unit="episode", unit_scale=True, desc=spec.id
        )
        callback = bar.update
    elif callable(progress):
        callback = progress
    elif progress is not False:
        raise ValueError(f"progress must be True, False or a callable, got {progress!r}")

    run = _Run(
        teachers=teachers, group=group, builder=builder, spec=spec, control=code, coef=coef,
        codes=codes, lr=float(lr), gamma=float(gamma), seed=seed, first_mdp=first_mdp,
        iterations=iterations, eval_index=eval_index, n_evals=int(points.size),
        beta_table=beta_table, metrics=metrics, floor=float(teacher_prob_floor),
        compact=bool(compact), progress=callback, compiled=loop == "compiled",
        mc_episodes=mc_episodes, kl_per_step=kl_metric == "step_mean",
    )  # fmt: skip
    n_group = len(group)
    student_metrics = [{name: np.empty((n_mdps, points.size)) for name in metrics} for _ in group]
    teacher_metrics = [{name: np.empty(n_mdps) for name in metrics} for _ in group]
    env_steps = np.zeros(n_mdps, dtype=np.int64)
    logits = np.zeros((n_group, *teachers.probs.shape)) if keep_students else None
    critics = np.zeros((n_group, *teachers.probs.shape[:2])) if keep_students else None
    try:
        for start in range(0, n_mdps, chunk_size):
            stop = min(n_mdps, start + chunk_size)
            chunk = _Chunk(run, start, stop)
            chunk.run_chunk()
            for g in range(n_group):
                for name in metrics:
                    student_metrics[g][name][start:stop] = chunk.g_metrics[g][name]
                    teacher_metrics[g][name][start:stop] = chunk.g_teacher_metrics[g][name]
            env_steps[start:stop] = chunk.mdp_state[:, K.STEPS]
            if logits is not None and critics is not None:
                logits[:, start:stop] = chunk.dense_logits()
                critics[:, start:stop] = chunk.g_critic
            del chunk
    finally:
        if bar is not None:
            bar.close()
    if logits is not None and not np.all(np.isfinite(logits)):
        raise FloatingPointError("a student's logits diverged (non-finite); lower lr")
    wall = time.perf_counter() - t0
    results = []
    for g, member in enumerate(group):
        settings = {
            "method": spec.id,
            "control": control_name,
            "critic": mode,
            "lr": float(lr),
            "gamma": float(gamma),
            "seed": seed,
            "first_mdp": first_mdp,
            "n_mdps": n_mdps,
            "iterations": iterations,
            "eval_every": eval_every,
            "beta": _describe_beta(schedule) if code == M.CONTROL_MIXTURE else None,
            "distill_loss": distill_loss,
            "teacher_prob_floor": float(teacher_prob_floor),
            "metrics": list(metrics),
            "evaluation": "exact" if mc_episodes is None else f"monte_carlo:{mc_episodes}",
            **({"kl_metric": kl_metric} if kl_metric != "episode_sum" else {}),
            "chunk_size": chunk_size,
            "max_episode_steps": max_episode_steps,
            "env_id": member.env_id,
            "env_kwargs": dict(member.env_kwargs),
            "teacher_kind": member.kind,
            "teacher_temperature": member.temperature,
            "teacher_noise": member.noise,
            **({"group_size": n_group} if n_group > 1 else {}),
        }
        # In a group, the times and counts are the whole group's (its students share them).
        results.append(
            RunResult(
                method=spec.id,
                control=control_name,
                iterations=iterations,
                eval_every=eval_every,
                eval_iterations=points,
                metrics=student_metrics[g],
                teacher_metrics=teacher_metrics[g],
                env_steps=env_steps.copy(),
                mdp_indices=np.arange(first_mdp, first_mdp + n_mdps, dtype=np.int64),
                layout_seeds=np.asarray(member.layout_seeds, dtype=np.int64).copy(),
                n_indices=np.asarray(member.n_indices, dtype=np.int64).copy(),
                settings=settings,
                wall_seconds=wall,
                step_calls=run.step_calls,
                env_builds=run.env_builds,
                sub_env_steps=run.sub_env_steps,
                build_seconds=run.build_seconds,
                eval_seconds=run.eval_seconds,
                setup_seconds=run.setup_seconds,
                logits=None if logits is None else logits[g],
                critic=None if critics is None else critics[g],
                row_work={
                    "rows": int(run.row_counts[RK.COUNT_ROWS]),
                    "entries": int(run.row_counts[RK.COUNT_ENTRIES]),
                    "splits": int(run.row_counts[RK.COUNT_SPLITS]),
                },
            )
        )
    return results


def _describe_beta(schedule: Any) -> Any:
    if isinstance(schedule, M.BetaSchedule):
        return {
            "kind": schedule.kind,
            "start": schedule.start,
            "end": schedule.end,
            "decay": schedule.decay,
            "steps": schedule.steps,
        }
    return repr(schedule)


# ----------------------------------------------------------------------------- benchmark
def _reference_tables(models: Any) -> tuple[Any, ...]:
    """The vector env's outcome tables for :func:`_runner_kernels.reference_loop`."""
    from gridworld_env import _kernels as env_kernels

    b = models.n_envs
    outcomes = np.zeros(
        (b, models.n_states, models.n_rows, models.next_states.shape[-1]),
        dtype=env_kernels.OUTCOME_DTYPE,
    )
    for i in range(b):
        env_kernels.pack_outcomes(models.mdp(i), models.state_to_index[i], outcomes[i])
    initial_cum = np.cumsum(models.initial, axis=1)
    initial_cum /= initial_cum[:, -1:]
    return (
        outcomes,
        np.ascontiguousarray(models.action_rows),
        np.ascontiguousarray(models.terminal),
        initial_cum,
        np.ascontiguousarray(models.state_to_index),
    )


def _reference_run(
    tables: tuple[Any, ...],
    teachers: Teachers,
    method: str,
    iterations: int,
    seed: int,
    max_steps: int = 1000,
) -> tuple[float, int, NDArray[np.float64]]:
    """Seconds, env-steps and final logits of the plain compiled loop on ``teachers``' MDPs."""
    spec = M.parse_method(method)
    coef, codes = spec.params(None)
    b = teachers.n_mdps
    probs = np.ascontiguousarray(teachers.probs)[None]
    values = np.zeros(probs.shape[:3]) if teachers.values is None else np.array(teachers.values)
    control = M.control_code(spec.default_control)
    teacher = RK.teacher_table(
        probs, floored_log(probs), values.reshape(probs.shape[:3]), np.ones(probs.shape[:3]),
        control in M.TEACHER_CONTROLS,
    )  # fmt: skip
    n_explicit, explicit = RK.initial_explicit(probs)
    students = RK.StudentTable(
        np.zeros(probs.shape), np.zeros(probs.shape[:3]), n_explicit, explicit
    )
    critic = np.zeros(probs.shape[:3])
    steps = np.zeros(b, dtype=np.int64)
    seeds = np.random.default_rng(seed).integers(1, 2**63, size=b, dtype=np.uint64)
    work = RK.make_row_work(probs.shape[2], probs.shape[3], max_steps)
    episode = K.Episode(
        np.zeros(max_steps + 1, dtype=np.int64), np.zeros(max_steps, dtype=np.int64),
        np.zeros(max_steps),
    )  # fmt: skip
    t0 = time.perf_counter()
    K.reference_loop(
        K.EnvTables._make((*tables, max_steps)), seeds, np.zeros(1, dtype=np.uint64), iterations,
        control, 0.0, teacher, students, critic, K.MethodParams(coef, codes, 0.1, 0.99), work,
        episode, steps,
    )  # fmt: skip
    return time.perf_counter() - t0, int(steps.sum()), RK.dense_logits(students)[0]


def _grid_teachers(n_mdps: int, seed: int, env_kwargs: Mapping[str, Any]) -> tuple[Teachers, Any]:
    from distill_agents.teachers import planned_teachers

    envs: Any = gym.make_vec(
        _GRID,
        num_envs=n_mdps,
        vectorization_mode="vector_entry_point",
        observation="index",
        layout_seed=seed,
        **env_kwargs,
    )
    models = envs.models
    teachers = planned_teachers(
        models,
        env_id=_GRID,
        env_kwargs=dict(env_kwargs),
        layout_seeds=np.arange(seed, seed + n_mdps),
    )
    return teachers, models


def _peak_rss_bytes() -> int:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


#: The two readings of the KL metrics (:func:`run_distillation`'s ``kl_metric``).
KL_METRICS = ("episode_sum", "step_mean")
#: The action counts of Fig. 4's panels (:func:`bench_actions`).
ACTION_COUNTS = (4, 40, 400, 4000)
#: Fig. 4's curves (:func:`bench_actions`).
ACTION_METHODS = (
    "on_policy_distill",
    "entropy_regularised",
    "expected_entropy_regularised",
    "baseline",
)


def bench_students(
    n_mdps: int = 1000,
    iterations: int = 1000,
    seed: int = 0,
    method: str = "on_policy_distill",
    action_counts: Sequence[int] = ACTION_COUNTS,
    action_mdps: int = 20,
    action_iterations: int = 2000,
    action_methods: Sequence[str] = ACTION_METHODS,
) -> dict[str, Any]:
    """The student runner against a plain compiled loop, on the same MDPs and teachers.

    On ``n_mdps`` random 20x20 grids with optimal (planned) teachers, trains ``method`` for
    ``iterations`` episodes per MDP with :func:`run_distillation` (evaluating only at the start
    and the end) and with :func:`distill_agents._runner_kernels.reference_loop` (one numba
    function stepping the vector env's outcome tables and applying the same update kernel),
    and with the runner's compiled loop (``loop="compiled"``, the same students), and reports the
    rates in env-steps per second (the steps of the MDPs' episodes; idle and
    autoreset steps of the vector env are reported apart). On the same MDPs it times
    :func:`distill_agents.yardsticks.q_learning_loop` for ``iterations`` episodes on all numba
    threads (the yardstick of ``reproduce fig3``'s effective rate). Then
    :func:`bench_actions` with the ``action_*`` arguments, and the process's peak resident
    memory.

    Returns:
        A dict of measurements (seconds, steps, rates, ``ratio`` runner/reference,
        ``extrapolated_seconds_30k`` for 1000 MDPs x 30 000 iterations, scaled linearly: a
        rough figure, since episodes get shorter while the students learn; ``q_learning``;
        ``actions``: the rows of :func:`bench_actions`).
    """
    n_mdps = check_int("n_mdps", n_mdps, 1)
    iterations = check_int("iterations", iterations, 1)
    out: dict[str, Any] = {"n_mdps": n_mdps, "iterations": iterations, "method": method}
    t0 = time.perf_counter()
    teachers, models = _grid_teachers(n_mdps, seed, {})
    out["teacher_seconds"] = time.perf_counter() - t0
    # Warm-up: compile the kernels on a tiny run (compilation is not what is measured).
    small = teachers.subset(0, 2)
    run_distillation(small, method, iterations=3, eval_every=3, seed=seed)
    tables = _reference_tables(models)
    outcomes, action_rows, terminal, initial_cum, key_of_state = tables
    head = (outcomes[:2], action_rows, terminal[:2], initial_cum[:2], key_of_state[:2])
    _reference_run(head, small, method, 3, seed)

    result = run_distillation(
        teachers, method, iterations=iterations, eval_every=iterations, seed=seed
    )
    runner_steps = int(result.env_steps.sum())
    train_s = result.train_seconds
    out.update(
        runner_seconds=result.wall_seconds,
        runner_env_steps=runner_steps,
        runner_steps_per_s=runner_steps / result.wall_seconds,
        runner_step_calls=result.step_calls,
        runner_sub_env_steps=result.sub_env_steps,
        runner_env_builds=result.env_builds,
        runner_build_seconds=result.build_seconds,
        runner_eval_seconds=result.eval_seconds,
        runner_train_seconds=train_s,
        runner_train_steps_per_s=runner_steps / train_s,
        final_return=float(np.mean(result.metrics["return"][:, -1])),
        teacher_return=float(np.mean(result.teacher_metrics["return"])),
    )
    compiled = run_distillation(
        teachers, method, iterations=iterations, eval_every=iterations, seed=seed, loop="compiled"
    )
    compiled_train = compiled.train_seconds
    out.update(
        compiled_seconds=compiled.wall_seconds,
        compiled_train_seconds=compiled_train,
        compiled_steps_per_s=runner_steps / compiled.wall_seconds,
        compiled_train_steps_per_s=runner_steps / compiled_train,
        compiled_same_students=bool(
            np.array_equal(compiled.env_steps, result.env_steps)
            and np.array_equal(compiled.metrics["return"], result.metrics["return"])
        ),
    )
    ref_seconds, ref_steps, ref_logits = _reference_run(tables, teachers, method, iterations, seed)
    ref_return = _Evaluator(models, teachers.probs, ("return",)).students(
        np.arange(n_mdps), RK.dense_table(ref_logits)
    )["return"]
    out.update(
        reference_seconds=ref_seconds,
        reference_env_steps=ref_steps,
        reference_final_return=float(np.mean(ref_return)),
        reference_steps_per_s=ref_steps / ref_seconds,
    )
    out["ratio"] = out["runner_steps_per_s"] / out["reference_steps_per_s"]
    out["train_ratio"] = out["runner_train_steps_per_s"] / out["reference_steps_per_s"]
    out["compiled_ratio"] = out["compiled_steps_per_s"] / out["reference_steps_per_s"]
    out["compiled_train_ratio"] = out["compiled_train_steps_per_s"] / out["reference_steps_per_s"]
    # Training scales with MDPs x iterations; building the envs and the start/end evaluations
    # with MDPs only.
    per_mdp = 1000 / n_mdps
    scale = per_mdp * (30_000 / iterations)
    out["extrapolated_seconds_30k"] = {
        "runner": train_s * scale + (result.build_seconds + result.eval_seconds) * per_mdp,
        "reference": ref_seconds * scale,
    }
    from distill_agents import yardsticks

    out["q_learning"] = yardsticks.q_learning_rate(
        K.EnvTables._make((*tables, MAX_EPISODE_STEPS)),
        int(np.max(teachers.n_indices)),
        int(teachers.probs.shape[-1]),
        iterations,
        seed=seed,
        lr=0.01,
    )
    out["actions"] = {
        "n_mdps": action_mdps,
        "iterations": action_iterations,
        "rows": (
            bench_actions(action_counts, action_mdps, action_iterations, action_methods, seed)
            if action_mdps > 0
            else []
        ),
    }
    out["peak_rss_bytes"] = _peak_rss_bytes()
    return out


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
    (planned) teachers, ``iterations`` episodes of each method with ``loop="compiled"``
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
        teachers, _ = _grid_teachers(n_mdps, seed, {"n_actions": int(n_actions)})
        for method in methods:
            kw: dict[str, Any] = {"eval_every": iterations, "seed": seed, "loop": "compiled"}
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
