"""``distill-grid teach``: train or solve one teacher per MDP; write the teachers and a table.

Kinds: Q-learning, A2C, optimal, adversarial (noisy with ``--noise``); the outputs are
``DIR/teachers.npz`` and ``DIR/teachers.csv`` (SPEC section 5).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

from distill_agents.cli.common import NO_PROGRESS_ENV, CommandError, env_kwargs, progress_disabled
from gridworld_env.fileio import atomic_write

__all__ = ["TEACH_Q_VALUES_BUDGET", "add_parser", "run"]

#: Above this many bytes of ``q_values`` ``teach`` leaves them out of ``teachers.npz``.
TEACH_Q_VALUES_BUDGET = 4e9


def add_parser(subparsers: Any) -> None:
    """Declare ``teach`` and its options."""
    teach = subparsers.add_parser(
        "teach",
        help="train or solve one teacher per MDP; write DIR/teachers.npz and DIR/teachers.csv",
    )
    teach.add_argument("kind", help="q_learning, a2c, optimal or adversarial")
    teach.add_argument("--env", default="DistillGrid-v0", help="environment id")
    teach.add_argument("--env-kwargs", default="{}", help="JSON object of environment kwargs")
    teach.add_argument("--mdps", type=int, default=1000, help="number of MDPs (default 1000)")
    teach.add_argument(
        "--episodes", type=int, default=30_000, help="training episodes per MDP (default 30000)"
    )
    teach.add_argument(
        "--temperature",
        type=float,
        help="policy temperature T >= 0 (0: greedy; default 0; not for a2c)",
    )
    teach.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="share of states given a fixed wrong action, in [0, 1) (Fig. 5; default 0)",
    )
    teach.add_argument("--out", help="output directory (default runs/teach_KIND)")
    teach.add_argument(
        "--seed", type=int, default=0, help="MDP i has layout seed SEED + i; training seed"
    )
    teach.add_argument(
        "--a2c-variant", choices=("mc", "td"), default="mc", help="A2C critic target (default mc)"
    )
    teach.add_argument(
        "--max-actors",
        type=int,
        default=8,
        help="most parallel actors per slow MDP late in training (1: strictly sequential)",
    )
    teach.add_argument(
        "--workers",
        type=int,
        help="worker processes for chunks of 500 MDPs (default: one per core; same results); "
        "with --backend ray: the CPUs of the local Ray instance",
    )
    teach.add_argument(
        "--backend", default="local", help="local (default) or ray (chunks as Ray tasks)"
    )
    teach.add_argument(
        "--ray-address",
        help="with --backend ray: a Ray cluster (auto or HOST:PORT; default: start a local one)",
    )
    teach.add_argument(
        "--no-progress",
        action="store_true",
        help=f"hide the progress bar (also: {NO_PROGRESS_ENV}=1)",
    )
    teach.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Make the teachers, write ``teachers.npz`` and ``teachers.csv``; returns the exit status."""
    import gymnasium as gym

    from distill_agents.teachers.env import TeacherEnv
    from distill_agents.teachers.make import KINDS

    kwargs = _check(args, KINDS)
    out = Path(args.out if args.out is not None else f"runs/teach_{args.kind}")
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} exists and is not a directory")
    try:
        env = TeacherEnv(args.env, kwargs, layout_base=args.seed)
    except (ValueError, TypeError, gym.error.Error) as err:
        raise CommandError(
            f"--env {args.env} with --env-kwargs {json.dumps(kwargs)}: {err}"
        ) from None
    made = _make_teachers(args, kwargs, env)
    out.mkdir(parents=True, exist_ok=True)
    npz = made.teachers.save(out / "teachers.npz")
    table = out / "teachers.csv"
    _write_teacher_csv(table, made)
    means = [_nanmean(x) for x in (made.teacher_return, made.optimal_return, made.uniform_return)]
    print(
        f"wrote {npz} and {table}: {args.mdps} {args.kind} teacher(s); mean return "
        f"teacher {means[0]:.3f}, optimal {means[1]:.3f}, uniform {means[2]:.3f}"
    )
    return 0


def _check(args: argparse.Namespace, kinds: tuple[str, ...]) -> dict[str, Any]:
    """Check the options that need no environment; returns the ``--env-kwargs`` object."""
    if args.kind not in kinds:
        raise CommandError(f"kind must be one of {', '.join(kinds)}; got {args.kind!r}")
    kwargs = env_kwargs(args.env_kwargs)
    if args.mdps < 1:
        raise CommandError(f"--mdps must be an integer >= 1, got {args.mdps}")
    if args.episodes < 1:
        raise CommandError(f"--episodes must be an integer >= 1, got {args.episodes}")
    if args.seed < 0:
        raise CommandError(f"--seed must be a non-negative integer, got {args.seed}")
    if args.max_actors < 1:
        raise CommandError(f"--max-actors must be an integer >= 1, got {args.max_actors}")
    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers must be an integer >= 1, got {args.workers}")
    from distill_agents.parallel.ray_backend import check_backend

    try:
        check_backend(args.backend, args.ray_address, args.workers)
    except ValueError as err:
        raise CommandError(str(err)) from None
    if args.temperature is not None:
        if not (math.isfinite(args.temperature) and args.temperature >= 0.0):
            raise CommandError(f"--temperature must be a number >= 0, got {args.temperature}")
        if args.kind == "a2c":
            raise CommandError(
                "--temperature applies to q_learning, optimal and adversarial teachers (the "
                "a2c teacher's policy is its softmax actor)"
            )
    if not (math.isfinite(args.noise) and 0.0 <= args.noise < 1.0):
        raise CommandError(f"--noise must be a number in [0, 1), got {args.noise}")
    return kwargs


def _make_teachers(args: argparse.Namespace, kwargs: dict[str, Any], env: Any) -> Any:
    """``make_teachers`` with a progress bar (and a Ray session with ``--backend ray``)."""
    from tqdm import tqdm

    from distill_agents.parallel.ray_backend import ray_session
    from distill_agents.teachers.make import make_teachers

    planned = args.kind in ("optimal", "adversarial")
    q_bytes = 8.0 * args.mdps * env.n_states * env.n_actions
    keep_q = q_bytes <= TEACH_Q_VALUES_BUDGET
    if not keep_q and args.kind == "q_learning":
        print(
            f"distill-grid teach: note: leaving q_values out of teachers.npz (they would take "
            f"{q_bytes / 1e9:.1f} GB); probabilities and values are kept",
            file=sys.stderr,
        )
    session = contextlib.ExitStack()
    if args.backend == "ray":
        try:
            session.enter_context(ray_session(args.ray_address, num_cpus=args.workers))
        except ValueError as err:  # e.g. the cluster cannot be reached
            raise CommandError(str(err).splitlines()[0]) from None
    with (
        session,
        tqdm(
            total=args.mdps if planned else args.mdps * args.episodes,
            unit="MDP" if planned else "episode",
            unit_scale=not planned,
            desc=f"teach {args.kind}",
            file=sys.stderr,
            disable=progress_disabled(args.no_progress),
            dynamic_ncols=True,
        ) as bar,
    ):
        try:
            return make_teachers(
                args.kind,
                args.env,
                kwargs,
                args.mdps,
                seed=args.seed,
                episodes=args.episodes,
                temperature=args.temperature,
                noise=args.noise,
                a2c_variant=args.a2c_variant,
                max_actors=args.max_actors,
                keep_q_values=keep_q,
                workers=args.workers,
                progress=bar.update,
                backend=args.backend,
            )
        except (ValueError, TypeError) as err:
            raise CommandError(str(err).splitlines()[0]) from None


def _nanmean(values: Any) -> float:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else float("nan")


def _write_teacher_csv(path: Path, made: Any) -> None:
    """``mdp,layout_seed,teacher_return,optimal_return,uniform_return``, written atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["mdp", "layout_seed", "teacher_return", "optimal_return", "uniform_return"])
    seeds = made.teachers.layout_seeds
    for i in range(made.teachers.n_mdps):
        writer.writerow(
            [
                i,
                "" if seeds[i] < 0 else int(seeds[i]),
                repr(float(made.teacher_return[i])),
                repr(float(made.optimal_return[i])),
                repr(float(made.uniform_return[i])),
            ]
        )
    atomic_write(path, lambda handle: handle.write(text.getvalue().encode("utf-8")))
