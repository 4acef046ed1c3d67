"""``distill-grid show``: build one environment, print it as text and write a Fig. 7-style PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from distill_agents.cli.common import CommandError, env_kwargs

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Declare ``show`` and its options."""
    show = subparsers.add_parser("show", help="print an environment as text and save a PNG of it")
    show.add_argument("--env", default="DistillGrid-v0", help="environment id")
    show.add_argument("--env-kwargs", default="{}", help="JSON object of environment kwargs")
    show.add_argument("--seed", type=int, default=0, help="layout seed (and reset seed)")
    show.add_argument("--out", help="path of the PNG to write")
    show.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the environment (and write its PNG with ``--out``); returns the exit status."""
    import gymnasium as gym

    import gridworld_env  # noqa: F401  (registers the ids)
    from gridworld_env.rendering import save_png

    kwargs = env_kwargs(args.env_kwargs)
    if args.env == "DistillGrid-v0" and "layout" not in kwargs:
        kwargs.setdefault("layout_seed", args.seed)
    try:
        env = gym.make(args.env, render_mode="ansi", **kwargs)
    except (ValueError, TypeError, gym.error.Error) as err:
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
