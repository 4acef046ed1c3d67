"""``distill-grid reproduce``: every figure of the paper from one command (SPEC 4.1, 5).

``python -m distill_agents.reproduce FIGURE [options]`` runs it. The command lives in
:mod:`distill_agents.experiments.reproduce` (how a figure is computed, resumed and run in
parallel is described there); this module keeps its public names importable from here.
"""

import sys

from distill_agents.experiments.curves import PARALLEL_EPISODES
from distill_agents.experiments.jobs import (
    CHECKPOINT_SECONDS,
    SPAN_COST,
    SPAN_SECONDS,
    group_key,
    jobs_of,
)
from distill_agents.experiments.keys import (
    PIECE_BYTES,
    PIECE_MDPS,
    PIECE_TABLES,
    PLANNING_GAMMA,
    STATE_VERSION,
    code_digest,
    piece_ranges,
)
from distill_agents.experiments.oscillation import oscillation_rows
from distill_agents.experiments.reproduce import SUMMARY_VERSION, main, reproduce_figure, run
from distill_agents.experiments.settings import (
    DEFAULT_OUT,
    MC_EPISODES,
    NO_PROGRESS_ENV,
    FigureSettings,
    add_arguments,
    eval_points_of,
    figure_settings,
)
from distill_agents.experiments.state import STALE_TEMP_SECONDS
from distill_agents.parallel.pool import close_pool
from distill_agents.parallel.ray_backend import RAY_RETRIES

__all__ = [
    "CHECKPOINT_SECONDS",
    "DEFAULT_OUT",
    "MC_EPISODES",
    "NO_PROGRESS_ENV",
    "PARALLEL_EPISODES",
    "PIECE_BYTES",
    "PIECE_MDPS",
    "PIECE_TABLES",
    "PLANNING_GAMMA",
    "RAY_RETRIES",
    "SPAN_COST",
    "SPAN_SECONDS",
    "STALE_TEMP_SECONDS",
    "STATE_VERSION",
    "SUMMARY_VERSION",
    "FigureSettings",
    "add_arguments",
    "close_pool",
    "code_digest",
    "eval_points_of",
    "figure_settings",
    "group_key",
    "jobs_of",
    "main",
    "oscillation_rows",
    "piece_ranges",
    "reproduce_figure",
    "run",
]

if __name__ == "__main__":
    sys.exit(main())
