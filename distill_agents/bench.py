"""Throughput of the environments against Gymnasium's FrozenLake, measured side by side (SPEC 6).

Two comparisons, each run in the same process so the ratios do not depend on the machine:

(a) one environment through ``gym.make(...).step``: ``DistillGrid-v0`` against
    ``FrozenLake-v1`` (8x8, slippery), the same loop for both (pre-generated random actions,
    ``reset`` when an episode ends, best of ``repeats`` runs);
(b) the native vector env with ``n_envs`` random 20x20 MDPs (full, table-index and partial
    observations) against ``gym.make_vec("FrozenLake-v1", vectorization_mode="sync")``, counted
    in env-steps per second (one ``step`` call of ``B`` sub-envs is ``B`` env-steps).

``python -m distill_agents.bench [--quick]`` or ``distill-grid bench`` prints the table.
Importing this module has no side effects.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BenchConfig",
    "Measurement",
    "bench_single",
    "bench_students_table",
    "bench_vector",
    "format_actions",
    "format_students",
    "format_table",
    "main",
    "run",
]


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one benchmark run.

    Attributes:
        single_steps: steps per timed run of one environment.
        vector_envs: number of sub-envs ``B`` of the native vector env (1000 in SPEC 6).
        vector_steps: ``step`` calls per timed run of the native vector env.
        sync_envs: number of FrozenLake copies in Gymnasium's ``SyncVectorEnv``.
        sync_steps: ``step`` calls per timed run of the ``SyncVectorEnv``.
        repeats: timed runs per measurement; the best is kept (the single-env loops use
            ``min(repeats, 3)``, as they are long).
        seed: seed of the actions and of ``reset``.
    """

    single_steps: int = 200_000
    vector_envs: int = 1000
    vector_steps: int = 5000
    sync_envs: int = 100
    sync_steps: int = 300
    repeats: int = 5
    seed: int = 0


QUICK = BenchConfig(
    single_steps=5000, vector_envs=64, vector_steps=50, sync_envs=8, sync_steps=20, repeats=1
)


@dataclass(frozen=True)
class Measurement:
    """Best throughput of one environment setting.

    Attributes:
        name: what was measured.
        steps_per_second: env-steps per second (best of the repeats).
        env_steps: env-steps per timed run.
    """

    name: str
    steps_per_second: float
    env_steps: int


def _best_rate(run_once: Callable[[], int], repeats: int) -> tuple[float, int]:
    """Best ``env_steps / seconds`` over ``repeats`` calls of ``run_once`` (returns env-steps)."""
    best, env_steps = 0.0, 0
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        env_steps = run_once()
        elapsed = time.perf_counter() - start
        best = max(best, env_steps / max(elapsed, 1e-12))
    return best, env_steps


def _single_loop(env: Any, actions: Sequence[int], seed: int) -> Callable[[], int]:
    """The timed loop of one environment: step through ``actions``, reset on episode end."""

    def run_once() -> int:
        env.reset(seed=seed)
        step, reset = env.step, env.reset
        for action in actions:
            _, _, terminated, truncated, _ = step(action)
            if terminated or truncated:
                reset()
        return len(actions)

    return run_once


def bench_single(config: BenchConfig = BenchConfig()) -> list[Measurement]:
    """(a) ``DistillGrid-v0`` and ``FrozenLake-v1`` 8x8 through ``gym.make(...).step``."""
    import gymnasium as gym

    import gridworld_env  # noqa: F401 -- registers the ids

    rng = np.random.default_rng(config.seed)
    results = []
    settings: list[tuple[str, str, dict[str, Any]]] = [
        ("DistillGrid-v0 (gym.make)", "DistillGrid-v0", {}),
        ("FrozenLake-v1 8x8 (gym.make)", "FrozenLake-v1", {"map_name": "8x8"}),
    ]
    for name, env_id, kwargs in settings:
        env = gym.make(env_id, **kwargs)
        n_actions = int(env.action_space.n)  # type: ignore[attr-defined]
        actions = rng.integers(0, n_actions, config.single_steps).tolist()
        rate, steps = _best_rate(_single_loop(env, actions, config.seed), min(config.repeats, 3))
        env.close()
        results.append(Measurement(name, rate, steps))
    return results


def _vector_loop(envs: Any, actions: np.ndarray, seed: int) -> Callable[[], int]:
    def run_once() -> int:
        envs.reset(seed=seed)
        step = envs.step
        for row in actions:
            step(row)
        return int(actions.size)

    return run_once


def bench_vector(
    config: BenchConfig = BenchConfig(),
    observations: Sequence[str] = ("full", "index", "partial"),
) -> list[Measurement]:
    """(b) the native vector env (each observation mode) and FrozenLake's ``SyncVectorEnv``."""
    import gymnasium as gym

    import gridworld_env  # noqa: F401 -- registers the ids

    rng = np.random.default_rng(config.seed)
    results = []
    n_envs = config.vector_envs
    for observation in observations:
        envs = gym.make_vec(
            "DistillGrid-v0",
            num_envs=n_envs,
            vectorization_mode="vector_entry_point",
            observation=observation,
        )
        actions = rng.integers(0, 4, (config.vector_steps, n_envs))
        envs.reset(seed=config.seed)
        envs.step(actions[0])  # compile (or load the cached kernel) outside the timing
        rate, steps = _best_rate(_vector_loop(envs, actions, config.seed), config.repeats)
        envs.close()
        results.append(Measurement(f"DistillGrid-v0 x{n_envs} vector ({observation})", rate, steps))
    sync = gym.make_vec(
        "FrozenLake-v1", num_envs=config.sync_envs, vectorization_mode="sync", map_name="8x8"
    )
    actions = rng.integers(0, 4, (config.sync_steps, config.sync_envs))
    rate, steps = _best_rate(_vector_loop(sync, actions, config.seed), config.repeats)
    sync.close()
    results.append(Measurement(f"FrozenLake-v1 8x8 x{config.sync_envs} SyncVectorEnv", rate, steps))
    return results


def format_table(measurements: Sequence[Measurement], reference: Measurement) -> str:
    """A text table of steps/s and the ratio of each row to ``reference``."""
    width = max(len(m.name) for m in measurements)
    lines = [f"{'environment':<{width}}  {'env-steps/s':>12}  {'ratio':>8}"]
    for m in measurements:
        ratio = m.steps_per_second / reference.steps_per_second
        lines.append(f"{m.name:<{width}}  {m.steps_per_second:>12.3e}  {ratio:>7.1f}x")
    return "\n".join(lines)


def run(config: BenchConfig = BenchConfig()) -> dict[str, list[Measurement]]:
    """Run both comparisons; returns ``{"single": [...], "vector": [...]}`` (reference last)."""
    return {"single": bench_single(config), "vector": bench_vector(config)}


def main(argv: Sequence[str] | None = None) -> int:
    """Print both tables; ``--quick`` uses small counts (a few seconds). Returns 0."""
    parser = argparse.ArgumentParser(
        prog="distill-grid bench",
        description="Env-steps per second of DistillGrid-v0 against FrozenLake-v1 (SPEC 6).",
    )
    parser.add_argument("--quick", action="store_true", help="small counts (a few seconds)")
    parser.add_argument(
        "--vector-envs", type=int, default=None, help="sub-envs of the native vector env"
    )
    parser.add_argument(
        "--students",
        action="store_true",
        help="also the student runner (both loops) against plain compiled loops, and its cost "
        "per env-step at |A| = 4, 40, 400 and 4000",
    )
    parser.add_argument(
        "--fig3",
        metavar="JSON",
        default=None,
        help="with --students: the fig3.json of a reproduce run, whose effective rate is set "
        "against the Q-learning loop",
    )
    args = parser.parse_args(argv)
    fig3 = None
    if args.fig3 is not None:
        try:
            fig3 = json.loads(Path(args.fig3).read_text())
            fig3 = {k: fig3[k] for k in ("env_steps", "wall_seconds", "settings")}
        except (OSError, ValueError, KeyError, TypeError) as err:
            parser.error(f"--fig3: not a reproduce summary ({err})")
    config = QUICK if args.quick else BenchConfig()
    if args.vector_envs is not None:
        if args.vector_envs < 1:
            parser.error("--vector-envs must be >= 1")
        config = BenchConfig(**{**config.__dict__, "vector_envs": args.vector_envs})
    results = run(config)
    single, vector = results["single"], results["vector"]
    print("(a) one environment, gym.make(...).step, random actions, reset on episode end")
    print(format_table(single, single[-1]))
    print()
    print(
        "(b) batched, random actions; ratios against Gymnasium's SyncVectorEnv "
        "(env-steps = step calls x sub-envs)"
    )
    print(format_table(vector, vector[-1]))
    if args.students:
        print()
        print(format_students(bench_students_table(quick=bool(args.quick)), fig3))
    return 0


def bench_students_table(quick: bool = False) -> dict[str, Any]:
    """:func:`distill_agents.runner.bench_students` at the benchmark's size."""
    from distill_agents.runner import bench_students

    if quick:
        return bench_students(n_mdps=50, iterations=200, action_mdps=2, action_iterations=100)
    return bench_students(n_mdps=1000, iterations=2000, action_mdps=20, action_iterations=2000)


def format_students(out: dict[str, Any], fig3: dict[str, Any] | None = None) -> str:
    """The student runner's lines, as ``distill-grid bench --students`` prints them.

    Both loops against the reference loop, the Q-learning yardstick (and ``fig3``'s effective
    rate against it: a ``reproduce fig3`` JSON summary), and the cost per env-step for every
    action count.
    """
    ref = out["reference_steps_per_s"]
    lines = [
        f"(c) students: {out['method']} on {out['n_mdps']} random 20x20 MDPs x "
        f"{out['iterations']} episodes (optimal teachers); ratios against a plain compiled loop "
        "doing the same updates, measured in the same run",
        f"  runner, vector-env loop    {out['runner_steps_per_s']:10.3g} env-steps/s   "
        f"{out['ratio']:.2f}x  (training only {out['train_ratio']:.2f}x)",
        f"  runner, compiled loop      {out['compiled_steps_per_s']:10.3g} env-steps/s   "
        f"{out['compiled_ratio']:.2f}x  (training only {out['compiled_train_ratio']:.2f}x)",
        f"  plain compiled loop        {ref:10.3g} env-steps/s   1.00x",
        f"  same students in both loops: {out['compiled_same_students']}",
    ]
    q = out.get("q_learning")
    if q is not None:
        lines += [
            "",
            f"(d) plain compiled Q-learning (epsilon 0.1, lr 0.01) on the same MDPs, "
            f"{q['threads']} threads: {q['steps_per_s']:.3g} env-steps/s",
        ]
        if fig3 is not None:
            rate = fig3["env_steps"] / fig3["wall_seconds"]
            lines.append(
                f"  reproduce fig3 ({fig3['settings']['mdps']} MDPs x "
                f"{fig3['settings']['iterations']} iterations): {rate:.3g} env-steps/s, "
                f"{rate / q['steps_per_s']:.2f}x of it"
            )
    rows = out.get("actions", {}).get("rows", [])
    if rows:
        lines += ["", format_actions(rows, out["actions"]["n_mdps"], out["actions"]["iterations"])]
    return "\n".join(lines)


def format_actions(rows: Sequence[dict[str, Any]], n_mdps: int, iterations: int) -> str:
    """:func:`distill_agents.runner.bench_actions` as a table.

    Nanoseconds per env-step, one column per action count, and the ratio of the largest count's
    to the smallest's.
    """
    counts = sorted({r["n_actions"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], r["n_actions"]): r for r in rows}
    width = max(len(m) for m in methods)
    head = "".join(f"  {'|A|=' + str(a):>13}" for a in counts)
    lines = [
        f"(e) training ns per env-step by action count ({n_mdps} random 20x20 MDPs x "
        f"{iterations} episodes, optimal teachers, compiled loop; in brackets: explicit "
        "actions per student row prepared)",
        f"  {'method':<{width}}{head}  {counts[-1]}/{counts[0]}",
    ]
    for m in methods:
        cells = "".join(_action_cell(cell.get((m, a))) for a in counts)
        ratio = cell[m, counts[-1]]["ns_per_step"] / cell[m, counts[0]]["ns_per_step"]
        lines.append(f"  {m:<{width}}{cells}  {ratio:.1f}x")
    setup = {
        a: max(r.get("setup_seconds_per_mdp", 0.0) for r in rows if r["n_actions"] == a)
        for a in counts
    }
    lines.append(
        "  table setup per MDP (not in the above; O(S A)): "
        + ", ".join(f"|A|={a} {1e3 * setup[a]:.2g} ms" for a in counts)
    )
    return "\n".join(lines)


def _action_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return f"  {'-':>13}"
    entries = f"({row['entries_per_row']:.0f})"
    return f"  {row['ns_per_step']:>6.0f} {entries:>6}"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
