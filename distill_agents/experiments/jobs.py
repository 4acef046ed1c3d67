"""Running pieces: jobs, groups of pieces sharing their episodes, and spans of MDPs.

Every (panel, curve, piece) is one call of :func:`distill_agents.runner.run_distillation`
with ``first_mdp`` set, so that thanks to the runner's per-MDP random streams the results do
not depend on the cutting. Pieces whose episodes do not depend on the student nor on the
teacher (uniform-driven curves of one method on the same MDPs: Fig. 3's three temperatures)
run as one *job* through :func:`distill_agents.runner.run_distillation_group`, which
generates each episode once; they give the numbers they give alone (:func:`jobs_of`).

A job that runs long does not lose its work to an interruption: it runs its MDPs in spans
(about :data:`SPAN_SECONDS` each, sized from the time per MDP so far) and, at least every
:data:`CHECKPOINT_SECONDS`, writes the spans it has finished to partial files
(:mod:`distill_agents.experiments.state`). A resumed job goes on after the partial files it
finds, and the files stay byte-identical: every MDP has its own random streams.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from distill_agents import methods as M
from distill_agents.experiments.keys import Piece, canonical, env_key
from distill_agents.experiments.piece_teachers import cached_piece_teachers, make_piece_teachers
from distill_agents.experiments.settings import eval_points_of
from distill_agents.experiments.state import (
    PIECE_KIND,
    SPAN_STATS,
    Span,
    load_partials,
    partial_files,
    write_partial,
)
from distill_agents.parallel.pool import worker_progress

__all__ = [
    "CHECKPOINT_SECONDS",
    "SPAN_COST",
    "SPAN_SECONDS",
    "compute_job",
    "expected_cost",
    "group_key",
    "job_cost",
    "jobs_of",
    "piece_arrays",
]

#: A job (a piece, or a group of pieces sharing their episodes) that runs longer than this
#: writes the MDPs it has finished to partial files at least this often, so that an
#: interrupted run loses at most about this much work per worker, plus one span.
CHECKPOINT_SECONDS = 60.0
#: A job runs its MDPs in spans sized to take about this long (see ``_job_outputs``).
SPAN_SECONDS = 30.0
#: A job whose expected cost (``job_cost``) is below this runs in one span: it takes well
#: under a minute (a piece of 500 MDPs x 30 000 episodes with 4 actions costs 2.1e7).
SPAN_COST = 5e7


def _diverged(err: BaseException) -> bool:
    """Whether a runner error means a student's numbers became non-finite."""
    # The runner's two messages for a student whose logits are no longer finite numbers.
    return isinstance(err, FloatingPointError) or (
        isinstance(err, ValueError) and "policy must hold finite" in str(err)
    )


def _run_kwargs(piece: Piece, a: int, progress: Any, iterations: int) -> dict[str, Any]:
    """The runner's keyword arguments for MDPs from ``a`` of a piece."""
    return {
        "control": piece.control,
        "iterations": iterations,
        "eval_every": piece.settings.eval_every if iterations else 1,
        "eval_at": [i for i in piece.settings.early if i <= iterations],
        "lr": piece.lr,
        "gamma": piece.gamma,
        "critic": piece.critic,
        "seed": piece.settings.seed,
        "metrics": piece.metrics,
        "first_mdp": piece.lo + a,
        "progress": progress if progress is not None and iterations else False,
        "loop": "compiled",
        "mc_episodes": piece.settings.mc_episodes,
        "teacher_prob_floor": piece.settings.readings.teacher_prob_floor,
        "kl_metric": piece.settings.readings.kl_metric,
    }


def _run_range(piece: Piece, teachers: Any, a: int, b: int, progress: Any, iterations: int) -> Any:
    from distill_agents import runner

    return runner.run_distillation(
        teachers.subset(a, b) if (a, b) != (0, teachers.n_mdps) else teachers,
        piece.method,
        **_run_kwargs(piece, a, progress, iterations),
    )


def _bisect(
    piece: Piece, teachers: Any, a: int, b: int, progress: Any, out: list[tuple[int, Any]]
) -> None:
    """Run MDPs ``a .. b - 1`` of a piece; halve around students that diverge.

    Thanks to the per-MDP streams, a student's result does not depend on the MDPs run with it,
    so the halves give the numbers the whole range would have given. A single MDP whose student
    diverges is recorded as ``None`` (its metrics become NaN).
    """
    try:
        out.append((a, _run_range(piece, teachers, a, b, progress, piece.settings.iterations)))
    except (ValueError, FloatingPointError) as err:
        if not _diverged(err):
            raise
        if b - a == 1:
            out.append((a, None))
            return
        mid = (a + b) // 2
        _bisect(piece, teachers, a, mid, progress, out)
        _bisect(piece, teachers, mid, b, progress, out)


def compute_job(
    job: Sequence[Piece],
    progress: Callable[[int], None] | None = None,
    checkpoint: bool = True,
) -> float:
    """Run a job (one piece, or a group of pieces sharing their episodes) and write its files.

    A job that runs longer than :data:`CHECKPOINT_SECONDS` keeps its finished MDPs in partial
    files on the way (see :func:`_job_outputs`); they are removed once the pieces are written.
    Returns the job's wall seconds.
    """
    from distill_agents.storage import save_arrays

    t0 = time.perf_counter()
    outputs = _job_outputs(job, progress, checkpoint=checkpoint)
    for piece, (arrays, meta) in zip(job, outputs, strict=True):
        save_arrays(piece.path, PIECE_KIND, arrays, meta)
    for piece in job:
        for path in partial_files(piece):
            with contextlib.suppress(OSError):
                path.unlink()
    return time.perf_counter() - t0


def piece_arrays(
    piece: Piece, progress: Callable[[int], None] | None = None
) -> tuple[dict[str, NDArray], dict[str, Any]]:
    """Run one piece without partial files; its file's ``(arrays, meta)`` (a Ray task's work)."""
    return _job_outputs([piece], progress, checkpoint=False)[0]


def _job_outputs(
    job: Sequence[Piece],
    progress: Callable[[int], None] | None = None,
    checkpoint: bool = True,
) -> list[tuple[dict[str, NDArray], dict[str, Any]]]:
    """The ``(arrays, meta)`` of every piece of a job, its MDPs run in spans.

    A job expected to cost less than :data:`SPAN_COST` runs in one span. Otherwise the first
    span is one MDP and each next one is sized from the time per MDP of the last so that it
    takes about :data:`SPAN_SECONDS` (at most 4 times the last). With ``checkpoint``, the
    spans finished since the last partial file are written as one more (one per piece) once
    :data:`CHECKPOINT_SECONDS` have passed since it; a resumed job starts after the partial
    files it finds. Neither the spans nor resuming change a number: every MDP has its own
    streams, so a student's results do not depend on the MDPs run with it.

    A student whose numbers become non-finite (it diverged) gets NaN metrics: the results
    leave it out of the mean (``n_mdps`` counts the MDPs used) and the piece records how many
    diverged (the JSON summary reports them per curve).
    """
    t0 = time.perf_counter()
    progress, queue_progress = worker_progress(progress)
    teachers = (
        [cached_piece_teachers(job[0])] if len(job) == 1 else [make_piece_teachers(p) for p in job]
    )
    n = teachers[0].n_mdps
    done = load_partials(job, n) if checkpoint else [[] for _ in job]
    a = done[0][-1].b if done[0] else 0
    if a and progress is not None:
        progress(a * job[0].settings.iterations)
    kept = a  # MDPs in partial files
    size = n if job_cost(job) < SPAN_COST else 1
    last_flush = time.perf_counter()
    while a < n:
        b = min(n, a + size)
        started = time.perf_counter()
        for spans, span in zip(done, _run_span(job, teachers, a, b, progress), strict=True):
            spans.append(span)
        seconds = time.perf_counter() - started
        size = max(1, min(4 * size, int(SPAN_SECONDS * (b - a) / max(seconds, 1e-9))))
        a = b
        if checkpoint and a < n and time.perf_counter() - last_flush >= CHECKPOINT_SECONDS:
            for piece, spans in zip(job, done, strict=True):
                spans[:] = [*spans[: _covering(spans, kept)], _joined_span(spans, kept)]
                write_partial(piece, spans[-1])
            kept, last_flush = a, time.perf_counter()
    if queue_progress is not None:
        queue_progress.flush()
    share = (time.perf_counter() - t0) / len(job)
    extra = {} if len(job) == 1 else {"group_size": len(job)}
    return [_assembled(piece, spans, share, extra) for piece, spans in zip(job, done, strict=True)]


def _covering(spans: Sequence[Span], a: int) -> int:
    """How many of ``spans`` (in order) end at or before MDP ``a``."""
    return sum(1 for span in spans if span.b <= a)


def _joined_span(spans: Sequence[Span], a: int) -> Span:
    """The spans from MDP ``a`` on, as one."""
    rest = [span for span in spans if span.a >= a]
    return Span(
        rest[0].a,
        rest[-1].b,
        {name: np.concatenate([s.arrays[name] for s in rest]) for name in rest[0].arrays},
        [i for s in rest for i in s.diverged],
        {name: float(sum(s.stats.get(name, 0.0) for s in rest)) for name in SPAN_STATS},
    )


def _run_span(
    job: Sequence[Piece], teachers: Sequence[Any], a: int, b: int, progress: Any
) -> list[Span]:
    """Run MDPs ``a .. b - 1`` of every piece of a job: one :class:`Span` per piece.

    A group runs with :func:`~distill_agents.runner.run_distillation_group` (the same numbers
    as each piece alone; the time and build and evaluation times are split evenly among its
    pieces). If a student diverges the pieces run one by one instead (each then halves around
    it; their progress is counted again).
    """
    from distill_agents import runner

    started = time.perf_counter()
    if len(job) > 1:
        first = job[0]
        try:
            results = runner.run_distillation_group(
                [t.subset(a, b) for t in teachers],
                first.method,
                **_run_kwargs(first, a, progress, first.settings.iterations),
            )
        except (ValueError, FloatingPointError) as err:
            if not _diverged(err):
                raise
        else:
            share = (time.perf_counter() - started) / len(job)
            return [
                _span_of(piece, t, a, b, [(a, result)], share, len(job))
                for piece, t, result in zip(job, teachers, results, strict=True)
            ]
    spans = []
    for piece, t in zip(job, teachers, strict=True):
        piece_started = time.perf_counter()
        parts: list[tuple[int, Any]] = []
        _bisect(piece, t, a, b, progress, parts)
        spans.append(_span_of(piece, t, a, b, parts, time.perf_counter() - piece_started, 1))
    return spans


def _span_of(
    piece: Piece,
    teachers: Any,
    a0: int,
    b0: int,
    parts: list[tuple[int, Any]],
    seconds: float,
    group_size: int,
) -> Span:
    """A :class:`Span` of MDPs ``a0 .. b0 - 1`` from its runs ``(first MDP, result or None)``."""
    parts.sort(key=lambda part: part[0])
    n_points = eval_points_of(
        piece.settings.iterations, piece.settings.eval_every, piece.settings.early
    ).size
    arrays: dict[str, NDArray] = {"env_steps": np.zeros(b0 - a0, dtype=np.int64)}
    for name in piece.metrics:
        arrays[f"student_{name}"] = np.full((b0 - a0, n_points), np.nan)
        arrays[f"teacher_{name}"] = np.full(b0 - a0, np.nan)
    diverged: list[int] = []
    stats = {"sub_env_steps": 0.0, "build_seconds": 0.0, "eval_seconds": 0.0}
    for a, result in parts:
        i = a - a0
        if result is None:  # the teacher's own numbers still count
            diverged.append(piece.lo + a)
            result = _run_range(piece, teachers, a, a + 1, None, 0)
            for name in piece.metrics:
                arrays[f"teacher_{name}"][i] = result.teacher_metrics[name][0]
            continue
        n = result.n_mdps
        arrays["env_steps"][i : i + n] = result.env_steps
        for name in piece.metrics:
            arrays[f"student_{name}"][i : i + n] = result.metrics[name]
            arrays[f"teacher_{name}"][i : i + n] = result.teacher_metrics[name]
        stats["sub_env_steps"] += float(result.sub_env_steps)
        stats["build_seconds"] += float(result.build_seconds) / group_size
        stats["eval_seconds"] += float(result.eval_seconds) / group_size
    return Span(a0, b0, arrays, diverged, {**stats, "wall_seconds": seconds})


def _assembled(
    piece: Piece, spans: Sequence[Span], seconds: float, extra: Mapping[str, Any]
) -> tuple[dict[str, NDArray], dict[str, Any]]:
    """A piece file's ``(arrays, meta)`` from its spans (``seconds``: this run's share).

    The recorded wall time adds the partial files' times to ``seconds``, less the spans' of
    this run (they are in ``seconds``).
    """
    whole = _joined_span(spans, 0)
    resumed = sum(span.stats["wall_seconds"] for span in spans if span.resumed)
    arrays: dict[str, NDArray] = {
        **whole.arrays,
        "eval_iterations": eval_points_of(
            piece.settings.iterations, piece.settings.eval_every, piece.settings.early
        ),
    }
    meta = {
        "key": json.loads(canonical(piece.key)),
        "wall_seconds": seconds + resumed,
        "diverged": whole.diverged,
        "sub_env_steps": int(whole.stats["sub_env_steps"]),
        "build_seconds": whole.stats["build_seconds"],
        "eval_seconds": whole.stats["eval_seconds"],
        **extra,
    }
    return arrays, meta


def group_key(piece: Piece) -> str | None:
    """Pieces with the same key train from the same episodes (``None``: the piece runs alone).

    Uniform-driven curves of one method on the same MDPs (Fig. 3's three teacher temperatures):
    their episodes do not depend on the student, nor on the teacher.
    """
    control = piece.control or M.parse_method(piece.method).default_control
    if control != "uniform":
        return None
    return canonical(
        {
            **env_key(piece.spec, piece.settings.seed),
            "method": piece.method,
            "critic": piece.critic,
            "lr": piece.lr,
            "gamma": piece.gamma,
            "metrics": list(piece.metrics),
            "settings": piece.settings.manifest(),
            "range": [piece.lo, piece.hi],
        }
    )


def jobs_of(pieces: Sequence[Piece]) -> list[list[Piece]]:
    """The pieces as jobs: those with the same :func:`group_key` together (first-seen order)."""
    jobs: list[list[Piece]] = []
    groups: dict[str, list[Piece]] = {}
    for piece in pieces:
        key = group_key(piece)
        if key is None:
            jobs.append([piece])
        elif key in groups:
            groups[key].append(piece)
        else:
            groups[key] = [piece]
            jobs.append(groups[key])
    return jobs


def expected_cost(piece: Piece) -> float:
    """A rough relative cost of a piece, to start the longest first (order changes no number).

    Episodes, times the actions (a student row costs up to O(A) per episode, and evaluation
    and teachers O(A) per state), times 4 for uniform control
    (its random walks take ~4x the steps of the other controls' episodes on 20x20 grids),
    times the corridor's length over 10 (episodes get longer with it: Fig. 9's longest
    corridors cost the most and must not start last).
    """
    control = piece.control or M.parse_method(piece.method).default_control
    length = piece.spec.env_kwargs.get("length")  # the corridor's (no other env has one)
    return (
        piece.episodes
        * (1.0 + piece.spec.n_actions / 10.0)
        * (4.0 if control == "uniform" else 1.0)
        * (float(length) / 10.0 if length is not None else 1.0)
    )


def job_cost(job: Sequence[Piece]) -> float:
    """:func:`expected_cost` of a job; a group pays for its episodes once.

    Measured: three uniform-driven students in one group train in 0.46 of the time of three
    separate runs.
    """
    total = sum(expected_cost(piece) for piece in job)
    return total if len(job) == 1 else total / 2.0
