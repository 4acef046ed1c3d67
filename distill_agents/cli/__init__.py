"""The ``distill-grid`` command line (``python -m distill_agents.cli`` runs it too).

Subcommands, one module each (``add_parser(subparsers)`` declares the options, ``run(args)``
executes them):

- :mod:`~distill_agents.cli.show`: build one environment, print it as text and write a
  Fig. 7-style PNG.
- :mod:`~distill_agents.cli.bench`: throughput of the single and vector environments against
  Gymnasium's FrozenLake, measured side by side (SPEC section 6).
- :mod:`~distill_agents.cli.teach`: train or solve one teacher per MDP (Q-learning, A2C,
  optimal, adversarial; noisy with ``--noise``) and write ``teachers.npz`` and ``teachers.csv``
  (SPEC section 5).
- :mod:`~distill_agents.cli.distill`: distil saved teachers with one method.
- :mod:`~distill_agents.cli.reproduce`: reproduce a figure of the paper.
- :mod:`~distill_agents.cli.ablate`: a figure under several readings side by side.

:mod:`~distill_agents.cli.common` holds what they share. Bad arguments give one line on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from distill_agents.cli import ablate, bench, distill, reproduce, show, teach
from distill_agents.cli.common import NO_PROGRESS_ENV, CommandError, Parser
from distill_agents.cli.teach import TEACH_Q_VALUES_BUDGET

__all__ = ["NO_PROGRESS_ENV", "TEACH_Q_VALUES_BUDGET", "CommandError", "main"]

#: The subcommand modules, in the order of ``distill-grid --help``.
SUBCOMMANDS = (show, bench, teach, distill, reproduce, ablate)


def build_parser() -> argparse.ArgumentParser:
    """The ``distill-grid`` parser with every subcommand."""
    parser = Parser(
        prog="distill-grid",
        description="Random grid-world MDPs and tabular policy distillation "
        "(Czarnecki et al., AISTATS 2019).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as err:
        print(f"distill-grid {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = ""
        if args.command in ("reproduce", "ablate"):
            hint = "; finished pieces are kept (run the same command again to resume)"
        print(f"distill-grid {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
