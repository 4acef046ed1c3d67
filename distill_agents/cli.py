"""The ``distill-grid`` command line.

Subcommands:

- ``show``: build one environment, print it as text and write a Fig. 7-style PNG.
- ``bench``: throughput of the single and vector environments against Gymnasium's FrozenLake,
  measured side by side (SPEC section 6).

Bad arguments give one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


class CommandError(Exception):
    """A bad argument: reported as one line, exit status 2."""


def _env_kwargs(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise CommandError(f"--env-kwargs must be a JSON object: {err.msg}") from None
    if not isinstance(value, dict):
        raise CommandError(f"--env-kwargs must be a JSON object, got {text!r}")
    return value


def _cmd_show(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import gridworld_env  # noqa: F401  (registers the ids)
    from gridworld_env.rendering import save_png

    kwargs = _env_kwargs(args.env_kwargs)
    if args.env == "DistillGrid-v0" and "layout" not in kwargs:
        kwargs.setdefault("layout_seed", args.seed)
    try:
        env = gym.make(args.env, render_mode="ansi", **kwargs)
    except (ValueError, TypeError) as err:
        raise CommandError(f"--env {args.env} with --env-kwargs {kwargs}: {err}") from None
    env.reset(seed=args.seed)
    print(env.render(), end="")
    if args.out is not None:
        if "rgb_array" not in env.metadata.get("render_modes", []):
            raise CommandError(f"--out: {args.env} has no picture rendering (rgb_array)")
        picture = gym.make(args.env, render_mode="rgb_array", **kwargs)
        picture.reset(seed=args.seed)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_png(out, picture.render())
        print(f"wrote {out}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from distill_agents import bench

    return int(bench.main(["--quick"] if args.quick else []))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distill-grid",
        description="Random grid-world MDPs and tabular policy distillation "
        "(Czarnecki et al., AISTATS 2019).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    show = sub.add_parser("show", help="print an environment as text and save a PNG of it")
    show.add_argument("--env", default="DistillGrid-v0", help="environment id")
    show.add_argument("--env-kwargs", default="{}", help="JSON object of environment kwargs")
    show.add_argument("--seed", type=int, default=0, help="layout seed (and reset seed)")
    show.add_argument("--out", default=None, help="path of the PNG to write")
    show.set_defaults(func=_cmd_show)

    bench = sub.add_parser("bench", help="measure env throughput against FrozenLake")
    bench.add_argument("--quick", action="store_true", help="small counts (a few seconds)")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as err:
        print(f"distill-grid {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"distill-grid {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
