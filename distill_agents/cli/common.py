"""What the subcommands of ``distill-grid`` share: the parser class, errors, env kwargs, progress.

Every subcommand module of :mod:`distill_agents.cli` declares its options in
``add_parser(subparsers)`` and executes them in ``run(args)``; a bad argument raises
:class:`CommandError`, which :func:`distill_agents.cli.main` reports as one line with exit
status 2.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = [
    "NO_PROGRESS_ENV",
    "CommandError",
    "Parser",
    "env_kwargs",
    "progress_disabled",
    "value_errors_as_command_errors",
]

#: Set this environment variable (to anything but "" or "0") to hide progress bars.
NO_PROGRESS_ENV = "DISTILL_GRID_NO_PROGRESS"


class CommandError(Exception):
    """A bad argument: reported as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """``argparse`` with one-line errors (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE`` on stderr and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def env_kwargs(text: str) -> dict[str, Any]:
    """The ``--env-kwargs`` JSON object, or a :class:`CommandError`."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise CommandError(f"--env-kwargs must be a JSON object: {err.msg}") from None
    if not isinstance(value, dict):
        raise CommandError(f"--env-kwargs must be a JSON object, got {text!r}")
    return value


def progress_disabled(flag: bool) -> bool | None:
    """``tqdm``'s ``disable``: True if asked to hide, None (auto: only on a TTY) otherwise."""
    if flag or os.environ.get(NO_PROGRESS_ENV, "") not in ("", "0"):
        return True
    return None


def value_errors_as_command_errors(
    execute: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """``execute(args)`` with a ``ValueError`` turned into a :class:`CommandError` (first line)."""
    try:
        return int(execute(args))
    except ValueError as err:
        raise CommandError(str(err).splitlines()[0]) from None
