"""Bridges to other libraries; each submodule imports its optional dependency itself.

- :mod:`distill_agents.integrations.sb3`: Stable-Baselines3 models as teachers
  (:class:`~distill_agents.integrations.sb3.SB3Teacher`) and distillation into an SB3 policy
  network (:func:`~distill_agents.integrations.sb3.distill_into_sb3`). Needs the ``sb3`` extra:
  ``pip install "distillgrid[sb3]"``.

Importing this package never imports an optional dependency.
"""

from __future__ import annotations

__all__: list[str] = []
