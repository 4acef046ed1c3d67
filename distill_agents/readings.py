"""Readings (``reproduce --set``); they live in :mod:`distill_agents.experiments.readings`."""

from distill_agents.experiments.readings import (
    READING_NAMES,
    Readings,
    apply_readings,
)

__all__ = ["READING_NAMES", "Readings", "apply_readings"]
