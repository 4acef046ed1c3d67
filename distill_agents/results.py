r"""Learning curves in the long format of SPEC 4: rows, 95% confidence intervals, CSV files.

Every figure's numbers are rows with the columns :data:`COLUMNS`,

    figure, panel, method, iteration, metric, mean, ci_low, ci_high, n_mdps

one row per (figure, panel, method, metric, iteration): the mean over MDPs of a per-MDP
quantity (e.g. the student's exact return after ``iteration`` training episodes) and a 95%
confidence interval for that mean across MDPs.

Confidence intervals
    Student's t-interval across MDPs: ``mean +- t_{(1 + level) / 2, n - 1} * s / sqrt(n)``
    with ``s`` the sample standard deviation (``ddof = 1``) of the ``n`` finite per-MDP
    values. Non-finite values (an evaluation that does not exist) are left out and ``n_mdps``
    counts the values used. With ``n < 2`` the interval is undefined and both bounds are NaN
    (``n = 0`` also gives a NaN mean). The t quantile is computed here (no SciPy) from the
    regularised incomplete beta function and checked against tabulated values in the tests.

Files
    :func:`write_csv` writes UTF-8 CSV with exactly the header :data:`COLUMNS`, ``\n`` line
    ends, floats as ``repr`` (exact round trip; ``nan`` for undefined bounds), atomically
    (temporary file, then rename). :func:`read_csv` refuses, with a
    :class:`ResultsFormatError` (a ``ValueError``) naming the file and line, anything that
    does not follow the format: another header, a wrong number of fields, a non-numeric or
    negative count, a mean outside its interval, a duplicated row, a last line without its
    line end (a file cut mid-line), and a *ragged grid*: within one (figure, panel) every
    (method, metric) series must have the same iterations, so a file cut at a line boundary
    is refused too unless it happens to end exactly between two series. For full integrity
    pass the SHA-256 digest :func:`write_csv` returns (the ``distill`` command stores it in its
    JSON summary) as ``read_csv(path, sha256=...)``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gridworld_env.fileio import atomic_write

__all__ = [
    "COLUMNS",
    "CurveRow",
    "ResultsFormatError",
    "check_rows",
    "confidence_interval",
    "curve_rows",
    "read_csv",
    "summarize",
    "t_quantile",
    "write_csv",
]

#: The columns of a results file, in order.
COLUMNS = (
    "figure",
    "panel",
    "method",
    "iteration",
    "metric",
    "mean",
    "ci_low",
    "ci_high",
    "n_mdps",
)
#: Confidence level of the intervals.
DEFAULT_LEVEL = 0.95
# Relative slack of the ci_low <= mean <= ci_high check (the bounds are mean -+ a half width,
# rounded once each).
_ORDER_RTOL = 1e-12


class ResultsFormatError(ValueError):
    """A results file (or row list) that does not follow the format of :mod:`results`."""


@dataclass(frozen=True)
class CurveRow:
    """One row of a results file (see :data:`COLUMNS`).

    Attributes:
        figure: figure id, e.g. ``"fig3"``.
        panel: panel label, e.g. ``"T=0.01"`` (may be empty).
        method: method id (SPEC 3), a control label (``"student_driven"``, ...) or
            ``"teacher"`` for the teacher's own value of the metric.
        iteration: training episodes (update steps for Fig. 2) at which the value was taken.
        metric: e.g. ``"return"``, ``"kl_student"``.
        mean: mean over MDPs.
        ci_low: lower bound of the 95% interval (NaN if ``n_mdps < 2``).
        ci_high: upper bound (NaN if ``n_mdps < 2``).
        n_mdps: number of MDPs averaged.
    """

    figure: str
    panel: str
    method: str
    iteration: int
    metric: str
    mean: float
    ci_low: float
    ci_high: float
    n_mdps: int

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        """``(figure, panel, method, metric, iteration)``: unique within a file."""
        return (self.figure, self.panel, self.method, self.metric, self.iteration)


# ---------------------------------------------------------------------------- statistics
def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution: ``t`` with ``P(T <= t) = p`` for ``df`` degrees.

    E.g. ``t_quantile(0.975, 1) = 12.706...``, ``t_quantile(0.975, 29) = 2.045...``
    (``scipy.stats.t.ppf``).

    Args:
        p: probability in (0, 1).
        df: degrees of freedom, an integer >= 1.

    Raises:
        ValueError: ``p`` outside (0, 1) or ``df < 1``.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if isinstance(df, bool) or int(df) != df or df < 1:
        raise ValueError(f"df must be an integer >= 1, got {df!r}")
    import scipy.stats  # here, not at the top: it costs worker processes ~0.6 s to import

    return float(scipy.stats.t.ppf(p, int(df)))


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(level)


def summarize(
    values: ArrayLike, level: float = DEFAULT_LEVEL
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Mean and t-interval across MDPs, per column.

    Args:
        values: ``[B, E]`` per-MDP values (``B`` MDPs, ``E`` evaluation points); ``[B]`` is
            treated as one column. Non-finite values are left out.
        level: confidence level (0.95).

    Returns:
        ``(mean [E], ci_low [E], ci_high [E], n [E])``; NaN bounds where ``n < 2``.
    """
    level = _check_level(level)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"values must have shape [B, E] or [B], got {x.shape}")
    finite = np.isfinite(x)
    n = finite.sum(axis=0).astype(np.int64)
    mean = np.full(x.shape[1], np.nan)
    low = np.full(x.shape[1], np.nan)
    high = np.full(x.shape[1], np.nan)
    for e in range(x.shape[1]):
        column = x[finite[:, e], e]
        if column.size == 0:
            continue
        m = float(column.mean())
        mean[e] = m
        if column.size < 2:
            continue
        sd = float(column.std(ddof=1))
        half = t_quantile(0.5 + 0.5 * level, int(column.size) - 1) * sd / math.sqrt(column.size)
        low[e], high[e] = m - half, m + half
    return mean, low, high, n


def confidence_interval(
    values: ArrayLike, level: float = DEFAULT_LEVEL
) -> tuple[float, float, float, int]:
    """``(mean, ci_low, ci_high, n)`` of a ``[B]`` sample (see :func:`summarize`)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must have shape [B], got {x.shape}")
    mean, low, high, n = summarize(x[:, None], level)
    return float(mean[0]), float(low[0]), float(high[0]), int(n[0])


def curve_rows(
    figure: str,
    panel: str,
    method: str,
    metric: str,
    iterations: ArrayLike,
    values: ArrayLike,
    level: float = DEFAULT_LEVEL,
) -> list[CurveRow]:
    """Rows of one learning curve from per-MDP values.

    Args:
        figure: figure id.
        panel: panel label.
        method: method label.
        metric: metric name.
        iterations: ``[E]`` iterations of the evaluation points.
        values: ``[B, E]`` per-MDP values at those points.
        level: confidence level.

    Returns:
        ``E`` rows, in the order of ``iterations``.
    """
    its = np.asarray(iterations)
    x = np.asarray(values, dtype=np.float64)
    if its.ndim != 1 or x.ndim != 2 or x.shape[1] != its.shape[0]:
        raise ValueError(
            f"iterations must be [E] and values [B, E] with the same E, got {its.shape} and "
            f"{x.shape}"
        )
    mean, low, high, n = summarize(x, level)
    return [
        CurveRow(
            figure,
            panel,
            method,
            int(its[e]),
            metric,
            float(mean[e]),
            float(low[e]),
            float(high[e]),
            int(n[e]),
        )
        for e in range(its.shape[0])
    ]


# ---------------------------------------------------------------------------- validation
def _row_problem(row: CurveRow) -> str | None:
    """What is wrong with one row, or None."""
    for name in ("figure", "panel", "method", "metric"):
        value = getattr(row, name)
        if not isinstance(value, str):
            return f"{name} must be a string, got {value!r}"
        if any(ch in value for ch in "\r\n"):
            return f"{name} must not contain line breaks, got {value!r}"
        if name != "panel" and not value:
            return f"{name} must not be empty"
    if isinstance(row.iteration, bool) or not isinstance(row.iteration, (int, np.integer)):
        return f"iteration must be an integer, got {row.iteration!r}"
    if row.iteration < 0:
        return f"iteration must be >= 0, got {row.iteration}"
    if isinstance(row.n_mdps, bool) or not isinstance(row.n_mdps, (int, np.integer)):
        return f"n_mdps must be an integer, got {row.n_mdps!r}"
    if row.n_mdps < 0:
        return f"n_mdps must be >= 0, got {row.n_mdps}"
    for name in ("mean", "ci_low", "ci_high"):
        value = getattr(row, name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            return f"{name} must be a number, got {value!r}"
        if math.isinf(value):
            return f"{name} must not be infinite, got {value!r}"
    mean, low, high = float(row.mean), float(row.ci_low), float(row.ci_high)
    if row.n_mdps == 0:
        if not (math.isnan(mean) and math.isnan(low) and math.isnan(high)):
            return "a row over 0 MDPs must have NaN mean and bounds"
        return None
    if math.isnan(mean):
        return f"mean must be a number when n_mdps = {row.n_mdps} >= 1, got nan"
    if row.n_mdps == 1:
        if not (math.isnan(low) and math.isnan(high)):
            return "the interval of a single MDP is undefined: ci_low and ci_high must be nan"
        return None
    if math.isnan(low) or math.isnan(high):
        return f"ci_low and ci_high must be numbers when n_mdps = {row.n_mdps} >= 2"
    slack = _ORDER_RTOL * max(1.0, abs(mean), abs(low), abs(high))
    if not (low <= mean + slack and mean <= high + slack):
        return f"need ci_low <= mean <= ci_high, got {low!r} <= {mean!r} <= {high!r}"
    return None


def check_rows(rows: Sequence[CurveRow]) -> None:
    """Validate rows: each row's fields, unique keys, and a complete grid per panel.

    Raises:
        ResultsFormatError: the first problem found (with the row's index).
    """
    _check_rows(rows, lambda i: f"row {i}")


def _check_rows(rows: Sequence[CurveRow], locate: Callable[[int], str]) -> None:
    seen: dict[tuple[str, str, str, str, int], int] = {}
    grids: dict[tuple[str, str], dict[tuple[str, str], set[int]]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, CurveRow):
            raise ResultsFormatError(f"{locate(i)}: expected a CurveRow, got {type(row).__name__}")
        problem = _row_problem(row)
        if problem is not None:
            raise ResultsFormatError(f"{locate(i)}: {problem}")
        if row.key in seen:
            raise ResultsFormatError(
                f"{locate(i)}: duplicate of {locate(seen[row.key])} "
                f"(figure, panel, method, metric, iteration) = {row.key}"
            )
        seen[row.key] = i
        series = grids.setdefault((row.figure, row.panel), {})
        series.setdefault((row.method, row.metric), set()).add(int(row.iteration))
    for (figure, panel), series in grids.items():
        items = sorted(series.items())
        first_key, first = items[0]
        for key, its in items[1:]:
            if its != first:
                missing = sorted(first ^ its)[:5]
                raise ResultsFormatError(
                    f"ragged grid in figure {figure!r} panel {panel!r}: series (method, metric) "
                    f"{key} and {first_key} have different iterations (e.g. {missing}); a "
                    "truncated or edited file?"
                )


# ---------------------------------------------------------------------------- files
def _format_float(value: float) -> str:
    return repr(float(value))


def _encode(rows: Sequence[CurveRow]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.figure,
                row.panel,
                row.method,
                int(row.iteration),
                row.metric,
                _format_float(row.mean),
                _format_float(row.ci_low),
                _format_float(row.ci_high),
                int(row.n_mdps),
            ]
        )
    return buffer.getvalue().encode("utf-8")


def write_csv(path: str | os.PathLike[str], rows: Iterable[CurveRow]) -> str:
    """Validate ``rows`` and write them to ``path`` atomically.

    Args:
        path: destination (parent directories are created).
        rows: the rows (:func:`check_rows` must accept them).

    Returns:
        The SHA-256 hex digest of the bytes written (for :func:`read_csv`'s ``sha256``).

    Raises:
        ResultsFormatError: invalid rows (nothing is written).
    """
    rows = list(rows)
    check_rows(rows)
    data = _encode(rows)
    atomic_write(path, lambda handle: handle.write(data))
    return hashlib.sha256(data).hexdigest()


def _parse_int(text: str, name: str) -> int:
    if not text or not (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
        raise ValueError(f"{name} must be an integer, got {text!r}")
    return int(text)


def _parse_float(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None


def read_csv(path: str | os.PathLike[str], sha256: str | None = None) -> list[CurveRow]:
    """Read and validate a results file written by :func:`write_csv`.

    Args:
        path: the file.
        sha256: if given, the file's SHA-256 hex digest must equal it.

    Returns:
        The rows, in file order.

    Raises:
        ResultsFormatError: a missing, truncated or tampered file (see the module docstring).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ResultsFormatError(f"{path}: cannot read results file ({err.strerror})") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise ResultsFormatError(
            f"{path}: SHA-256 digest does not match the recorded one: the file was modified "
            "or truncated"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ResultsFormatError(f"{path}: not a UTF-8 text file") from None
    if not text:
        raise ResultsFormatError(f"{path}: empty file (expected the header {','.join(COLUMNS)})")
    if not text.endswith("\n"):
        raise ResultsFormatError(
            f"{path}: the last line has no line end: the file is truncated (cut mid-line)"
        )
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:  # e.g. a field longer than csv.field_size_limit()
        raise ResultsFormatError(f"{path}: not a results CSV file ({err})") from None
    if tuple(lines[0]) != COLUMNS:
        raise ResultsFormatError(
            f"{path}: line 1: header must be exactly {','.join(COLUMNS)}, got {','.join(lines[0])}"
        )
    rows: list[CurveRow] = []
    for number, fields in enumerate(lines[1:], start=2):
        if len(fields) != len(COLUMNS):
            raise ResultsFormatError(
                f"{path}: line {number}: expected {len(COLUMNS)} fields, got {len(fields)}"
            )
        try:
            row = CurveRow(
                figure=fields[0],
                panel=fields[1],
                method=fields[2],
                iteration=_parse_int(fields[3], "iteration"),
                metric=fields[4],
                mean=_parse_float(fields[5], "mean"),
                ci_low=_parse_float(fields[6], "ci_low"),
                ci_high=_parse_float(fields[7], "ci_high"),
                n_mdps=_parse_int(fields[8], "n_mdps"),
            )
        except ValueError as err:
            raise ResultsFormatError(f"{path}: line {number}: {err}") from None
        rows.append(row)
    _check_rows(rows, lambda i: f"{path}: line {i + 2}")
    return rows
