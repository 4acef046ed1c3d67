"""Shared test configuration.

The test modules mirror the packages: ``tests/envs/`` tests ``gridworld_env``; ``tests/<name>/``
tests the subpackage ``distill_agents.<name>`` (``teachers``, ``updates``, ``runner``,
``experiments``, ``parallel``, ``cli``, ``bench``, ``integrations``); the modules directly under
``tests/`` test ``distill_agents``' own modules (``distill``, ``supervised``, ``planning``,
``policy``, ...) and what cuts across packages (the bad-input battery, the docs, fuzzing). The
directories hold no ``__init__.py`` and the module names are unique, so none of them can shadow
a package of the project.

Helpers used by several test modules live in ``tests/helpers.py`` (``from helpers import
softmax``); the reference arithmetic of the old per-step update kernels lives in
``tests/old_arithmetic.py``. This file puts ``tests/`` on ``sys.path`` so that both import the
same way whatever pytest's import mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
