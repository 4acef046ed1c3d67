"""``distill-grid distill`` (SPEC 5): distil saved teachers with one method.

```
distill-grid distill --method ID --teacher DIR/teachers.npz [--control C] [--iterations N]
                     [--eval-every K] [--out DIR] [--seed S] [--critic mc|td]
                     [--backend local|ray] [--ray-address ADDR] ...
```

loads the teachers written by ``distill-grid teach``, trains one student per MDP with
:func:`distill_agents.runner.run_distillation` and writes, in ``--out``:

- ``NAME.csv``: the curves in the long format of SPEC 4 (:mod:`distill_agents.results`),
  with rows for the student (method column: ``--label``, default the method id) and for the
  teacher (method ``teacher``);
- ``NAME.png``: the plot (:func:`distill_agents.plotting.plot_rows`);
- ``NAME.json``: a summary (arguments, package version, ``env_steps``, ``wall_seconds``,
  the run's settings, and the CSV's SHA-256 digest for ``results.read_csv(..., sha256=...)``).

``NAME`` defaults to the method id, followed by ``-CONTROL`` when ``--control`` is given.
With ``--backend ray`` the MDPs are cut into ranges (``--chunk-size`` MDPs, default about two
per cluster CPU) that run as Ray tasks with ``first_mdp`` set, and the results are joined with
:meth:`~distill_agents.runner.RunResult.concatenate`: the same numbers as one local run.
:func:`add_arguments` declares the options on an ``argparse`` parser and :func:`execute` runs
them; bad arguments raise a ``ValueError`` with a one-line message. :func:`add_parser` and
:func:`run` are the subcommand of :func:`distill_agents.cli.main` (a ``ValueError`` becomes a
:class:`~distill_agents.cli.common.CommandError`); :mod:`distill_agents.distill_command` keeps
the old names (``run`` there is :func:`execute`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

from distill_agents import methods as M
from distill_agents.cli.common import value_errors_as_command_errors
from distill_agents.runner import METRICS

__all__ = [
    "DEFAULT_EVAL_POINTS",
    "DEFAULT_ITERATIONS",
    "DEFAULT_OUT",
    "SB3_ALGOS",
    "add_arguments",
    "add_parser",
    "execute",
    "output_name",
    "run",
]

#: Training episodes per MDP by default (the paper's 30 000).
DEFAULT_ITERATIONS = 30_000
#: Output directory by default.
DEFAULT_OUT = "runs/distill"
#: Evaluation points by default (``--eval-every`` = iterations / this, at least 1).
DEFAULT_EVAL_POINTS = 30
_NAME_OK = re.compile(r"[^A-Za-z0-9_.+=-]")


#: Stable-Baselines3 algorithms whose saved models ``--sb3-algo`` loads.
SB3_ALGOS = ("PPO", "A2C", "DQN")


def add_parser(subparsers: Any) -> None:
    """Declare ``distill`` and its options (:func:`add_arguments`)."""
    parser = subparsers.add_parser(
        "distill",
        help="distil saved teachers with one method; write the curves (CSV, PNG, JSON)",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """:func:`execute`; a bad argument is a :class:`~distill_agents.cli.common.CommandError`."""
    return value_errors_as_command_errors(execute, args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``distill-grid distill`` on ``parser``."""
    parser.add_argument(
        "--method", required=True, help=f"method id, one of: {', '.join(M.METHOD_IDS)}"
    )
    parser.add_argument(
        "--teacher",
        required=True,
        help="teachers file written by distill-grid teach, or an SB3 model .zip (with --sb3-algo)",
    )
    parser.add_argument(
        "--sb3-algo",
        choices=SB3_ALGOS,
        help="the --teacher .zip is a Stable-Baselines3 model of this algorithm (needs --env)",
    )
    parser.add_argument("--env", help="with --sb3-algo: the environment id the model acts in")
    parser.add_argument(
        "--env-kwargs",
        default="{}",
        help="with --sb3-algo: JSON kwargs of that environment (they must fix the layout)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="with --sb3-algo: temperature of the SB3 teacher's policy (default 1)",
    )
    parser.add_argument(
        "--control",
        help=f"control policy: {', '.join(M.CONTROLS)} (default: the method's own)",
    )
    parser.add_argument(
        "--beta",
        type=float,
        default=0.5,
        help="mixture control: probability of following the teacher (default 0.5)",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        help=f"training episodes per MDP (default {DEFAULT_ITERATIONS})",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        help=f"evaluate every K iterations (default: iterations / {DEFAULT_EVAL_POINTS})",
    )
    parser.add_argument("--out", help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the students (default 0)")
    parser.add_argument("--critic", help="mc or td (default: td)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    parser.add_argument("--gamma", type=float, default=0.99, help="discount (default 0.99)")
    parser.add_argument(
        "--metrics",
        default="return",
        help=f"comma-separated metrics from {', '.join(METRICS)} (default return)",
    )
    parser.add_argument("--mdps", type=int, help="use only the first N MDPs (default: all)")
    parser.add_argument(
        "--chunk-size",
        type=int,
        help="MDPs per chunk (default: from a 4 GB budget; results do not depend on it)",
    )
    parser.add_argument("--name", help="file name stem (default: METHOD[-CONTROL])")
    parser.add_argument("--figure", default="distill", help="figure column (default distill)")
    parser.add_argument("--panel", help="panel column (default: the teacher kind, e.g. q_learning)")
    parser.add_argument("--label", help="method column of the student rows (default: the method)")
    parser.add_argument(
        "--backend", default="local", help="local (default) or ray (ranges of MDPs as Ray tasks)"
    )
    parser.add_argument(
        "--ray-address",
        help="with --backend ray: a Ray cluster (auto or HOST:PORT; default: start a local one)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def output_name(method: str, control: str | None, name: str | None = None) -> str:
    """The file name stem: ``name``, or ``METHOD`` / ``METHOD-CONTROL``, made file-safe."""
    stem = name if name is not None else (method if control is None else f"{method}-{control}")
    return _NAME_OK.sub("_", stem)


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check(args: argparse.Namespace) -> tuple[int, int, tuple[str, ...]]:
    """Validate the arguments that do not need the teachers; ``(iterations, k, metrics)``."""
    M.parse_method(args.method)
    if args.control is not None:
        M.control_code(args.control)
    if args.critic is not None and args.critic not in ("mc", "td", "none"):
        raise ValueError(f"--critic must be mc, td or none, got {args.critic!r}")
    M.parse_method(args.method).critic_mode(args.critic)
    if args.iterations < 0:
        raise ValueError(f"--iterations must be an integer >= 0, got {args.iterations}")
    every = args.eval_every
    if every is None:
        every = max(1, args.iterations // DEFAULT_EVAL_POINTS)
    if every < 1:
        raise ValueError(f"--eval-every must be an integer >= 1, got {args.eval_every}")
    if args.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {args.seed}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a positive number, got {args.lr}")
    if not (math.isfinite(args.gamma) and 0.0 <= args.gamma <= 1.0):
        raise ValueError(f"--gamma must be a number in [0, 1], got {args.gamma}")
    if not (math.isfinite(args.beta) and 0.0 <= args.beta <= 1.0):
        raise ValueError(f"--beta must be a number in [0, 1], got {args.beta}")
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    bad = [m for m in metrics if m not in METRICS]
    if not metrics or bad or len(set(metrics)) != len(metrics):
        raise ValueError(
            f"--metrics must be distinct names from {', '.join(METRICS)}, got {args.metrics!r}"
        )
    if args.mdps is not None and args.mdps < 1:
        raise ValueError(f"--mdps must be an integer >= 1, got {args.mdps}")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ValueError(f"--chunk-size must be an integer >= 1, got {args.chunk_size}")
    from distill_agents.parallel.ray_backend import check_backend

    check_backend(args.backend, args.ray_address)
    for option in ("figure", "label", "panel", "name"):
        value = getattr(args, option)
        if value is not None and (not value.strip() or any(c in value for c in "\r\n")):
            raise ValueError(f"--{option} must be a non-empty one-line text, got {value!r}")
    return int(args.iterations), int(every), metrics


def _number(values: Any) -> float | None:
    """The mean of the finite values (None if there are none), for JSON."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _sb3_teachers(args: argparse.Namespace, path: Path) -> Any:
    """One SB3 model as a batch of one teacher over the env's table indices."""
    import gymnasium as gym

    import gridworld_env
    from distill_agents.teachers import Teachers

    try:
        import stable_baselines3

        from distill_agents.integrations import sb3
    except ImportError as err:
        raise ValueError(f"--sb3-algo: {_one_line(err)}") from None
    if args.env is None:
        raise ValueError("--sb3-algo needs --env (the id of the environment the model acts in)")
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as err:
        raise ValueError(f"--env-kwargs must be a JSON object: {err.msg}") from None
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}")
    if not args.temperature >= 0:
        raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
    model = getattr(stable_baselines3, args.sb3_algo).load(path, device="cpu")
    table = gridworld_env.TableIndexWrapper(gym.make(args.env, **env_kwargs))
    teacher = sb3.SB3Teacher(model, args.temperature, obs_to_model=table.index_to_obs)
    return Teachers.from_policy(teacher, args.env, env_kwargs)


def _ray_range(job: tuple[int, int], shared: tuple[Any, dict[str, Any]], progress: Any) -> Any:
    """A Ray task: the students of MDPs ``lo .. hi - 1`` (``first_mdp = lo``)."""
    from distill_agents.runner import run_distillation

    (lo, hi), (teachers, settings) = job, shared
    part = teachers.subset(lo, hi) if (lo, hi) != (0, teachers.n_mdps) else teachers
    return run_distillation(part, **settings, first_mdp=lo, progress=progress)


def _run_on_ray(teachers: Any, settings: dict[str, Any], args: argparse.Namespace, bar: Any) -> Any:
    """``run_distillation`` over ranges of MDPs as Ray tasks, joined in order."""
    from distill_agents.parallel import ray_backend
    from distill_agents.runner import RunResult

    n = teachers.n_mdps
    with ray_backend.ray_session(args.ray_address) as ray:
        size = args.chunk_size
        if size is None:  # about two ranges per CPU (results do not depend on the cutting)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            size = max(1, math.ceil(n / (2 * max(1, cpus))))
        ranges = [(lo, min(n, lo + size)) for lo in range(0, n, size)]
        parts = ray_backend.ray_map_ordered(
            _ray_range, ranges, shared=(teachers, settings), progress=bar
        )
    return parts[0] if len(parts) == 1 else RunResult.concatenate(parts)


def execute(args: argparse.Namespace) -> int:
    """Execute ``distill-grid distill`` with parsed ``args``; returns the exit status (0).

    Raises:
        ValueError: a bad argument or an unreadable/invalid teachers file (one-line message).
    """
    try:
        iterations, every, metrics = _check(args)
    except ValueError as err:
        raise ValueError(_one_line(err)) from None
    teacher_path = Path(args.teacher)
    if not teacher_path.is_file():
        raise ValueError(
            f"--teacher {teacher_path}: no such file (write one with distill-grid teach)"
        )
    if args.sb3_algo is None and (args.env is not None or args.env_kwargs != "{}"):
        raise ValueError("--env and --env-kwargs go with --sb3-algo (an SB3 model teacher)")
    out = Path(args.out if args.out is not None else DEFAULT_OUT)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    teachers = _load_teachers(args, teacher_path)
    spec = M.parse_method(args.method)
    if spec.needs_teacher_values and teachers.values is None:
        raise ValueError(
            f"--method {spec.id} needs teacher values V_pi, but {teacher_path} holds "
            f"{teachers.kind} teachers without values"
        )
    settings: dict[str, Any] = {
        "method": spec.id,
        "control": args.control,
        "iterations": iterations,
        "eval_every": every,
        "lr": float(args.lr),
        "gamma": float(args.gamma),
        "critic": args.critic,
        "seed": int(args.seed),
        "beta": float(args.beta),
        "metrics": metrics,
        "chunk_size": args.chunk_size,
        "loop": "compiled",  # the vector loop's numbers, faster (runner docs)
    }
    t0 = time.perf_counter()
    result = _train(teachers, settings, args)
    wall = time.perf_counter() - t0
    label = args.label if args.label is not None else spec.id
    name = output_name(spec.id, args.control, args.name)
    provenance = {"teacher_file": str(teacher_path), "wall_seconds": wall}
    paths = _write_outputs(args, teachers, result, name, label, metrics, provenance)
    tail = ""
    if "return" in metrics:
        student = _number(result.metrics["return"][:, -1])
        teacher = _number(result.teacher_metrics["return"])
        tail = f"; final mean return {student} (teacher {teacher})"
    print(f"wrote {paths[0]}, {paths[1]} and {paths[2]}: {result.n_mdps} MDPs{tail}")
    return 0


def _load_teachers(args: argparse.Namespace, teacher_path: Path) -> Any:
    """The teachers file (or the SB3 model with ``--sb3-algo``), cut to ``--mdps``."""
    from distill_agents.teachers import Teachers

    try:
        if args.sb3_algo is None:
            teachers = Teachers.load(teacher_path)
        else:
            teachers = _sb3_teachers(args, teacher_path)
    except ValueError as err:
        raise ValueError(f"--teacher: {_one_line(err)}") from None
    if args.mdps is not None:
        teachers = teachers.subset(0, min(args.mdps, teachers.n_mdps))
    return teachers


def _train(teachers: Any, settings: dict[str, Any], args: argparse.Namespace) -> Any:
    """``run_distillation`` (locally or on Ray) with a progress bar; the ``RunResult``."""
    from tqdm import tqdm

    from distill_agents.runner import run_distillation

    with tqdm(
        total=teachers.n_mdps * settings["iterations"],
        unit="episode",
        unit_scale=True,
        desc=f"distill {settings['method']}",
        file=sys.stderr,
        disable=True if args.no_progress else None,
        dynamic_ncols=True,
    ) as bar:
        try:
            if args.backend == "ray":
                return _run_on_ray(teachers, settings, args, bar.update)
            return run_distillation(teachers, **settings, progress=bar.update)
        except ValueError as err:
            raise ValueError(_one_line(err)) from None


def _write_outputs(
    args: argparse.Namespace,
    teachers: Any,
    result: Any,
    name: str,
    label: str,
    metrics: tuple[str, ...],
    provenance: dict[str, Any],
) -> tuple[Path, Path, Path]:
    """Write ``NAME.csv``, ``NAME.png`` and ``NAME.json`` in ``--out``; their paths."""
    from distill_agents import __version__, plotting
    from distill_agents.results import write_csv
    from gridworld_env.fileio import atomic_write

    out = Path(args.out if args.out is not None else DEFAULT_OUT)
    panel = args.panel if args.panel is not None else teachers.kind
    rows = result.to_rows(args.figure, panel, method=label)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{name}.csv"
    png_path = out / f"{name}.png"
    digest = write_csv(csv_path, rows)
    plotting.plot_rows(
        rows, png_path, title=f"{label} ({teachers.kind} teachers, {teachers.n_mdps} MDPs)"
    )
    summary = {
        "command": "distill",
        "arguments": {k: v for k, v in vars(args).items() if k != "func"},
        "version": __version__,
        "format_version": 1,
        "teacher_file": provenance["teacher_file"],
        "n_mdps": result.n_mdps,
        "env_steps": int(result.env_steps.sum()),
        "wall_seconds": provenance["wall_seconds"],
        "csv": csv_path.name,
        "csv_sha256": digest,
        "png": png_path.name,
        "settings": dict(result.settings),
        "final": {
            metric: {
                "student_mean": _number(result.metrics[metric][:, -1]),
                "teacher_mean": _number(result.teacher_metrics[metric]),
            }
            for metric in metrics
        },
    }
    text = json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n"
    json_path = atomic_write(out / f"{name}.json", lambda handle: handle.write(text.encode()))
    return csv_path, png_path, json_path
