"""The teachers of a piece: trained once per figure, planned per MDP range, then adjusted.

Trained teachers (Q-learning, A2C) are trained once for all MDPs of a figure
(:func:`ensure_trained`, :func:`distill_agents.teachers.make.make_teachers`: their tables
depend on the batch they were trained in) and kept in ``DIR/.state/teachers/``; temperatures
and noise are applied to the same tables, exactly as ``make_teachers(temperature=...,
noise=...)`` would. Planned teachers (optimal, adversarial) depend on their MDP alone: they
are planned per MDP range by the first piece that needs them and kept for the others
(:func:`make_piece_teachers`).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from distill_agents.experiments import figures as X
from distill_agents.experiments.keys import (
    PLANNING_GAMMA,
    Piece,
    canonical,
    teacher_key,
    trained_key,
)
from distill_agents.experiments.settings import FigureSettings
from distill_agents.experiments.state import State, write_json

__all__ = [
    "cached_piece_teachers",
    "clear_cache",
    "ensure_trained",
    "make_piece_teachers",
    "with_teacher_file",
]

_BASE_CACHE: dict[str, Any] = {}
_PIECE_CACHE: dict[str, Any] = {}


def _load_base(path: str) -> Any:
    """The trained teachers saved at ``path`` (the last set loaded is cached)."""
    from distill_agents.teachers import Teachers

    if path not in _BASE_CACHE:
        _BASE_CACHE.clear()  # keep one set of tables per process
        _BASE_CACHE[path] = Teachers.load(path)
    return _BASE_CACHE[path]


def clear_cache() -> None:
    """Forget this process's cached teachers (the next piece makes its own)."""
    _BASE_CACHE.clear()
    _PIECE_CACHE.clear()


def cached_piece_teachers(piece: Piece) -> Any:
    """The teachers of MDPs ``lo .. hi - 1`` of a piece's panel (the last set is cached)."""
    readings = piece.settings.readings.changed()
    name = canonical([teacher_key(piece.spec, piece.settings), piece.lo, piece.hi, readings])
    if name not in _PIECE_CACHE:
        _PIECE_CACHE.clear()  # one set per process: pieces of one panel and range run in a row
        _PIECE_CACHE[name] = make_piece_teachers(piece)
    return _PIECE_CACHE[name]


def make_piece_teachers(piece: Piece) -> Any:
    """The teachers of MDPs ``lo .. hi - 1`` of a piece's panel, with its noise and readings."""
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
            from distill_agents.teachers.env import TeacherEnv

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


def _planned_teachers(piece: Piece) -> Any:
    """The planned teachers of a piece's MDPs: from its ``planned_file``, else planned (and kept).

    Value iteration on 500 20x20 grids takes ~9 s: once per panel and range instead of once
    per piece (Figs. 4 and 10 share theirs). A damaged file is planned again.
    """
    from distill_agents import teachers as T
    from distill_agents.storage import FileFormatError
    from distill_agents.teachers.env import TeacherEnv

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


def ensure_trained(
    spec: X.TeacherSpec,
    settings: FigureSettings,
    state: State,
    bar_factory: Callable[..., Any],
    backend: str = "local",
) -> tuple[str, int]:
    """Train (or find) the trained teachers of ``spec``; ``(path, env_steps)``."""
    from distill_agents.teachers import Teachers
    from distill_agents.teachers.make import make_teachers

    key = trained_key(spec, settings)
    npz, sidecar = state.teacher_paths(key)
    if npz.is_file() and sidecar.is_file():
        try:
            info = json.loads(sidecar.read_text())
            if info.get("key") == json.loads(canonical(key)):
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
    write_json(
        sidecar,
        {
            "key": json.loads(canonical(key)),
            "env_steps": steps,
            "seconds": time.perf_counter() - t0,
        },
    )
    return str(npz), steps


def _short_env(spec: X.TeacherSpec) -> str:
    extra = ",".join(f"{k}={v}" for k, v in sorted(spec.env_kwargs.items()))
    return spec.env_id + (f"({extra})" if extra else "")


def with_teacher_file(
    piece: Piece, files: Mapping[str, tuple[str, int]], settings: FigureSettings
) -> Piece:
    """``piece`` with the path of its trained teachers in ``files`` (by trained-teacher key)."""
    path, _ = files[canonical(trained_key(piece.spec, settings))]
    return replace(piece, teacher_file=path)
