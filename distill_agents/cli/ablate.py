"""``distill-grid ablate``: a figure under several readings.

The command itself is :mod:`distill_agents.experiments.ablate`.
"""

from __future__ import annotations

import argparse
from typing import Any

from distill_agents.cli.common import value_errors_as_command_errors
from distill_agents.experiments import ablate

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Declare ``ablate`` and its options.

    The options are :func:`distill_agents.experiments.ablate.add_arguments`'s.
    """
    parser = subparsers.add_parser(
        "ablate",
        help="a figure under several readings (--set KEY=V1,V2) side by side on the same MDPs",
    )
    ablate.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the ablation; a bad argument raises a ``CommandError``."""
    return value_errors_as_command_errors(ablate.run, args)
