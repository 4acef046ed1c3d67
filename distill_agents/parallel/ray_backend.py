"""Run picklable jobs as Ray tasks: the ``--backend ray`` of ``reproduce``, ``teach``, ``distill``.

Ray (``pip install 'distillgrid[ray]'``) is imported lazily, only here, so that the package works
without it. Three pieces:

- :func:`ray_session`: a context manager that connects to a cluster (``address``) or starts a
  local Ray instance, and disconnects (or shuts the local instance down) on exit, also on errors
  and Ctrl-C. Inside an already initialised Ray session it does nothing (the caller owns it).
- :func:`ray_map`: run ``fn(job, shared, progress)`` for every job as a Ray task (one CPU each,
  one numba thread), retry failed tasks, and yield ``(index, result)`` as they finish. Tasks
  report progress to a small counter actor that the driver polls; a retried task's progress is
  counted once.
- :func:`run_pieces_ray`: ``reproduce``'s pieces as Ray tasks (:func:`ray_piece`), each
  piece's file written by the driver as it arrives.

The callers keep the numbers identical to the local backend: jobs are the same units of work the
local backend runs (pieces, chunks, MDP ranges), results are merged in job order by the driver,
and every unit's random streams depend on its MDP indices only.

Where results go: tasks *return* their arrays; the driver writes them (e.g. ``reproduce``'s
pieces in ``DIR/.state``) as soon as each task finishes. This works on a multi-node cluster
without a shared file system, and a finished unit is on the driver's disk whatever happens to
the worker that computed it later; a worker lost in the middle of a task only costs that task,
which Ray runs again (``max_retries``). Other exceptions are retried too (``retry_exceptions``),
except :data:`NOT_RETRIED` (bad input, a diverging student: deterministic, so the first one is
final and is raised in the driver at once, with its own type and message).

Testing hook: with :data:`FAIL_ONCE_ENV` set to a directory in the driver's environment, the
first attempt of job 0 of every :func:`ray_map` raises :class:`InjectedFailure` (with
``exit:DIR`` its worker process exits instead, as a lost worker), leaving a marker file in
``DIR`` so that the retry runs normally.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from distill_agents.experiments.keys import Piece

__all__ = [
    "BACKENDS",
    "DEFAULT_RETRIES",
    "FAIL_ONCE_ENV",
    "NOT_RETRIED",
    "RAY_MISSING",
    "RAY_RETRIES",
    "InjectedFailure",
    "RayUnavailableError",
    "check_backend",
    "import_ray",
    "ray_map",
    "ray_map_ordered",
    "ray_piece",
    "ray_session",
    "run_pieces_ray",
    "spread_cpus",
]

#: Accepted values of ``--backend``.
BACKENDS = ("local", "ray")
#: Extra attempts of a failed task (worker lost, or an exception in the task).
DEFAULT_RETRIES = 3
#: Testing hook: a directory (or ``exit:DIR``); job 0 fails once (see the module docstring).
FAIL_ONCE_ENV = "DISTILL_GRID_RAY_FAIL_ONCE"
#: The one-line message when Ray is not installed.
RAY_MISSING = "--backend ray needs Ray: pip install 'distillgrid[ray]'"
#: Exceptions of a task that are not retried (deterministic: bad input, non-finite numbers).
NOT_RETRIED: tuple[type[Exception], ...] = (ValueError, TypeError, FloatingPointError)
#: Seconds between the driver's progress polls and between a task's progress messages.
POLL_SECONDS = 0.2

J = TypeVar("J")
S = TypeVar("S")
R = TypeVar("R")


class RayUnavailableError(ValueError):
    """Ray is not installed (a ``ValueError``: the commands print it as one line, status 2)."""


class InjectedFailure(RuntimeError):
    """The failure :data:`FAIL_ONCE_ENV` injects into the first attempt of a job."""


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        RayUnavailableError: Ray is not installed (:data:`RAY_MISSING`).
    """
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise RayUnavailableError(RAY_MISSING) from None


def check_backend(backend: str, ray_address: str | None = None, workers: int | None = None) -> None:
    """Validate ``--backend``, ``--ray-address`` and ``--workers`` together.

    ``--workers`` with ``--backend ray`` sets the CPUs of the local Ray instance; it cannot be
    combined with ``--ray-address`` (the cluster has its own CPUs).

    Raises:
        ValueError: a bad combination (one line naming the option and the accepted values);
            :class:`RayUnavailableError` if ``backend == "ray"`` and Ray is not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"--backend must be local or ray, got {backend!r}")
    if ray_address is not None and backend != "ray":
        raise ValueError("--ray-address needs --backend ray")
    if ray_address is not None and not ray_address.strip():
        raise ValueError("--ray-address must be auto or HOST:PORT, got ''")
    if backend == "ray":
        if ray_address is not None and workers is not None:
            raise ValueError(
                "--workers sets the CPUs of a local Ray instance; with --ray-address the "
                "cluster's CPUs are used"
            )
        import_ray()


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to Ray for the duration of a ``with`` block; yields the ``ray`` module.

    Args:
        address: a cluster address (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``), or
            ``None`` to start a local Ray instance.
        num_cpus: CPUs of the local instance (``None``: all of them). Not with ``address``.

    Without an address the local instance is shut down on exit (also on errors and Ctrl-C);
    with one, the driver only disconnects and the cluster keeps running. If Ray is already
    initialised (e.g. by a test or a notebook), the block uses that session and leaves it open.

    Raises:
        RayUnavailableError: Ray is not installed.
        ValueError: ``num_cpus`` with ``address``, or the cluster cannot be reached.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        # "local": always a new instance, even if `ray start` left a cluster (or its address
        # file) on this machine.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    else:
        if num_cpus is not None:
            raise ValueError("num_cpus sets a local Ray instance's CPUs; not with an address")
        problem = unreachable(address)
        if problem is not None:  # Ray itself would retry for minutes
            raise ValueError(f"--ray-address {address}: cannot connect ({problem})")
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"--ray-address {address}: cannot connect ({first})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why ``HOST:PORT`` (or ``ray://HOST:PORT``) takes no TCP connection; None if it does.

    ``auto`` and other forms are left to Ray.
    """
    target = address.strip().removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host:
        return None
    if not port.isdigit():
        return f"the port must be a number, got {port!r}"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        return err.strerror or str(err) or type(err).__name__
    return None


# ------------------------------------------------------------------------------ tasks
class _Counter:
    """The progress actor: units reported per (map, job); a job's count restarts with it."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[int, int]] = {}

    def start(self, map_id: str, index: int) -> None:
        self.counts.setdefault(map_id, {})[index] = 0

    def add(self, map_id: str, index: int, n: int) -> None:
        counts = self.counts.setdefault(map_id, {})
        counts[index] = counts.get(index, 0) + n

    def snapshot(self, map_id: str) -> dict[int, int]:
        return dict(self.counts.get(map_id, {}))

    def forget(self, map_id: str) -> None:
        self.counts.pop(map_id, None)


#: The progress actor of the current Ray session (one per session: starting one takes ~1 s).
_COUNTERS: dict[tuple[str, str], Any] = {}


def _counter(ray: Any) -> Any:
    context = ray.get_runtime_context()
    session = (str(context.get_job_id()), str(context.get_node_id()))
    if session not in _COUNTERS:
        _COUNTERS.clear()
        _COUNTERS[session] = ray.remote(num_cpus=0)(_Counter).remote()
    return _COUNTERS[session]


class _Reporter:
    """A task's progress callback: batches the units and sends them to the counter actor."""

    def __init__(self, counter: Any, map_id: str, index: int) -> None:
        self.counter = counter
        self.map_id = map_id
        self.index = index
        self.pending = 0
        self.total = 0
        self.last = time.monotonic()
        if counter is not None:
            counter.start.remote(map_id, index)

    def __call__(self, n: int) -> None:
        self.pending += int(n)
        self.total += int(n)
        now = time.monotonic()
        if now - self.last > POLL_SECONDS:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.pending and self.counter is not None:
            self.counter.add.remote(self.map_id, self.index, self.pending)
        self.pending = 0


def _inject_failure(spec: str) -> None:
    """Fail the first attempt (see :data:`FAIL_ONCE_ENV`); the marker makes the retry pass."""
    exit_ = spec.startswith("exit:")
    directory = Path(spec[len("exit:") :] if exit_ else spec)
    marker = directory / "ray-fail-once-job0"
    if marker.exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    if exit_:
        os._exit(1)
    raise InjectedFailure(f"injected failure ({FAIL_ONCE_ENV}); the retry should pass")


def _run_task(
    fn: Callable[[Any, Any, Callable[[int], None]], Any],
    job: Any,
    index: int,
    shared: Any,
    counter: Any,
    map_id: str,
    threads: int,
    fail: str | None,
) -> tuple[Any, int]:
    """The body of every Ray task: ``(fn(job, shared, progress), units reported)``."""
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    reporter = _Reporter(counter, map_id, index)
    if fail is not None:
        _inject_failure(fail)
    try:
        result = fn(job, shared, reporter)
    except NOT_RETRIED as err:  # returned, not raised: Ray would retry it
        result = _Raised(err)
    reporter.flush()
    return result, reporter.total


class _Raised:
    """A task's deterministic error, carried back to the driver as a value."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class _Progress(Generic[J]):
    """Driver side of the progress: finished jobs' totals plus running jobs' live counts."""

    def __init__(self, callback: Callable[[int], None] | None) -> None:
        self.callback = callback
        self.finished: dict[int, int] = {}
        self.shown = 0

    def show(self, live: dict[int, int]) -> None:
        if self.callback is None:
            return
        total = sum(self.finished.values())
        total += sum(n for i, n in live.items() if i not in self.finished)
        if total > self.shown:  # a restarted task counts again from 0: never step back
            self.callback(total - self.shown)
            self.shown = total


def ray_map(
    fn: Callable[[J, S, Callable[[int], None]], R],
    jobs: Sequence[J],
    *,
    shared: S = None,  # type: ignore[assignment]
    progress: Callable[[int], None] | None = None,
    retries: int = DEFAULT_RETRIES,
    cpus_per_job: int = 1,
) -> Iterator[tuple[int, R]]:
    """Run ``fn(job, shared, progress)`` for every job as a Ray task; yield ``(index, result)``.

    Needs an initialised Ray session (:func:`ray_session`). Results come in the order the tasks
    finish; the caller merges them by ``index`` (see :func:`ray_map_ordered`).

    Args:
        fn: a module-level (importable, picklable) function. ``progress(n)`` reports ``n``
            more units of work done.
        jobs: picklable jobs.
        shared: one object every task needs (e.g. teachers), put in the object store once.
        progress: called in the driver with newly completed units, summed over the workers.
        retries: extra attempts of a failed task (lost worker or an exception).
        cpus_per_job: CPUs each task reserves (and its numba threads).

    Raises:
        Exception: the error of a task that failed ``retries + 1`` times, as its original
            exception type (e.g. ``ValueError``).
        RuntimeError: a task's worker kept dying.

    Pending tasks are cancelled when the iteration stops early (error, Ctrl-C, ``close()``).
    """
    ray = import_ray()
    if not ray.is_initialized():
        raise RuntimeError("ray_map needs a Ray session: use it inside `with ray_session(...)`")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if isinstance(cpus_per_job, bool) or not isinstance(cpus_per_job, int) or cpus_per_job < 1:
        raise ValueError(f"cpus_per_job must be an integer >= 1, got {cpus_per_job!r}")
    jobs = list(jobs)
    if not jobs:
        return
    counter = _counter(ray) if progress is not None else None
    map_id = uuid.uuid4().hex
    task = ray.remote(_run_task).options(
        num_cpus=cpus_per_job, max_retries=retries, retry_exceptions=True
    )
    fail = os.environ.get(FAIL_ONCE_ENV) or None
    shared_ref = ray.put(shared)
    pending: dict[Any, int] = {
        task.remote(
            fn, job, i, shared_ref, counter, map_id, cpus_per_job, fail if i == 0 else None
        ): i
        for i, job in enumerate(jobs)
    }
    tracker: _Progress[J] = _Progress(progress)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_SECONDS)
            for ref in done:
                index = pending.pop(ref)
                result, units = _get(ray, ref, index)
                tracker.finished[index] = units
                tracker.show({})
                yield index, result
            if counter is not None and pending:
                try:
                    tracker.show(ray.get(counter.snapshot.remote(map_id)))
                except ray.exceptions.RayError:  # progress is not worth failing the run for
                    _COUNTERS.clear()
                    counter = None
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if counter is not None:
            counter.forget.remote(map_id)


def _get(ray: Any, ref: Any, index: int) -> tuple[Any, int]:
    """A finished task's value; its own exception if it raised (not Ray's wrapper)."""
    try:
        value: tuple[Any, int] = ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise RuntimeError(f"Ray task {index} failed: {err}") from None
    except ray.exceptions.RayError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RuntimeError(f"Ray task {index} failed: {first}") from None
    if isinstance(value[0], _Raised):
        raise value[0].error
    return value


def spread_cpus(n_jobs: int) -> int:
    """CPUs per task so that ``n_jobs`` tasks use the cluster (at most one node's CPUs).

    For work whose results do not depend on its thread count (few large chunks on many CPUs).
    """
    ray = import_ray()
    total = int(ray.cluster_resources().get("CPU", 1))
    largest = max(
        (int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=1
    )
    return max(1, min(largest, total // max(1, n_jobs)))


def ray_map_ordered(
    fn: Callable[[J, S, Callable[[int], None]], R],
    jobs: Sequence[J],
    *,
    shared: S = None,  # type: ignore[assignment]
    progress: Callable[[int], None] | None = None,
    retries: int = DEFAULT_RETRIES,
    cpus_per_job: int = 1,
) -> list[R]:
    """:func:`ray_map`, collected in job order."""
    out: dict[int, R] = {}
    for index, result in ray_map(
        fn, jobs, shared=shared, progress=progress, retries=retries, cpus_per_job=cpus_per_job
    ):
        out[index] = result
    return [out[i] for i in range(len(out))]


# ------------------------------------------------------------------------------ reproduce's pieces
#: Extra attempts of a failed ``reproduce`` piece task (``--backend ray``).
RAY_RETRIES = 3


def ray_piece(
    piece: Piece, teacher_files: Mapping[str, bytes], progress: Callable[[int], None]
) -> tuple[dict[str, NDArray], dict[str, Any]]:
    """A Ray task: one ``reproduce`` piece's ``(arrays, meta)``; the driver writes the file.

    ``teacher_files`` maps the driver's trained-teacher paths to their bytes (sent once through
    Ray's object store): on a node where the path does not exist (no shared file system) the
    bytes are written to a local cache first. The names are content-addressed (key digests).

    Raises:
        ValueError: this worker runs other package source than the driver (not retried).
    """
    from distill_agents.experiments import jobs, keys

    expected = piece.key.get("code")
    if expected is not None and expected != keys.code_digest():
        raise ValueError(
            f"a Ray worker runs other distillgrid code (source digest {keys.code_digest()}) "
            f"than the driver ({expected}): install the same version on every node"
        )
    if piece.teacher_file is not None and not Path(piece.teacher_file).is_file():
        import tempfile
        from dataclasses import replace

        from gridworld_env.fileio import atomic_write

        local = Path(tempfile.gettempdir(), "distillgrid-teachers", Path(piece.teacher_file).name)
        if not local.is_file():
            local.parent.mkdir(parents=True, exist_ok=True)
            data = teacher_files[piece.teacher_file]
            atomic_write(local, lambda handle: handle.write(data))
        piece = replace(piece, teacher_file=str(local))
    return jobs.piece_arrays(piece, progress)


def run_pieces_ray(pieces: Sequence[Piece], bar: Any) -> None:
    """Run ``reproduce`` pieces as Ray tasks; each piece's file is written as it arrives."""
    from distill_agents.experiments.state import PIECE_KIND
    from distill_agents.storage import save_arrays

    files = {p.teacher_file: Path(p.teacher_file).read_bytes() for p in pieces if p.teacher_file}
    results = ray_map(ray_piece, pieces, shared=files, progress=bar.update, retries=RAY_RETRIES)
    for index, (arrays, meta) in results:
        save_arrays(pieces[index].path, PIECE_KIND, arrays, meta)
