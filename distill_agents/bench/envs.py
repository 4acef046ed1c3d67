"""Throughput of the environments against Gymnasium's FrozenLake, measured side by side (SPEC 6).

Two comparisons, each run in the same process so the ratios do not depend on the machine:

(a) one environment through ``gym.make(...).step``: ``DistillGrid-v0`` against
    ``FrozenLake-v1`` (8x8, slippery), the same loop for both (pre-generated random actions,
    ``reset`` when an episode ends, best of ``repeats`` runs);
(b) the native vector env with ``n_envs`` random 20x20 MDPs (full, table-index and partial
    observations) against ``gym.make_vec("FrozenLake-v1", vectorization_mode="sync")``, counted
    in env-steps per second (one ``step`` call of ``B`` sub-envs is ``B`` env-steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "QUICK",
    "BenchConfig",
    "Measurement",
    "bench_single",
    "bench_vector",
    "format_table",
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


def format_table(
    measurements: Sequence[Measurement], reference: Measurement, markdown: bool = False
) -> str:
    """A text (or Markdown) table of steps/s and the ratio of each row to ``reference``."""
    if markdown:
        from distill_agents.bench.report import markdown_table

        rows = [
            [
                f"`{m.name}`",
                f"{m.steps_per_second:.3e}",
                f"{m.steps_per_second / reference.steps_per_second:.1f}x",
            ]
            for m in measurements
        ]
        return markdown_table(["environment", "env-steps/s", "ratio"], rows)
    width = max(len(m.name) for m in measurements)
    lines = [f"{'environment':<{width}}  {'env-steps/s':>12}  {'ratio':>8}"]
    for m in measurements:
        ratio = m.steps_per_second / reference.steps_per_second
        lines.append(f"{m.name:<{width}}  {m.steps_per_second:>12.3e}  {ratio:>7.1f}x")
    return "\n".join(lines)


def run(config: BenchConfig = BenchConfig()) -> dict[str, list[Measurement]]:
    """Run both comparisons; returns ``{"single": [...], "vector": [...]}`` (reference last)."""
    return {"single": bench_single(config), "vector": bench_vector(config)}
