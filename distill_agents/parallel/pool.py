"""The local process pool: spawned worker processes kept for the jobs of one invocation.

:func:`worker_pool` starts (or reuses) the workers, each with one numba thread and a queue
to the parent for progress; :func:`run_jobs` runs jobs in them and updates a progress bar
as episodes finish; :func:`close_pool` ends them. ``reproduce all`` runs its figures one
after the other in the same processes: no start-up per figure, and their kept chunk builds
serve the next figure's panels on the same MDPs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Pool",
    "QueueProgress",
    "active_pool",
    "close_pool",
    "default_workers",
    "init_worker",
    "run_jobs",
    "worker_pool",
    "worker_progress",
]

_QUEUE: Any = None


def init_worker(queue: Any, threads: int) -> None:
    """Set a worker process up: its progress ``queue``, ``threads`` numba threads.

    The worker exits when its parent does.
    """
    global _QUEUE
    _QUEUE = queue
    import numba

    from distill_agents.parallel.process import exit_with_parent

    exit_with_parent()

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


class QueueProgress:
    """Progress of a worker, sent to the parent in batches."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self.pending = 0
        self.last = time.monotonic()

    def __call__(self, episodes: int) -> None:
        """Count ``episodes`` more; send the count if the last was sent a while ago."""
        self.pending += int(episodes)
        now = time.monotonic()
        if now - self.last > 0.25:
            self.flush()
            self.last = now

    def flush(self) -> None:
        """Send the episodes not sent yet."""
        if self.pending:
            self.queue.put(self.pending)
            self.pending = 0


def worker_progress(
    progress: Callable[[int], None] | None,
) -> tuple[Callable[[int], None] | None, QueueProgress | None]:
    """``progress``, or in a pool's worker the queue to the parent's bar (flushed at the end)."""
    if progress is None and _QUEUE is not None:
        queue_progress = QueueProgress(_QUEUE)
        return queue_progress, queue_progress
    return progress, None


def default_workers() -> int:
    """Processes by default: the CPUs this process may use (at most 8)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


@dataclass
class Pool:
    """Worker processes kept for the figures of one invocation (see :func:`worker_pool`)."""

    executor: Any
    queue: Any
    workers: int


_POOL: Pool | None = None


def worker_pool(workers: int) -> Pool:
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
        max_workers=workers, mp_context=ctx, initializer=init_worker, initargs=(queue, 1)
    )
    _POOL = Pool(executor, queue, workers)
    return _POOL


def active_pool() -> Pool | None:
    """The kept worker processes, or None if there are none."""
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


def run_jobs(
    compute: Callable[[Any], Any], jobs: Sequence[Any], workers: int, bar: Any
) -> list[Any]:  # pragma: no cover - exercised with workers > 1 in the slow tests
    """Run ``compute(job)`` for every job in ``workers`` spawned processes; the results in order.

    ``compute`` must be importable by name (it is sent to the workers); ``bar`` (anything with
    ``update(n)``, or None) is updated as the workers report episodes. A worker's error is
    raised here, and ends the pool.
    """
    import concurrent.futures as cf
    import queue as queue_module

    pool = worker_pool(workers)

    def drain(timeout: float) -> None:
        while True:
            try:
                count = pool.queue.get(timeout=timeout) if timeout else pool.queue.get_nowait()
            except queue_module.Empty:
                return
            if bar is not None:
                bar.update(count)

    try:
        futures = [pool.executor.submit(compute, job) for job in jobs]
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
    return [future.result() for future in futures]
