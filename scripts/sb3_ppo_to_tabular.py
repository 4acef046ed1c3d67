"""Train a PPO teacher with Stable-Baselines3, distil it into a tabular student, compare both.

CleanRL-style: every setting is a field of ``Args`` below and a command-line flag
(``--ppo-steps 20000``, ``--layout "#####" "#S.G#" "#####"``, ...).

1. PPO (``MlpPolicy``) learns a small hand-written DistillGrid layout from its raw partial
   observations (the flat ``MultiDiscrete`` window, one-hot encoded by SB3).
2. ``SB3Teacher(model, obs_to_model=wrapper.index_to_obs)`` exposes it as a teacher over the
   table indices of ``TableIndexWrapper``, and ``distill(...)`` trains a tabular student.
3. Both are evaluated with SB3's ``evaluate_policy`` (greedy actions), next to the exact returns of
   the optimal and the uniform policy (``distill_agents.planning``), and plotted to a PNG.

    python scripts/sb3_ppo_to_tabular.py                 # ~12 s on one CPU core
    python scripts/sb3_ppo_to_tabular.py --out ppo_to_tabular.png --seed 1
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np


@dataclass
class Args:
    layout: tuple[str, ...] = ("#######", "#..-.G#", "#.#.#.#", "#S..-x#", "#######")
    """the hand-written map (``#`` wall, ``S`` start, ``-`` -1, ``G`` +10, ``x`` -5, ...)"""
    observation: str = "partial"
    """what PPO sees: ``partial`` (flat MultiDiscrete window) or ``full`` (cell index)"""
    view_size: int = 3
    """side of the partial-observation window"""
    noise: float = 0.05
    """transition noise"""
    ppo_steps: int = 10_000
    """PPO environment steps"""
    n_envs: int = 4
    """parallel environments for PPO"""
    ppo_lr: float = 3e-3
    """PPO learning rate"""
    method: str = "on_policy_distill"
    """distillation method id (``distill_agents.METHOD_IDS``)"""
    iterations: int = 300
    """distillation episodes"""
    lr: float = 0.5
    """learning rate of the tabular student"""
    temperature: float = 1.0
    """temperature of the teacher's action distribution"""
    eval_episodes: int = 200
    """episodes per ``evaluate_policy`` call"""
    seed: int = 0
    """seed of everything"""
    out: str = "sb3_ppo_to_tabular.png"
    """where to write the bar chart"""
    torch_threads: int = 1
    """``torch.set_num_threads``"""


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(Args(), f.name)
        if isinstance(default, tuple):
            parser.add_argument(flag, nargs="+", default=list(default))
        else:
            parser.add_argument(flag, type=type(default), default=default)
    ns = parser.parse_args(argv)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(ns).items()}
    return Args(**values)


def main(args: Args) -> dict[str, float]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    import gridworld_env
    from distill_agents import distill, planning
    from distill_agents.integrations.sb3 import SB3Teacher

    torch.set_num_threads(args.torch_threads)
    env_kwargs = dict(
        layout=list(args.layout),
        observation=args.observation,
        view_size=args.view_size,
        noise=args.noise,
    )

    # 1. the PPO teacher, on raw observations
    start = time.perf_counter()
    venv = make_vec_env(
        "gridworld_env:DistillGrid-v0", n_envs=args.n_envs, seed=args.seed, env_kwargs=env_kwargs
    )
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=128,
        batch_size=128,
        n_epochs=4,
        learning_rate=args.ppo_lr,
        seed=args.seed,
        device="cpu",
    )
    model.learn(args.ppo_steps)
    ppo_seconds = time.perf_counter() - start

    # 2. the tabular student over table indices
    start = time.perf_counter()
    table_env = gridworld_env.TableIndexWrapper(gym.make("DistillGrid-v0", **env_kwargs))
    teacher = SB3Teacher(model, args.temperature, obs_to_model=table_env.index_to_obs)
    student = distill(
        table_env, teacher, args.method, iterations=args.iterations, lr=args.lr, seed=args.seed
    )
    distill_seconds = time.perf_counter() - start

    # 3. evaluation: SB3's evaluate_policy for both, exact returns for reference
    def vec(wrap: bool) -> DummyVecEnv:
        def make() -> gym.Env:
            env = gym.make("DistillGrid-v0", **env_kwargs)
            return Monitor(gridworld_env.TableIndexWrapper(env) if wrap else env)

        out = DummyVecEnv([make])
        out.seed(args.seed + 1)
        return out

    n = args.eval_episodes
    teacher_mean, teacher_std = evaluate_policy(model, vec(False), n, deterministic=True)
    student_mean, student_std = evaluate_policy(student, vec(True), n, deterministic=True)
    mdp = table_env.unwrapped.mdp
    _, q_values = planning.value_iteration(mdp, gamma=0.99)
    optimal = planning.expected_return(mdp, planning.greedy_policy(q_values))
    uniform = planning.expected_return(mdp, np.full(q_values.shape, 1.0 / q_values.shape[1]))
    results = {
        "uniform (exact)": uniform,
        "PPO teacher": float(teacher_mean),
        "tabular student": float(student_mean),
        "optimal (exact)": optimal,
    }
    errors = [0.0, float(teacher_std) / np.sqrt(n), float(student_std) / np.sqrt(n), 0.0]

    fig, ax = plt.subplots(figsize=(6, 3.5))
    colors = ["#999999", "#4c72b0", "#dd8452", "#55a868"]
    ax.bar(list(results), list(results.values()), yerr=errors, color=colors, capsize=4)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel(f"mean return ({n} greedy episodes)")
    ax.set_title(f"PPO ({args.ppo_steps} steps) -> tabular ({args.method})")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)

    for name, value in results.items():
        print(f"{name:>16}: {value:7.3f}")
    print(f"PPO {ppo_seconds:.1f} s, distillation {distill_seconds:.2f} s; wrote {out}")
    return results


if __name__ == "__main__":
    main(parse_args())
