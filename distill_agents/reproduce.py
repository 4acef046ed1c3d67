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
    (:func:`piece_ranges`: at most :data:`PIECE_MDPS`, fewer for large action sets so that a
    piece fits :data:`PIECE_BYTES`), and every (panel, curve, piece) is one call of
    :func:`distill_agents.runner.run_distillation` with ``first_mdp`` set, so that thanks to the
    runner's per-MDP random streams the results do not depend on the cutting. Trained teachers
    (Q-learning, A2C) are trained once for all MDPs with
    :func:`distill_agents.teacher_training.make_teachers` (their tables depend on the batch they
    were trained in); temperatures and noise are applied to the same tables, exactly as
    ``make_teachers(temperature=..., noise=...)`` would. Planned teachers (optimal, adversarial)
    depend on their MDP alone: they are planned per MDP range by the first piece that needs
    them and kept in ``DIR/.state/teachers/`` for the others (and for other figures' panels
    with the same teachers). Pieces whose episodes do not depend on the student nor on the
    teacher (uniform-driven curves of one method on the same MDPs: Fig. 3's three
    temperatures) run as one *job* through
    :func:`distill_agents.runner.run_distillation_group`, which generates each episode once;
    they give the numbers they give alone (:func:`jobs_of`).

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
    in spans (about :data:`SPAN_SECONDS` each, sized from the time per MDP so far) and, at
    least every :data:`CHECKPOINT_SECONDS`, writes the spans it has finished to partial files
    ``DIR/.state/pieces/<key-hash>.part-<a>-<b>.npz`` (same validation, removed once the piece
    is written). A resumed job goes on after the partial files it finds, so an interrupted run
    loses about a minute and a half of work per worker at most (at the paper's scale one MDP
    takes seconds, even with 4000 actions), and the files stay byte-identical: every MDP has
    its own random streams. Ray tasks return whole pieces (no partial files).

Parallelism
    ``--workers W`` runs the jobs in ``W`` spawned processes, each with one numba thread
    (default: the CPUs, at most 8, when the pieces to run hold at least
    :data:`PARALLEL_EPISODES` training episodes, else 1); results do not depend on ``W``.

Ray (``--backend ray [--ray-address ADDR]``)
    The same pieces run as Ray tasks (:mod:`distill_agents.ray_backend`), one CPU each (one
    task per piece: no groups, and planned teachers are planned by each task), and
    trained teachers as Ray tasks per chunk. Without ``--ray-address`` a local Ray instance is
    started (``--workers`` CPUs, default all) and shut down at the end; with one, the command
    connects to that cluster and only disconnects. A task *returns* its piece's arrays and the
    driver writes ``DIR/.state`` as each piece arrives, so no shared file system is needed
    (trained teachers are sent to the tasks through Ray's object store), finished pieces
    survive lost workers, and a failed task is retried (:data:`RAY_RETRIES` times). The files
    are byte-identical to the local backend's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from distill_agents import experiments as X
from distill_agents import methods as M
from distill_agents.readings import READING_NAMES, Readings, apply_readings
from distill_agents.results import CurveRow, curve_rows

__all__ = [
    "DEFAULT_OUT",
    "NO_PROGRESS_ENV",
    "PIECE_BYTES",
    "PIECE_MDPS",
    "STATE_VERSION",
    "FigureSettings",
    "add_arguments",
    "close_pool",
    "figure_settings",
    "main",
    "oscillation_rows",
    "piece_ranges",
    "reproduce_figure",
    "run",
]

#: Output directory by default.
DEFAULT_OUT = "runs/reproduce"
#: Set this environment variable (to anything but "" or "0") to hide progress bars.
NO_PROGRESS_ENV = "DISTILL_GRID_NO_PROGRESS"
#: Most MDPs in one piece (the unit of resumption and of parallel work).
PIECE_MDPS = 500
#: Memory one piece's teacher and student tables may take (bytes); bounds pieces for large
#: action sets. A constant, so that the cutting depends on the settings only.
PIECE_BYTES = 1.5e9
#: ``[N, A]`` float64 tables per MDP counted against :data:`PIECE_BYTES` (teacher probabilities
#: and log-probabilities, the runner's logits, snapshots and evaluation policies).
PIECE_TABLES = 8
#: A job (a piece, or a group of pieces sharing their episodes) that runs longer than this
#: writes the MDPs it has finished to partial files at least this often, so that an
#: interrupted run loses at most about this much work per worker, plus one span.
CHECKPOINT_SECONDS = 60.0
#: A job runs its MDPs in spans sized to take about this long (see ``_job_outputs``).
SPAN_SECONDS = 30.0
#: A job whose expected cost (``_job_cost``) is below this runs in one span: it takes well
#: under a minute (a piece of 500 MDPs x 30 000 episodes with 4 actions costs 2.1e7).
SPAN_COST = 5e7
#: With ``--workers`` unset, pieces run in several processes only if they hold this many
#: training episodes in total (below it, spawning the processes costs more than it saves).
PARALLEL_EPISODES = 200_000
#: Discount of the planned (optimal, adversarial) teachers' value iteration.
PLANNING_GAMMA = 0.99
#: Extra attempts of a failed Ray task (``--backend ray``).
RAY_RETRIES = 3
#: Episodes per control policy and evaluation of ``--mc`` without a count.
MC_EPISODES = 100
#: Version of the layout of the ``<fig>.json`` summaries.
SUMMARY_VERSION = 1
#: Temporary files of an interrupted write in ``DIR/.state`` older than this are removed.
STALE_TEMP_SECONDS = 3600.0
#: Version of the state layout in ``DIR/.state`` (part of every key).
STATE_VERSION = 1
_PIECE_KIND = "reproduce_piece"
_ALL = "all"


# ------------------------------------------------------------------------------ arguments
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``distill-grid reproduce`` on ``parser``."""
    parser.add_argument("figure", help=f"one of {', '.join((*X.FIGURES, _ALL))}")
    parser.add_argument(
        "--mdps", type=int, default=None, help="random MDPs per panel (default 1000; --quick 12)"
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="training episodes per MDP (default 30000; Fig. 2: update steps, 9000)",
    )
    parser.add_argument(
        "--panels", default=None, help="comma-separated subset of the figure's panels"
    )
    parser.add_argument("--out", default=None, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument(
        "--seed", type=int, default=0, help="MDP i has layout seed SEED + i; training seed"
    )
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    parser.add_argument(
        "--backend", default="local", help="local (default) or ray (the pieces as Ray tasks)"
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="with --backend ray: a Ray cluster (auto or HOST:PORT; default: start a local one)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes for the pieces (default: the CPUs for large runs, else 1); with "
        "--backend ray: the CPUs of the local Ray instance; results do not depend on it",
    )
    parser.add_argument(
        "--max-actions",
        type=int,
        default=None,
        help="leave out panels with more actions (e.g. 40 skips Figs. 4/10's |A| >= 400)",
    )
    parser.add_argument(
        "--teacher-episodes",
        type=int,
        default=None,
        help="training episodes of Q-learning/A2C teachers (default 30000; --quick 300)",
    )
    parser.add_argument(
        "--eval-points",
        type=int,
        default=None,
        help="evaluation points per curve after the start (default 30; Fig. 2: 900)",
    )
    parser.add_argument(
        "--mc",
        type=int,
        nargs="?",
        const=MC_EPISODES,
        default=None,
        metavar="EPISODES",
        help="Monte Carlo estimates of the metrics from EPISODES episodes per control policy and "
        f"evaluation (default {MC_EPISODES}) instead of the exact values on the model",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help=f"hide the progress bars (also: {NO_PROGRESS_ENV}=1)",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a reading of a choice the paper leaves open (repeatable; keys: "
        f"{', '.join(READING_NAMES)}; see distill_agents.readings)",
    )


@dataclass(frozen=True)
class FigureSettings:
    """The resolved settings of one figure's run (what its results depend on).

    Attributes:
        figure: figure id.
        mdps: number of MDPs.
        iterations: training episodes per MDP (update steps for Fig. 2).
        eval_every: evaluation period ``k``.
        teacher_episodes: episodes of trained teachers.
        seed: the seed.
        panels: the panels run, in order.
        skipped: panels left out by ``--max-actions``.
        mc_episodes: ``None`` for exact metrics, else Monte Carlo episodes (``--mc``).
        early: evaluation points before the first regular one
            (:func:`distill_agents.runner.early_iterations`; curve figures only).
        readings: the choices the paper leaves open (:mod:`distill_agents.readings`,
            ``--set``).
    """

    figure: str
    mdps: int
    iterations: int
    eval_every: int
    teacher_episodes: int
    seed: int
    panels: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    mc_episodes: int | None = None
    early: tuple[int, ...] = ()
    readings: Readings = field(default_factory=Readings)

    def manifest(self) -> dict[str, Any]:
        """The settings that decide the numbers (panels excluded: pieces are per panel)."""
        return {
            "figure": self.figure,
            "mdps": self.mdps,
            "iterations": self.iterations,
            "eval_every": self.eval_every,
            "teacher_episodes": self.teacher_episodes,
            "seed": self.seed,
            **({} if self.mc_episodes is None else {"mc_episodes": self.mc_episodes}),
            **({"early_eval": list(self.early)} if self.early else {}),
            **({"readings": self.readings.changed()} if self.readings.changed() else {}),
        }


def _positive(name: str, value: Any, low: int = 1) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise ValueError(f"--{name} must be an integer >= {low}, got {value}")


def figure_settings(
    figure: str,
    *,
    quick: bool = False,
    mdps: int | None = None,
    iterations: int | None = None,
    panels: Sequence[str] | None = None,
    seed: int = 0,
    max_actions: int | None = None,
    teacher_episodes: int | None = None,
    eval_points: int | None = None,
    mc_episodes: int | None = None,
    readings: Readings | None = None,
) -> FigureSettings:
    """Resolve one figure's settings from the experiment's scale and the overrides.

    Raises:
        ValueError: a bad value (one line naming the option and what it accepts).
    """
    exp = X.get_experiment(figure)
    _positive("mdps", mdps)
    _positive("iterations", iterations)
    _positive("seed", seed, 0)
    _positive("max-actions", max_actions)
    _positive("teacher-episodes", teacher_episodes)
    _positive("eval-points", eval_points)
    _positive("mc", mc_episodes)
    scale = exp.quick if quick else exp.full
    n_iterations = scale.iterations if iterations is None else iterations
    points = scale.eval_points if eval_points is None else eval_points
    chosen = exp.panel_names
    if panels is not None:
        unknown = [p for p in panels if p not in exp.panel_names]
        if unknown or not panels:
            names = ", ".join(exp.panel_names) or "(none)"
            raise ValueError(f"--panels: {figure} has no panel {unknown[0]!r}; its panels: {names}")
        chosen = tuple(p for p in exp.panel_names if p in panels)
    skipped: tuple[str, ...] = ()
    if max_actions is not None:
        skipped = tuple(p for p in chosen if exp.panel(p).teacher.n_actions > max_actions)
        chosen = tuple(p for p in chosen if p not in skipped)
        if not chosen and exp.panels:
            raise ValueError(
                f"--max-actions {max_actions} leaves no panel of {figure} (skipped: "
                f"{', '.join(skipped)})"
            )
    from distill_agents.runner import early_iterations

    eval_every = max(1, n_iterations // points)
    return FigureSettings(
        figure=figure,
        mdps=1 if exp.kind != "curves" else (scale.mdps if mdps is None else mdps),
        iterations=n_iterations,
        eval_every=eval_every,
        teacher_episodes=scale.teacher_episodes if teacher_episodes is None else teacher_episodes,
        seed=seed,
        panels=chosen,
        skipped=skipped,
        mc_episodes=mc_episodes,
        early=early_iterations(eval_every, n_iterations) if exp.kind == "curves" else (),
        readings=Readings() if readings is None else readings,
    )


# ------------------------------------------------------------------------------ keys
def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(key).encode()).hexdigest()[:24]


def _version() -> str:
    from distill_agents import __version__

    return str(__version__)


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 (16 hex digits) of the source of ``gridworld_env`` and ``distill_agents``.

    Part of every teacher and piece key, so results computed by other code (an edit without a
    version bump included) are never reused: a changed line only costs a recomputation.
    """
    import distill_agents
    import gridworld_env

    digest = hashlib.sha256()
    for package in (gridworld_env, distill_agents):
        root = Path(str(package.__file__)).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root.parent).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _env_key(spec: X.TeacherSpec, seed: int) -> dict[str, Any]:
    return {"env_id": spec.env_id, "env_kwargs": dict(spec.env_kwargs), "layout_base": seed}


def _trained_key(spec: X.TeacherSpec, settings: FigureSettings) -> dict[str, Any]:
    """Identity of a trained teacher's tables (before temperature and noise)."""
    key = {
        "state_version": STATE_VERSION,
        "version": _version(),
        "code": code_digest(),
        "kind": spec.kind,
        **_env_key(spec, settings.seed),
        "n_mdps": settings.mdps,
        "seed": settings.seed,
        "episodes": settings.teacher_episodes,
    }
    if spec.kind == "a2c":
        key["a2c_variant"] = "mc"
    return key


def _planned_key(spec: X.TeacherSpec, settings: FigureSettings, lo: int, hi: int) -> dict[str, Any]:
    """Identity of the planned teachers of MDPs ``lo .. hi - 1`` (before noise)."""
    return {
        "state_version": STATE_VERSION,
        "version": _version(),
        "code": code_digest(),
        "kind": spec.kind,
        **_env_key(spec, settings.seed),
        "temperature": spec.temperature,
        "gamma": PLANNING_GAMMA,
        "mdps": [lo, hi],
    }


def _teacher_key(spec: X.TeacherSpec, settings: FigureSettings) -> dict[str, Any]:
    """Identity of a panel's teachers."""
    if spec.trained:
        base: dict[str, Any] = _trained_key(spec, settings)
    else:
        base = {"kind": spec.kind, **_env_key(spec, settings.seed)}
    return {
        **base,
        "temperature": spec.temperature,
        "noise": spec.noise,
        "noise_seed": settings.seed,
    }


def piece_ranges(n_mdps: int, n_states: int, n_actions: int) -> list[tuple[int, int]]:
    """Consecutive MDP ranges ``[lo, hi)`` covering ``0 .. n_mdps - 1``.

    At most :data:`PIECE_MDPS` MDPs each, and at most as many as fit :data:`PIECE_BYTES` with
    :data:`PIECE_TABLES` ``[S, A]`` float64 tables per MDP (at least one MDP).
    """
    per_mdp = PIECE_TABLES * 8.0 * n_states * n_actions
    size = int(max(1, min(PIECE_MDPS, PIECE_BYTES // per_mdp)))
    return [(lo, min(n_mdps, lo + size)) for lo in range(0, n_mdps, size)]


@dataclass(frozen=True)
class _Piece:
    """One unit of work: a curve of a panel on a range of MDPs."""

    key: dict[str, Any]
    path: str
    spec: X.TeacherSpec
    method: str
    control: str | None
    critic: str | None
    lr: float
    gamma: float
    metrics: tuple[str, ...]
    settings: FigureSettings
    lo: int
    hi: int
    teacher_file: str | None
    #: Where the planned (optimal, adversarial) teachers of the range are kept once made: every
    #: curve of a panel, and the panels of other figures with the same teachers, load them.
    planned_file: str | None = None

    @property
    def episodes(self) -> int:
        return (self.hi - self.lo) * self.settings.iterations


def _resolved_critic(method: str, critic: str | None) -> str:
    spec = M.parse_method(method)
    if spec.forced_critic is not None:
        return spec.forced_critic
    return spec.critic_mode(critic)


def _piece_key(
    exp: X.Experiment,
    panel: X.Panel,
    curve: X.Curve,
    settings: FigureSettings,
    lo: int,
    hi: int,
) -> dict[str, Any]:
    spec = M.parse_method(curve.method)
    teacher: dict[str, Any]
    if spec.needs_teacher or any(m != "return" for m in exp.metrics):
        teacher = _teacher_key(panel.teacher, settings)
    else:
        # A method that never reads its teacher learns the same on the same MDPs whatever the
        # teacher (baseline, td_v_zero); the teacher's own rows come from another curve.
        teacher = {"teacher_free": True, **_env_key(panel.teacher, settings.seed)}
    return {
        "state_version": STATE_VERSION,
        "version": _version(),
        "code": code_digest(),
        "teacher": teacher,
        "method": spec.id,
        "control": curve.control or spec.default_control,
        "critic": _resolved_critic(curve.method, panel.critic),
        "lr": exp.lr,
        "gamma": exp.gamma,
        "iterations": settings.iterations,
        "eval_every": settings.eval_every,
        "metrics": list(exp.metrics),
        "seed": settings.seed,
        "lo": lo,
        "hi": hi,
        **({} if settings.mc_episodes is None else {"mc_episodes": settings.mc_episodes}),
        **({"early_eval": list(settings.early)} if settings.early else {}),
        **({"readings": settings.readings.changed()} if settings.readings.changed() else {}),
    }


# ------------------------------------------------------------------------------ state
class _State:
    """The ``DIR/.state`` directory: pieces, trained teachers, manifests."""

    def __init__(self, out: Path) -> None:
        self.root = out / ".state"
        self.pieces = self.root / "pieces"
        self.teachers = self.root / "teachers"
        self.manifests = self.root / "manifests"

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files a killed writer left behind; return how many.

        Only those older than :data:`STALE_TEMP_SECONDS`: a younger one may belong to a run
        writing into the same directory right now.
        """
        removed = 0
        now = time.time()
        for folder in (self.pieces, self.teachers, self.manifests):
            for path in folder.glob(".*.tmp") if folder.is_dir() else ():
                with contextlib.suppress(OSError):
                    if now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                        path.unlink()
                        removed += 1
        return removed

    def piece_path(self, key: Mapping[str, Any]) -> Path:
        return self.pieces / f"{_digest(key)}.npz"

    def teacher_paths(self, key: Mapping[str, Any]) -> tuple[Path, Path]:
        stem = _digest(key)
        return self.teachers / f"{stem}.npz", self.teachers / f"{stem}.json"


def _write_json(path: Path, value: Any) -> None:
    from gridworld_env._io import atomic_write

    text = json.dumps(value, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


def _result_specs(metrics: Sequence[str]) -> dict[str, Any]:
    """The arrays of a piece or partial file (``eval_iterations`` only in pieces)."""
    from distill_agents.storage import ArraySpec

    specs = {"env_steps": ArraySpec("iu", 1)}
    for name in metrics:
        specs[f"student_{name}"] = ArraySpec("f", 2, finite=False)
        specs[f"teacher_{name}"] = ArraySpec("f", 1, finite=False)
    return specs


def _result_shapes_ok(
    arrays: Mapping[str, NDArray], metrics: Sequence[str], n_mdps: int, n_points: int
) -> bool:
    """Whether a piece's or partial's arrays hold ``n_mdps`` MDPs at ``n_points`` points."""
    return arrays["env_steps"].shape == (n_mdps,) and all(
        arrays[f"student_{m}"].shape == (n_mdps, n_points)
        and arrays[f"teacher_{m}"].shape == (n_mdps,)
        for m in metrics
    )


def _load_piece(path: Path, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """A finished piece, or None if missing, unreadable or not the piece of ``key``."""
    from distill_agents.storage import ArraySpec, FileFormatError, load_arrays

    if not path.is_file():
        return None
    metrics = key["metrics"]
    specs = {**_result_specs(metrics), "eval_iterations": ArraySpec("iu", 1)}
    try:
        arrays, meta = load_arrays(path, _PIECE_KIND, specs)
    except FileFormatError as err:
        print(f"distill-grid reproduce: note: recomputing a damaged piece ({err})", file=sys.stderr)
        return None
    b = int(key["hi"]) - int(key["lo"])
    shapes_ok = _result_shapes_ok(arrays, metrics, b, arrays["eval_iterations"].size)
    if meta.get("key") != json.loads(_canonical(key)) or not shapes_ok:
        print(
            f"distill-grid reproduce: note: recomputing {path.name} (it holds another piece)",
            file=sys.stderr,
        )
        return None
    return {"arrays": arrays, "meta": meta}


# ------------------------------------------------------------------------------ teachers
_BASE_CACHE: dict[str, Any] = {}


def _load_base(path: str) -> Any:
    from distill_agents.teachers import Teachers

    if path not in _BASE_CACHE:
        _BASE_CACHE.clear()  # keep one set of tables per process
        _BASE_CACHE[path] = Teachers.load(path)
    return _BASE_CACHE[path]


_PIECE_CACHE: dict[str, Any] = {}


def _piece_teachers(piece: _Piece) -> Any:
    """The teachers of MDPs ``lo .. hi - 1`` of a piece's panel (the last set is cached)."""
    readings = piece.settings.readings.changed()
    name = _canonical([_teacher_key(piece.spec, piece.settings), piece.lo, piece.hi, readings])
    if name not in _PIECE_CACHE:
        _PIECE_CACHE.clear()  # one set per process: pieces of one panel and range run in a row
        _PIECE_CACHE[name] = _make_piece_teachers(piece)
    return _PIECE_CACHE[name]


def _make_piece_teachers(piece: _Piece) -> Any:
    from distill_agents import teachers as T

    spec, settings, lo, hi = piece.spec, piece.settings, piece.lo, piece.hi
    if spec.trained:
        assert piece.teacher_file is not None
        base = _load_base(piece.teacher_file).subset(lo, hi)
        if spec.kind == "q_learning":
            assert base.q_values is not None
            teachers = T.q_learning_teachers(
                base.q_values,
                base.n_indices,
                float(spec.temperature or 0.0),
                acting=base.acting,
                layout_seeds=base.layout_seeds,
                env_id=base.env_id,
                env_kwargs=base.env_kwargs,
                settings=base.settings,
            )
        else:
            teachers = base
    else:
        teachers = _planned_teachers(piece)
    readings = settings.readings
    if spec.noise > 0.0:
        models = None
        if readings.noise == "path" or readings.noisy_value == "exact":
            from distill_agents.teacher_training import TeacherEnv

            env = TeacherEnv(spec.env_id, dict(spec.env_kwargs), layout_base=settings.seed)
            models = env.make_vec(list(range(lo, hi))).models
        teachers = T.noisy_teachers(
            teachers, spec.noise, settings.seed, first_mdp=lo, procedure=readings.noise,
            models=models,
        )  # fmt: skip
        if readings.noisy_value == "exact":
            teachers = T.exact_values(teachers, models)
    if spec.kind == "adversarial" and readings.adversarial_value == "own":
        assert teachers.values is not None
        teachers = teachers.replace(values=-teachers.values)  # its own critic: minus V
    return teachers


def _planned_teachers(piece: _Piece) -> Any:
    """The planned teachers of a piece's MDPs: from its ``planned_file``, else planned (and kept).

    Value iteration on 500 20x20 grids takes ~9 s: once per panel and range instead of once
    per piece (Figs. 4 and 10 share theirs). A damaged file is planned again.
    """
    from distill_agents import teachers as T
    from distill_agents.storage import FileFormatError
    from distill_agents.teacher_training import TeacherEnv

    spec, settings, lo, hi = piece.spec, piece.settings, piece.lo, piece.hi
    path = piece.planned_file
    if path is not None and Path(path).is_file():
        with contextlib.suppress(FileFormatError, OSError, ValueError):
            kept = T.Teachers.load(path)
            if kept.n_mdps == hi - lo and kept.env_id == spec.env_id:
                return kept
    env = TeacherEnv(spec.env_id, dict(spec.env_kwargs), layout_base=settings.seed)
    models = env.make_vec(list(range(lo, hi))).models
    teachers = T.planned_teachers(
        models,
        minimise=spec.kind == "adversarial",
        gamma=PLANNING_GAMMA,
        temperature=float(spec.temperature or 0.0),
        layout_seeds=np.array([env.layout_seed(i) for i in range(lo, hi)], dtype=np.int64),
        env_id=spec.env_id,
        env_kwargs=env.env_kwargs,
        settings={"seed": settings.seed, "gamma": PLANNING_GAMMA},
    ).replace(q_values=None)
    if path is not None:  # written atomically: a concurrent worker reads a whole file or none
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        teachers.save(path)
    return teachers


def _ensure_trained(
    spec: X.TeacherSpec,
    settings: FigureSettings,
    state: _State,
    bar_factory: Callable[..., Any],
    backend: str = "local",
) -> tuple[str, int]:
    """Train (or find) the trained teachers of ``spec``; ``(path, env_steps)``."""
    from distill_agents.teacher_training import make_teachers
    from distill_agents.teachers import Teachers

    key = _trained_key(spec, settings)
    npz, sidecar = state.teacher_paths(key)
    if npz.is_file() and sidecar.is_file():
        try:
            info = json.loads(sidecar.read_text())
            if info.get("key") == json.loads(_canonical(key)):
                Teachers.load(npz)  # validates the file
                return str(npz), int(info["env_steps"])
        except (ValueError, KeyError, OSError, TypeError, AttributeError, OverflowError) as err:
            print(
                f"distill-grid reproduce: note: retraining damaged teachers ({err})",
                file=sys.stderr,
            )
    t0 = time.perf_counter()
    with bar_factory(
        total=settings.mdps * settings.teacher_episodes,
        unit="episode",
        unit_scale=True,
        desc=f"teach {spec.kind} {_short_env(spec)}",
    ) as bar:
        run = make_teachers(
            spec.kind,
            spec.env_id,
            dict(spec.env_kwargs),
            settings.mdps,
            seed=settings.seed,
            episodes=settings.teacher_episodes,
            progress=bar.update,
            backend=backend,
        )
    run.teachers.save(npz)
    steps = int(run.stats.env_steps) if run.stats is not None else 0
    _write_json(
        sidecar,
        {
            "key": json.loads(_canonical(key)),
            "env_steps": steps,
            "seconds": time.perf_counter() - t0,
        },
    )
    return str(npz), steps


def _short_env(spec: X.TeacherSpec) -> str:
    extra = ",".join(f"{k}={v}" for k, v in sorted(spec.env_kwargs.items()))
    return spec.env_id + (f"({extra})" if extra else "")


# ------------------------------------------------------------------------------ running pieces
_QUEUE: Any = None


def _init_worker(queue: Any, threads: int) -> None:
    global _QUEUE
    _QUEUE = queue
    import numba

    from distill_agents._process import exit_with_parent

    exit_with_parent()

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


class _QueueProgress:
    """Progress of a worker, sent to the parent in batches."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self.pending = 0
        self.last = time.monotonic()

    def __call__(self, episodes: int) -> None:
        self.pending += int(episodes)
        now = time.monotonic()
        if now - self.last > 0.25:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.pending:
            self.queue.put(self.pending)
            self.pending = 0


def _diverged(err: BaseException) -> bool:
    """Whether a runner error means a student's numbers became non-finite."""
    # The runner's two messages for a student whose logits are no longer finite numbers.
    return isinstance(err, FloatingPointError) or (
        isinstance(err, ValueError) and "policy must hold finite" in str(err)
    )


def _run_kwargs(piece: _Piece, a: int, progress: Any, iterations: int) -> dict[str, Any]:
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


def _run_range(piece: _Piece, teachers: Any, a: int, b: int, progress: Any, iterations: int) -> Any:
    from distill_agents import runner

    return runner.run_distillation(
        teachers.subset(a, b) if (a, b) != (0, teachers.n_mdps) else teachers,
        piece.method,
        **_run_kwargs(piece, a, progress, iterations),
    )


def _bisect(
    piece: _Piece, teachers: Any, a: int, b: int, progress: Any, out: list[tuple[int, Any]]
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


def _compute_job(
    job: Sequence[_Piece],
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
        save_arrays(piece.path, _PIECE_KIND, arrays, meta)
    for piece in job:
        for path in _partial_files(piece):
            with contextlib.suppress(OSError):
                path.unlink()
    return time.perf_counter() - t0


def _worker_progress(
    progress: Callable[[int], None] | None,
) -> tuple[Callable[[int], None] | None, _QueueProgress | None]:
    """``progress``, or in a pool's worker the queue to the parent's bar (flushed at the end)."""
    if progress is None and _QUEUE is not None:
        queue_progress = _QueueProgress(_QUEUE)
        return queue_progress, queue_progress
    return progress, None


def _piece_arrays(
    piece: _Piece, progress: Callable[[int], None] | None = None
) -> tuple[dict[str, NDArray], dict[str, Any]]:
    """Run one piece without partial files; its file's ``(arrays, meta)`` (a Ray task's work)."""
    return _job_outputs([piece], progress, checkpoint=False)[0]


_SPAN_STATS = ("sub_env_steps", "build_seconds", "eval_seconds", "wall_seconds")


@dataclass
class _Span:
    """The results of MDPs ``a .. b - 1`` of one piece (indices within the piece)."""

    a: int
    b: int
    arrays: dict[str, NDArray]  # env_steps, student_<metric>, teacher_<metric>
    diverged: list[int]  # absolute MDP indices
    stats: dict[str, float]  # sub_env_steps, build_seconds, eval_seconds, wall_seconds
    resumed: bool = False  # read from a partial file


def _job_outputs(
    job: Sequence[_Piece],
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
    progress, queue_progress = _worker_progress(progress)
    teachers = (
        [_piece_teachers(job[0])] if len(job) == 1 else [_make_piece_teachers(p) for p in job]
    )
    n = teachers[0].n_mdps
    done = _load_partials(job, n) if checkpoint else [[] for _ in job]
    a = done[0][-1].b if done[0] else 0
    if a and progress is not None:
        progress(a * job[0].settings.iterations)
    kept = a  # MDPs in partial files
    size = n if _job_cost(job) < SPAN_COST else 1
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
                _write_partial(piece, spans[-1])
            kept, last_flush = a, time.perf_counter()
    if queue_progress is not None:
        queue_progress.flush()
    share = (time.perf_counter() - t0) / len(job)
    extra = {} if len(job) == 1 else {"group_size": len(job)}
    return [_assembled(piece, spans, share, extra) for piece, spans in zip(job, done, strict=True)]


def _covering(spans: Sequence[_Span], a: int) -> int:
    """How many of ``spans`` (in order) end at or before MDP ``a``."""
    return sum(1 for span in spans if span.b <= a)


def _joined_span(spans: Sequence[_Span], a: int) -> _Span:
    """The spans from MDP ``a`` on, as one."""
    rest = [span for span in spans if span.a >= a]
    return _Span(
        rest[0].a,
        rest[-1].b,
        {name: np.concatenate([s.arrays[name] for s in rest]) for name in rest[0].arrays},
        [i for s in rest for i in s.diverged],
        {name: float(sum(s.stats.get(name, 0.0) for s in rest)) for name in _SPAN_STATS},
    )


def _run_span(
    job: Sequence[_Piece], teachers: Sequence[Any], a: int, b: int, progress: Any
) -> list[_Span]:
    """Run MDPs ``a .. b - 1`` of every piece of a job: one :class:`_Span` per piece.

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
    piece: _Piece,
    teachers: Any,
    a0: int,
    b0: int,
    parts: list[tuple[int, Any]],
    seconds: float,
    group_size: int,
) -> _Span:
    """A :class:`_Span` of MDPs ``a0 .. b0 - 1`` from its runs ``(first MDP, result or None)``."""
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
    return _Span(a0, b0, arrays, diverged, {**stats, "wall_seconds": seconds})


def _assembled(
    piece: _Piece, spans: Sequence[_Span], seconds: float, extra: Mapping[str, Any]
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
        "key": json.loads(_canonical(piece.key)),
        "wall_seconds": seconds + resumed,
        "diverged": whole.diverged,
        "sub_env_steps": int(whole.stats["sub_env_steps"]),
        "build_seconds": whole.stats["build_seconds"],
        "eval_seconds": whole.stats["eval_seconds"],
        **extra,
    }
    return arrays, meta


# ------------------------------------------------------------------------------ partial files
_PARTIAL_KIND = "reproduce_partial"


def _partial_files(piece: _Piece) -> list[Path]:
    """The partial files of a piece (``<piece>.part-<a>-<b>.npz``), in no particular order."""
    path = Path(piece.path)
    return list(path.parent.glob(f"{path.stem}.part-*.npz")) if path.parent.is_dir() else []


def _partial_path(piece: _Piece, a: int, b: int) -> Path:
    path = Path(piece.path)
    return path.with_name(f"{path.stem}.part-{a}-{b}.npz")


def _write_partial(piece: _Piece, span: _Span) -> None:
    from distill_agents.storage import save_arrays

    meta = {
        "key": json.loads(_canonical(piece.key)),
        "span": [span.a, span.b],
        "diverged": span.diverged,
        "stats": span.stats,
    }
    save_arrays(_partial_path(piece, span.a, span.b), _PARTIAL_KIND, span.arrays, meta)


def _read_partial(piece: _Piece, a: int, b: int) -> _Span | None:
    """The partial file of MDPs ``a .. b - 1`` of a piece, or None if missing or not right."""
    from distill_agents.storage import FileFormatError, load_arrays

    try:
        arrays, meta = load_arrays(
            _partial_path(piece, a, b), _PARTIAL_KIND, _result_specs(piece.metrics)
        )
    except (FileFormatError, OSError):
        return None
    n_points = eval_points_of(
        piece.settings.iterations, piece.settings.eval_every, piece.settings.early
    ).size
    if (
        meta.get("key") != json.loads(_canonical(piece.key))
        or meta.get("span") != [a, b]
        or not _result_shapes_ok(arrays, piece.metrics, b - a, n_points)
    ):
        return None
    stats = {name: float(meta["stats"].get(name, 0.0)) for name in _SPAN_STATS}
    return _Span(a, b, arrays, [int(i) for i in meta["diverged"]], stats, resumed=True)


def _load_partials(job: Sequence[_Piece], n: int) -> list[list[_Span]]:
    """The partial spans a job can resume from: the chain from MDP 0 that every piece has."""
    starts: dict[int, int] = {}
    for path in _partial_files(job[0]):
        match = re.fullmatch(r".*\.part-(\d+)-(\d+)", path.stem)
        if match is not None:
            lo, hi = int(match[1]), int(match[2])
            if 0 <= lo < hi <= n:
                starts[lo] = hi
    done: list[list[_Span]] = [[] for _ in job]
    a = 0
    while a in starts:
        b = starts[a]
        spans = [_read_partial(piece, a, b) for piece in job]
        if any(span is None for span in spans):
            break
        for kept, span in zip(done, spans, strict=True):
            assert span is not None
            kept.append(span)
        a = b
    return done


def group_key(piece: _Piece) -> str | None:
    """Pieces with the same key train from the same episodes (``None``: the piece runs alone).

    Uniform-driven curves of one method on the same MDPs (Fig. 3's three teacher temperatures):
    their episodes do not depend on the student, nor on the teacher.
    """
    control = piece.control or M.parse_method(piece.method).default_control
    if control != "uniform":
        return None
    return _canonical(
        {
            **_env_key(piece.spec, piece.settings.seed),
            "method": piece.method,
            "critic": piece.critic,
            "lr": piece.lr,
            "gamma": piece.gamma,
            "metrics": list(piece.metrics),
            "settings": piece.settings.manifest(),
            "range": [piece.lo, piece.hi],
        }
    )


def jobs_of(pieces: Sequence[_Piece]) -> list[list[_Piece]]:
    """The pieces as jobs: those with the same :func:`group_key` together (first-seen order)."""
    jobs: list[list[_Piece]] = []
    groups: dict[str, list[_Piece]] = {}
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


def eval_points_of(
    iterations: int, eval_every: int, early: Sequence[int] = ()
) -> NDArray[np.int64]:
    """The evaluation iterations of a curve (as :func:`distill_agents.runner.eval_iterations`)."""
    from distill_agents.runner import eval_iterations

    return np.asarray(eval_iterations(iterations, eval_every, early), dtype=np.int64)


def _default_workers() -> int:
    """Processes by default: the CPUs this process may use (at most 8)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _progress_disabled(flag: bool) -> bool | None:
    if flag or os.environ.get(NO_PROGRESS_ENV, "") not in ("", "0"):
        return True
    return None


def _expected_cost(piece: _Piece) -> float:
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


def _job_cost(job: Sequence[_Piece]) -> float:
    """:func:`_expected_cost` of a job; a group pays for its episodes once.

    Measured: three uniform-driven students in one group train in 0.46 of the time of three
    separate runs.
    """
    total = sum(_expected_cost(piece) for piece in job)
    return total if len(job) == 1 else total / 2.0


@dataclass
class _Pool:
    """Worker processes kept for the figures of one invocation (see :func:`_pool`)."""

    executor: Any
    queue: Any
    workers: int


_POOL: _Pool | None = None


def _pool(workers: int) -> _Pool:
    """At least ``workers`` spawned worker processes, kept from an earlier figure if possible.

    ``reproduce all`` runs its figures one after the other in the same processes: no start-up
    per figure, and their kept chunk builds serve the next figure's panels on the same MDPs.
    """
    global _POOL
    import concurrent.futures as cf
    import multiprocessing as mp

    if _POOL is not None and _POOL.workers >= workers:
        return _POOL
    close_pool()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    executor = cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(queue, 1)
    )
    _POOL = _Pool(executor, queue, workers)
    return _POOL


def close_pool(cancel: bool = False) -> None:
    """Shut the kept worker processes down (``cancel``: drop the jobs not started)."""
    global _POOL
    if _POOL is None:
        return
    pool, _POOL = _POOL, None
    pool.executor.shutdown(wait=not cancel, cancel_futures=cancel)
    pool.queue.close()
    pool.queue.join_thread()


def _run_pieces(
    jobs: Sequence[Sequence[_Piece]], workers: int, bar: Any
) -> None:  # pragma: no cover - exercised with workers > 1 in the slow tests
    """Run ``jobs`` in ``workers`` spawned processes, updating ``bar`` as episodes finish."""
    import concurrent.futures as cf
    import queue as queue_module

    pool = _pool(workers)

    def drain(timeout: float) -> None:
        while True:
            try:
                bar.update(pool.queue.get(timeout=timeout) if timeout else pool.queue.get_nowait())
            except queue_module.Empty:
                return

    try:
        futures = [pool.executor.submit(_compute_job, job) for job in jobs]
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            drain(0.0)
            for future in done:
                future.result()  # re-raise a worker's error here
        drain(0.05)  # the last counts may still be on their way
    except BaseException:
        close_pool(cancel=True)
        raise


def _ray_piece(
    piece: _Piece, teacher_files: Mapping[str, bytes], progress: Callable[[int], None]
) -> tuple[dict[str, NDArray], dict[str, Any]]:
    """A Ray task: one piece's ``(arrays, meta)``; the driver writes the file.

    ``teacher_files`` maps the driver's trained-teacher paths to their bytes (sent once through
    Ray's object store): on a node where the path does not exist (no shared file system) the
    bytes are written to a local cache first. The names are content-addressed (key digests).

    Raises:
        ValueError: this worker runs other package source than the driver (not retried).
    """
    expected = piece.key.get("code")
    if expected is not None and expected != code_digest():
        raise ValueError(
            f"a Ray worker runs other distillgrid code (source digest {code_digest()}) than the "
            f"driver ({expected}): install the same version on every node"
        )
    if piece.teacher_file is not None and not Path(piece.teacher_file).is_file():
        import tempfile
        from dataclasses import replace

        from gridworld_env._io import atomic_write

        local = Path(tempfile.gettempdir(), "distillgrid-teachers", Path(piece.teacher_file).name)
        if not local.is_file():
            local.parent.mkdir(parents=True, exist_ok=True)
            data = teacher_files[piece.teacher_file]
            atomic_write(local, lambda handle: handle.write(data))
        piece = replace(piece, teacher_file=str(local))
    return _piece_arrays(piece, progress)


def _run_pieces_ray(pieces: Sequence[_Piece], bar: Any) -> None:
    """Run ``pieces`` as Ray tasks; each piece's file is written here as soon as it arrives."""
    from distill_agents import ray_backend
    from distill_agents.storage import save_arrays

    files = {p.teacher_file: Path(p.teacher_file).read_bytes() for p in pieces if p.teacher_file}
    results = ray_backend.ray_map(
        _ray_piece, pieces, shared=files, progress=bar.update, retries=RAY_RETRIES
    )
    for index, (arrays, meta) in results:
        save_arrays(pieces[index].path, _PIECE_KIND, arrays, meta)


# ------------------------------------------------------------------------------ figures
@dataclass
class _FigureRun:
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


def _check_manifest(state: _State, settings: FigureSettings) -> None:
    # One manifest per figure and readings: runs under other readings are not "other settings".
    readings = settings.readings.changed()
    stem = settings.figure + (f"-{_digest(readings)[:12]}" if readings else "")
    path = state.manifests / f"{stem}.json"
    new = settings.manifest()
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old != new:
            keys = [*new, *(k for k in old if k not in new)]
            changed = [
                f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)
            ]
            print(
                f"distill-grid reproduce: note: {state.root} holds pieces of an earlier "
                f"{settings.figure} run with other settings ({'; '.join(changed)}); they are "
                "kept but not used",
                file=sys.stderr,
            )
    _write_json(path, new)


def _curve_figure(
    exp: X.Experiment,
    settings: FigureSettings,
    state: _State,
    workers: int | None,
    bar_factory: Callable[..., Any],
    backend: str = "local",
) -> _FigureRun:
    out = _FigureRun()
    panels = [exp.panel(name) for name in settings.panels]
    # Trained teachers first (in this process: their trainers use every core).
    teacher_files: dict[str, tuple[str, int]] = {}
    plan: list[tuple[X.Panel, X.Curve, list[_Piece]]] = []
    todo: list[_Piece] = []
    n_states_cache: dict[str, int] = {}
    for panel in panels:
        spec = panel.teacher
        env_name = _canonical(_env_key(spec, 0))
        if env_name not in n_states_cache:
            n_states_cache[env_name] = _n_states(spec)
        ranges = piece_ranges(settings.mdps, n_states_cache[env_name], spec.n_actions)
        for curve in panel.curves:
            pieces = []
            for lo, hi in ranges:
                key = _piece_key(exp, panel, curve, settings, lo, hi)
                pieces.append(
                    _Piece(
                        key=key,
                        path=str(state.piece_path(key)),
                        spec=spec,
                        method=curve.method,
                        control=curve.control,
                        critic=_resolved_critic(curve.method, panel.critic),
                        lr=exp.lr,
                        gamma=exp.gamma,
                        metrics=exp.metrics,
                        settings=settings,
                        lo=lo,
                        hi=hi,
                        teacher_file=None,
                        planned_file=None
                        if spec.trained or backend == "ray"  # Ray nodes: no shared disk
                        else str(state.teacher_paths(_planned_key(spec, settings, lo, hi))[0]),
                    )
                )
            plan.append((panel, curve, pieces))
    loaded: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for _, _, pieces in plan:
        for piece in pieces:
            if piece.path in seen:
                continue
            seen.add(piece.path)
            found = _load_piece(Path(piece.path), piece.key)
            if found is not None:
                loaded[piece.path] = found
            else:
                todo.append(piece)
    for panel in panels:
        if not panel.teacher.trained:
            continue
        tkey = _canonical(_trained_key(panel.teacher, settings))
        if tkey in teacher_files:
            continue
        if any(p.spec == panel.teacher for p in todo):
            teacher_files[tkey] = _ensure_trained(
                panel.teacher, settings, state, bar_factory, backend
            )
        else:  # every piece is done: only the teachers' cost is needed, for the summary
            teacher_files[tkey] = ("", _recorded_steps(state, panel.teacher, settings))
    out.teacher_env_steps = sum(steps for _, steps in teacher_files.values())
    todo = [_with_teacher_file(p, teacher_files, settings) if p.spec.trained else p for p in todo]
    # Pieces with the same teachers (panel and MDP range) in a row: they are built once.
    order = {name: i for i, name in enumerate(settings.panels)}
    todo.sort(key=lambda p: (order.get(_panel_of(plan, p), 0), p.lo))
    out.pieces_total = len(seen)
    out.pieces_reused = len(seen) - len(todo)
    if todo:
        total = sum(p.episodes for p in todo)
        with bar_factory(
            total=total, unit="episode", unit_scale=True, desc=f"{exp.figure} students"
        ) as bar:
            if workers is None:  # processes pay off only for real work (spawning takes seconds)
                workers = _default_workers() if total >= PARALLEL_EPISODES else 1
            if backend == "ray":  # one task per piece (no groups)
                _run_pieces_ray(sorted(todo, key=_expected_cost, reverse=True), bar)
            else:
                # Pieces sharing their episodes run as one job; in parallel, the longest jobs
                # first: none is left running alone at the end.
                jobs = jobs_of(todo)
                if workers > 1 and len(jobs) > 1:
                    longest_first = sorted(jobs, key=_job_cost, reverse=True)
                    _run_pieces(longest_first, min(workers, len(jobs)), bar)
                else:
                    for job in jobs:
                        _compute_job(job, progress=bar.update)
        for piece in todo:
            found = _load_piece(Path(piece.path), piece.key)
            if found is None:
                raise RuntimeError(f"piece {piece.path} was not written")
            loaded[piece.path] = found
    # Assemble the rows, in panel and legend order (deterministic, whatever ran when).
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
    return out


def _panel_of(plan: Sequence[tuple[X.Panel, X.Curve, list[_Piece]]], piece: _Piece) -> str:
    for panel, _, pieces in plan:
        if any(p.path == piece.path for p in pieces):
            return panel.name
    return ""


def _recorded_steps(state: _State, spec: X.TeacherSpec, settings: FigureSettings) -> int:
    """Env steps recorded with cached trained teachers (0 if there is no record)."""
    _, sidecar = state.teacher_paths(_trained_key(spec, settings))
    try:
        return int(json.loads(sidecar.read_text())["env_steps"])
    except (OSError, ValueError, KeyError, TypeError, OverflowError):
        return 0


def _with_teacher_file(
    piece: _Piece, files: Mapping[str, tuple[str, int]], settings: FigureSettings
) -> _Piece:
    from dataclasses import replace

    path, _ = files[_canonical(_trained_key(piece.spec, settings))]
    return replace(piece, teacher_file=path)


# ------------------------------------------------------------------------------ Fig. 2
def _softmax(theta: NDArray[np.float64]) -> NDArray[np.float64]:
    z = np.exp(theta - theta.max(axis=-1, keepdims=True))
    out: NDArray[np.float64] = z / z.sum(axis=-1, keepdims=True)
    return out


def oscillation_rows(
    exp: X.Experiment, iterations: int, eval_every: int, panels: Sequence[str] | None = None
) -> list[CurveRow]:
    """Fig. 2: integrate the exact expected update of each panel's method (PAPER.md 3.2).

    The student of the oscillation MDP has two rows of logits (``s0``, and the aliased second
    step ``sL``/``sR``), starts at ``pi(L|s0) = pi(L|sR) = 0.9`` and takes ``iterations`` steps
    ``theta <- theta - lr * E[update]`` with the exact expected update
    (:func:`distill_agents.updates.expected_update`: every trajectory enumerated, ``gamma = 1``,
    the information-potential loss in ``sR`` only, the teacher on R in ``sR``). Metrics:
    ``prob_R_s0``, ``prob_R_sR`` (the shared second-step row) and ``loss`` (the expected
    per-episode loss, :func:`distill_agents.updates.expected_loss`), at iterations
    ``0, k, 2k, ..., iterations``; one "MDP", so the intervals are NaN. The teacher's rows are
    the same metrics of the teacher's own policy (uniform at ``s0``, R in ``sR``).
    """
    from distill_agents import planning
    from distill_agents.runner import eval_iterations
    from distill_agents.updates import expected_loss, expected_update
    from gridworld_env import oscillation_mdp, oscillation_observation_table

    mdp = oscillation_mdp()
    index = oscillation_observation_table()
    s_r = 2
    teacher = np.full((mdp.n_states, 2), 0.5)
    teacher[s_r] = [0.0, 1.0]
    weights = (np.arange(mdp.n_states) == s_r).astype(np.float64)
    common = {
        "teacher_probs": teacher,
        "teacher_index": np.arange(mdp.n_states),
        "teacher_weights": weights,
        "distill_loss": "information_potential",
    }
    points = eval_iterations(iterations, eval_every)
    wanted = set(points.tolist())
    rows: list[CurveRow] = []
    teacher_loss = planning.expected_sum(mdp, teacher, weights * -4.0 * (teacher**2).sum(-1))
    teacher_level = {"prob_R_s0": 0.5, "prob_R_sR": 1.0, "loss": teacher_loss}
    for panel in exp.panels:
        if panels is not None and panel.name not in panels:
            continue
        method = panel.curves[0].method
        theta = np.array([[math.log(9.0), 0.0], [math.log(9.0), 0.0]])
        values: dict[str, list[float]] = {m: [] for m in exp.metrics}
        for step in range(iterations + 1):
            if step in wanted:
                probs = _softmax(theta)
                values["prob_R_s0"].append(float(probs[0, 1]))
                values["prob_R_sR"].append(float(probs[1, 1]))
                values["loss"].append(expected_loss(mdp, index, theta, method, **common))
            if step < iterations:
                field_ = expected_update(mdp, index, theta, method, gamma=exp.gamma, **common)
                theta = theta - exp.lr * field_.logits
        for metric in exp.metrics:
            rows += curve_rows(
                exp.figure, panel.name, method, metric, points, np.array([values[metric]])
            )
        for metric in exp.metrics:
            level = np.full((1, points.size), teacher_level[metric])
            rows += curve_rows(exp.figure, panel.name, "teacher", metric, points, level)
    return rows


# ------------------------------------------------------------------------------ Fig. 7
def _layout_figure(out_dir: Path, seed: int) -> dict[str, Any]:
    import gymnasium as gym

    import gridworld_env
    from gridworld_env.layout import parse_layout
    from gridworld_env.rendering import render_rgb, save_png

    del gridworld_env
    env = gym.make("DistillGrid-v0", layout_seed=seed)
    layout = list(env.unwrapped.layout)  # type: ignore[attr-defined]
    cells, start = parse_layout(layout)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_png(out_dir / "fig7.png", render_rgb(cells, start, None, None, cell_px=32))
    text = "".join(layout)
    counts = {
        "walls": text.count("#"),
        "-1": text.count("-"),
        "+10": text.count("G"),
        "+5": text.count("g"),
        "-5": text.count("x"),
        "-10": text.count("X"),
    }
    body = "\n".join(layout) + "\n"  # exactly the map: gym.make(..., layout=lines) rebuilds it
    from gridworld_env._io import atomic_write

    atomic_write(out_dir / "fig7.txt", lambda handle: handle.write(body.encode()))
    return {"layout": layout, "counts": counts}


# ------------------------------------------------------------------------------ top level
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
            open :func:`distill_agents.ray_backend.ray_session`, else a local Ray instance is
            started for this figure). Same files either way.
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
    from tqdm import tqdm

    from distill_agents import plotting
    from distill_agents.results import write_csv

    settings = settings if settings is not None else figure_settings(figure)
    exp = apply_readings(X.get_experiment(figure), settings.readings)
    out_dir = Path(out)
    t0 = time.perf_counter()

    def bar_factory(**kwargs: Any) -> Any:
        return tqdm(
            file=sys.stderr,
            disable=True if not progress else _progress_disabled(False),
            dynamic_ncols=True,
            **kwargs,
        )

    summary: dict[str, Any] = {
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
        "version": _version(),
        "format_version": SUMMARY_VERSION,
    }
    if exp.kind == "layout":
        summary.update(_layout_figure(out_dir, settings.seed))
        summary.update(env_steps=0, wall_seconds=time.perf_counter() - t0, png=f"{figure}.png")
        _write_json(out_dir / f"{figure}.json", _jsonable(summary))
        return summary
    if exp.kind == "oscillation":
        rows = oscillation_rows(exp, settings.iterations, settings.eval_every, settings.panels)
        run = _FigureRun(rows=rows)
        summary["settings"]["exact"] = True
    else:
        state = _State(out_dir)
        state.remove_stale_temporaries()
        _check_manifest(state, settings)
        if backend not in ("local", "ray"):
            raise ValueError(f"backend must be local or ray, got {backend!r}")
        session: Any = contextlib.nullcontext()
        if backend == "ray":
            from distill_agents.ray_backend import ray_session

            session = ray_session()
        with session:
            run = _curve_figure(exp, settings, state, workers, bar_factory, backend)
    csv_path = out_dir / f"{figure}.csv"
    png_path = out_dir / f"{figure}.png"
    digest = write_csv(csv_path, run.rows)
    scale = (
        f"{settings.iterations} update steps, exact"
        if exp.kind == "oscillation"
        else f"{settings.mdps} MDPs, {settings.iterations} iterations"
    )
    plotting.plot_rows(run.rows, png_path, title=f"{figure}: {exp.title} ({scale})")
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
    _write_json(out_dir / f"{figure}.json", _jsonable(summary))
    return summary


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
    if figure != _ALL and figure not in X.FIGURES:
        raise ValueError(f"figure must be one of {', '.join((*X.FIGURES, _ALL))}; got {figure!r}")
    from distill_agents.ray_backend import check_backend, ray_session

    _positive("workers", args.workers)
    check_backend(args.backend, args.ray_address, args.workers)
    panels = _parse_panels(args.panels)
    if figure == _ALL and panels is not None:
        raise ValueError("--panels selects panels of one figure; it cannot be used with all")
    figures = list(X.FIGURES) if figure == _ALL else [figure]
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
        if not (figure == _ALL and args.max_actions is not None and _all_skipped(f, args))
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
    if figure == _ALL:
        _write_json(
            out / "all.json",
            {"arguments": arguments, "version": _version(), "wall_seconds": times},
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
    raise SystemExit(main())
