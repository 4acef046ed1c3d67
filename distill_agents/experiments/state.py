"""The ``DIR/.state`` store of ``distill-grid reproduce``: pieces, partial files, manifests.

Every finished piece is written at once, atomically, to ``DIR/.state/pieces/<key-hash>.npz``
(validated on load, ``allow_pickle=False``, the key stored in the file and checked); trained
teachers go to ``DIR/.state/teachers/``. A job that runs long writes the spans of MDPs it has
finished to partial files ``DIR/.state/pieces/<key-hash>.part-<a>-<b>.npz`` (same validation,
removed once the piece is written), and a resumed job goes on after them.
``DIR/.state/manifests/<fig>.json`` records the settings of the last run of a figure.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from distill_agents.experiments import figures as X
from distill_agents.experiments.keys import Piece, canonical, digest, trained_key
from distill_agents.experiments.settings import FigureSettings, eval_points_of

__all__ = [
    "PARTIAL_KIND",
    "PIECE_KIND",
    "SPAN_STATS",
    "STALE_TEMP_SECONDS",
    "Span",
    "State",
    "check_manifest",
    "load_partials",
    "load_piece",
    "partial_files",
    "recorded_steps",
    "write_json",
    "write_partial",
]

#: Temporary files of an interrupted write in ``DIR/.state`` older than this are removed.
STALE_TEMP_SECONDS = 3600.0
#: The kind recorded in piece files.
PIECE_KIND = "reproduce_piece"
#: The kind recorded in partial files.
PARTIAL_KIND = "reproduce_partial"
#: The timings a span records (summed when spans are joined).
SPAN_STATS = ("sub_env_steps", "build_seconds", "eval_seconds", "wall_seconds")


class State:
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
        """The file of the piece of ``key``."""
        return self.pieces / f"{digest(key)}.npz"

    def teacher_paths(self, key: Mapping[str, Any]) -> tuple[Path, Path]:
        """The tables and the JSON record of the teachers of ``key``."""
        stem = digest(key)
        return self.teachers / f"{stem}.npz", self.teachers / f"{stem}.json"


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path``, atomically (no NaN)."""
    from gridworld_env.fileio import atomic_write

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


def load_piece(path: Path, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """A finished piece, or None if missing, unreadable or not the piece of ``key``."""
    from distill_agents.storage import ArraySpec, FileFormatError, load_arrays

    if not path.is_file():
        return None
    metrics = key["metrics"]
    specs = {**_result_specs(metrics), "eval_iterations": ArraySpec("iu", 1)}
    try:
        arrays, meta = load_arrays(path, PIECE_KIND, specs)
    except FileFormatError as err:
        print(f"distill-grid reproduce: note: recomputing a damaged piece ({err})", file=sys.stderr)
        return None
    b = int(key["hi"]) - int(key["lo"])
    shapes_ok = _result_shapes_ok(arrays, metrics, b, arrays["eval_iterations"].size)
    if meta.get("key") != json.loads(canonical(key)) or not shapes_ok:
        print(
            f"distill-grid reproduce: note: recomputing {path.name} (it holds another piece)",
            file=sys.stderr,
        )
        return None
    return {"arrays": arrays, "meta": meta}


def check_manifest(state: State, settings: FigureSettings) -> None:
    """Record the figure's settings; print one line naming what changed since the last run."""
    # One manifest per figure and readings: runs under other readings are not "other settings".
    readings = settings.readings.changed()
    stem = settings.figure + (f"-{digest(readings)[:12]}" if readings else "")
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
    write_json(path, new)


def recorded_steps(state: State, spec: X.TeacherSpec, settings: FigureSettings) -> int:
    """Env steps recorded with cached trained teachers (0 if there is no record)."""
    _, sidecar = state.teacher_paths(trained_key(spec, settings))
    try:
        return int(json.loads(sidecar.read_text())["env_steps"])
    except (OSError, ValueError, KeyError, TypeError, OverflowError):
        return 0


@dataclass
class Span:
    """The results of MDPs ``a .. b - 1`` of one piece (indices within the piece)."""

    a: int
    b: int
    arrays: dict[str, NDArray]  # env_steps, student_<metric>, teacher_<metric>
    diverged: list[int]  # absolute MDP indices
    stats: dict[str, float]  # sub_env_steps, build_seconds, eval_seconds, wall_seconds
    resumed: bool = False  # read from a partial file


# ------------------------------------------------------------------------------ partial files
def partial_files(piece: Piece) -> list[Path]:
    """The partial files of a piece (``<piece>.part-<a>-<b>.npz``), in no particular order."""
    path = Path(piece.path)
    return list(path.parent.glob(f"{path.stem}.part-*.npz")) if path.parent.is_dir() else []


def _partial_path(piece: Piece, a: int, b: int) -> Path:
    path = Path(piece.path)
    return path.with_name(f"{path.stem}.part-{a}-{b}.npz")


def write_partial(piece: Piece, span: Span) -> None:
    """Write ``span`` of ``piece`` to its partial file."""
    from distill_agents.storage import save_arrays

    meta = {
        "key": json.loads(canonical(piece.key)),
        "span": [span.a, span.b],
        "diverged": span.diverged,
        "stats": span.stats,
    }
    save_arrays(_partial_path(piece, span.a, span.b), PARTIAL_KIND, span.arrays, meta)


def _read_partial(piece: Piece, a: int, b: int) -> Span | None:
    """The partial file of MDPs ``a .. b - 1`` of a piece, or None if missing or not right."""
    from distill_agents.storage import FileFormatError, load_arrays

    try:
        arrays, meta = load_arrays(
            _partial_path(piece, a, b), PARTIAL_KIND, _result_specs(piece.metrics)
        )
    except (FileFormatError, OSError):
        return None
    n_points = eval_points_of(
        piece.settings.iterations, piece.settings.eval_every, piece.settings.early
    ).size
    if (
        meta.get("key") != json.loads(canonical(piece.key))
        or meta.get("span") != [a, b]
        or not _result_shapes_ok(arrays, piece.metrics, b - a, n_points)
    ):
        return None
    stats = {name: float(meta["stats"].get(name, 0.0)) for name in SPAN_STATS}
    return Span(a, b, arrays, [int(i) for i in meta["diverged"]], stats, resumed=True)


def load_partials(job: Sequence[Piece], n: int) -> list[list[Span]]:
    """The partial spans a job can resume from: the chain from MDP 0 that every piece has."""
    starts: dict[int, int] = {}
    for path in partial_files(job[0]):
        match = re.fullmatch(r".*\.part-(\d+)-(\d+)", path.stem)
        if match is not None:
            lo, hi = int(match[1]), int(match[2])
            if 0 <= lo < hi <= n:
                starts[lo] = hi
    done: list[list[Span]] = [[] for _ in job]
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
