"""``distill-grid distill``; it lives in :mod:`distill_agents.cli.distill`.

``run`` here is :func:`distill_agents.cli.distill.execute`: bad arguments raise a one-line
``ValueError``.
"""

from distill_agents.cli.distill import (
    DEFAULT_ITERATIONS,
    DEFAULT_OUT,
    add_arguments,
    output_name,
)
from distill_agents.cli.distill import execute as run

__all__ = ["DEFAULT_ITERATIONS", "DEFAULT_OUT", "add_arguments", "output_name", "run"]
