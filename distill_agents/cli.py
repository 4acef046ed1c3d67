"""The ``distill-grid`` command line.

Subcommands:

- ``show``: build one environment, print it as text and write a Fig. 7-style PNG.
- ``bench``: throughput of the single and vector environments against Gymnasium's FrozenLake,
  measured side by side (SPEC section 6).
- ``teach``: train or solve one teacher per MDP (Q-learning, A2C, optimal, adversarial; noisy
  with ``--noise``) and write ``teachers.npz`` and ``teachers.csv`` (SPEC section 5).

Bad arguments give one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from gridworld_env.fileio import atomic_write

__all__ = ["main"]


class CommandError(Exception):
    """A bad argument: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """``argparse`` with one-line errors (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


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


def _cmd_bench(args: argparse.Namespace) -> int:
    from distill_agents import bench

    argv = ["--quick"] if args.quick else []
    argv += ["--students"] if args.students else []
    argv += ["--fig3", args.fig3] if args.fig3 is not None else []
    argv += ["--markdown"] if args.markdown else []
    return int(bench.main(argv))


#: Above this many bytes of ``q_values`` ``teach`` leaves them out of ``teachers.npz``.
TEACH_Q_VALUES_BUDGET = 4e9
#: Set this environment variable (to anything but "" or "0") to hide progress bars.
NO_PROGRESS_ENV = "DISTILL_GRID_NO_PROGRESS"


def _progress_disabled(flag: bool) -> bool | None:
    """``tqdm``'s ``disable``: True if asked to hide, None (auto: only on a TTY) otherwise."""
    if flag or os.environ.get(NO_PROGRESS_ENV, "") not in ("", "0"):
        return True
    return None


def _cmd_teach(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from tqdm import tqdm

    from distill_agents import teacher_training as training

    if args.kind not in training.KINDS:
        raise CommandError(f"kind must be one of {', '.join(training.KINDS)}; got {args.kind!r}")
    kwargs = _env_kwargs(args.env_kwargs)
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
    from distill_agents.ray_backend import check_backend, ray_session

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
    out = Path(args.out if args.out is not None else f"runs/teach_{args.kind}")
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} exists and is not a directory")
    try:
        env = training.TeacherEnv(args.env, kwargs, layout_base=args.seed)
    except (ValueError, TypeError, gym.error.Error) as err:
        raise CommandError(
            f"--env {args.env} with --env-kwargs {json.dumps(kwargs)}: {err}"
        ) from None
    planned = args.kind in ("optimal", "adversarial")
    q_bytes = 8.0 * args.mdps * env.n_states * env.n_actions
    keep_q = q_bytes <= TEACH_Q_VALUES_BUDGET
    if not keep_q and args.kind == "q_learning":
        print(
            f"distill-grid teach: note: leaving q_values out of teachers.npz (they would take "
            f"{q_bytes / 1e9:.1f} GB); probabilities and values are kept",
            file=sys.stderr,
        )
    total = args.mdps if planned else args.mdps * args.episodes
    session = contextlib.ExitStack()
    if args.backend == "ray":
        try:
            session.enter_context(ray_session(args.ray_address, num_cpus=args.workers))
        except ValueError as err:  # e.g. the cluster cannot be reached
            raise CommandError(str(err).splitlines()[0]) from None
    with (
        session,
        tqdm(
            total=total,
            unit="MDP" if planned else "episode",
            unit_scale=not planned,
            desc=f"teach {args.kind}",
            file=sys.stderr,
            disable=_progress_disabled(args.no_progress),
            dynamic_ncols=True,
        ) as bar,
    ):
        try:
            run = training.make_teachers(
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
    out.mkdir(parents=True, exist_ok=True)
    npz = run.teachers.save(out / "teachers.npz")
    table = out / "teachers.csv"
    _write_teacher_csv(table, run)
    means = [_nanmean(x) for x in (run.teacher_return, run.optimal_return, run.uniform_return)]
    print(
        f"wrote {npz} and {table}: {args.mdps} {args.kind} teacher(s); mean return "
        f"teacher {means[0]:.3f}, optimal {means[1]:.3f}, uniform {means[2]:.3f}"
    )
    return 0


def _nanmean(values: Any) -> float:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else float("nan")


def _write_teacher_csv(path: Path, run: Any) -> None:
    """``mdp,layout_seed,teacher_return,optimal_return,uniform_return``, written atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["mdp", "layout_seed", "teacher_return", "optimal_return", "uniform_return"])
    seeds = run.teachers.layout_seeds
    for i in range(run.teachers.n_mdps):
        writer.writerow(
            [
                i,
                "" if seeds[i] < 0 else int(seeds[i]),
                repr(float(run.teacher_return[i])),
                repr(float(run.optimal_return[i])),
                repr(float(run.uniform_return[i])),
            ]
        )
    atomic_write(path, lambda handle: handle.write(text.getvalue().encode("utf-8")))


def _cmd_distill(args: argparse.Namespace) -> int:
    from distill_agents import distill_command

    try:
        return int(distill_command.run(args))
    except ValueError as err:
        raise CommandError(str(err).splitlines()[0]) from None


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from distill_agents import reproduce

    try:
        return int(reproduce.run(args))
    except ValueError as err:
        raise CommandError(str(err).splitlines()[0]) from None


def _cmd_ablate(args: argparse.Namespace) -> int:
    from distill_agents import ablate

    try:
        return int(ablate.run(args))
    except ValueError as err:
        raise CommandError(str(err).splitlines()[0]) from None


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    bench.add_argument(
        "--students",
        action="store_true",
        help="also the student runner against plain compiled loops, and its cost per env-step "
        "at |A| = 4, 40, 400 and 4000",
    )
    bench.add_argument(
        "--fig3",
        metavar="JSON",
        default=None,
        help="with --students: a reproduce run's fig3.json, set against the Q-learning loop",
    )
    bench.add_argument(
        "--markdown",
        action="store_true",
        help="the tables as Markdown, after a line naming the command, code version and machine",
    )
    bench.set_defaults(func=_cmd_bench)

    teach = sub.add_parser(
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
        default=None,
        help="policy temperature T >= 0 (0: greedy; default 0; not for a2c)",
    )
    teach.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="share of states given a fixed wrong action, in [0, 1) (Fig. 5; default 0)",
    )
    teach.add_argument("--out", default=None, help="output directory (default runs/teach_KIND)")
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
        default=None,
        help="worker processes for chunks of 500 MDPs (default: one per core; same results); "
        "with --backend ray: the CPUs of the local Ray instance",
    )
    teach.add_argument(
        "--backend", default="local", help="local (default) or ray (chunks as Ray tasks)"
    )
    teach.add_argument(
        "--ray-address",
        default=None,
        help="with --backend ray: a Ray cluster (auto or HOST:PORT; default: start a local one)",
    )
    teach.add_argument(
        "--no-progress",
        action="store_true",
        help=f"hide the progress bar (also: {NO_PROGRESS_ENV}=1)",
    )
    teach.set_defaults(func=_cmd_teach)

    from distill_agents import distill_command

    distill = sub.add_parser(
        "distill",
        help="distil saved teachers with one method; write the curves (CSV, PNG, JSON)",
    )
    distill_command.add_arguments(distill)
    distill.set_defaults(func=_cmd_distill)

    from distill_agents import reproduce

    repro = sub.add_parser(
        "reproduce",
        help="reproduce a figure of the paper: DIR/<fig>.csv, .png and .json (resumable)",
    )
    reproduce.add_arguments(repro)
    repro.set_defaults(func=_cmd_reproduce)

    from distill_agents import ablate

    abl = sub.add_parser(
        "ablate",
        help="a figure under several readings (--set KEY=V1,V2) side by side on the same MDPs",
    )
    ablate.add_arguments(abl)
    abl.set_defaults(func=_cmd_ablate)
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
        hint = ""
        if args.command in ("reproduce", "ablate"):
            hint = "; finished pieces are kept (run the same command again to resume)"
        print(f"distill-grid {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
