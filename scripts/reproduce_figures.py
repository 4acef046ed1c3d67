"""Each figure of Czarnecki et al. (2019), assembled from the packages in a few readable lines.

CleanRL-style: an ``Args`` dataclass, then one function per figure that reads like the paper's
experiment box. All the maths lives in ``gridworld_env`` and ``distill_agents``; this file only
wires it up. ``distill-grid reproduce`` runs the same experiments (as data, in
``distill_agents.experiments``) with resumption, worker processes and the full-scale defaults;
with the same arguments the two give the same numbers.

    python scripts/reproduce_figures.py fig3 --mdps 50 --iterations 2000 --out runs/scripts

writes ``OUT/<fig>.csv`` (SPEC 4.1's long format) and ``OUT/<fig>.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

import gridworld_env
from distill_agents.plotting import plot_rows
from distill_agents.results import CurveRow, curve_rows, write_csv
from distill_agents.runner import early_iterations, run_distillation
from distill_agents.teacher_training import make_teachers
from distill_agents.teachers import noisy_teachers, q_learning_teachers
from distill_agents.updates import expected_loss, expected_update
from gridworld_env.layout import parse_layout
from gridworld_env.rendering import render_rgb, save_png


@dataclass
class Args:
    figure: str = "fig3"
    """which figure: fig2 .. fig10"""
    mdps: int = 50
    """random MDPs (independent students on the corridor)"""
    iterations: int = 2000
    """training episodes per student (Fig. 2: update steps)"""
    teacher_episodes: int = 2000
    """Q-learning / A2C teacher training episodes (the paper: 30 000)"""
    eval_points: int = 20
    """evaluation points per curve after the start"""
    seed: int = 0
    """MDP i has layout seed SEED + i; every random stream derives from it"""
    out: str = "runs/scripts"
    """output directory"""

    @property
    def eval_every(self) -> int:
        return max(1, self.iterations // self.eval_points)


def curves(teachers, figure, panel, methods, args, critic=None, metrics=("return",)):
    """Train every method on every MDP of ``teachers``; the rows, the teacher's once."""
    rows: list[CurveRow] = []
    for i, (label, method, control) in enumerate(methods):
        result = run_distillation(
            teachers, method, control=control, iterations=args.iterations,
            eval_every=args.eval_every, critic=None if method.startswith("td_v") else critic,
            eval_at=early_iterations(args.eval_every, args.iterations),
            seed=args.seed, metrics=metrics,
        )  # fmt: skip
        rows += result.to_rows(figure, panel, method=label, include_teacher=i == 0)
    return rows


def fig2(args: Args) -> list[CurveRow]:
    """Oscillation MDP (App. C): integrate the exact expected update of two methods."""
    mdp, index = gridworld_env.oscillation_mdp(), gridworld_env.oscillation_observation_table()
    teacher = np.full((7, 2), 0.5)
    teacher[2] = [0.0, 1.0]  # R in sR; the loss lives in sR only
    in_sr = (np.arange(7) == 2) * 1.0
    kw = dict(teacher_probs=teacher, teacher_index=np.arange(7), teacher_weights=in_sr,
              distill_loss="information_potential")  # fmt: skip
    rows = []
    for method in ("on_policy_distill+R", "n_distill+R"):
        theta = np.array([[math.log(9), 0.0], [math.log(9), 0.0]])  # pi(L|s0) = pi(L|sR) = 0.9
        its, values = [], []
        for step in range(args.iterations + 1):
            if step % args.eval_every == 0:
                p = np.exp(theta) / np.exp(theta).sum(-1, keepdims=True)
                loss = expected_loss(mdp, index, theta, method, **kw)
                its.append(step)
                values.append((p[0, 1], p[1, 1], loss))
            theta = (
                theta - 0.03 * expected_update(mdp, index, theta, method, gamma=1.0, **kw).logits
            )
        for j, metric in enumerate(("prob_R_s0", "prob_R_sR", "loss")):
            rows += curve_rows("fig2", method, method, metric, its, [[v[j] for v in values]])
    return rows


def fig3(args: Args) -> list[CurveRow]:
    """Control policies: one Q-learning run per MDP, three temperatures, three controls."""
    q = make_teachers("q_learning", n_mdps=args.mdps, seed=args.seed,
                      episodes=args.teacher_episodes).teachers  # fmt: skip
    controls = [(f"{c}_driven", "on_policy_distill", c) for c in ("student", "teacher", "uniform")]
    rows = []
    for temperature in (0.0, 0.01, 0.1):
        teachers = q_learning_teachers(
            q.q_values, q.n_indices, temperature, acting=q.acting, layout_seeds=q.layout_seeds,
            env_id=q.env_id, env_kwargs=q.env_kwargs,
        )  # fmt: skip
        rows += curves(teachers, "fig3", f"T={temperature:g}", controls, args,
                       metrics=("kl_student", "kl_teacher", "kl_uniform", "return"))  # fmt: skip
    return rows


def actions(args: Args, figure: str, methods: list[str]) -> list[CurveRow]:
    """Figs. 4 and 10: |A| = 4 .. 4000 (extra actions do not move), optimal teacher, TD critic."""
    rows = []
    for n_actions in (4, 40, 400, 4000):
        kwargs = {} if n_actions == 4 else {"n_actions": n_actions}
        teachers = make_teachers("optimal", "DistillGrid-v0", kwargs, args.mdps, seed=args.seed,
                                 keep_q_values=False).teachers  # fmt: skip
        rows += curves(teachers, figure, f"A={n_actions}", [(m, m, None) for m in methods],
                       args, critic="td")  # fmt: skip
    return rows


def fig4(args: Args) -> list[CurveRow]:
    methods = ["on_policy_distill", "entropy_regularised", "expected_entropy_regularised",
               "baseline"]  # fmt: skip
    return actions(args, "fig4", methods)


def fig10(args: Args) -> list[CurveRow]:
    methods = ["teacher_distill", "on_policy_distill", "n_distill", "entropy_regularised",
               "expected_entropy_regularised", "baseline"]  # fmt: skip
    return actions(args, "fig10", methods)


AC_METHODS = ["baseline", "on_policy_distill", "on_policy_distill+R",
              "on_policy_distill+R+Vcond", "entropy_regularised", "kl_regularised",
              "td_v_zero", "td_v_teacher", "teacher_v_reward"]  # fmt: skip


def actor_critic(args: Args, figure: str, kinds: list[str]) -> list[CurveRow]:
    """Figs. 5 and 8: MC and TD(1) students, clean and noisy (15%, 25%) teachers."""
    rows = []
    for kind in kinds:
        clean = make_teachers(kind, n_mdps=args.mdps, seed=args.seed,
                              episodes=args.teacher_episodes).teachers  # fmt: skip
        methods = [(m, m, None) for m in AC_METHODS]
        rows += curves(clean, figure, f"{kind}/mc", methods, args, critic="mc")
        rows += curves(clean, figure, f"{kind}/td", methods, args, critic="td")
        for noise in (0.15, 0.25):
            noisy = noisy_teachers(clean, noise, args.seed)
            rows += curves(noisy, figure, f"{kind}/td_noise={noise:g}", methods, args, "td")
    return rows


def fig5(args: Args) -> list[CurveRow]:
    return actor_critic(args, "fig5", ["q_learning"])


def fig8(args: Args) -> list[CurveRow]:
    return actor_critic(args, "fig8", ["q_learning", "a2c"])


CORRIDOR_METHODS = [m for m in AC_METHODS if m != "kl_regularised"]


def corridor(args: Args, figure: str, lengths: list[int]) -> list[CurveRow]:
    """Figs. 6 and 9: the corridor with an optimal and an adversarial teacher."""
    rows = []
    for length in lengths:
        for kind in ("optimal", "adversarial"):
            teachers = make_teachers(kind, "DistillChain-v0", {"length": length}, args.mdps,
                                     seed=args.seed).teachers  # fmt: skip
            if kind == "adversarial":  # the methods read its own critic: minus the true value
                teachers = teachers.replace(values=-teachers.values)
            methods = [(m, m, None) for m in CORRIDOR_METHODS]
            rows += curves(teachers, figure, f"length={length}/{kind}", methods, args, "td")
    return rows


def fig6(args: Args) -> list[CurveRow]:
    return corridor(args, "fig6", [11])


def fig9(args: Args) -> list[CurveRow]:
    return corridor(args, "fig9", [5, 11, 21, 41])


def fig7(args: Args) -> None:
    """An example random 20x20 MDP, drawn as in the paper's Fig. 7."""
    layout = gym.make("DistillGrid-v0", layout_seed=args.seed).unwrapped.layout
    cells, start = parse_layout(layout)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    save_png(Path(args.out) / "fig7.png", render_rgb(cells, start, None, None, cell_px=32))
    Path(args.out, "fig7.txt").write_text("\n".join(layout) + "\n")


FIGURES = {"fig2": fig2, "fig3": fig3, "fig4": fig4, "fig5": fig5, "fig6": fig6,
           "fig7": fig7, "fig8": fig8, "fig9": fig9, "fig10": fig10}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", choices=sorted(FIGURES))
    for f in dataclasses.fields(Args):
        if f.name != "figure":
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                                default=f.default)  # fmt: skip
    return Args(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = FIGURES[args.figure](args)
    if rows:
        write_csv(Path(args.out) / f"{args.figure}.csv", rows)
        plot_rows(rows, Path(args.out) / f"{args.figure}.png")
    print(f"wrote {args.out}/{args.figure}.*")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
