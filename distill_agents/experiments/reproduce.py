"""``distill-grid reproduce``: every figure of the paper from one command (SPEC 4.1, 5).

```
distill-grid reproduce {fig2,...,fig10,all} [--mdps N] [--iterations N] [--panels P1,P2]
                       [--out DIR] [--seed S] [--quick] [--backend local|ray]
                       [--ray-address ADDR] [--workers W] [--max-actions A]
                       [--teacher-episodes N] [--no-progress]
```

runs the experiment :data:`distill_agents.experiments.EXPERIMENTS` defines for the figure and
writes, in ``DIR`` (default ``runs/reproduce``):

- ``<fig>.csv``: the curves in the long format of SPEC 4 (:mod:`distill_agents.results`), with
  the panel, method and metric names of SPEC 4.1, and rows with method ``teacher``;
- ``<fig>.png``: one subplot per panel (per panel and metric for Figs. 2 and 3), one colour per
  method, shaded 95% intervals, the teacher dotted (:func:`distill_agents.plotting.plot_rows`);
- ``<fig>.json``: the arguments, the resolved settings, the package version, ``env_steps``
  (students plus trained teachers, over every piece of the results, also those computed by an
  earlier, interrupted invocation), ``wall_seconds`` of this invocation, the CSV's SHA-256, and
  the experiment's analysis (:func:`distill_agents.experiments.analyse`).

Fig. 7 writes ``fig7.png`` (the example MDP), ``fig7.txt`` (its layout and cell counts) and
``fig7.json``; Fig. 2 integrates the exact expected update on the oscillation MDP.

How a figure is computed
    Each panel has a teacher and a list of curves (method, control). The MDPs ``0 .. N-1`` (MDP
    ``i`` has layout seed ``seed + i``) are cut into *pieces* of consecutive MDPs
    (:func:`~distill_agents.experiments.keys.piece_ranges`: at most
    :data:`~distill_agents.experiments.keys.PIECE_MDPS`, fewer for large action sets so that a
    piece fits :data:`~distill_agents.experiments.keys.PIECE_BYTES`), and every (panel, curve,
    piece) is one call of :func:`distill_agents.runner.run_distillation` with ``first_mdp`` set,
    so that thanks to the runner's per-MDP random streams the results do not depend on the
    cutting. Trained teachers
    (Q-learning, A2C) are trained once for all MDPs with
    :func:`distill_agents.teachers.make.make_teachers` (their tables depend on the batch they
    were trained in); temperatures and noise are applied to the same tables, exactly as
    ``make_teachers(temperature=..., noise=...)`` would. Planned teachers (optimal, adversarial)
    depend on their MDP alone: they are planned per MDP range by the first piece that needs
    them and kept in ``DIR/.state/teachers/`` for the others (and for other figures' panels
    with the same teachers). Pieces whose episodes do not depend on the student nor on the
    teacher (uniform-driven curves of one method on the same MDPs: Fig. 3's three
    temperatures) run as one *job* through
    :func:`distill_agents.runner.run_distillation_group`, which generates each episode once;
    they give the numbers they give alone (:func:`~distill_agents.experiments.jobs.jobs_of`).

Resuming: content-addressed pieces in ``DIR/.state``
    Every finished piece is written at once, atomically, to
    ``DIR/.state/pieces/<key-hash>.npz`` (validated on load, ``allow_pickle=False``); trained
    teachers go to ``DIR/.state/teachers/``. A piece's key is everything its numbers depend on
    (teacher identity, method, control, resolved critic, lr, gamma, iterations, evaluation
    points, metrics, seed, MDP range, package version); the key is stored in the file and
    checked on load. Starting the same command again therefore skips every finished piece and
    gives bit-identical files; a piece shared by several figures (e.g. Fig. 10 reuses Fig. 4's
    curves, Fig. 8 Fig. 5's, ``baseline`` does not depend on the teacher) is computed once.
    *A changed argument cannot mix with old results*: its pieces have other keys. It is also
    detected and reported: ``DIR/.state/manifests/<fig>.json`` records the settings of the last
    run of the figure, and a run with other settings prints one line naming what changed; the
    old pieces are kept (going back to the old arguments resumes them). A missing, truncated or
    tampered piece is recomputed. Delete ``DIR/.state`` to start over.

    A job that runs long does not lose its work to an interruption either: it runs its MDPs
    in spans (about :data:`~distill_agents.experiments.jobs.SPAN_SECONDS` each, sized from the
    time per MDP so far) and, at least every
    :data:`~distill_agents.experiments.jobs.CHECKPOINT_SECONDS`, writes the spans it has
    finished to partial files
    ``DIR/.state/pieces/<key-hash>.part-<a>-<b>.npz`` (same validation, removed once the piece
    is written). A resumed job goes on after the partial files it finds, so an interrupted run
    loses about a minute and a half of work per worker at most (at the paper's scale one MDP
    takes seconds, even with 4000 actions), and the files stay byte-identical: every MDP has
    its own random streams. Ray tasks return whole pieces (no partial files).

Parallelism
    ``--workers W`` runs the jobs in ``W`` spawned processes, each with one numba thread
    (default: the CPUs, at most 8, when the pieces to run hold at least
    :data:`~distill_agents.experiments.curves.PARALLEL_EPISODES` training episodes, else 1);
    results do not depend on ``W``.

Ray (``--backend ray [--ray-address ADDR]``)
    The same pieces run as Ray tasks (:mod:`distill_agents.parallel.ray_backend`), one CPU each
    (one task per piece: no groups, and planned teachers are planned by each task), and
    trained teachers as Ray tasks per chunk. Without ``--ray-address`` a local Ray instance is
    started (``--workers`` CPUs, default all) and shut down at the end; with one, the command
    connects to that cluster and only disconnects. A task *returns* its piece's arrays and the
    driver writes ``DIR/.state`` as each piece arrives, so no shared file system is needed
    (trained teachers are sent to the tasks through Ray's object store), finished pieces
    survive lost workers, and a failed task is retried
    (:data:`~distill_agents.parallel.ray_backend.RAY_RETRIES` times). The files are
    byte-identical to the local backend's.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distill_agents.experiments import figures as X
from distill_agents.experiments.curves import FigureRun, curve_figure
from distill_agents.experiments.keys import package_version
from distill_agents.experiments.layout import layout_figure
from distill_agents.experiments.oscillation import oscillation_rows
from distill_agents.experiments.readings import Readings, apply_readings
from distill_agents.experiments.settings import (
    ALL,
    DEFAULT_OUT,
    NO_PROGRESS_ENV,
    FigureSettings,
    add_arguments,
    check_positive,
    figure_settings,
)
from distill_agents.experiments.state import State, check_manifest, write_json
from distill_agents.parallel.pool import close_pool
from distill_agents.results import CurveRow

__all__ = ["SUMMARY_VERSION", "add_arguments", "main", "reproduce_figure", "run"]

#: Version of the layout of the ``<fig>.json`` summaries.
SUMMARY_VERSION = 1


def _progress_disabled(flag: bool) -> bool | None:
    if flag or os.environ.get(NO_PROGRESS_ENV, "") not in ("", "0"):
        return True
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return _jsonable(float(value))
    return value


def reproduce_figure(
    figure: str,
    out: str | os.PathLike[str],
    *,
    settings: FigureSettings | None = None,
    workers: int | None = None,
    progress: bool = False,
    arguments: Mapping[str, Any] | None = None,
    backend: str = "local",
    keep_workers: bool = False,
) -> dict[str, Any]:
    """Compute one figure and write ``<fig>.csv``, ``<fig>.png`` and ``<fig>.json`` in ``out``.

    Args:
        figure: a figure id (``fig2`` .. ``fig10``).
        out: the output directory (its ``.state`` subdirectory keeps the finished pieces).
        settings: resolved settings (default: the paper's full scale).
        workers: processes for the pieces (``None``: the CPUs if the pieces hold at least
            :data:`PARALLEL_EPISODES` episodes, else 1).
        progress: show tqdm progress bars on stderr.
        arguments: the command's arguments, recorded in the JSON summary.
        backend: ``"local"`` or ``"ray"`` (pieces and trained teachers as Ray tasks; inside an
            open :func:`distill_agents.parallel.ray_backend.ray_session`, else a local Ray
            instance is started for this figure). Same files either way.
        keep_workers: keep the worker processes for the next call (``reproduce all``; then
            :func:`close_pool` ends them), instead of ending them on return.

    Returns:
        The JSON summary written.
    """
    try:
        return _reproduce_figure(figure, out, settings, workers, progress, arguments, backend)
    finally:
        if not keep_workers:
            close_pool()


def _reproduce_figure(
    figure: str,
    out: str | os.PathLike[str],
    settings: FigureSettings | None,
    workers: int | None,
    progress: bool,
    arguments: Mapping[str, Any] | None,
    backend: str,
) -> dict[str, Any]:
    settings = settings if settings is not None else figure_settings(figure)
    exp = apply_readings(X.get_experiment(figure), settings.readings)
    out_dir = Path(out)
    t0 = time.perf_counter()
    summary = _summary_head(figure, exp, settings, arguments)
    if exp.kind == "layout":
        summary.update(layout_figure(out_dir, settings.seed))
        summary.update(env_steps=0, wall_seconds=time.perf_counter() - t0, png=f"{figure}.png")
        write_json(out_dir / f"{figure}.json", _jsonable(summary))
        return summary
    if exp.kind == "oscillation":
        rows = oscillation_rows(exp, settings.iterations, settings.eval_every, settings.panels)
        run = FigureRun(rows=rows)
        summary["settings"]["exact"] = True
    else:
        run = _run_curves(exp, settings, out_dir, workers, _bar_factory(progress), backend)
    csv_path, png_path, digest = _write_rows(figure, exp, settings, out_dir, run.rows)
    summary.update(
        env_steps=run.student_env_steps + run.teacher_env_steps,
        student_env_steps=run.student_env_steps,
        teacher_env_steps=run.teacher_env_steps,
        wall_seconds=time.perf_counter() - t0,
        piece_seconds=run.piece_seconds,
        pieces={"total": run.pieces_total, "reused": run.pieces_reused},
        csv=csv_path.name,
        csv_sha256=digest,
        png=png_path.name,
        analysis=X.analyse(run.rows),
        diverged=run.extra.get("diverged", {}),
    )
    write_json(out_dir / f"{figure}.json", _jsonable(summary))
    return summary


def _bar_factory(progress: bool) -> Callable[..., Any]:
    """Tqdm progress bars on stderr (disabled without ``progress`` or with NO_PROGRESS_ENV)."""
    from tqdm import tqdm

    def bar_factory(**kwargs: Any) -> Any:
        return tqdm(
            file=sys.stderr,
            disable=True if not progress else _progress_disabled(False),
            dynamic_ncols=True,
            **kwargs,
        )

    return bar_factory


def _summary_head(
    figure: str,
    exp: X.Experiment,
    settings: FigureSettings,
    arguments: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The part of a figure's JSON summary known before it runs."""
    return {
        "command": "reproduce",
        "figure": figure,
        "title": exp.title,
        "arguments": dict(arguments or {}),
        "settings": {
            **settings.manifest(),
            "panels": list(settings.panels),
            "skipped_panels": list(settings.skipped),
            "lr": exp.lr,
            "gamma": exp.gamma,
        },
        "version": package_version(),
        "format_version": SUMMARY_VERSION,
    }


def _run_curves(
    exp: X.Experiment,
    settings: FigureSettings,
    out_dir: Path,
    workers: int | None,
    bar_factory: Callable[..., Any],
    backend: str,
) -> FigureRun:
    """A curve figure's run on the state in ``out_dir`` (in a Ray session for ``ray``)."""
    state = State(out_dir)
    state.remove_stale_temporaries()
    check_manifest(state, settings)
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be local or ray, got {backend!r}")
    session: Any = contextlib.nullcontext()
    if backend == "ray":
        from distill_agents.parallel.ray_backend import ray_session

        session = ray_session()
    with session:
        return curve_figure(exp, settings, state, workers, bar_factory, backend)


def _write_rows(
    figure: str,
    exp: X.Experiment,
    settings: FigureSettings,
    out_dir: Path,
    rows: Sequence[CurveRow],
) -> tuple[Path, Path, str]:
    """Write a figure's CSV and PNG; their paths and the CSV's SHA-256."""
    from distill_agents import plotting
    from distill_agents.results import write_csv

    csv_path = out_dir / f"{figure}.csv"
    png_path = out_dir / f"{figure}.png"
    digest = write_csv(csv_path, rows)
    scale = (
        f"{settings.iterations} update steps, exact"
        if exp.kind == "oscillation"
        else f"{settings.mdps} MDPs, {settings.iterations} iterations"
    )
    plotting.plot_rows(rows, png_path, title=f"{figure}: {exp.title} ({scale})")
    return csv_path, png_path, digest


def _parse_panels(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise ValueError(f"--panels must name at least one panel, got {text!r}")
    return names


def run(args: argparse.Namespace) -> int:
    """Execute ``distill-grid reproduce`` with parsed ``args``; returns the exit status (0).

    Raises:
        ValueError: a bad argument (one-line message).
    """
    figure = args.figure
    if figure != ALL and figure not in X.FIGURES:
        raise ValueError(f"figure must be one of {', '.join((*X.FIGURES, ALL))}; got {figure!r}")
    from distill_agents.parallel.ray_backend import check_backend, ray_session

    check_positive("workers", args.workers)
    check_backend(args.backend, args.ray_address, args.workers)
    panels = _parse_panels(args.panels)
    if figure == ALL and panels is not None:
        raise ValueError("--panels selects panels of one figure; it cannot be used with all")
    figures = list(X.FIGURES) if figure == ALL else [figure]
    readings = Readings.parse(args.set or [])
    resolved = [
        figure_settings(
            f,
            quick=bool(args.quick),
            mdps=args.mdps,
            iterations=args.iterations,
            panels=panels,
            seed=args.seed,
            max_actions=args.max_actions,
            teacher_episodes=args.teacher_episodes,
            eval_points=args.eval_points,
            mc_episodes=args.mc,
            readings=readings,
        )
        if not (figure == ALL and args.max_actions is not None and _all_skipped(f, args))
        else None
        for f in figures
    ]
    out = Path(args.out if args.out is not None else DEFAULT_OUT)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    workers = args.workers
    arguments = {k: v for k, v in vars(args).items() if k != "func"}
    try:
        with (
            ray_session(args.ray_address, num_cpus=workers)
            if args.backend == "ray"
            else contextlib.nullcontext()
        ):
            times = _run_figures(args, figures, resolved, out, arguments)
    finally:
        close_pool()
    if figure == ALL:
        write_json(
            out / "all.json",
            {"arguments": arguments, "version": package_version(), "wall_seconds": times},
        )
    return 0


def _run_figures(
    args: argparse.Namespace,
    figures: Sequence[str],
    resolved: Sequence[FigureSettings | None],
    out: Path,
    arguments: Mapping[str, Any],
) -> dict[str, float]:
    """Run the figures in order and print what each wrote; their wall seconds."""
    times: dict[str, float] = {}
    for f, settings in zip(figures, resolved, strict=True):
        if settings is None:
            print(f"skipped {f}: every panel has more than --max-actions actions")
            continue
        summary = reproduce_figure(
            f,
            out,
            settings=settings,
            workers=args.workers,
            progress=not args.no_progress,
            arguments=arguments,
            backend=args.backend,
            keep_workers=True,
        )
        times[f] = summary["wall_seconds"]
        written = ", ".join(
            str(out / name)
            for name in (summary.get("csv"), summary.get("png"), f"{f}.json")
            if name
        )
        if f == "fig7":
            written = f"{out / 'fig7.png'}, {out / 'fig7.txt'}, {out / 'fig7.json'}"
        print(
            f"wrote {written} ({summary['wall_seconds']:.1f} s, {summary['env_steps']:,} env steps)"
        )
    return times


def _all_skipped(figure: str, args: argparse.Namespace) -> bool:
    exp = X.get_experiment(figure)
    return bool(exp.panels) and all(p.teacher.n_actions > args.max_actions for p in exp.panels)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m distill_agents.reproduce FIGURE [options]``; returns the exit status.

    Bad arguments print one line on stderr and give status 2; an interruption gives 130
    (finished pieces are kept: run the same command again to resume).
    """
    parser = argparse.ArgumentParser(prog="distill-grid reproduce")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as err:
        text = str(err).strip().splitlines()
        print(f"distill-grid reproduce: error: {text[0] if text else err!r}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "distill-grid reproduce: interrupted; finished pieces are kept (run the same "
            "command again to resume)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
