"""The student runner against plain compiled loops (``distill-grid bench --students``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from distill_agents import methods as M
from distill_agents.bench import yardsticks
from distill_agents.bench.actions import ACTION_COUNTS, ACTION_METHODS, bench_actions
from distill_agents.bench.grids import grid_teachers
from distill_agents.runner import loop_kernels as K
from distill_agents.runner.distillation import run_distillation
from distill_agents.runner.evaluation import Evaluator
from distill_agents.runner.result import RunResult
from distill_agents.teachers import Teachers
from distill_agents.updates import floored_log
from distill_agents.updates import rows as RK
from gridworld_env.base import check_int
from gridworld_env.registration import MAX_EPISODE_STEPS

__all__ = ["bench_students"]


def _reference_tables(models: Any) -> tuple[Any, ...]:
    """The vector env's outcome tables, for the reference loop (``loop_kernels.reference_loop``)."""
    from gridworld_env import kernels as env_kernels

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


def _peak_rss_bytes() -> int:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _runner_rates(
    teachers: Teachers, method: str, iterations: int, seed: int
) -> tuple[dict[str, Any], RunResult]:
    """Both loops of :func:`run_distillation` on ``teachers``: their rates, and the vector run."""
    result = run_distillation(
        teachers, method, iterations=iterations, eval_every=iterations, seed=seed, loop="vector"
    )
    runner_steps = int(result.env_steps.sum())
    train_s = result.train_seconds
    out: dict[str, Any] = dict(
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
        teachers, method, iterations=iterations, eval_every=iterations, seed=seed
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
    return out, result


def _reference_rates(
    tables: tuple[Any, ...],
    models: Any,
    teachers: Teachers,
    method: str,
    iterations: int,
    seed: int,
) -> tuple[float, dict[str, Any]]:
    """The reference loop on ``teachers``' MDPs: its seconds, and its rate and final return."""
    ref_seconds, ref_steps, ref_logits = _reference_run(tables, teachers, method, iterations, seed)
    ref_return = Evaluator(models, teachers.probs, ("return",)).students(
        np.arange(teachers.n_mdps), RK.dense_table(ref_logits)
    )["return"]
    return ref_seconds, {
        "reference_seconds": ref_seconds,
        "reference_env_steps": ref_steps,
        "reference_final_return": float(np.mean(ref_return)),
        "reference_steps_per_s": ref_steps / ref_seconds,
    }


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
    ``iterations`` episodes per MDP with :func:`run_distillation`'s vector-env loop
    (``loop="vector"``, evaluating only at the start and the end), with its compiled loop (the
    default, the same students) and with
    :func:`distill_agents.runner.loop_kernels.reference_loop` (one numba function stepping the
    vector env's outcome tables and applying the same update kernel), and reports the rates in
    env-steps per second (the steps of the MDPs' episodes; idle and autoreset steps of the
    vector env are reported apart). On the same MDPs it times
    :func:`distill_agents.bench.yardsticks.q_learning_loop` for ``iterations`` episodes on all
    numba threads (the yardstick of ``reproduce fig3``'s effective rate). Then
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
    teachers, models = grid_teachers(n_mdps, seed, {})
    out["teacher_seconds"] = time.perf_counter() - t0
    # Warm-up: compile the kernels on a tiny run (compilation is not what is measured).
    small = teachers.subset(0, 2)
    run_distillation(small, method, iterations=3, eval_every=3, seed=seed, loop="vector")
    tables = _reference_tables(models)
    outcomes, action_rows, terminal, initial_cum, key_of_state = tables
    head = (outcomes[:2], action_rows, terminal[:2], initial_cum[:2], key_of_state[:2])
    _reference_run(head, small, method, 3, seed)

    runner, result = _runner_rates(teachers, method, iterations, seed)
    out.update(runner)
    ref_seconds, reference = _reference_rates(tables, models, teachers, method, iterations, seed)
    out.update(reference)
    out["ratio"] = out["runner_steps_per_s"] / out["reference_steps_per_s"]
    out["train_ratio"] = out["runner_train_steps_per_s"] / out["reference_steps_per_s"]
    out["compiled_ratio"] = out["compiled_steps_per_s"] / out["reference_steps_per_s"]
    out["compiled_train_ratio"] = out["compiled_train_steps_per_s"] / out["reference_steps_per_s"]
    # Training scales with MDPs x iterations; building the envs and the start/end evaluations
    # with MDPs only.
    per_mdp = 1000 / n_mdps
    scale = per_mdp * (30_000 / iterations)
    out["extrapolated_seconds_30k"] = {
        "runner": result.train_seconds * scale
        + (result.build_seconds + result.eval_seconds) * per_mdp,
        "reference": ref_seconds * scale,
    }

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
