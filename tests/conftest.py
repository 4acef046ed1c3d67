"""Shared test configuration.

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
