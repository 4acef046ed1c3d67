"""Safe files: ``.npz`` archives that never execute code, written atomically, validated on load.

Every array file the project writes (teachers, students, run state) goes through
:func:`save_arrays` and :func:`load_arrays`:

- ``numpy.savez`` into a temporary file in the target directory, then ``os.replace`` (a reader
  never sees a half-written file);
- a ``__meta__`` entry holding JSON (the file ``kind``, a ``format_version`` and free-form
  metadata), stored as a uint8 byte array so that no object arrays are needed;
- loading with ``allow_pickle=False`` (an object array is refused, never unpickled), checking the
  kind, the version, and each required array's dtype kind, number of dimensions and finiteness.

Any problem raises :class:`FileFormatError` (a ``ValueError``) naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gridworld_env.fileio import atomic_write

__all__ = ["FORMAT_VERSION", "ArraySpec", "FileFormatError", "load_arrays", "save_arrays"]

#: Version of the on-disk layout written by :func:`save_arrays`.
FORMAT_VERSION = 1
_META_KEY = "__meta__"


class FileFormatError(ValueError):
    """A file that is missing, truncated, tampered with, or of the wrong kind or version."""


class ArraySpec:
    """What :func:`load_arrays` requires of one array.

    Args:
        dtype_kind: NumPy dtype kind(s) accepted, e.g. ``"f"`` (float), ``"iu"`` (integers),
            ``"b"`` (bool).
        ndim: required number of dimensions.
        finite: require every value to be finite (floats only).
        optional: the array may be absent.
    """

    def __init__(self, dtype_kind: str, ndim: int, finite: bool = True, optional: bool = False):
        self.dtype_kind = dtype_kind
        self.ndim = ndim
        self.finite = finite
        self.optional = optional


def save_arrays(
    path: str | os.PathLike[str],
    kind: str,
    arrays: Mapping[str, NDArray],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``arrays`` and JSON ``meta`` to ``path`` (``.npz``) atomically.

    Args:
        path: destination; ``.npz`` is appended if missing.
        kind: what the file holds (e.g. ``"teachers"``); checked on load.
        arrays: name -> array; object arrays are refused.
        meta: JSON-serialisable metadata.

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    payload: dict[str, NDArray] = {}
    for name, array in arrays.items():
        if name == _META_KEY:
            raise ValueError(f"arrays must not use the reserved name {_META_KEY!r}")
        value = np.asarray(array)
        if value.dtype == object:
            raise ValueError(f"arrays[{name!r}] is an object array; only numeric arrays are saved")
        payload[name] = value
    header = {"kind": kind, "format_version": FORMAT_VERSION, "meta": dict(meta or {})}
    encoded = json.dumps(header, sort_keys=True, allow_nan=False).encode("utf-8")
    payload[_META_KEY] = np.frombuffer(encoded, dtype=np.uint8)
    atomic_write(path, lambda handle: np.savez(handle, **payload))  # type: ignore[arg-type]
    return path


def load_arrays(
    path: str | os.PathLike[str],
    kind: str,
    specs: Mapping[str, ArraySpec],
) -> tuple[dict[str, NDArray], dict[str, Any]]:
    """Load and validate a file written by :func:`save_arrays`.

    Args:
        path: the ``.npz`` file.
        kind: the expected kind.
        specs: name -> :class:`ArraySpec` for every array the caller needs (extra arrays are
            ignored).

    Returns:
        ``(arrays, meta)``.

    Raises:
        FileFormatError: missing file, not an npz archive, truncated, pickled/object arrays,
            wrong kind or version, missing array, wrong dtype or dimensions, non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if _META_KEY not in names:
                raise FileFormatError(
                    f"{path}: not a DistillGrid file (no {_META_KEY} entry); expected a "
                    f"{kind!r} file written by this package"
                )
            header = _decode_header(path, archive[_META_KEY])
            arrays = {name: archive[name] for name in names if name != _META_KEY}
    except FileFormatError:
        raise
    except ValueError as err:  # object arrays refused by allow_pickle=False, bad headers
        raise FileFormatError(f"{path}: refused ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise FileFormatError(f"{path}: unreadable or truncated .npz file ({err})") from None
    except Exception as err:
        # A damaged zip directory can make zipfile raise almost anything (NotImplementedError
        # for a flipped compression method, RuntimeError for a flipped "encrypted" flag,
        # zlib.error, struct.error, MemoryError for a huge declared size, ...): whatever goes
        # wrong while reading an untrusted archive is a damaged file, reported as one.
        raise FileFormatError(
            f"{path}: unreadable or damaged .npz file ({type(err).__name__}: {err})"
        ) from None
    if header.get("kind") != kind:
        raise FileFormatError(f"{path}: holds {header.get('kind')!r}, expected {kind!r}")
    if header.get("format_version") != FORMAT_VERSION:
        raise FileFormatError(
            f"{path}: format_version {header.get('format_version')!r}, this version of the "
            f"package reads {FORMAT_VERSION}"
        )
    for name, spec in specs.items():
        if name not in arrays:
            if spec.optional:
                continue
            raise FileFormatError(f"{path}: missing array {name!r}")
        _check_array(path, name, arrays[name], spec)
    meta = header.get("meta")
    if not isinstance(meta, dict):
        raise FileFormatError(f"{path}: metadata must be a JSON object")
    return arrays, meta


def _decode_header(path: Path, raw: NDArray) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise FileFormatError(f"{path}: malformed {_META_KEY} entry")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FileFormatError(f"{path}: malformed {_META_KEY} entry ({err})") from None
    if not isinstance(header, dict):
        raise FileFormatError(f"{path}: malformed {_META_KEY} entry")
    return header


def _check_array(path: Path, name: str, array: NDArray, spec: ArraySpec) -> None:
    if array.dtype.kind not in spec.dtype_kind:
        raise FileFormatError(
            f"{path}: array {name!r} has dtype {array.dtype}, expected kind {spec.dtype_kind!r}"
        )
    if array.ndim != spec.ndim:
        raise FileFormatError(
            f"{path}: array {name!r} has {array.ndim} dimensions, expected {spec.ndim}"
        )
    if spec.finite and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise FileFormatError(f"{path}: array {name!r} has non-finite values")
