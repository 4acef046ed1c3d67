"""``distill-grid reproduce``: a figure of the paper.

The command itself is :mod:`distill_agents.experiments.reproduce`.
"""

from __future__ import annotations

import argparse
from typing import Any

from distill_agents.cli.common import value_errors_as_command_errors
from distill_agents.experiments import reproduce

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Declare ``reproduce`` and its options.

    The options are :func:`distill_agents.experiments.settings.add_arguments`'s.
    """
    parser = subparsers.add_parser(
        "reproduce",
        help="reproduce a figure of the paper: DIR/<fig>.csv, .png and .json (resumable)",
    )
    reproduce.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Reproduce the figure; a bad argument raises a ``CommandError``."""
    return value_errors_as_command_errors(reproduce.run, args)
