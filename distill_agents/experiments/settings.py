"""The options of ``distill-grid reproduce`` and the resolved settings of one figure's run.

:func:`add_arguments` declares the command's options; :func:`figure_settings` resolves them,
with the experiment's full or ``--quick`` scale (:mod:`distill_agents.experiments.figures`),
into a :class:`FigureSettings`: everything a figure's numbers depend on.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from distill_agents.experiments import figures as X
from distill_agents.experiments.readings import READING_NAMES, Readings

__all__ = [
    "ALL",
    "DEFAULT_OUT",
    "MC_EPISODES",
    "NO_PROGRESS_ENV",
    "FigureSettings",
    "add_arguments",
    "check_positive",
    "eval_points_of",
    "figure_settings",
]

#: Output directory by default.
DEFAULT_OUT = "runs/reproduce"
#: Set this environment variable (to anything but "" or "0") to hide progress bars.
NO_PROGRESS_ENV = "DISTILL_GRID_NO_PROGRESS"
#: Episodes per control policy and evaluation of ``--mc`` without a count.
MC_EPISODES = 100
#: The figure argument that runs every figure.
ALL = "all"


def add_arguments(parser: argparse.ArgumentParser, helps: Mapping[str, str] | None = None) -> None:
    """Declare the options of ``distill-grid reproduce`` on ``parser``.

    Args:
        parser: the parser to add the options to.
        helps: help texts replacing the command's own, by option destination (e.g. ``"out"``),
            for a command that reads the options its own way (``distill-grid ablate``).
    """

    def add(*names: str, **kwargs: Any) -> None:
        action = parser.add_argument(*names, **kwargs)
        if helps is not None and action.dest in helps:
            action.help = helps[action.dest]

    add("figure", help=f"one of {', '.join((*X.FIGURES, ALL))}")
    add("--mdps", type=int, default=None, help="random MDPs per panel (default 1000; --quick 12)")
    add(
        "--iterations",
        type=int,
        default=None,
        help="training episodes per MDP (default 30000; Fig. 2: update steps, 9000)",
    )
    add("--panels", default=None, help="comma-separated subset of the figure's panels")
    add("--out", default=None, help=f"output directory (default {DEFAULT_OUT})")
    add("--seed", type=int, default=0, help="MDP i has layout seed SEED + i; training seed")
    add("--quick", action="store_true", help="a small run (about a minute)")
    add("--backend", default="local", help="local (default) or ray (the pieces as Ray tasks)")
    add(
        "--ray-address",
        default=None,
        help="with --backend ray: a Ray cluster (auto or HOST:PORT; default: start a local one)",
    )
    add(
        "--workers",
        type=int,
        default=None,
        help="processes for the pieces (default: the CPUs for large runs, else 1); with "
        "--backend ray: the CPUs of the local Ray instance; results do not depend on it",
    )
    add(
        "--max-actions",
        type=int,
        default=None,
        help="leave out panels with more actions (e.g. 40 skips Figs. 4/10's |A| >= 400)",
    )
    add(
        "--teacher-episodes",
        type=int,
        default=None,
        help="training episodes of Q-learning/A2C teachers (default 30000; --quick 300)",
    )
    add(
        "--eval-points",
        type=int,
        default=None,
        help="evaluation points per curve after the start (default 30; Fig. 2: 900)",
    )
    add(
        "--mc",
        type=int,
        nargs="?",
        const=MC_EPISODES,
        default=None,
        metavar="EPISODES",
        help="Monte Carlo estimates of the metrics from EPISODES episodes per control policy and "
        f"evaluation (default {MC_EPISODES}) instead of the exact values on the model",
    )
    add(
        "--no-progress",
        action="store_true",
        help=f"hide the progress bars (also: {NO_PROGRESS_ENV}=1)",
    )
    add(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a reading of a choice the paper leaves open (repeatable; keys: "
        f"{', '.join(READING_NAMES)}; see distill_agents.experiments.readings)",
    )


@dataclass(frozen=True)
class FigureSettings:
    """The resolved settings of one figure's run (what its results depend on).

    Attributes:
        figure: figure id.
        mdps: number of MDPs.
        iterations: training episodes per MDP (update steps for Fig. 2).
        eval_every: evaluation period ``k``.
        teacher_episodes: episodes of trained teachers.
        seed: the seed.
        panels: the panels run, in order.
        skipped: panels left out by ``--max-actions``.
        mc_episodes: ``None`` for exact metrics, else Monte Carlo episodes (``--mc``).
        early: evaluation points before the first regular one
            (:func:`distill_agents.runner.early_iterations`; curve figures only).
        readings: the choices the paper leaves open (:mod:`distill_agents.experiments.readings`,
            ``--set``).
    """

    figure: str
    mdps: int
    iterations: int
    eval_every: int
    teacher_episodes: int
    seed: int
    panels: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    mc_episodes: int | None = None
    early: tuple[int, ...] = ()
    readings: Readings = field(default_factory=Readings)

    def manifest(self) -> dict[str, Any]:
        """The settings that decide the numbers (panels excluded: pieces are per panel)."""
        return {
            "figure": self.figure,
            "mdps": self.mdps,
            "iterations": self.iterations,
            "eval_every": self.eval_every,
            "teacher_episodes": self.teacher_episodes,
            "seed": self.seed,
            **({} if self.mc_episodes is None else {"mc_episodes": self.mc_episodes}),
            **({"early_eval": list(self.early)} if self.early else {}),
            **({"readings": self.readings.changed()} if self.readings.changed() else {}),
        }


def check_positive(name: str, value: Any, low: int = 1) -> None:
    """Check that option ``--name`` is ``None`` or an integer >= ``low``.

    Raises:
        ValueError: it is not (one line naming the option).
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise ValueError(f"--{name} must be an integer >= {low}, got {value}")


def figure_settings(
    figure: str,
    *,
    quick: bool = False,
    mdps: int | None = None,
    iterations: int | None = None,
    panels: Sequence[str] | None = None,
    seed: int = 0,
    max_actions: int | None = None,
    teacher_episodes: int | None = None,
    eval_points: int | None = None,
    mc_episodes: int | None = None,
    readings: Readings | None = None,
) -> FigureSettings:
    """Resolve one figure's settings from the experiment's scale and the overrides.

    Raises:
        ValueError: a bad value (one line naming the option and what it accepts).
    """
    exp = X.get_experiment(figure)
    check_positive("mdps", mdps)
    check_positive("iterations", iterations)
    check_positive("seed", seed, 0)
    check_positive("max-actions", max_actions)
    check_positive("teacher-episodes", teacher_episodes)
    check_positive("eval-points", eval_points)
    check_positive("mc", mc_episodes)
    scale = exp.quick if quick else exp.full
    n_iterations = scale.iterations if iterations is None else iterations
    points = scale.eval_points if eval_points is None else eval_points
    chosen = exp.panel_names
    if panels is not None:
        unknown = [p for p in panels if p not in exp.panel_names]
        if unknown or not panels:
            names = ", ".join(exp.panel_names) or "(none)"
            raise ValueError(f"--panels: {figure} has no panel {unknown[0]!r}; its panels: {names}")
        chosen = tuple(p for p in exp.panel_names if p in panels)
    skipped: tuple[str, ...] = ()
    if max_actions is not None:
        skipped = tuple(p for p in chosen if exp.panel(p).teacher.n_actions > max_actions)
        chosen = tuple(p for p in chosen if p not in skipped)
        if not chosen and exp.panels:
            raise ValueError(
                f"--max-actions {max_actions} leaves no panel of {figure} (skipped: "
                f"{', '.join(skipped)})"
            )
    from distill_agents.runner import early_iterations

    eval_every = max(1, n_iterations // points)
    return FigureSettings(
        figure=figure,
        mdps=1 if exp.kind != "curves" else (scale.mdps if mdps is None else mdps),
        iterations=n_iterations,
        eval_every=eval_every,
        teacher_episodes=scale.teacher_episodes if teacher_episodes is None else teacher_episodes,
        seed=seed,
        panels=chosen,
        skipped=skipped,
        mc_episodes=mc_episodes,
        early=early_iterations(eval_every, n_iterations) if exp.kind == "curves" else (),
        readings=Readings() if readings is None else readings,
    )


def eval_points_of(
    iterations: int, eval_every: int, early: Sequence[int] = ()
) -> NDArray[np.int64]:
    """The evaluation iterations of a curve (as :func:`distill_agents.runner.eval_iterations`)."""
    from distill_agents.runner import eval_iterations

    return np.asarray(eval_iterations(iterations, eval_every, early), dtype=np.int64)
