"""Q-learning (A.4) and A2C (A.3) teachers trained over many MDPs at once.

:func:`train_q_learning` and :func:`train_a2c` learn one table per MDP; every transition comes
from ``envs.step`` of a :mod:`gridworld_env.vector` env with table-index observations
(:class:`~distill_agents.teachers.env.TeacherEnv`), and one compiled agent kernel
(:mod:`distill_agents.teachers.kernels`) per ``step`` learns from the ``B`` transitions and
picks the next ``B`` actions.

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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numba
import numpy as np
from numpy.typing import NDArray

from distill_agents.teachers import a2c_kernels, q_kernels, records
from distill_agents.teachers.env import TeacherEnv
from gridworld_env.base import check_int
from gridworld_env.kernels import compiled_for

__all__ = [
    "BUILD_COST",
    "CALL_COST",
    "DEFAULT_EPISODES",
    "DEFAULT_MAX_ACTORS",
    "DRAIN_BELOW",
    "PLAN_EVERY",
    "THREAD_MIN_ACTORS",
    "TRAIN_STREAM",
    "A2CResult",
    "QLearningResult",
    "TrainingStats",
    "check_count",
    "child_seed",
    "train_a2c",
    "train_q_learning",
]


#: Training episodes per MDP (paper A.4: 30k).
DEFAULT_EPISODES = 30_000
#: Largest number of actors (sub-envs) one MDP gets in the later training phases.
DEFAULT_MAX_ACTORS = 16
#: Numba threads inside one training loop (the vector env's and the agent's kernels) from this
#: many actors on; ``None``: never. Off because under CPU contention (other processes on the
#: machine) OpenMP parallel regions stall: measured 2.4 ms instead of ~50 us per ``step`` of
#: 600 actors. Training uses cores through worker processes instead (one chunk each).
THREAD_MIN_ACTORS: int | None = None
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
TRAIN_STREAM = 0


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


def child_seed(parent: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """The child of ``parent`` with ``spawn_key + key`` (stateless, unlike ``spawn``)."""
    return np.random.SeedSequence(parent.entropy, spawn_key=(*parent.spawn_key, *key))


def check_count(value: Any, name: str, low: int = 1) -> int:
    """``value`` as an integer ``>= low``, or a ValueError naming ``name``."""
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
    """Agent tables and its kernels (see :func:`distill_agents.teachers.q_kernels.q_step`).

    The kernels are called as ``kernel(actors, tallies, *records, rewards, next_obs,
    terminated, truncated, u_row, allow)`` (:mod:`distill_agents.teachers.records`).
    """

    n_counts = 2
    serial: Callable[..., Any]
    parallel: Callable[..., Any]

    def records(self, n_actors: int, envs: Any) -> tuple[Any, ...]:
        """The kernel's arguments after ``tallies`` for a phase of ``n_actors`` actors."""
        raise NotImplementedError

    def check(self, counts: NDArray[np.int64]) -> None:
        """Raise if the kernel reported a problem."""


class _QAgent(_Agent):
    serial = staticmethod(q_kernels.q_step)
    parallel = staticmethod(q_kernels.q_step_parallel)

    def __init__(
        self, n_mdps: int, n_index: int, n_actions: int, lr: float, gamma: float, epsilon: float
    ) -> None:
        self.q_values = np.zeros((n_mdps, n_index, n_actions))
        self.params = records.QParams(epsilon, lr, gamma)

    def records(self, n_actors: int, envs: Any) -> tuple[Any, ...]:
        return (self.q_values, self.params)


class _A2CAgent(_Agent):
    n_counts = 3
    serial = staticmethod(a2c_kernels.a2c_step)
    parallel = staticmethod(a2c_kernels.a2c_step_parallel)

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
        self.tables = records.A2CTables(self.logits, self.values)
        self.params = records.A2CParams(lr, critic_lr, gamma, mc)

    def records(self, n_actors: int, envs: Any) -> tuple[Any, ...]:
        limit = getattr(envs, "max_episode_steps", None)
        if limit is None:
            raise ValueError(
                "the A2C teacher needs a time limit (max_episode_steps) to size its episode buffers"
            )
        buffers = records.EpisodeBuffers(
            np.zeros((n_actors, limit + 1), dtype=np.int64),
            np.zeros((n_actors, limit), dtype=np.int64),
            np.zeros((n_actors, limit)),
            np.zeros(n_actors, dtype=np.int64),
        )
        return (self.tables, self.params, buffers)

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
    started, completed, steps = (np.zeros(n_mdps, dtype=np.int64) for _ in range(3))
    tallies = records.Tallies(started, completed, steps, n_episodes)
    rng = np.random.default_rng(child_seed(seed, 1))
    report = None if progress is None else _Report(progress, completed)
    env_steps = calls = 0
    phase = 0
    build_s = 0.0
    log: list[tuple[int, int, int, float]] = []
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
        t_phase = time.perf_counter()
        reset_seed = int(child_seed(seed, 0, phase).generate_state(1, np.uint64)[0] >> np.uint64(1))
        phase_calls = _run_phase(
            envs, group, agent, tallies, rng, reset_seed, n_mdps, max_actors, report
        )
        n_actors = int(group.size)
        calls += phase_calls
        env_steps += phase_calls * n_actors
        log.append(
            (n_actors, int(np.unique(group).size), phase_calls, time.perf_counter() - t_phase)
        )
        if envs is not first_envs:
            envs.close()
        phase += 1
    first_envs.close()
    if report is not None:
        report()
    updates = int(steps.sum())  # every learned transition is counted in its MDP's steps
    stats = TrainingStats(
        env_steps, updates, calls, phase, time.perf_counter() - t0, build_s, tuple(log)
    )
    return steps, completed, stats


class _Report:
    """Hands the episodes completed since the last report to ``progress``."""

    def __init__(self, progress: Callable[[int], None], completed: NDArray[np.int64]) -> None:
        self.progress, self.completed, self.reported = progress, completed, 0

    def __call__(self) -> None:
        done = int(self.completed.sum())
        self.progress(done - self.reported)
        self.reported = done


def _run_phase(
    envs: Any,
    group: NDArray[np.int64],
    agent: _Agent,
    tallies: records.Tallies,
    rng: np.random.Generator,
    reset_seed: int,
    n_mdps: int,
    max_actors: int,
    report: _Report | None,
) -> int:
    """One phase: actor ``j`` plays MDP ``group[j]`` until no actor is busy; its step calls."""
    n_actors = int(group.size)
    own = agent.records(n_actors, envs)
    parallel = _use_threads(n_actors)
    kernel = agent.parallel if parallel else agent.serial
    bounds = _thread_bounds(group, max(1, numba.get_num_threads()) if parallel else 1)
    counts = np.zeros((bounds.size, agent.n_counts), dtype=np.int64)
    block = np.empty((max(1, min(_UNIFORM_ROWS, _UNIFORM_VALUES // n_actors)), n_actors))
    u_rows = list(block)  # views of the block's rows (refilled in place)
    n_rows = len(u_rows)
    obs, _ = envs.reset(seed=reset_seed)
    obs = np.array(obs, dtype=np.int64)
    actions = np.zeros(n_actors, dtype=np.int64)
    status = np.full(n_actors, records.ENDED, dtype=np.int8)
    actors = records.Actors(bounds, group, obs, actions, status, counts)
    flags = np.zeros(n_actors, dtype=bool)
    rng.random(out=block)
    allow = True
    # Every actor starts an episode at its reset observation (nothing to learn yet). The
    # kernels return the number of busy actors (-1: a problem, which check raises).
    args = (actors, tallies, *own, np.zeros(n_actors), obs.copy(), flags, flags, u_rows[0])
    busy = kernel(*args, allow)
    if busy < 0:
        agent.check(counts)
    # The arrays step returns are allocated alike at every call, and the records are the
    # phase's: the kernel's machine code can be called directly (no typing per call).
    call = compiled_for(kernel, (*args, allow))
    completed, steps, n_episodes = tallies.completed, tallies.steps, tallies.n_episodes
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
        busy = call(actors, tallies, *own, rewards, next_obs, terminated, truncated,
                    u_rows[row], allow)  # fmt: skip
        if busy < 0:
            agent.check(counts)
        row += 1
        phase_calls += 1
        if report is not None and phase_calls % _PROGRESS_EVERY == 0:
            report()
    return phase_calls


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
        mdps = list(range(check_count(mdps, "mdps")))
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
    episodes = check_count(episodes, "episodes")
    lr = _check_rate(lr, "lr", 0.0, 1.0, open_low=True)
    gamma = _check_rate(gamma, "gamma", 0.0, 1.0)
    epsilon = _check_rate(epsilon, "epsilon", 0.0, 1.0)
    max_actors = check_count(max_actors, "max_actors")
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
    :func:`distill_agents.teachers.a2c_kernels.a2c_update`).

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
    episodes = check_count(episodes, "episodes")
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
    max_actors = check_count(max_actors, "max_actors")
    seq = _seed_sequence(seed)
    env, mdps, envs, models = _prepare(env, mdps)
    n_index = int(models.n_indices.max())
    agent = _A2CAgent(
        len(mdps), n_index, models.n_actions, float(lr), critic_lr, gamma, variant == "mc"
    )
    steps, done, stats = _run(env, mdps, envs, agent, episodes, seq, max_actors, progress)
    n_indices = np.array(models.n_indices)
    return A2CResult(agent.logits, agent.values, n_indices, steps, done, stats, models)
