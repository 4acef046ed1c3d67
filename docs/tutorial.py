"""Tutorial: from ``gym.make("DistillGrid-v0")`` to two distilled students and their curves.

Run it with ``python docs/tutorial.py [OUT_DIR]``; the test suite runs it on the small numbers
below. Scale ``N_MDPS`` and ``ITERATIONS`` up for real experiments (the paper: 1000 x 30 000).
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

import gridworld_env  # registers the environments
from distill_agents import distill
from distill_agents.plotting import plot_rows
from distill_agents.results import curve_rows, write_csv
from distill_agents.runner import run_distillation
from distill_agents.teachers import planned_teachers

N_MDPS, ITERATIONS, EVAL_EVERY = 4, 40, 20
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "tutorial_out")
OUT.mkdir(parents=True, exist_ok=True)

# 1. One environment: a random 20x20 grid with an exact model.
env = gym.make("DistillGrid-v0", layout_seed=0)
obs, info = env.reset(seed=0)
obs, reward, terminated, truncated, info = env.step(1)  # L, R, U, D = 0, 1, 2, 3
mdp = env.unwrapped.mdp
print("states, actions:", mdp.n_states, mdp.n_actions)

# 2. Many MDPs at once: a vector env, and one optimal teacher per MDP (value iteration).
envs = gym.make_vec(
    "DistillGrid-v0",
    num_envs=N_MDPS,
    vectorization_mode="vector_entry_point",
    observation="index",
    layout_seed=0,
)
teachers = planned_teachers(
    envs.models, env_id="DistillGrid-v0", env_kwargs={}, layout_seeds=np.arange(N_MDPS)
)

# 3. One student on one MDP (the first one), over table indices.
table_env = gridworld_env.TableIndexWrapper(gym.make("DistillGrid-v0", layout_seed=0))
student = distill(table_env, teachers.teacher(0), "teacher_distill", iterations=ITERATIONS, seed=0)
print("student's action probabilities at the start:", student.action_probs(table_env.reset()[0]))

# 4. Two methods on all MDPs, evaluated exactly every EVAL_EVERY iterations.
rows = []
for method in ("teacher_distill", "on_policy_distill"):
    result = run_distillation(
        teachers, method, iterations=ITERATIONS, eval_every=EVAL_EVERY, seed=0
    )
    returns = result.metrics["return"]  # [N_MDPS, evaluation points]
    rows += curve_rows("tutorial", "grid", method, "return", result.eval_iterations, returns)

# 5. Save the curves (long-format CSV) and plot both.
write_csv(OUT / "tutorial.csv", rows)
plot_rows(rows, OUT / "tutorial.png")
print("wrote", OUT / "tutorial.csv", "and", OUT / "tutorial.png")
