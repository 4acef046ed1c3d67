"""Atomic file writes shared by every writer in the project."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write"]


def _default_mode() -> int:
    # The permissions a plain open() would give: 0o666 less the process umask (mkstemp's
    # temporary files are 0o600, which os.replace would otherwise keep).
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Write a file atomically: ``write(handle)`` fills a temporary file, then ``os.replace``.

    Readers never see a half-written file; on any error (including ``KeyboardInterrupt``) the
    temporary file is removed and an existing file at ``path`` is left untouched. The parent
    directory is created if needed.

    Args:
        path: destination.
        write: called with a binary file handle open on the temporary file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _default_mode())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return path
