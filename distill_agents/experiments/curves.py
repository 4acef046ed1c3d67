"""The learning-curve figures (Figs. 3-6, 8-10): plan the pieces, run the missing ones, assemble.

:func:`curve_figure` cuts every curve of every panel into pieces
(:func:`distill_agents.experiments.keys.piece_ranges`), loads the finished ones from
``DIR/.state``, trains the trained teachers the missing ones need, runs them (in this process,
in the local pool of :mod:`distill_agents.parallel.pool`, or as Ray tasks,
:func:`distill_agents.parallel.ray_backend.run_pieces_ray`) and assembles the rows in panel and
legend order, with the teacher's own rows after each panel's curves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from distill_agents import methods as M
from distill_agents.experiments import figures as X
from distill_agents.experiments.jobs import compute_job, expected_cost, job_cost, jobs_of
from distill_agents.experiments.keys import (
    Piece,
    canonical,
    env_key,
    piece_key,
    piece_ranges,
    planned_key,
    resolved_critic,
    trained_key,
)
from distill_agents.experiments.piece_teachers import ensure_trained, with_teacher_file
from distill_agents.experiments.settings import FigureSettings
from distill_agents.experiments.state import State, load_piece, recorded_steps
from distill_agents.parallel.pool import default_workers, run_jobs
from distill_agents.parallel.ray_backend import run_pieces_ray
from distill_agents.results import CurveRow, curve_rows

__all__ = ["PARALLEL_EPISODES", "FigureRun", "curve_figure"]

#: With ``--workers`` unset, pieces run in several processes only if they hold this many
#: training episodes in total (below it, spawning the processes costs more than it saves).
PARALLEL_EPISODES = 200_000

#: A curve of a panel and its pieces, in MDP order.
_Planned = tuple[X.Panel, X.Curve, list[Piece]]


@dataclass
class FigureRun:
    """Bookkeeping of one figure's invocation."""

    rows: list[CurveRow] = field(default_factory=list)
    student_env_steps: int = 0
    teacher_env_steps: int = 0
    piece_seconds: float = 0.0
    pieces_total: int = 0
    pieces_reused: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _n_states(spec: X.TeacherSpec) -> int:
    import gymnasium as gym

    import gridworld_env

    del gridworld_env
    env = gym.make(spec.env_id, **dict(spec.env_kwargs))
    return int(env.unwrapped.mdp.n_states)  # type: ignore[attr-defined]


def curve_figure(
    exp: X.Experiment,
    settings: FigureSettings,
    state: State,
    workers: int | None,
    bar_factory: Callable[..., Any],
    backend: str = "local",
) -> FigureRun:
    """Compute (or load) every piece of a curve figure's panels and assemble its rows."""
    out = FigureRun()
    panels = [exp.panel(name) for name in settings.panels]
    plan = _plan(exp, settings, state, panels, backend)
    loaded, todo, seen = _finished(plan)
    # Trained teachers first (in this process: their trainers use every core).
    teacher_files = _trained_teachers(panels, settings, state, todo, bar_factory, backend)
    out.teacher_env_steps = sum(steps for _, steps in teacher_files.values())
    todo = [with_teacher_file(p, teacher_files, settings) if p.spec.trained else p for p in todo]
    # Pieces with the same teachers (panel and MDP range) in a row: they are built once.
    order = {name: i for i, name in enumerate(settings.panels)}
    todo.sort(key=lambda p: (order.get(_panel_of(plan, p), 0), p.lo))
    out.pieces_total = len(seen)
    out.pieces_reused = len(seen) - len(todo)
    if todo:
        _run_todo(exp.figure, todo, workers, bar_factory, backend)
        for piece in todo:
            found = load_piece(Path(piece.path), piece.key)
            if found is None:
                raise RuntimeError(f"piece {piece.path} was not written")
            loaded[piece.path] = found
    _assemble(exp, panels, plan, loaded, out)
    return out


def _plan(
    exp: X.Experiment,
    settings: FigureSettings,
    state: State,
    panels: Sequence[X.Panel],
    backend: str,
) -> list[_Planned]:
    """Every curve of ``panels`` with its pieces."""
    plan: list[_Planned] = []
    n_states_cache: dict[str, int] = {}
    for panel in panels:
        spec = panel.teacher
        env_name = canonical(env_key(spec, 0))
        if env_name not in n_states_cache:
            n_states_cache[env_name] = _n_states(spec)
        ranges = piece_ranges(settings.mdps, n_states_cache[env_name], spec.n_actions)
        for curve in panel.curves:
            pieces = []
            for lo, hi in ranges:
                key = piece_key(exp, panel, curve, settings, lo, hi)
                pieces.append(
                    Piece(
                        key=key,
                        path=str(state.piece_path(key)),
                        spec=spec,
                        method=curve.method,
                        control=curve.control,
                        critic=resolved_critic(curve.method, panel.critic),
                        lr=exp.lr,
                        gamma=exp.gamma,
                        metrics=exp.metrics,
                        settings=settings,
                        lo=lo,
                        hi=hi,
                        teacher_file=None,
                        planned_file=None
                        if spec.trained or backend == "ray"  # Ray nodes: no shared disk
                        else str(state.teacher_paths(planned_key(spec, settings, lo, hi))[0]),
                    )
                )
            plan.append((panel, curve, pieces))
    return plan


def _finished(
    plan: Sequence[_Planned],
) -> tuple[dict[str, dict[str, Any]], list[Piece], set[str]]:
    """The finished pieces by path, the pieces to run, and the paths of all pieces."""
    loaded: dict[str, dict[str, Any]] = {}
    todo: list[Piece] = []
    seen: set[str] = set()
    for _, _, pieces in plan:
        for piece in pieces:
            if piece.path in seen:
                continue
            seen.add(piece.path)
            found = load_piece(Path(piece.path), piece.key)
            if found is not None:
                loaded[piece.path] = found
            else:
                todo.append(piece)
    return loaded, todo, seen


def _trained_teachers(
    panels: Sequence[X.Panel],
    settings: FigureSettings,
    state: State,
    todo: Sequence[Piece],
    bar_factory: Callable[..., Any],
    backend: str,
) -> dict[str, tuple[str, int]]:
    """``(path, env_steps)`` of the panels' trained teachers, by key; trained where needed."""
    teacher_files: dict[str, tuple[str, int]] = {}
    for panel in panels:
        if not panel.teacher.trained:
            continue
        tkey = canonical(trained_key(panel.teacher, settings))
        if tkey in teacher_files:
            continue
        if any(p.spec == panel.teacher for p in todo):
            teacher_files[tkey] = ensure_trained(
                panel.teacher, settings, state, bar_factory, backend
            )
        else:  # every piece is done: only the teachers' cost is needed, for the summary
            teacher_files[tkey] = ("", recorded_steps(state, panel.teacher, settings))
    return teacher_files


def _run_todo(
    figure: str,
    todo: Sequence[Piece],
    workers: int | None,
    bar_factory: Callable[..., Any],
    backend: str,
) -> None:
    """Run the missing pieces (each writes its file), with one progress bar."""
    total = sum(p.episodes for p in todo)
    with bar_factory(
        total=total, unit="episode", unit_scale=True, desc=f"{figure} students"
    ) as bar:
        if workers is None:  # processes pay off only for real work (spawning takes seconds)
            workers = default_workers() if total >= PARALLEL_EPISODES else 1
        if backend == "ray":  # one task per piece (no groups)
            run_pieces_ray(sorted(todo, key=expected_cost, reverse=True), bar)
        else:
            # Pieces sharing their episodes run as one job; in parallel, the longest jobs
            # first: none is left running alone at the end.
            jobs = jobs_of(todo)
            if workers > 1 and len(jobs) > 1:
                longest_first = sorted(jobs, key=job_cost, reverse=True)
                run_jobs(compute_job, longest_first, min(workers, len(jobs)), bar)
            else:
                for job in jobs:
                    compute_job(job, progress=bar.update)


def _assemble(
    exp: X.Experiment,
    panels: Sequence[X.Panel],
    plan: Sequence[_Planned],
    loaded: Mapping[str, Mapping[str, Any]],
    out: FigureRun,
) -> None:
    """Fill ``out``'s rows and totals in panel and legend order (whatever ran when)."""
    per_panel_teacher: dict[str, dict[str, NDArray]] = {}
    counted: set[str] = set()
    for panel, curve, pieces in plan:
        parts = [loaded[p.path] for p in pieces]
        its = parts[0]["arrays"]["eval_iterations"]
        for p in pieces:
            if p.path not in counted:
                counted.add(p.path)
                out.student_env_steps += int(loaded[p.path]["arrays"]["env_steps"].sum())
                out.piece_seconds += float(loaded[p.path]["meta"].get("wall_seconds", 0.0))
        for metric in exp.metrics:
            values = np.concatenate([part["arrays"][f"student_{metric}"] for part in parts])
            out.rows += curve_rows(exp.figure, panel.name, curve.label, metric, its, values)
        diverged = [m for part in parts for m in part["meta"].get("diverged", [])]
        if diverged:
            out.extra.setdefault("diverged", {})[f"{panel.name}: {curve.label}"] = diverged
        if M.parse_method(curve.method).needs_teacher and panel.name not in per_panel_teacher:
            per_panel_teacher[panel.name] = {
                metric: np.concatenate([part["arrays"][f"teacher_{metric}"] for part in parts])
                for metric in exp.metrics
            }
            per_panel_teacher[panel.name]["__its__"] = its
    rows: list[CurveRow] = []
    for panel in panels:
        rows += [r for r in out.rows if r.panel == panel.name]
        teacher = per_panel_teacher.get(panel.name)
        if teacher is not None:
            its = teacher["__its__"]
            for metric in exp.metrics:
                level = np.repeat(teacher[metric][:, None], len(its), axis=1)
                rows += curve_rows(exp.figure, panel.name, "teacher", metric, its, level)
    out.rows = rows


def _panel_of(plan: Sequence[_Planned], piece: Piece) -> str:
    for panel, _, pieces in plan:
        if any(p.path == piece.path for p in pieces):
            return panel.name
    return ""
