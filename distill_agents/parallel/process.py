"""Worker processes that do not outlive their parent.

The process pool of :mod:`distill_agents.parallel.pool` (which ``reproduce`` and
:func:`~distill_agents.teachers.make.make_teachers` use) spawns workers that wait on a queue
the workers themselves also hold open, so a parent killed without a chance to shut its pool
down (``SIGTERM``, ``SIGKILL``, a crash) would leave them waiting forever.
:func:`exit_with_parent`, called from the pool's initializer, ends the worker soon after its
parent is gone.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["exit_with_parent"]


def exit_with_parent(interval: float = 1.0) -> None:
    """End this process within about ``interval`` seconds of its parent's death.

    A daemon thread checks every ``interval`` seconds whether the process has been reparented
    (POSIX: an orphan's parent becomes init or a subreaper) and then exits at once with status
    1 (``os._exit``: the parent is gone, nobody is left to receive results). Where the parent
    id does not change when the parent dies (Windows), it never fires.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
