"""``distill-grid ablate``; it lives in :mod:`distill_agents.experiments.ablate`."""

from distill_agents.experiments.ablate import DEFAULT_OUT, ablation_readings, add_arguments, run

__all__ = ["DEFAULT_OUT", "ablation_readings", "add_arguments", "run"]
