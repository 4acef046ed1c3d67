"""The runner's entry points: :func:`run_distillation` and :func:`run_distillation_group`.

Both check their arguments, cut the MDPs into chunks (:class:`~distill_agents.runner.chunks.Chunk`)
and gather the chunks' numbers into :class:`~distill_agents.runner.result.RunResult` objects.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from distill_agents import methods as M
from distill_agents.runner import loop_kernels as K
from distill_agents.runner.chunks import Chunk, Run
from distill_agents.runner.envs import EnvBuilder
from distill_agents.runner.evaluation import METRICS
from distill_agents.runner.result import RunResult
from distill_agents.runner.seeding import eval_iterations
from distill_agents.teachers import Teachers
from distill_agents.updates import TEACHER_PROB_FLOOR, floored_log
from distill_agents.updates import rows as RK
from gridworld_env.base import check_int
from gridworld_env.vector import chunk_size_for

__all__ = [
    "CHUNK_BUDGET_BYTES",
    "KL_METRICS",
    "LOOPS",
    "TABLES_PER_MDP",
    "RunSettings",
    "run_distillation",
    "run_distillation_group",
    "run_group",
]

#: Default memory budget of one chunk of MDPs (bytes).
CHUNK_BUDGET_BYTES = 4e9
#: ``[N, A]`` float64 tables per MDP when sizing chunks: logits, floored teacher log-probs,
#: two snapshot slots, and two for the evaluation's per-index arrays.
TABLES_PER_MDP = 6
#: The runner's loops (:func:`run_distillation`).
LOOPS = ("vector", "compiled")
#: The two readings of the KL metrics (:func:`run_distillation`'s ``kl_metric``).
KL_METRICS = ("episode_sum", "step_mean")


def run_distillation(
    teachers: Teachers,
    method: str | M.MethodSpec,
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
    loop: str = "compiled",
    mc_episodes: int | None = None,
    eval_at: Sequence[int] = (),
    kl_metric: str = "episode_sum",
) -> RunResult:
    """Train one student per MDP of ``teachers`` with one method, evaluating exactly.

    See the module docstring for iterations, seeding, finished MDPs and evaluation.

    Args:
        teachers: one teacher per MDP, with the env id and kwargs that rebuild the MDPs.
        method: a method id (:data:`distill_agents.methods.METHOD_IDS`), or its parsed
            :class:`~distill_agents.methods.MethodSpec`.
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
        loop: ``"compiled"`` (default): one compiled loop per chunk
            (:func:`distill_agents.runner.loop_kernels.run_mdps`) that steps each MDP through
            the vector env's outcome tables with the per-MDP uniforms, several times faster
            than ``"vector"`` (no lockstep, no idle sub-envs, no round trips; ``step_calls``
            is 0); ``"vector"``: step the vector env through ``reset``/``step``, one Python
            round trip per step of all sub-envs (with compaction). Both train the same
            students, bit for bit (tested).
        mc_episodes: ``None`` (default): exact metrics; ``n``: Monte Carlo estimates from
            ``n`` episodes per control policy and evaluation (:class:`MonteCarloEvaluator`), for the
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
    return run_group([teachers], M.parse_method(method), RunSettings(**arguments))[0]


def run_distillation_group(
    group: Sequence[Teachers], method: str | M.MethodSpec, **kwargs: Any
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
        method: a method id, or its parsed :class:`~distill_agents.methods.MethodSpec`.
        kwargs: :func:`run_distillation`'s keyword arguments; ``loop`` must be
            ``"compiled"`` (the default).

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
    settings = RunSettings(**arguments)
    spec = M.parse_method(method)
    if len(group) > 1:
        control = settings.control or spec.default_control
        if control not in ("uniform", "teacher"):
            raise ValueError(
                f"control {control!r} depends on the student: a group of students needs the "
                "'uniform' or 'teacher' control"
            )
        if control == "teacher" and not all(np.array_equal(t.probs, first.probs) for t in group):
            raise ValueError("teacher control needs teachers with equal probabilities in a group")
        if settings.loop != "compiled":
            raise ValueError('a group of students needs loop="compiled"')
    return run_group(group, spec, settings)


@dataclass(frozen=True)
class RunSettings:
    """The settings of one run: :func:`run_distillation`'s keyword arguments, as given.

    Built once by :func:`run_distillation` (or :func:`run_distillation_group`, from
    :func:`run_distillation`'s defaults) and checked by :func:`run_group`. Each field is the
    argument of the same name of :func:`run_distillation` (see its ``Args``): ``control``,
    ``iterations``, ``eval_every``, ``lr``, ``gamma``, ``critic``, ``seed``, ``beta``,
    ``metrics``, ``distill_loss``, ``teacher_prob_floor``, ``chunk_size``, ``memory_budget``,
    ``first_mdp``, ``max_episode_steps``, ``keep_students``, ``compact``, ``parallel``,
    ``progress``, ``loop``, ``mc_episodes``, ``eval_at``, ``kl_metric``.
    """

    control: str | None
    iterations: int
    eval_every: int
    lr: float
    gamma: float
    critic: str | None
    seed: int
    beta: float | M.BetaSchedule | Callable[[int], float]
    metrics: Sequence[str]
    distill_loss: str
    teacher_prob_floor: float
    chunk_size: int | None
    memory_budget: float
    first_mdp: int
    max_episode_steps: int | None
    keep_students: bool
    compact: bool
    parallel: bool | None
    progress: bool | Callable[[int], None]
    loop: str
    mc_episodes: int | None
    eval_at: Sequence[int]
    kl_metric: str


@dataclass(frozen=True)
class _Checked:
    """The checked numbers of a :class:`RunSettings` that :func:`run_group` uses."""

    control_name: str
    control: int
    critic: str
    coef: NDArray[np.float64]
    codes: NDArray[np.int64]
    iterations: int
    eval_every: int
    seed: int
    first_mdp: int
    max_episode_steps: int | None
    mc_episodes: int | None
    metrics: tuple[str, ...]
    schedule: M.BetaSchedule | Callable[[int], float]


def _checked(group: Sequence[Teachers], spec: M.MethodSpec, settings: RunSettings) -> _Checked:
    """Check ``settings`` for ``spec`` and the teachers ``group``; a ValueError names the first."""
    teachers = group[0]
    control_name = spec.default_control if settings.control is None else settings.control
    code = M.control_code(control_name)
    mode = spec.critic_mode(settings.critic)
    coef, codes = spec.params(mode, settings.distill_loss)
    if spec.needs_teacher_values and any(t.values is None for t in group):
        raise ValueError(
            f"method {spec.id!r} needs the teacher's values V_pi, but these {teachers.kind} "
            "teachers have none"
        )
    if settings.loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS}, got {settings.loop!r}")
    mc_episodes = settings.mc_episodes
    if mc_episodes is not None:
        mc_episodes = check_int("mc_episodes", mc_episodes, 1)
    _check_kl_metric(settings.kl_metric, mc_episodes)
    iterations = check_int("iterations", settings.iterations, 0)
    eval_every = check_int("eval_every", settings.eval_every, 1)
    seed = check_int("seed", settings.seed, 0)
    first_mdp = check_int("first_mdp", settings.first_mdp, 0)
    max_episode_steps = settings.max_episode_steps
    if max_episode_steps is not None:
        max_episode_steps = check_int("max_episode_steps", max_episode_steps, 1)
    _check_step_sizes(settings.lr, settings.gamma)
    metrics = _checked_metrics(settings.metrics)
    floored_log(np.ones(1), settings.teacher_prob_floor)  # validates the floor
    return _Checked(
        control_name=control_name, control=code, critic=mode, coef=coef, codes=codes,
        iterations=iterations, eval_every=eval_every, seed=seed, first_mdp=first_mdp,
        max_episode_steps=max_episode_steps, mc_episodes=mc_episodes, metrics=metrics,
        schedule=M.as_beta_schedule(settings.beta),
    )  # fmt: skip


def run_group(
    group: Sequence[Teachers], method: str | M.MethodSpec, settings: RunSettings
) -> list[RunResult]:
    """:func:`run_distillation` for a group of teachers of the same MDPs (checked by callers).

    Args:
        group: teachers of the same MDPs, one student per member and MDP.
        method: a method id, or its parsed :class:`~distill_agents.methods.MethodSpec`.
        settings: every other argument of :func:`run_distillation` (its defaults are the only
            ones).
    """
    t0 = time.perf_counter()
    teachers = group[0]
    spec = M.parse_method(method)
    c = _checked(group, spec, settings)
    iterations = c.iterations
    beta_table = np.zeros(max(iterations, 1))
    if c.control == M.CONTROL_MIXTURE:
        beta_table[:iterations] = [M.beta_at(c.schedule, i, iterations) for i in range(iterations)]
    chunk_size = _chunk_size(teachers, settings.chunk_size, settings.memory_budget)
    builder = EnvBuilder(teachers, c.max_episode_steps, settings.parallel)
    points, eval_index = _evaluation_points(iterations, c.eval_every, settings.eval_at)
    total_episodes = len(group) * teachers.n_mdps * iterations
    bar, callback = _progress_callback(settings.progress, total_episodes, spec.id)
    run = Run(
        teachers=teachers, group=group, builder=builder, spec=spec, control=c.control,
        method=K.MethodParams(c.coef, c.codes, float(settings.lr), float(settings.gamma)),
        seed=c.seed, first_mdp=c.first_mdp, iterations=iterations, eval_index=eval_index,
        n_evals=int(points.size), beta_table=beta_table, metrics=c.metrics,
        floor=float(settings.teacher_prob_floor), compact=bool(settings.compact),
        progress=callback, compiled=settings.loop == "compiled", mc_episodes=c.mc_episodes,
        kl_per_step=settings.kl_metric == "step_mean",
    )  # fmt: skip
    try:
        trained = _train_chunks(run, chunk_size, int(points.size), settings.keep_students)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    common = _common_settings(spec, settings, c, teachers.n_mdps, chunk_size)
    return [
        _result(run, trained, g, member, common, points, wall) for g, member in enumerate(group)
    ]


def _common_settings(
    spec: M.MethodSpec, settings: RunSettings, c: _Checked, n_mdps: int, chunk_size: int
) -> dict[str, Any]:
    """The ``settings`` entries every member of a group's results shares."""
    mixture = c.control == M.CONTROL_MIXTURE
    return {
        "method": spec.id,
        "control": c.control_name,
        "critic": c.critic,
        "lr": float(settings.lr),
        "gamma": float(settings.gamma),
        "seed": c.seed,
        "first_mdp": c.first_mdp,
        "n_mdps": n_mdps,
        "iterations": c.iterations,
        "eval_every": c.eval_every,
        "beta": _describe_beta(c.schedule) if mixture else None,
        "distill_loss": settings.distill_loss,
        "teacher_prob_floor": float(settings.teacher_prob_floor),
        "metrics": list(c.metrics),
        "evaluation": "exact" if c.mc_episodes is None else f"monte_carlo:{c.mc_episodes}",
        **({"kl_metric": settings.kl_metric} if settings.kl_metric != "episode_sum" else {}),
        "chunk_size": chunk_size,
        "max_episode_steps": c.max_episode_steps,
    }


def _check_kl_metric(kl_metric: str, mc_episodes: int | None) -> None:
    if kl_metric not in KL_METRICS:
        raise ValueError(f"kl_metric must be one of {list(KL_METRICS)}, got {kl_metric!r}")
    if kl_metric != "episode_sum" and mc_episodes is not None:
        raise ValueError("kl_metric='step_mean' needs exact metrics (mc_episodes=None)")


def _check_step_sizes(lr: float, gamma: float) -> None:
    if (
        isinstance(lr, bool)
        or not isinstance(lr, (int, float))
        or not (math.isfinite(lr) and lr > 0)
    ):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")


def _checked_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """``metrics`` as a tuple of distinct names of :data:`METRICS` (a single name allowed)."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if not metrics or unknown or len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics must be distinct names from {METRICS}, got {metrics!r}")
    return metrics


def _chunk_size(teachers: Teachers, chunk_size: int | None, memory_budget: float) -> int:
    """``chunk_size``, or the MDPs of ``teachers`` that fit in ``memory_budget`` bytes."""
    if chunk_size is None:
        if isinstance(memory_budget, bool) or not memory_budget > 0:
            raise ValueError(f"memory_budget must be a positive number, got {memory_budget!r}")
        chunk_size = chunk_size_for(
            teachers.n_actions,
            float(memory_budget),
            n_states=teachers.n_index,
            tables_per_mdp=TABLES_PER_MDP,
        )
    return check_int("chunk_size", chunk_size, 1)


def _evaluation_points(
    iterations: int, eval_every: int, eval_at: Sequence[int]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The evaluation iterations ``[E]`` and, per iteration ``0 .. iterations``, its column."""
    extra = [check_int("eval_at", i, 0) for i in eval_at]
    if any(i > iterations for i in extra):
        raise ValueError(f"eval_at must hold iterations in [0, {iterations}], got {list(eval_at)}")
    points = eval_iterations(iterations, eval_every, extra)
    eval_index = np.full(iterations + 1, -1, dtype=np.int64)
    eval_index[points] = np.arange(points.size)
    return points, eval_index


def _progress_callback(
    progress: bool | Callable[[int], None], total: int, desc: str
) -> tuple[Any, Callable[[int], None] | None]:
    """``(tqdm bar or None, callback or None)`` for :func:`run_distillation`'s ``progress``."""
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="episode", unit_scale=True, desc=desc)
        return bar, bar.update
    if callable(progress):
        return None, progress
    if progress is not False:
        raise ValueError(f"progress must be True, False or a callable, got {progress!r}")
    return None, None


@dataclass
class _Trained:
    """What the chunks of one run leave: per group member ``g``, ``[B, ...]`` arrays."""

    student_metrics: list[dict[str, NDArray[np.float64]]]
    teacher_metrics: list[dict[str, NDArray[np.float64]]]
    env_steps: NDArray[np.int64]
    logits: NDArray[np.float64] | None
    critics: NDArray[np.float64] | None


def _train_chunks(run: Run, chunk_size: int, n_points: int, keep_students: bool) -> _Trained:
    """Train the run's MDPs chunk by chunk and gather the chunks' numbers."""
    teachers, metrics = run.teachers, run.metrics
    n_mdps, n_group = teachers.n_mdps, len(run.group)
    out = _Trained(
        student_metrics=[
            {name: np.empty((n_mdps, n_points)) for name in metrics} for _ in range(n_group)
        ],
        teacher_metrics=[{name: np.empty(n_mdps) for name in metrics} for _ in range(n_group)],
        env_steps=np.zeros(n_mdps, dtype=np.int64),
        logits=np.zeros((n_group, *teachers.probs.shape)) if keep_students else None,
        critics=np.zeros((n_group, *teachers.probs.shape[:2])) if keep_students else None,
    )
    for start in range(0, n_mdps, chunk_size):
        stop = min(n_mdps, start + chunk_size)
        chunk = Chunk(run, start, stop)
        chunk.run_chunk()
        for g in range(n_group):
            for name in metrics:
                out.student_metrics[g][name][start:stop] = chunk.g_metrics[g][name]
                out.teacher_metrics[g][name][start:stop] = chunk.g_teacher_metrics[g][name]
        out.env_steps[start:stop] = chunk.mdp_state[:, K.STEPS]
        if out.logits is not None and out.critics is not None:
            out.logits[:, start:stop] = chunk.dense_logits()
            out.critics[:, start:stop] = chunk.g_critic
        del chunk
    if out.logits is not None and not np.all(np.isfinite(out.logits)):
        raise FloatingPointError("a student's logits diverged (non-finite); lower lr")
    return out


def _result(
    run: Run,
    trained: _Trained,
    g: int,
    member: Teachers,
    common: Mapping[str, Any],
    points: NDArray[np.int64],
    wall: float,
) -> RunResult:
    """Group member ``g``'s :class:`RunResult` (``member``: its teachers)."""
    n_group = len(run.group)
    settings = {
        **common,
        "env_id": member.env_id,
        "env_kwargs": dict(member.env_kwargs),
        "teacher_kind": member.kind,
        "teacher_temperature": member.temperature,
        "teacher_noise": member.noise,
        **({"group_size": n_group} if n_group > 1 else {}),
    }
    first_mdp, n_mdps = run.first_mdp, run.teachers.n_mdps
    # In a group, the times and counts are the whole group's (its students share them).
    return RunResult(
        method=run.spec.id,
        control=str(common["control"]),
        iterations=run.iterations,
        eval_every=int(common["eval_every"]),
        eval_iterations=points,
        metrics=trained.student_metrics[g],
        teacher_metrics=trained.teacher_metrics[g],
        env_steps=trained.env_steps.copy(),
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
        logits=None if trained.logits is None else trained.logits[g],
        critic=None if trained.critics is None else trained.critics[g],
        row_work={
            "rows": int(run.row_counts[RK.COUNT_ROWS]),
            "entries": int(run.row_counts[RK.COUNT_ENTRIES]),
            "splits": int(run.row_counts[RK.COUNT_SPLITS]),
        },
    )


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
