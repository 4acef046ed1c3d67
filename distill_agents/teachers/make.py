"""make_teachers: one teacher per MDP of a kind, chunk by chunk, in worker processes.

:func:`make_teachers` turns a kind (``q_learning``, ``a2c``, ``optimal``, ``adversarial``) into
:class:`~distill_agents.teachers.Teachers` for ``n_mdps`` MDPs, with the exact returns the
``teach`` command writes.

Randomness, chunks and worker processes
    :func:`make_teachers` cuts the MDPs into chunks of consecutive MDPs (at most
    :data:`MAX_CHUNK`, fewer if ``[N, A]`` tables would exceed :data:`CHUNK_BUDGET_BYTES`),
    each trained in its own vector env, and spreads the chunks over the worker processes of
    the local pool (:mod:`distill_agents.parallel.pool`, one numba thread each; the kernels
    run serially by default, see :data:`THREAD_MIN_ACTORS`: independent processes use the
    cores far better than OpenMP regions that synchronise twice per ``step`` and stall when
    other processes compete for the CPU). The chunk starting at
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numba
import numpy as np
from numpy.typing import NDArray

from distill_agents import planning
from distill_agents.parallel import pool
from distill_agents.parallel.pool import worker_progress
from distill_agents.teachers.build import (
    a2c_teachers,
    acting_indices,
    planned_teachers,
    q_learning_teachers,
)
from distill_agents.teachers.env import TeacherEnv
from distill_agents.teachers.noise import noisy_teachers
from distill_agents.teachers.tables import Teachers
from distill_agents.teachers.training import (
    DEFAULT_EPISODES,
    DEFAULT_MAX_ACTORS,
    TRAIN_STREAM,
    TrainingStats,
    check_count,
    child_seed,
    train_a2c,
    train_q_learning,
)

__all__ = [
    "CHUNK_BUDGET_BYTES",
    "EVAL_BUDGET_BYTES",
    "KINDS",
    "MAX_CHUNK",
    "PLANNED_TABLES_PER_MDP",
    "TRAINED_TABLES_PER_MDP",
    "ChunkJob",
    "TeachRun",
    "default_chunk_size",
    "default_workers",
    "make_teachers",
    "run_jobs",
]


#: Teacher kinds :func:`make_teachers` builds.
KINDS = ("q_learning", "a2c", "optimal", "adversarial")
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
            as Ray tasks, :mod:`distill_agents.parallel.ray_backend`, in the open Ray session or a
            local Ray instance started for the call). Results do not depend on it.

    Returns:
        :class:`TeachRun`.
    """
    n_mdps, episodes = _check_arguments(
        kind, n_mdps, seed, episodes, temperature, noise, a2c_variant
    )
    env = TeacherEnv(env_id, env_kwargs, layout_base=int(seed))
    if chunk_size is None:
        chunk_size = default_chunk_size(env, kind)
    chunk_size = check_count(chunk_size, "chunk_size")
    if workers is not None:
        workers = check_count(workers, "workers")
    t_value = 0.0 if temperature is None else float(temperature)
    settings = _settings(kind, int(seed), n_mdps, chunk_size, episodes, a2c_variant, max_actors)
    root = np.random.SeedSequence(int(seed))
    jobs = [
        ChunkJob(
            kind=kind,
            env_id=env_id,
            env_kwargs=env.env_kwargs,
            layout_base=int(seed),
            start=start,
            stop=min(n_mdps, start + chunk_size),
            train_seed=child_seed(root, TRAIN_STREAM, start),
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
    results = run_jobs(jobs, workers, progress, backend)
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


def _check_arguments(
    kind: str,
    n_mdps: Any,
    seed: Any,
    episodes: Any,
    temperature: Any,
    noise: Any,
    a2c_variant: str,
) -> tuple[int, int]:
    """``n_mdps`` and ``episodes`` as ints, after checking :func:`make_teachers`' arguments.

    Raises a ValueError naming the first bad argument.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    n_mdps = check_count(n_mdps, "n_mdps")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    episodes = check_count(episodes, "episodes")
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
    return n_mdps, episodes


def default_chunk_size(env: TeacherEnv, kind: str) -> int:
    """MDPs per chunk: as many as :data:`CHUNK_BUDGET_BYTES` holds, at most :data:`MAX_CHUNK`."""
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
    return min(memory_chunk, MAX_CHUNK)


def _settings(
    kind: str,
    seed: int,
    n_mdps: int,
    chunk_size: int,
    episodes: int,
    a2c_variant: str,
    max_actors: int,
) -> dict[str, Any]:
    """The training settings a kind's teachers record."""
    settings: dict[str, Any] = {"seed": seed, "n_mdps": n_mdps, "chunk_size": chunk_size}
    if kind == "q_learning":
        settings.update(episodes=episodes, lr=0.01, gamma=0.99, epsilon=0.1, max_actors=max_actors)
    elif kind == "a2c":
        settings.update(
            episodes=episodes, lr=0.1, critic_lr=0.1, gamma=0.99, variant=a2c_variant,
            max_actors=max_actors,
        )  # fmt: skip
    else:
        settings.update(gamma=0.99)
    return settings


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
class ChunkJob:
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


def _run_chunk(job: ChunkJob, progress: Callable[[int], None] | None) -> _ChunkResult:
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


def _run_chunk_in_worker(job: ChunkJob) -> _ChunkResult:
    """One chunk in a worker of the local pool, its episodes reported to the parent's progress."""
    progress, queue_progress = worker_progress(None)
    result = _run_chunk(job, progress)
    if queue_progress is not None:
        queue_progress.flush()
    return result


def default_workers() -> int:
    """Worker processes :func:`make_teachers` uses by default: numba's thread count."""
    return max(1, int(numba.get_num_threads()))


def _ray_chunk(job: ChunkJob, shared: None, progress: Callable[[int], None] | None) -> _ChunkResult:
    """A Ray task of :func:`run_jobs`: one chunk."""
    return _run_chunk(job, progress)


def run_jobs(
    jobs: Sequence[ChunkJob],
    workers: int | None,
    progress: Callable[[int], None] | None,
    backend: str = "local",
) -> list[_ChunkResult]:
    """Run the chunks here, in ``workers`` processes or as Ray tasks (same results)."""
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be local or ray, got {backend!r}")
    if backend == "ray":
        from distill_agents.parallel.ray_backend import ray_map_ordered, ray_session, spread_cpus

        with ray_session():  # few chunks: each gets several CPUs (threads; same results)
            cpus = spread_cpus(len(jobs))
            results = ray_map_ordered(_ray_chunk, jobs, progress=progress, cpus_per_job=cpus)
        return [r._replace(teachers=r.teachers.replace()) for r in results]
    n_workers = min(len(jobs), default_workers() if workers is None else workers)
    if n_workers <= 1:
        return [_run_chunk(job, progress) for job in jobs]
    # The local pool's workers (spawned, one numba thread each); kept if they were running
    # before (``reproduce``'s), ended here otherwise.
    kept = pool.active_pool() is not None
    bar = None if progress is None else _ProgressBar(progress)
    try:
        results = pool.run_jobs(_run_chunk_in_worker, jobs, n_workers, bar)
    finally:
        if not kept:
            pool.close_pool()
    # Arrays come back from the workers writeable: validate and freeze them again.
    return [r._replace(teachers=r.teachers.replace()) for r in results]


class _ProgressBar:
    """``progress`` as the ``update`` of a progress bar (what :func:`pool.run_jobs` updates)."""

    def __init__(self, progress: Callable[[int], None]) -> None:
        self.update = progress
