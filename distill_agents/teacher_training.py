"""Train teachers over many MDPs at once through the native vector env's ``reset``/``step``.

:func:`train_q_learning` (A.4) and :func:`train_a2c` (A.3) learn one table per MDP; every
transition comes from ``envs.step`` of a :mod:`gridworld_env.vector` env with table-index
observations, and one compiled agent kernel (:mod:`distill_agents._teacher_kernels`) per
``step`` learns from the ``B`` transitions and picks the next ``B`` actions.
:func:`make_teachers` turns a kind (``q_learning``, ``a2c``, ``optimal``, ``adversarial``)
into :class:`~distill_agents.teachers.Teachers` for ``n_mdps`` MDPs, chunk by chunk, with the
exact returns the ``teach`` command writes.

Episode accounting and finished MDPs
    Every MDP learns from exactly ``episodes`` complete episodes. MDPs need very different
    numbers of steps for them (1000 random 20x20 grids, 30 000 episodes: 0.26 M steps on
    average, 3 M for the slowest, whose goal is out of reach), and a vector env steps all its
    sub-envs, so simply masking finished sub-envs would spend ~90% of the steps on finished
    MDPs and make the slowest MDP the critical path (3 M ``step`` calls, ~2 minutes). Training
    therefore runs in *phases*. Phase 0 has one sub-env (*actor*) per MDP: plain sequential
    Q-learning (or A2C); an actor whose MDP has started all its episodes goes idle (still
    stepped, never learned from). Once fewer than :data:`DRAIN_BELOW` of the actors are busy,
    the trainer checks every :data:`PLAN_EVERY` calls whether a new phase is cheaper than going on,
    under a fixed cost model (:data:`CALL_COST` per ``step`` call, one unit per actor-step,
    :data:`BUILD_COST` per sub-env built; deterministic, so results stay reproducible). If so,
    it starts no new episodes, lets the running ones end (*drain*), and starts a vector env of
    the MDPs with episodes left, taken from the first one by index
    (:meth:`~gridworld_env.vector.TabularVectorEnv.select`: no model is built again), giving
    MDP ``g`` ``k_g`` actors: proportional to its expected
    remaining steps, at most ``max_actors`` and at most its remaining episodes. Actors of one
    MDP share its table: their episodes overlap in time and their updates interleave in actor
    order (like synchronous parallel actors); ``max_actors=1`` keeps every MDP strictly
    sequential (phases then only drop the finished MDPs). Every episode is complete: none is
    cut by a rebuild.

Randomness, chunks and worker processes
    :func:`make_teachers` cuts the MDPs into chunks of consecutive MDPs (at most
    :data:`MAX_CHUNK`, fewer if ``[N, A]`` tables would exceed :data:`CHUNK_BUDGET_BYTES`),
    each trained in its own vector env, and spreads the chunks over worker processes (one
    numba thread each; the kernels run serially by default, see :data:`THREAD_MIN_ACTORS`:
    independent processes use the cores far better than OpenMP regions that synchronise twice
    per ``step`` and stall when other processes compete for the CPU). The chunk starting at
    MDP ``c`` trains with ``SeedSequence(seed, spawn_key=(0, c))``; within it the vector env of
    phase ``p`` is reset with a seed from key ``(0, p)`` and the agent's uniforms (one per actor
    per step, drawn in blocks) come from a generator on key ``(1,)``. The vector env draws its
    dynamics for the whole batch from one generator, so an MDP's teacher depends on which MDPs
    share its chunk: results are a deterministic function of (seed, env, n_mdps, chunk size,
    settings), identical across runs, processes, worker counts and thread counts, but *not*
    invariant to the chunk size, which is therefore fixed by constants (not the machine) and
    recorded in the teachers' settings. Optimal, adversarial and noisy teachers depend on each
    MDP alone.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numba
import numpy as np
from numpy.typing import NDArray

import gridworld_env
from distill_agents import _teacher_kernels as kernels
from distill_agents import planning
from distill_agents.teachers import (
    Teachers,
    a2c_teachers,
    acting_indices,
    noisy_teachers,
    planned_teachers,
    q_learning_teachers,
)
from gridworld_env.base import check_int

__all__ = [
    "CHUNK_BUDGET_BYTES",
    "DEFAULT_EPISODES",
    "DEFAULT_MAX_ACTORS",
    "KINDS",
    "A2CResult",
    "QLearningResult",
    "TeachRun",
    "TeacherEnv",
    "TrainingStats",
    "bench_q_learning",
    "make_teachers",
    "train_a2c",
    "train_q_learning",
]

del gridworld_env  # imported to register the environment ids

#: Teacher kinds :func:`make_teachers` builds.
KINDS = ("q_learning", "a2c", "optimal", "adversarial")
#: Training episodes per MDP (paper A.4: 30k).
DEFAULT_EPISODES = 30_000
#: Largest number of actors (sub-envs) one MDP gets in the later training phases.
DEFAULT_MAX_ACTORS = 16
#: Numba threads inside one training loop (the vector env's and the agent's kernels) from this
#: many actors on; ``None``: never. Off because under CPU contention (other processes on the
#: machine) OpenMP parallel regions stall: measured 2.4 ms instead of ~50 us per ``step`` of
#: 600 actors. Training uses cores through worker processes instead (one chunk each).
THREAD_MIN_ACTORS: int | None = None
#: Memory budget of one chunk of MDPs; a constant (not the machine's memory) because the chunk
#: size is part of a training run's identity (see the module docstring).
CHUNK_BUDGET_BYTES = 4e9
#: Most MDPs per chunk: chunks are trained in parallel worker processes (1000 MDPs: two chunks,
#: one per core of a two-core machine), and a chunk of 500 keeps the per-``step`` Python cost
#: small next to the work on its sub-envs. A constant, for the same reason as above.
MAX_CHUNK = 500
#: ``[S, A]`` float64 tables per MDP assumed when sizing chunks: trained kinds (agent tables,
#: teacher probabilities, Q values and a temporary) ...
TRAINED_TABLES_PER_MDP = 4
#: ... and planned kinds (value iteration's Q, the state policy, index averages, ...).
PLANNED_TABLES_PER_MDP = 8
#: Memory for the state policies of one batch of exact evaluations.
EVAL_BUDGET_BYTES = 1e9
#: A phase considers draining (starting no new episodes, then rebuilding) once fewer than this
#: share of its actors are busy ...
DRAIN_BELOW = 0.7
#: ... checking every this many ``step`` calls whether a new phase is cheaper than going on.
PLAN_EVERY = 64
#: Cost model of the phase scheduler, in actor-steps (one sub-env stepped and learned from,
#: set when that took about 80 ns in a one-thread worker; now about 50 ns): the fixed cost of
#: one ``step`` call (Python, output arrays, two kernel dispatches; about 7 us) ...
CALL_COST = 100.0
#: ... and of one sub-env of a new phase (set when phases were built from their layouts,
#: about 1.6 ms per sub-env; ``select`` now takes about 0.3 ms). The model only decides *when*
#: to rebuild; it is deterministic (no timings), so results stay reproducible. The constants
#: are kept as they were: they fix the schedule, hence the trained tables.
BUILD_COST = 20_000.0
#: Uniforms are drawn in blocks of at most this many rows ...
_UNIFORM_ROWS = 64
#: ... and this many values.
_UNIFORM_VALUES = 65_536
#: Progress is reported every this many ``step`` calls.
_PROGRESS_EVERY = 512
_TRAIN_STREAM = 0
_ENV_IDS = ("DistillGrid-v0", "DistillChain-v0", "DistillOscillation-v0")


# ----------------------------------------------------------------------------- environments
class TeacherEnv:
    """How to build vector envs whose sub-envs are given MDPs of one family.

    MDP ``i`` of ``DistillGrid-v0`` has ``layout_seed = layout_base + i``, unless the env kwargs
    fix the layout (a ``layout`` map or an integer ``layout_seed``): then every MDP is that one
    layout. ``DistillChain-v0`` and ``DistillOscillation-v0`` have one MDP for every index.
    Observations are table indices (``"index"``, or ``"partial_index"`` for the grid's
    ``observation="partial"``), numbered as ``TableIndexWrapper`` numbers the single env's.

    Args:
        env_id: ``DistillGrid-v0``, ``DistillChain-v0`` or ``DistillOscillation-v0``.
        env_kwargs: keyword arguments of the single env (JSON values).
        layout_base: layout seed of MDP 0 when the kwargs do not fix the layout.
    """

    def __init__(
        self,
        env_id: str = "DistillGrid-v0",
        env_kwargs: Mapping[str, Any] | None = None,
        layout_base: int = 0,
    ) -> None:
        if env_id not in _ENV_IDS:
            raise ValueError(f"env_id must be one of {_ENV_IDS}, got {env_id!r}")
        kwargs = dict(env_kwargs or {})
        for key in ("num_envs", "layouts", "render_mode", "max_episode_steps"):
            if key in kwargs:
                raise ValueError(f"env_kwargs must not set {key!r} (the trainers set it)")
        if isinstance(layout_base, bool) or not isinstance(layout_base, (int, np.integer)):
            raise ValueError(f"layout_base must be an integer, got {layout_base!r}")
        self.env_id = env_id
        self.env_kwargs = kwargs
        self.grid = env_id == "DistillGrid-v0"
        self._vector_kwargs = dict(kwargs)
        self.layout_base: int | None = None
        self._shared_layout: tuple[str, ...] | None = None
        self._layouts: dict[int, tuple[str, ...]] = {}
        if self.grid:
            observation = kwargs.get("observation", "full")
            if observation not in ("full", "partial"):
                raise ValueError(
                    f"env_kwargs['observation'] must be 'full' or 'partial', got {observation!r}"
                )
            self._vector_kwargs["observation"] = (
                "index" if observation == "full" else "partial_index"
            )
            seed = kwargs.get("layout_seed")
            if "layout_seed" in kwargs and (
                isinstance(seed, bool) or not isinstance(seed, int) or seed < 0
            ):
                raise ValueError(
                    "env_kwargs['layout_seed'] must be a non-negative integer (teachers need "
                    f"fixed layouts), got {seed!r}"
                )
            if "layout" in kwargs or "layout_seed" in kwargs:
                single = gym.make(env_id, **kwargs).unwrapped
                self._shared_layout = tuple(single.layout)  # type: ignore[attr-defined]
                self._vector_kwargs.pop("layout_seed", None)
                self._vector_kwargs["layout"] = list(self._shared_layout)
            else:
                if layout_base < 0:
                    raise ValueError(f"layout_base must be >= 0, got {layout_base}")
                self.layout_base = int(layout_base)
        else:
            if "observation" in kwargs:
                raise ValueError(f"env_kwargs of {env_id} must not set 'observation'")
            self._vector_kwargs["observation"] = "index"
        # Build one single env now so that bad kwargs fail early with the env's own message.
        self.probe = gym.make(env_id, **self.single_kwargs(0)).unwrapped

    def layout_seed(self, mdp: int) -> int:
        """Layout seed of MDP ``mdp`` (-1 if the MDPs have none of their own)."""
        if self.layout_base is None:
            return int(self.env_kwargs.get("layout_seed", -1))
        return self.layout_base + int(mdp)

    def single_kwargs(self, mdp: int) -> dict[str, Any]:
        """Keyword arguments of the single env of MDP ``mdp``."""
        kwargs = dict(self.env_kwargs)
        if self.layout_base is not None:
            kwargs["layout_seed"] = self.layout_base + int(mdp)
        return kwargs

    @property
    def n_states(self) -> int:
        """States per MDP."""
        return int(self.probe.mdp.n_states)  # type: ignore[attr-defined]

    @property
    def n_actions(self) -> int:
        """Actions per MDP."""
        return int(self.probe.mdp.n_actions)  # type: ignore[attr-defined]

    @property
    def observation_size(self) -> int:
        """Length of one raw observation (1, or ``view_size**2`` for partial views)."""
        table = np.asarray(self.probe.observation_of_state)  # type: ignore[attr-defined]
        return 1 if table.ndim == 1 else int(table.shape[1])

    def make_vec(self, mdps: Sequence[int], parallel: bool = False) -> Any:
        """A vector env whose sub-env ``j`` is MDP ``mdps[j]`` (table-index observations).

        ``parallel``: step on numba's threads (the vector env's ``parallel``; off by default,
        see :data:`THREAD_MIN_ACTORS`).
        """
        mdps = [int(m) for m in mdps]
        kwargs = dict(self._vector_kwargs)
        kwargs["parallel"] = bool(parallel)
        if self.layout_base is not None:
            first = mdps[0]
            if mdps != list(range(first, first + len(mdps))):
                missing = [m for m in dict.fromkeys(mdps) if m not in self._layouts]
                if missing:
                    self._remember_layouts(missing)
                kwargs["layouts"] = [list(self._layouts[m]) for m in mdps]
            else:
                kwargs["layout_seed"] = self.layout_base + first
        return gym.make_vec(
            self.env_id, num_envs=len(mdps), vectorization_mode="vector_entry_point", **kwargs
        )

    def _remember_layouts(self, mdps: Sequence[int]) -> None:
        assert self.layout_base is not None
        for m in mdps:
            single = gym.make(self.env_id, **self.single_kwargs(m)).unwrapped
            self._layouts[m] = tuple(single.layout)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainingStats:
    """What a training run cost.

    Attributes:
        env_steps: env-steps taken (``B`` per ``step`` call, autoreset and idle actors included).
        updates: transitions learned from (env-steps with an update).
        step_calls: ``step`` calls.
        phases: training phases (vector envs built).
        seconds: wall time.
        build_seconds: part of ``seconds`` spent building the vector envs of later phases.
        phase_log: per phase ``(actors, MDPs, step calls, seconds)``.
    """

    env_steps: int
    updates: int
    step_calls: int
    phases: int
    seconds: float
    build_seconds: float = 0.0
    phase_log: tuple[tuple[int, int, int, float], ...] = ()


class QLearningResult(NamedTuple):
    """Output of :func:`train_q_learning`.

    Attributes:
        q_values: ``[G, N, A]`` float64 Q tables over table indices.
        n_indices: ``[G]`` int64 table indices per MDP.
        steps: ``[G]`` int64 transitions learned from per MDP.
        episodes: ``[G]`` int64 episodes learned from per MDP (all equal to the request).
        stats: :class:`TrainingStats`.
        models: the MDPs' stacked exact models (:class:`gridworld_env.vector.StackedModels`).
    """

    q_values: NDArray[np.float64]
    n_indices: NDArray[np.int64]
    steps: NDArray[np.int64]
    episodes: NDArray[np.int64]
    stats: TrainingStats
    models: Any


class A2CResult(NamedTuple):
    """Output of :func:`train_a2c`.

    Attributes:
        logits: ``[G, N, A]`` float64 actor logits.
        values: ``[G, N]`` float64 critic.
        n_indices: ``[G]`` int64 table indices per MDP.
        steps: ``[G]`` int64 transitions learned from per MDP.
        episodes: ``[G]`` int64 episodes learned from per MDP (all equal to the request).
        stats: :class:`TrainingStats`.
        models: the MDPs' stacked exact models (:class:`gridworld_env.vector.StackedModels`).
    """

    logits: NDArray[np.float64]
    values: NDArray[np.float64]
    n_indices: NDArray[np.int64]
    steps: NDArray[np.int64]
    episodes: NDArray[np.int64]
    stats: TrainingStats
    models: Any


def _seed_sequence(seed: Any, name: str = "seed") -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer or a SeedSequence, got {seed!r}")
    return np.random.SeedSequence(int(seed))


def _child(parent: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """The child of ``parent`` with ``spawn_key + key`` (stateless, unlike ``spawn``)."""
    return np.random.SeedSequence(parent.entropy, spawn_key=(*parent.spawn_key, *key))


def _check_count(value: Any, name: str, low: int = 1) -> int:
    return check_int(name, value, low)


def _check_rate(value: Any, name: str, low: float, high: float, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not (low < v <= high if open_low else low <= v <= high):
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
    return v


def _thread_bounds(group: NDArray[np.int64], n_chunks: int) -> NDArray[np.int64]:
    """``[C + 1]`` boundaries of ``C <= n_chunks`` actor ranges that never split an MDP."""
    b = group.shape[0]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    cuts = [0]
    for c in range(1, n_chunks):
        at = int(np.searchsorted(starts, c * b // n_chunks))
        cut = int(starts[at]) if at < starts.size else b
        if cut > cuts[-1]:
            cuts.append(cut)
    if cuts[-1] < b:
        cuts.append(b)
    return np.array(cuts, dtype=np.int64)


def _remaining_work(
    completed: NDArray[np.int64], steps: NDArray[np.int64], n_episodes: int
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """MDPs with episodes left, their episodes left and their expected remaining steps."""
    left = n_episodes - completed
    live = np.flatnonzero(left > 0)
    done = completed[live]
    overall = max(float(steps.sum()), 1.0) / max(int(completed.sum()), 1)
    mean_length = np.maximum(np.where(done > 0, steps[live] / np.maximum(done, 1), overall), 1.0)
    work = (left[live] * mean_length).astype(np.float64)
    return live.astype(np.int64), left[live].astype(np.float64), work


def _allocate(
    live: NDArray[np.int64],
    left: NDArray[np.float64],
    work: NDArray[np.float64],
    n_actors: int,
    max_actors: int,
) -> NDArray[np.int64]:
    """``[B]`` MDP of each actor for a phase (contiguous, ascending MDP order).

    MDP ``g`` with episodes left gets ``k_g = clip(floor(n_actors * w_g / sum w), 1,
    min(max_actors, episodes left))`` actors, ``w_g`` its expected remaining steps.
    """
    share = np.floor(n_actors * work / work.sum())
    k = np.clip(share, 1, np.minimum(max_actors, left)).astype(np.int64)
    return np.repeat(live, k)


def _plan(
    completed: NDArray[np.int64],
    steps: NDArray[np.int64],
    n_episodes: int,
    n_mdps: int,
    max_actors: int,
) -> tuple[NDArray[np.int64], float]:
    """The cheapest next phase under the cost model: ``(group, cost in actor-steps)``.

    Candidates give the live MDPs ``n_live * 2**m`` actors in total (up to ``n_mdps``); a
    phase costs :data:`BUILD_COST` per actor plus, per ``step`` call, :data:`CALL_COST` and one
    unit per actor, for as many calls as its slowest MDP needs (``w_g / k_g``).
    """
    live, left, work = _remaining_work(completed, steps, n_episodes)
    best: tuple[NDArray[np.int64], float] | None = None
    target = live.size
    while True:
        group = _allocate(live, left, work, target, max_actors)
        k = np.bincount(group, minlength=n_mdps)[live]
        cost = BUILD_COST * group.size + float((work / k).max()) * (CALL_COST + group.size)
        if best is None or cost < best[1]:
            best = (group, cost)
        if target >= n_mdps or max_actors == 1:
            return best
        target = min(2 * target, n_mdps)


def _keep_cost(
    completed: NDArray[np.int64],
    steps: NDArray[np.int64],
    n_episodes: int,
    group: NDArray[np.int64],
    n_mdps: int,
) -> tuple[float, float]:
    """Cost of finishing with the current actors, and of draining them first (actor-steps)."""
    live, _, work = _remaining_work(completed, steps, n_episodes)
    k = np.maximum(np.bincount(group, minlength=n_mdps)[live], 1)
    per_call = CALL_COST + group.size
    drain_calls = float((work / np.maximum(n_episodes - completed[live], 1)).max())
    return float((work / k).max()) * per_call, drain_calls * per_call


class _Agent:
    """Agent tables and its kernels (see :func:`distill_agents._teacher_kernels.q_step`).

    The kernels are called as ``kernel(bounds, group, *tables, obs, actions, rewards,
    next_obs, terminated, truncated, status, started, completed, steps, n_episodes, allow,
    u_row, *extras, counts)``.
    """

    n_counts = 2
    serial: Callable[..., Any]
    parallel: Callable[..., Any]

    def tables(self) -> tuple[Any, ...]:
        """The arrays the kernel learns into."""
        raise NotImplementedError

    def extras(self, n_actors: int, envs: Any) -> tuple[Any, ...]:
        """Arguments after ``u_row`` for a phase of ``n_actors`` actors."""
        raise NotImplementedError

    def check(self, counts: NDArray[np.int64]) -> None:
        """Raise if the kernel reported a problem."""


class _QAgent(_Agent):
    serial = staticmethod(kernels.q_step)
    parallel = staticmethod(kernels.q_step_parallel)

    def __init__(
        self, n_mdps: int, n_index: int, n_actions: int, lr: float, gamma: float, epsilon: float
    ) -> None:
        self.q_values = np.zeros((n_mdps, n_index, n_actions))
        self.lr, self.gamma, self.epsilon = lr, gamma, epsilon

    def tables(self) -> tuple[Any, ...]:
        return (self.q_values,)

    def extras(self, n_actors: int, envs: Any) -> tuple[Any, ...]:
        return (self.epsilon, self.lr, self.gamma)


class _A2CAgent(_Agent):
    n_counts = 3
    serial = staticmethod(kernels.a2c_step)
    parallel = staticmethod(kernels.a2c_step_parallel)

    def __init__(
        self,
        n_mdps: int,
        n_index: int,
        n_actions: int,
        lr: float,
        critic_lr: float,
        gamma: float,
        mc: bool,
    ) -> None:
        self.logits = np.zeros((n_mdps, n_index, n_actions))
        self.values = np.zeros((n_mdps, n_index))
        self.lr, self.critic_lr, self.gamma, self.mc = lr, critic_lr, gamma, mc

    def tables(self) -> tuple[Any, ...]:
        return (self.logits, self.values)

    def extras(self, n_actors: int, envs: Any) -> tuple[Any, ...]:
        limit = getattr(envs, "max_episode_steps", None)
        if limit is None:
            raise ValueError(
                "the A2C teacher needs a time limit (max_episode_steps) to size its episode buffers"
            )
        return (
            np.zeros((n_actors, limit + 1), dtype=np.int64),  # observations
            np.zeros((n_actors, limit), dtype=np.int64),  # actions
            np.zeros((n_actors, limit)),  # rewards
            np.zeros(n_actors, dtype=np.int64),  # lengths
            self.lr,
            self.critic_lr,
            self.gamma,
            self.mc,
        )

    def check(self, counts: NDArray[np.int64]) -> None:
        if counts[-1, 2]:
            raise RuntimeError("an episode overflowed the A2C episode buffers")


def _run(
    env: TeacherEnv,
    mdps: Sequence[int],
    first_envs: Any,
    agent: _Agent,
    n_episodes: int,
    seed: np.random.SeedSequence,
    max_actors: int,
    progress: Callable[[int], None] | None,
) -> tuple[NDArray[np.int64], NDArray[np.int64], TrainingStats]:
    """Train ``agent`` on the MDPs ``mdps`` in phases (see the module docstring).

    Returns:
        ``(steps, episodes, stats)``: transitions learned from and episodes completed per MDP.
    """
    t0 = time.perf_counter()
    n_mdps = len(mdps)
    started = np.zeros(n_mdps, dtype=np.int64)
    completed = np.zeros(n_mdps, dtype=np.int64)
    steps = np.zeros(n_mdps, dtype=np.int64)
    rng = np.random.default_rng(_child(seed, 1))
    tables = agent.tables()
    env_steps = calls = 0
    phase = 0
    reported = 0
    build_s = 0.0
    log: list[tuple[int, int, int, float]] = []
    n_threads = max(1, numba.get_num_threads())
    while (completed < n_episodes).any():
        if phase == 0:
            group = np.arange(n_mdps, dtype=np.int64)
            envs = first_envs
        else:
            group, _ = _plan(completed, steps, n_episodes, n_mdps, max_actors)
            t_build = time.perf_counter()
            # The phase's actors are sub-envs of the first vector env taken by index: no model
            # is built again (same dynamics as building them from their layouts).
            envs = first_envs.select(group, parallel=_use_threads(group.size))
            build_s += time.perf_counter() - t_build
        n_actors = int(group.size)
        t_phase = time.perf_counter()
        extras = agent.extras(n_actors, envs)
        parallel = _use_threads(n_actors)
        kernel = agent.parallel if parallel else agent.serial
        bounds = _thread_bounds(group, n_threads if parallel else 1)
        counts = np.zeros((bounds.size, agent.n_counts), dtype=np.int64)
        block = np.empty((max(1, min(_UNIFORM_ROWS, _UNIFORM_VALUES // n_actors)), n_actors))
        u_rows = list(block)  # views of the block's rows (refilled in place)
        n_rows = len(u_rows)
        reset_seed = int(_child(seed, 0, phase).generate_state(1, np.uint64)[0] >> np.uint64(1))
        obs, _ = envs.reset(seed=reset_seed)
        obs = np.array(obs, dtype=np.int64)
        actions = np.zeros(n_actors, dtype=np.int64)
        status = np.full(n_actors, kernels.ENDED, dtype=np.int8)
        flags = np.zeros(n_actors, dtype=bool)
        rng.random(out=block)
        allow = True
        # Every actor starts an episode at its reset observation (nothing to learn yet). The
        # kernels return the number of busy actors (-1: a problem, which check raises).
        busy = kernel(bounds, group, *tables, obs, actions, np.zeros(n_actors), obs.copy(),
                      flags, flags, status, started, completed, steps, n_episodes, allow,
                      u_rows[0], *extras, counts)  # fmt: skip
        if busy < 0:
            agent.check(counts)
        row = 1
        phase_calls = 0
        drain_below = DRAIN_BELOW * n_actors
        step = envs.step
        while busy > 0:
            if (
                allow
                and busy < drain_below
                and phase_calls % PLAN_EVERY == 0
                and _should_rebuild(completed, steps, n_episodes, group, n_mdps, max_actors)
            ):
                allow = False  # drain: let the running episodes end, start no new ones
            next_obs, rewards, terminated, truncated, _ = step(actions)
            if row == n_rows:
                rng.random(out=block)
                row = 0
            busy = kernel(bounds, group, *tables, obs, actions, rewards, next_obs, terminated,
                          truncated, status, started, completed, steps, n_episodes, allow,
                          u_rows[row], *extras, counts)  # fmt: skip
            if busy < 0:
                agent.check(counts)
            row += 1
            phase_calls += 1
            if progress is not None and phase_calls % _PROGRESS_EVERY == 0:
                done = int(completed.sum())
                progress(done - reported)
                reported = done
        calls += phase_calls
        env_steps += phase_calls * n_actors
        log.append(
            (n_actors, int(np.unique(group).size), phase_calls, time.perf_counter() - t_phase)
        )
        if envs is not first_envs:
            envs.close()
        phase += 1
    first_envs.close()
    if progress is not None:
        progress(int(completed.sum()) - reported)
    updates = int(steps.sum())  # every learned transition is counted in its MDP's steps
    stats = TrainingStats(
        env_steps, updates, calls, phase, time.perf_counter() - t0, build_s, tuple(log)
    )
    return steps, completed, stats


def _should_rebuild(
    completed: NDArray[np.int64],
    steps: NDArray[np.int64],
    n_episodes: int,
    group: NDArray[np.int64],
    n_mdps: int,
    max_actors: int,
) -> bool:
    """Whether draining and a new phase are cheaper than finishing with the current actors."""
    keep, drain = _keep_cost(completed, steps, n_episodes, group, n_mdps)
    _, rebuild = _plan(completed, steps, n_episodes, n_mdps, max_actors)
    return drain + rebuild < keep


def _use_threads(n_actors: int) -> bool:
    """Whether a loop of ``n_actors`` actors runs its kernels on numba's threads."""
    return (
        THREAD_MIN_ACTORS is not None
        and n_actors >= THREAD_MIN_ACTORS
        and numba.get_num_threads() > 1
    )


def _prepare(
    env: TeacherEnv | None, mdps: Sequence[int] | int
) -> tuple[TeacherEnv, list[int], Any, Any]:
    env = TeacherEnv() if env is None else env
    if isinstance(mdps, (int, np.integer)) and not isinstance(mdps, bool):
        mdps = list(range(_check_count(mdps, "mdps")))
    mdps = [int(m) for m in mdps]  # type: ignore[union-attr]
    if not mdps or min(mdps) < 0 or len(set(mdps)) != len(mdps):
        raise ValueError("mdps must be a count >= 1 or a list of distinct MDP indices >= 0")
    envs = env.make_vec(mdps, parallel=_use_threads(len(mdps)))
    return env, mdps, envs, envs.models


def train_q_learning(
    env: TeacherEnv | None = None,
    mdps: Sequence[int] | int = 1,
    *,
    episodes: int = DEFAULT_EPISODES,
    lr: float = 0.01,
    gamma: float = 0.99,
    epsilon: float = 0.1,
    seed: int | np.random.SeedSequence = 0,
    max_actors: int = DEFAULT_MAX_ACTORS,
    progress: Callable[[int], None] | None = None,
) -> QLearningResult:
    """Tabular Q-learning (paper A.4) on many MDPs at once, through the vector env.

    ``Q(o, a) <- (1 - lr) Q(o, a) + lr (r + gamma max_a' Q(o', a'))`` after every step, no
    bootstrap from a termination (a time-limit truncation bootstraps), ``Q = 0`` at the start,
    epsilon-greedy behaviour with greedy ties split uniformly; each MDP learns from exactly
    ``episodes`` complete episodes (see the module docstring for phases and actors).

    Args:
        env: the MDP family (default: ``TeacherEnv()``, random 20x20 grids, layout seed ``i``).
        mdps: number of MDPs (``0 .. mdps-1``) or a list of MDP indices.
        episodes: episodes per MDP.
        lr: learning rate in (0, 1].
        gamma: discount in [0, 1].
        epsilon: exploration probability in [0, 1].
        seed: seed (or ``SeedSequence``) of the training randomness.
        max_actors: most sub-envs one MDP gets in the later phases (1: strictly sequential).
        progress: called with the number of newly completed episodes now and then.

    Returns:
        :class:`QLearningResult`.
    """
    episodes = _check_count(episodes, "episodes")
    lr = _check_rate(lr, "lr", 0.0, 1.0, open_low=True)
    gamma = _check_rate(gamma, "gamma", 0.0, 1.0)
    epsilon = _check_rate(epsilon, "epsilon", 0.0, 1.0)
    max_actors = _check_count(max_actors, "max_actors")
    seq = _seed_sequence(seed)
    env, mdps, envs, models = _prepare(env, mdps)
    n_index = int(models.n_indices.max())
    agent = _QAgent(len(mdps), n_index, models.n_actions, lr, gamma, epsilon)
    steps, done, stats = _run(env, mdps, envs, agent, episodes, seq, max_actors, progress)
    return QLearningResult(agent.q_values, np.array(models.n_indices), steps, done, stats, models)


def train_a2c(
    env: TeacherEnv | None = None,
    mdps: Sequence[int] | int = 1,
    *,
    episodes: int = DEFAULT_EPISODES,
    lr: float = 0.1,
    critic_lr: float = 0.1,
    gamma: float = 0.99,
    variant: str = "mc",
    seed: int | np.random.SeedSequence = 0,
    max_actors: int = DEFAULT_MAX_ACTORS,
    progress: Callable[[int], None] | None = None,
) -> A2CResult:
    """Tabular actor-critic (paper A.3) trained on the task reward, many MDPs at once.

    Softmax actor ``pi = softmax(theta[o])`` and critic ``V[o]``, all zero at the start; one
    episode is sampled with the actor, then the episode's steps update both in order
    (``variant="mc"``: advantage ``G_t - V(o_t)``, critic target ``G_t``; ``"td"``: advantage
    ``r_t + gamma V(o_{t+1}) - V(o_t)``, ``V = 0`` after a termination; see
    :func:`distill_agents._teacher_kernels._a2c_update`).

    Args:
        env: the MDP family (default ``TeacherEnv()``).
        mdps: number of MDPs or a list of MDP indices.
        episodes: episodes per MDP.
        lr: actor learning rate (> 0).
        critic_lr: critic learning rate in (0, 1].
        gamma: discount in [0, 1].
        variant: ``"mc"`` or ``"td"``.
        seed: seed (or ``SeedSequence``) of the training randomness.
        max_actors: most sub-envs one MDP gets in the later phases (1: strictly sequential).
        progress: called with the number of newly completed episodes now and then.

    Returns:
        :class:`A2CResult`.
    """
    episodes = _check_count(episodes, "episodes")
    if (
        isinstance(lr, bool)
        or not isinstance(lr, (int, float, np.integer, np.floating))
        or not (lr > 0 and math.isfinite(lr))
    ):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    critic_lr = _check_rate(critic_lr, "critic_lr", 0.0, 1.0, open_low=True)
    gamma = _check_rate(gamma, "gamma", 0.0, 1.0)
    if variant not in ("mc", "td"):
        raise ValueError(f"variant must be 'mc' or 'td', got {variant!r}")
    max_actors = _check_count(max_actors, "max_actors")
    seq = _seed_sequence(seed)
    env, mdps, envs, models = _prepare(env, mdps)
    n_index = int(models.n_indices.max())
    agent = _A2CAgent(
        len(mdps), n_index, models.n_actions, float(lr), critic_lr, gamma, variant == "mc"
    )
    steps, done, stats = _run(env, mdps, envs, agent, episodes, seq, max_actors, progress)
    n_indices = np.array(models.n_indices)
    return A2CResult(agent.logits, agent.values, n_indices, steps, done, stats, models)


# -------------------------------------------------------------------------- whole runs
class TeachRun(NamedTuple):
    """Output of :func:`make_teachers`.

    Attributes:
        teachers: :class:`~distill_agents.teachers.Teachers` of all MDPs.
        teacher_return: ``[B]`` exact expected undiscounted return of each teacher.
        optimal_return: ``[B]`` the best expected undiscounted return of the MDP (value
            iteration with ``gamma = 1``).
        uniform_return: ``[B]`` expected undiscounted return of the uniform policy.
        stats: :class:`TrainingStats` summed over chunks (``None`` for planned teachers).
    """

    teachers: Teachers
    teacher_return: NDArray[np.float64]
    optimal_return: NDArray[np.float64]
    uniform_return: NDArray[np.float64]
    stats: TrainingStats | None


def _exact_returns(models: Any, teachers: Teachers) -> tuple[NDArray, NDArray, NDArray]:
    """Teacher, optimal (``gamma = 1``) and uniform expected undiscounted returns ``[B]``.

    Evaluated in batches of MDPs small enough for ``[b, S, A]`` state policies to fit
    :data:`EVAL_BUDGET_BYTES`; a policy that cannot end the episode gives NaN.
    """
    n, s, a = models.n_envs, models.n_states, models.n_actions
    step = max(1, int(EVAL_BUDGET_BYTES // (4 * 8 * s * a)))
    parts = [
        _exact_returns_batch(models, teachers, lo, min(n, lo + step)) for lo in range(0, n, step)
    ]
    teacher, optimal, uniform = (np.concatenate([p[k] for p in parts]) for k in range(3))
    return teacher, optimal, uniform


def _exact_returns_batch(
    models: Any, teachers: Teachers, lo: int, hi: int
) -> tuple[NDArray, NDArray, NDArray]:
    mdps = [models.mdp(i) for i in range(lo, hi)]
    b, a = len(mdps), models.n_actions
    index = np.asarray(models.state_to_index[lo:hi])
    policies = planning.observation_policy_to_state_policy(teachers.probs[lo:hi], index)
    uniform = np.full((b, models.n_states, a), 1.0 / a)
    out = []
    for policy in (policies, uniform):
        try:
            out.append(np.asarray(planning.expected_return(mdps, policy), dtype=np.float64))
        except ValueError:  # a policy that never ends somewhere: per MDP, NaN where undefined
            values = np.full(b, np.nan)
            for i in range(b):
                with contextlib.suppress(ValueError):
                    values[i] = planning.expected_return(mdps[i], policy[i])
            out.append(values)
    optimal = np.full(b, np.nan)
    try:
        optimal = _undiscounted_optimum(models, lo, hi)
    except ValueError:  # some policy never ends (absorb_prob = 0): value iteration, or gamma 0.99
        try:
            best, _ = planning.value_iteration(mdps, gamma=1.0)
            optimal = np.einsum("bs,bs->b", np.asarray(models.initial[lo:hi]), np.asarray(best))
        except ValueError:
            _, q = planning.value_iteration(mdps, gamma=0.99)
            with contextlib.suppress(ValueError):
                optimal = np.asarray(planning.expected_return(mdps, planning.greedy_policy(q)))
    return out[0], optimal, out[1]


def _undiscounted_optimum(models: Any, lo: int, hi: int, max_iter: int = 1000) -> NDArray:
    """Best expected undiscounted return from the start of MDPs ``lo .. hi-1`` ``[b]``.

    Policy iteration with ``gamma = 1`` over the action rows (exact linear solves, the current
    row kept on ties, so it stops), from the uniform policy. It equals value iteration's
    ``gamma = 1`` optimum and is much faster (a handful of solves instead of thousands of
    sweeps).

    Raises:
        ValueError: some policy met on the way never ends (e.g. ``absorb_prob = 0``).
    """
    mdps = [models.mdp(i) for i in range(lo, hi)]
    next_states = np.asarray(models.next_states[lo:hi])
    next_probs = np.asarray(models.next_probs[lo:hi])
    row_rewards = (next_probs * np.asarray(models.next_rewards[lo:hi])).sum(axis=-1)
    terminal = np.asarray(models.terminal[lo:hi])
    action_rows = np.asarray(models.action_rows)
    b, s = next_states.shape[:2]
    used = np.unique(action_rows)
    first_action = np.array([int(np.flatnonzero(action_rows == row)[0]) for row in used])
    rows = np.zeros((b, s), dtype=np.int64)  # index into `used`
    policy = np.full((b, s, action_rows.size), 1.0 / action_rows.size)
    flat = next_states + (np.arange(b) * s)[:, None, None, None]
    for _ in range(max_iter):
        values = planning.policy_evaluation(mdps, policy, gamma=1.0)
        q_rows = row_rewards + (next_probs * values.ravel()[flat]).sum(axis=-1)
        q_rows = np.where(terminal[..., None], 0.0, q_rows)[..., used]
        best = q_rows.max(axis=-1)
        current = np.take_along_axis(q_rows, rows[..., None], axis=-1)[..., 0]
        scale = 1e-12 * np.maximum(1.0, np.abs(best))
        change = current < best - scale
        if not change.any() and policy.max() == 1.0:
            return np.einsum("bs,bs->b", np.asarray(models.initial[lo:hi]), values)
        rows = np.where(change, q_rows.argmax(axis=-1), rows)
        policy = np.zeros((b, s, action_rows.size))
        np.put_along_axis(policy, first_action[rows][..., None], 1.0, axis=-1)
    raise ValueError(f"policy iteration did not stop within {max_iter} iterations")


def make_teachers(
    kind: str,
    env_id: str = "DistillGrid-v0",
    env_kwargs: Mapping[str, Any] | None = None,
    n_mdps: int = 1,
    *,
    seed: int = 0,
    episodes: int = DEFAULT_EPISODES,
    temperature: float | None = None,
    noise: float = 0.0,
    a2c_variant: str = "mc",
    max_actors: int = DEFAULT_MAX_ACTORS,
    chunk_size: int | None = None,
    keep_q_values: bool = True,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    backend: str = "local",
) -> TeachRun:
    """One teacher per MDP (the ``teach`` command), with the exact returns.

    MDP ``i`` uses ``layout_seed = seed + i`` unless ``env_kwargs`` fix the layout. MDPs are
    processed in chunks of ``chunk_size`` consecutive MDPs (default: from
    :data:`CHUNK_BUDGET_BYTES` and the env's shape; part of the run's identity for trained
    kinds, see the module docstring), each with its own vector env.

    Args:
        kind: ``q_learning``, ``a2c``, ``optimal`` or ``adversarial``.
        env_id: environment id (see :class:`TeacherEnv`).
        env_kwargs: single-env keyword arguments.
        n_mdps: number of MDPs.
        seed: layout base and training/noise seed.
        episodes: training episodes per MDP (trained kinds).
        temperature: policy temperature ``T >= 0`` (``q_learning``, ``optimal``,
            ``adversarial``; default 0, greedy). Not used by ``a2c`` (its actor is the policy).
        noise: share of acting indices given a fixed wrong action (:func:`noisy_teachers`),
            in ``[0, 1)``; 0 for none.
        a2c_variant: ``"mc"`` or ``"td"``.
        max_actors: see :func:`train_q_learning`.
        chunk_size: MDPs per chunk (default: automatic).
        keep_q_values: keep the ``[B, N, A]`` Q values in the teachers (False saves memory for
            large action sets; ``values`` are kept).
        workers: processes the chunks are spread over (default :func:`default_workers`; 1: all
            in this process). Results do not depend on it. Not used by ``backend="ray"``.
        progress: called with newly completed work units (episodes for trained kinds, MDPs
            for planned ones).
        backend: ``"local"`` (this process or ``workers`` processes) or ``"ray"`` (the chunks
            as Ray tasks, :mod:`distill_agents.ray_backend`, in the open Ray session or a local
            Ray instance started for the call). Results do not depend on it.

    Returns:
        :class:`TeachRun`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    n_mdps = _check_count(n_mdps, "n_mdps")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    episodes = _check_count(episodes, "episodes")
    if temperature is not None:
        if kind == "a2c":
            raise ValueError(
                "temperature applies to q_learning, optimal and adversarial teachers; the a2c "
                "teacher's policy is its softmax actor"
            )
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float, np.integer, np.floating))
            or not (0.0 <= float(temperature) < math.inf)
        ):
            raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if (
        isinstance(noise, bool)
        or not isinstance(noise, (int, float, np.integer, np.floating))
        or not (0.0 <= float(noise) < 1.0)
    ):
        raise ValueError(f"noise must be a number in [0, 1), got {noise!r}")
    if a2c_variant not in ("mc", "td"):
        raise ValueError(f"a2c_variant must be 'mc' or 'td', got {a2c_variant!r}")
    env = TeacherEnv(env_id, env_kwargs, layout_base=int(seed))
    if chunk_size is None:
        from gridworld_env.vector import chunk_size_for

        memory_chunk = chunk_size_for(
            env.n_actions,
            CHUNK_BUDGET_BYTES,
            n_states=env.n_states,
            tables_per_mdp=TRAINED_TABLES_PER_MDP
            if kind in ("q_learning", "a2c")
            else PLANNED_TABLES_PER_MDP,
            observation_size=env.observation_size,
        )
        chunk_size = min(memory_chunk, MAX_CHUNK)
    chunk_size = _check_count(chunk_size, "chunk_size")
    if workers is not None:
        workers = _check_count(workers, "workers")
    t_value = 0.0 if temperature is None else float(temperature)
    settings: dict[str, Any] = {
        "seed": int(seed),
        "n_mdps": n_mdps,
        "chunk_size": chunk_size,
    }
    if kind == "q_learning":
        settings.update(episodes=episodes, lr=0.01, gamma=0.99, epsilon=0.1, max_actors=max_actors)
    elif kind == "a2c":
        settings.update(
            episodes=episodes, lr=0.1, critic_lr=0.1, gamma=0.99, variant=a2c_variant,
            max_actors=max_actors,
        )  # fmt: skip
    else:
        settings.update(gamma=0.99)
    root = np.random.SeedSequence(int(seed))
    jobs = [
        _ChunkJob(
            kind=kind,
            env_id=env_id,
            env_kwargs=env.env_kwargs,
            layout_base=int(seed),
            start=start,
            stop=min(n_mdps, start + chunk_size),
            train_seed=_child(root, _TRAIN_STREAM, start),
            noise_seed=int(seed),
            episodes=episodes,
            temperature=t_value,
            noise=float(noise),
            a2c_variant=a2c_variant,
            max_actors=max_actors,
            keep_q_values=keep_q_values,
            settings=settings,
        )
        for start in range(0, n_mdps, chunk_size)
    ]
    results = _run_jobs(jobs, workers, progress, backend)
    parts = [r.teachers for r in results]
    all_teachers = parts[0] if len(parts) == 1 else Teachers.concatenate(parts)
    teacher_return, optimal_return, uniform_return = (
        np.concatenate([r.returns[k] for r in results]) for k in range(3)
    )
    total: TrainingStats | None = None
    for r in results:
        if r.stats is not None:
            total = r.stats if total is None else _add_stats(total, r.stats)
    return TeachRun(all_teachers, teacher_return, optimal_return, uniform_return, total)


def _add_stats(a: TrainingStats, b: TrainingStats) -> TrainingStats:
    return TrainingStats(
        a.env_steps + b.env_steps,
        a.updates + b.updates,
        a.step_calls + b.step_calls,
        a.phases + b.phases,
        a.seconds + b.seconds,
        a.build_seconds + b.build_seconds,
        a.phase_log + b.phase_log,
    )


@dataclass(frozen=True)
class _ChunkJob:
    """Everything one chunk of :func:`make_teachers` needs (picklable, for worker processes)."""

    kind: str
    env_id: str
    env_kwargs: Mapping[str, Any]
    layout_base: int
    start: int
    stop: int
    train_seed: np.random.SeedSequence
    noise_seed: int
    episodes: int
    temperature: float
    noise: float
    a2c_variant: str
    max_actors: int
    keep_q_values: bool
    settings: Mapping[str, Any]
    evaluate: bool = True


class _ChunkResult(NamedTuple):
    teachers: Teachers
    returns: tuple[NDArray, NDArray, NDArray]
    stats: TrainingStats | None


def _run_chunk(job: _ChunkJob, progress: Callable[[int], None] | None) -> _ChunkResult:
    """Train or solve the teachers of MDPs ``job.start .. job.stop - 1``; exact returns."""
    env = TeacherEnv(job.env_id, job.env_kwargs, layout_base=job.layout_base)
    ids = list(range(job.start, job.stop))
    meta: dict[str, Any] = {
        "layout_seeds": np.array([env.layout_seed(i) for i in ids], dtype=np.int64),
        "env_id": job.env_id,
        "env_kwargs": env.env_kwargs,
        "settings": job.settings,
    }
    stats: TrainingStats | None = None
    if job.kind == "q_learning":
        result = train_q_learning(
            env, ids, episodes=job.episodes, seed=job.train_seed, max_actors=job.max_actors,
            progress=progress,
        )  # fmt: skip
        models = result.models
        teachers = q_learning_teachers(
            result.q_values, result.n_indices, job.temperature, acting=acting_indices(models),
            **meta,
        )  # fmt: skip
        stats = result.stats
    elif job.kind == "a2c":
        a2c = train_a2c(
            env, ids, episodes=job.episodes, variant=job.a2c_variant, seed=job.train_seed,
            max_actors=job.max_actors, progress=progress,
        )  # fmt: skip
        models = a2c.models
        teachers = a2c_teachers(
            a2c.logits, a2c.values, a2c.n_indices, acting=acting_indices(models), **meta
        )
        stats = a2c.stats
    else:
        models = env.make_vec(ids).models
        teachers = planned_teachers(
            models, minimise=job.kind == "adversarial", temperature=job.temperature, **meta
        )
        if progress is not None:
            progress(len(ids))
    if job.noise > 0.0:
        teachers = noisy_teachers(teachers, job.noise, job.noise_seed, first_mdp=job.start)
    empty = np.full(len(ids), np.nan)
    returns = _exact_returns(models, teachers) if job.evaluate else (empty, empty, empty)
    if not job.keep_q_values:
        teachers = teachers.replace(q_values=None)
    return _ChunkResult(teachers, returns, stats)


# Shared episode counter of the worker processes (set by _init_worker).
_worker_counter: Any = None


def _init_worker(counter: Any) -> None:
    """Worker process set-up: one numba thread (the processes are the parallelism)."""
    from distill_agents._process import exit_with_parent

    global _worker_counter
    _worker_counter = counter
    numba.set_num_threads(1)
    exit_with_parent()


def _worker_progress(n: int) -> None:
    with _worker_counter.get_lock():
        _worker_counter.value += n


def _run_chunk_in_worker(job: _ChunkJob) -> _ChunkResult:
    return _run_chunk(job, _worker_progress)


def default_workers() -> int:
    """Worker processes :func:`make_teachers` uses by default: numba's thread count."""
    return max(1, int(numba.get_num_threads()))


def _ray_chunk(
    job: _ChunkJob, shared: None, progress: Callable[[int], None] | None
) -> _ChunkResult:
    """A Ray task of :func:`_run_jobs`: one chunk."""
    return _run_chunk(job, progress)


def _run_jobs(
    jobs: Sequence[_ChunkJob],
    workers: int | None,
    progress: Callable[[int], None] | None,
    backend: str = "local",
) -> list[_ChunkResult]:
    """Run the chunks here, in ``workers`` processes or as Ray tasks (same results)."""
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be local or ray, got {backend!r}")
    if backend == "ray":
        from distill_agents.ray_backend import ray_map_ordered, ray_session, spread_cpus

        with ray_session():  # few chunks: each gets several CPUs (threads; same results)
            cpus = spread_cpus(len(jobs))
            results = ray_map_ordered(_ray_chunk, jobs, progress=progress, cpus_per_job=cpus)
        return [r._replace(teachers=r.teachers.replace()) for r in results]
    n_workers = min(len(jobs), default_workers() if workers is None else workers)
    if n_workers <= 1:
        return [_run_chunk(job, progress) for job in jobs]
    import concurrent.futures as futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process with OpenMP threads
    counter = context.Value("q", 0)
    reported = 0
    with futures.ProcessPoolExecutor(
        max_workers=n_workers, mp_context=context, initializer=_init_worker, initargs=(counter,)
    ) as pool:
        pending = [pool.submit(_run_chunk_in_worker, job) for job in jobs]
        waiting = set(pending)
        while waiting:
            _, waiting = futures.wait(waiting, timeout=0.5, return_when=futures.FIRST_COMPLETED)
            if progress is not None:
                done = int(counter.value)
                progress(done - reported)
                reported = done
        results = [f.result() for f in pending]
    # Arrays come back from the workers writeable: validate and freeze them again.
    return [r._replace(teachers=r.teachers.replace()) for r in results]


# ----------------------------------------------------------------------------- benchmark
def bench_q_learning(
    n_mdps: int = 1000,
    episodes: int = 2000,
    seed: int = 0,
    max_actors: int = DEFAULT_MAX_ACTORS,
    workers: int | None = None,
    reference_threads: int | None = None,
) -> dict[str, Any]:
    """Q-learning through the vector env against a plain compiled loop, on the same MDPs.

    Trains Q-learning teachers on ``n_mdps`` random 20x20 grids (``episodes`` each) exactly as
    :func:`make_teachers` does (chunks of :data:`MAX_CHUNK` MDPs, one vector env each, spread
    over ``workers`` processes; no evaluation), then runs
    :func:`distill_agents._teacher_kernels.q_learning_reference` in this process (one numba
    function, the dynamics inlined from the same outcome tables the vector env's kernel reads,
    MDPs spread over numba's threads; ``reference_threads`` of them if given) for the same
    episodes, and reports both rates. ``workers=1, reference_threads=1`` compares one core with
    one core.

    Returns:
        A dict with ``trainer_seconds`` (wall time, worker start-up and env rebuilds included;
        ``trainer_cpu_seconds`` (this process and its worker processes) and ``ratio_cpu``
        compare CPU times, which other processes on a busy machine disturb less),
        ``trainer_updates_per_s`` (transitions learned from per second), ``trainer_env_steps_per_s``
        (env-steps, idle and autoreset steps included), ``reference_seconds``,
        ``reference_steps_per_s``, ``ratio`` (trainer updates/s over reference steps/s), the
        step counts, per-chunk statistics, and ``extrapolated_seconds_30k`` for 1000 MDPs x
        30 000 episodes (scaled linearly in MDPs and episodes: rough, since episodes get shorter
        as the agents learn; exact when run at that size).
    """
    from gridworld_env import _kernels as env_kernels

    n_mdps = _check_count(n_mdps, "n_mdps")
    episodes = _check_count(episodes, "episodes")
    env = TeacherEnv("DistillGrid-v0", {}, layout_base=seed)
    # Compile (or load) the kernels first: compilation is not what is measured.
    train_q_learning(env, 2, episodes=2, seed=seed, max_actors=max_actors)
    root = np.random.SeedSequence(seed)
    jobs = [
        _ChunkJob(
            kind="q_learning",
            env_id="DistillGrid-v0",
            env_kwargs={},
            layout_base=seed,
            start=start,
            stop=min(n_mdps, start + MAX_CHUNK),
            train_seed=_child(root, _TRAIN_STREAM, start),
            noise_seed=seed,
            episodes=episodes,
            temperature=0.0,
            noise=0.0,
            a2c_variant="mc",
            max_actors=max_actors,
            keep_q_values=True,
            settings={},
            evaluate=False,
        )
        for start in range(0, n_mdps, MAX_CHUNK)
    ]
    n_workers = min(len(jobs), default_workers() if workers is None else workers)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    results = _run_jobs(jobs, n_workers, None)
    trainer_s, trainer_cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    stats = [r.stats for r in results if r.stats is not None]
    updates = sum(st.updates for st in stats)
    env_steps = sum(st.env_steps for st in stats)

    models = env.make_vec(range(n_mdps)).models
    n_states = models.n_states
    outcomes = np.zeros((n_mdps, n_states, models.n_rows, models.next_states.shape[-1]),
                        dtype=env_kernels.OUTCOME_DTYPE)  # fmt: skip
    for i in range(n_mdps):
        env_kernels.pack_outcomes(models.mdp(i), models.state_to_index[i], outcomes[i])
    initial_cum = np.cumsum(models.initial, axis=1)
    initial_cum /= initial_cum[:, -1:]
    key_of_state = np.ascontiguousarray(models.state_to_index)
    terminal = np.ascontiguousarray(models.terminal)
    seeds = np.random.default_rng(seed).integers(1, 2**63, size=n_mdps, dtype=np.uint64)
    n_index = int(models.n_indices.max())
    limit = 1000
    kernels.q_learning_reference(
        outcomes[:1], models.action_rows, terminal[:1], initial_cum[:1], key_of_state[:1],
        seeds[:1], 1, limit, 0.1, 0.01, 0.99, np.zeros((1, n_index, models.n_actions)),
        np.zeros(1, dtype=np.int64),
    )  # fmt: skip
    q_ref = np.zeros((n_mdps, n_index, models.n_actions))
    ref_steps = np.zeros(n_mdps, dtype=np.int64)
    threads = numba.get_num_threads()
    if reference_threads is not None:
        numba.set_num_threads(_check_count(reference_threads, "reference_threads"))
    try:
        used_threads = numba.get_num_threads()
        t0, c0 = time.perf_counter(), time.process_time()
        kernels.q_learning_reference(
            outcomes, models.action_rows, terminal, initial_cum, key_of_state, seeds, episodes,
            limit, 0.1, 0.01, 0.99, q_ref, ref_steps,
        )  # fmt: skip
        reference_s, reference_cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        numba.set_num_threads(threads)
    trainer_rate = updates / trainer_s
    reference_rate = float(ref_steps.sum()) / reference_s
    scale = (1000 / n_mdps) * (DEFAULT_EPISODES / episodes)
    return {
        "n_mdps": n_mdps,
        "episodes": episodes,
        "workers": n_workers,
        "reference_threads": used_threads,
        "trainer_seconds": trainer_s,
        "trainer_updates": updates,
        "trainer_env_steps": env_steps,
        "trainer_updates_per_s": trainer_rate,
        "trainer_env_steps_per_s": env_steps / trainer_s,
        "chunks": [
            {
                "seconds": st.seconds,
                "build_seconds": st.build_seconds,
                "step_calls": st.step_calls,
                "phases": [list(entry) for entry in st.phase_log],
            }
            for st in stats
        ],
        "reference_seconds": reference_s,
        "reference_steps": int(ref_steps.sum()),
        "reference_steps_per_s": reference_rate,
        "ratio": trainer_rate / reference_rate,
        # CPU time: robust to other processes on the machine; the trainer's only when it runs
        # in this process (workers=1), the reference's summed over its threads.
        # CPU times (this process and its finished worker processes, start-up included; the
        # reference's summed over its threads): robust to other processes on the machine.
        "trainer_cpu_seconds": trainer_cpu,
        "reference_cpu_seconds": reference_cpu,
        "ratio_cpu": (updates / trainer_cpu) / (float(ref_steps.sum()) / reference_cpu),
        "extrapolated_seconds_30k": {
            "trainer": trainer_s * scale,
            "reference": reference_s * scale,
        },
    }


def _cpu_seconds() -> float:
    """CPU time of this process plus that of its waited-for child processes (worker pools)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m distill_agents.teacher_training [N_MDPS [EPISODES [WORKERS [THREADS]]]]``.

    Prints :func:`bench_q_learning` as JSON.
    """
    import json
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    n_mdps = int(args[0]) if args else 1000
    episodes = int(args[1]) if len(args) > 1 else 2000
    workers = int(args[2]) if len(args) > 2 else None
    threads = int(args[3]) if len(args) > 3 else None
    print(json.dumps(bench_q_learning(n_mdps, episodes, workers=workers,
                                      reference_threads=threads), indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
