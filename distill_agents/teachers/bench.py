"""The teacher trainer's benchmark against a plain compiled Q-learning loop."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np

from distill_agents.teachers import q_kernels
from distill_agents.teachers.env import TeacherEnv
from distill_agents.teachers.make import MAX_CHUNK, ChunkJob, default_workers, run_jobs
from distill_agents.teachers.training import (
    DEFAULT_EPISODES,
    DEFAULT_MAX_ACTORS,
    TRAIN_STREAM,
    TrainingStats,
    check_count,
    child_seed,
    train_q_learning,
)

__all__ = [
    "bench_q_learning",
    "main",
]


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
    :func:`distill_agents.teachers.q_kernels.q_learning_reference` in this process (one numba
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
    n_mdps = check_count(n_mdps, "n_mdps")
    episodes = check_count(episodes, "episodes")
    env = TeacherEnv("DistillGrid-v0", {}, layout_base=seed)
    # Compile (or load) the kernels first: compilation is not what is measured.
    train_q_learning(env, 2, episodes=2, seed=seed, max_actors=max_actors)
    n_workers, trainer_s, trainer_cpu, stats = _train(n_mdps, episodes, seed, max_actors, workers)
    updates = sum(st.updates for st in stats)
    env_steps = sum(st.env_steps for st in stats)
    used_threads, reference_s, reference_cpu, ref_steps = _reference(
        env, n_mdps, episodes, seed, reference_threads
    )
    trainer_rate = updates / trainer_s
    reference_rate = ref_steps / reference_s
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
        "reference_steps": ref_steps,
        "reference_steps_per_s": reference_rate,
        "ratio": trainer_rate / reference_rate,
        # CPU times (this process and its finished worker processes, start-up included; the
        # reference's summed over its threads): robust to other processes on the machine.
        "trainer_cpu_seconds": trainer_cpu,
        "reference_cpu_seconds": reference_cpu,
        "ratio_cpu": (updates / trainer_cpu) / (ref_steps / reference_cpu),
        "extrapolated_seconds_30k": {
            "trainer": trainer_s * scale,
            "reference": reference_s * scale,
        },
    }


def _train(
    n_mdps: int, episodes: int, seed: int, max_actors: int, workers: int | None
) -> tuple[int, float, float, list[TrainingStats]]:
    """The trainer's run, as :func:`make_teachers` trains: ``(workers, seconds, CPU, stats)``."""
    root = np.random.SeedSequence(seed)
    jobs = [
        ChunkJob(
            kind="q_learning",
            env_id="DistillGrid-v0",
            env_kwargs={},
            layout_base=seed,
            start=start,
            stop=min(n_mdps, start + MAX_CHUNK),
            train_seed=child_seed(root, TRAIN_STREAM, start),
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
    results = run_jobs(jobs, n_workers, None)
    trainer_s, trainer_cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    return n_workers, trainer_s, trainer_cpu, [r.stats for r in results if r.stats is not None]


def _reference_tables(env: TeacherEnv, n_mdps: int) -> tuple[Any, ...]:
    """``(outcomes, action_rows, terminal, initial_cum, key_of_state, n_index, n_actions)``.

    The outcome tables of the MDPs as the vector env's kernel reads them, with the table index
    of the next state as its observation key.
    """
    from gridworld_env import kernels as env_kernels

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
    n_index = int(models.n_indices.max())
    return (
        outcomes,
        models.action_rows,
        terminal,
        initial_cum,
        key_of_state,
        n_index,
        models.n_actions,
    )


def _reference(
    env: TeacherEnv, n_mdps: int, episodes: int, seed: int, threads: int | None
) -> tuple[int, float, float, int]:
    """:func:`q_learning_reference` on the MDPs: ``(threads, seconds, CPU seconds, steps)``."""
    outcomes, action_rows, terminal, initial_cum, key_of_state, n_index, n_actions = (
        _reference_tables(env, n_mdps)
    )
    seeds = np.random.default_rng(seed).integers(1, 2**63, size=n_mdps, dtype=np.uint64)
    limit = 1000
    q_kernels.q_learning_reference(
        outcomes[:1], action_rows, terminal[:1], initial_cum[:1], key_of_state[:1], seeds[:1], 1,
        limit, 0.1, 0.01, 0.99, np.zeros((1, n_index, n_actions)), np.zeros(1, dtype=np.int64),
    )  # fmt: skip
    q_ref = np.zeros((n_mdps, n_index, n_actions))
    ref_steps = np.zeros(n_mdps, dtype=np.int64)
    before = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(check_count(threads, "reference_threads"))
    try:
        used_threads = numba.get_num_threads()
        t0, c0 = time.perf_counter(), time.process_time()
        q_kernels.q_learning_reference(
            outcomes, action_rows, terminal, initial_cum, key_of_state, seeds, episodes, limit,
            0.1, 0.01, 0.99, q_ref, ref_steps,
        )  # fmt: skip
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        numba.set_num_threads(before)
    return used_threads, seconds, cpu, int(ref_steps.sum())


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
