"""The paper's figures as data: what each one trains, on what, and how it is read.

Following bsuite, an *experiment* is its settings plus an analysis. :data:`EXPERIMENTS` maps each
figure id (``fig2`` .. ``fig10``) to an :class:`Experiment`: its panels (each with a teacher and a
critic), the learning curves drawn in each panel (a method id and a control policy), the metrics,
the full-scale and ``--quick`` sizes, and the paper's claims (PAPER.md section 3) next to the
choices we made where the paper is silent. :func:`analyse` reads any figure's results rows into a
few numbers per curve (final value, best value, iterations to get 90% of the way to the teacher).
:mod:`distill_agents.experiments.reproduce` runs these definitions; nothing here trains anything.

Choices recorded here (also in ``docs/results.md``):

- **Critics.** Students whose update has a reward channel learn a critic (paper A.3). With a
  greedy teacher, ``log pi`` is ``log(1e-8) = -18.4`` off the teacher's action, and with Monte
  Carlo returns at lr 0.1 the entropy-type methods (``entropy_regularised``,
  ``expected_entropy_regularised``, ``kl_regularised``) saturate the softmax in their first
  updates and often lock into a wrong deterministic policy; a TD(1) critic learns (see
  :mod:`distill_agents.methods`). Figs. 4, 6, 9 and 10 (no critic column in the paper) therefore
  use ``td``; Figs. 5 and 8 keep the paper's ``mc`` column as printed, so that column shows the
  instability. Methods without a reward channel (``teacher_distill``, ``on_policy_distill``)
  have no critic whatever the panel says; ``td_v_*`` always bootstrap one step.
- **Teachers.** Fig. 3 and the ``q_learning`` panels of Figs. 5 and 8 use Q-learning teachers
  (A.4: 30 000 episodes, lr 0.01, epsilon 0.1); the temperature and the noise are applied to the
  same trained Q table. Fig. 8's ``a2c`` teacher is the A.3 actor-critic (Monte Carlo critic,
  30 000 episodes). Figs. 4 and 10 use the *optimal* (value-iteration) teacher: the paper does not
  name Fig. 4's teacher, and a Q-learning teacher with 4000 actions would be both very slow to
  train and of a quality that changes with ``|A|``, confounding the comparison. Figs. 6 and 9 use
  the optimal and adversarial teachers of the corridor (planned on the exact model).
- **Fig. 10's methods** (PAPER.md 7.14, unconfirmed): Fig. 4's four plus ``teacher_distill`` and
  ``n_distill``.
- **Fig. 9's corridor lengths**: 5, 11, 21 and 41 (Fig. 6: 11). The corridor is one fixed MDP;
  its "MDPs" are independent students (seeds) on it.
- **Fig. 2** integrates the exact expected update (all trajectories enumerated) with step size
  0.03 (PAPER.md 7.13) from ``pi(L|s0) = pi(L|sR) = 0.9``, ``gamma = 1``, the paper's
  information-potential loss in ``sR`` only; ``iteration`` counts update steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from distill_agents.results import CurveRow

__all__ = [
    "EXPERIMENTS",
    "FIGURES",
    "Curve",
    "Experiment",
    "Panel",
    "Scale",
    "TeacherSpec",
    "analyse",
    "format_analysis",
    "get_experiment",
]

#: Q-learning / A2C teacher training episodes at the paper's scale (A.4).
TEACHER_EPISODES = 30_000


# ------------------------------------------------------------------------------ data types
@dataclass(frozen=True)
class TeacherSpec:
    """Which teacher a panel distils from.

    Attributes:
        kind: ``q_learning``, ``a2c`` (trained on the MDPs), ``optimal`` or ``adversarial``
            (value iteration on the exact model).
        env_id: the environment id.
        env_kwargs: single-env keyword arguments (JSON values), e.g. ``{"n_actions": 40}``.
        temperature: policy temperature (``0``: greedy); ``None`` for ``a2c``.
        noise: share of acting states given a fixed wrong action (Fig. 5), ``0`` for none.
    """

    kind: str
    env_id: str = "DistillGrid-v0"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    temperature: float | None = 0.0
    noise: float = 0.0

    @property
    def trained(self) -> bool:
        """True for kinds learned from experience (their tables depend on the whole batch)."""
        return self.kind in ("q_learning", "a2c")

    @property
    def n_actions(self) -> int:
        """The number of actions of the environment (from ``env_kwargs`` or the env default)."""
        if "n_actions" in self.env_kwargs:
            return int(self.env_kwargs["n_actions"])
        return 4 if self.env_id == "DistillGrid-v0" else 2


@dataclass(frozen=True)
class Curve:
    """One learning curve: a method run with a control policy.

    Attributes:
        label: the ``method`` column of its rows (a method id, or Fig. 3's ``student_driven``...).
        method: the method id (:data:`distill_agents.methods.METHOD_IDS`).
        control: control policy, or ``None`` for the method's own.
    """

    label: str
    method: str
    control: str | None = None


@dataclass(frozen=True)
class Panel:
    """One subplot: a teacher, a critic, and the curves drawn against that teacher.

    Attributes:
        name: the ``panel`` column (SPEC 4.1).
        teacher: the teacher.
        curves: the curves, in legend order.
        critic: ``"mc"`` or ``"td"`` for the methods that learn a critic (``None``: their own
            default).
    """

    name: str
    teacher: TeacherSpec
    curves: tuple[Curve, ...]
    critic: str | None = None


@dataclass(frozen=True)
class Scale:
    """The size of a run.

    Attributes:
        mdps: random MDPs (independent students for the corridor).
        iterations: training episodes per MDP (update steps for Fig. 2).
        eval_points: evaluation points after the start (``eval_every = iterations // this``).
        teacher_episodes: training episodes of trained teachers.
    """

    mdps: int
    iterations: int
    eval_points: int
    teacher_episodes: int = TEACHER_EPISODES


@dataclass(frozen=True)
class Experiment:
    """A figure of the paper: its settings (data) and what the paper says it shows.

    Attributes:
        figure: id, e.g. ``"fig3"``.
        title: one-line title.
        kind: ``"curves"`` (students on many MDPs), ``"oscillation"`` (Fig. 2's exact dynamics)
            or ``"layout"`` (Fig. 7's example MDP).
        panels: the panels, in plotting order.
        metrics: the ``metric`` column values.
        full: the paper's scale (the defaults).
        quick: ``--quick`` sizes (a small run, about a minute at most).
        lr: student learning rate (step size of the Fig. 2 integration).
        gamma: student discount.
        claims: the paper's claims (PAPER.md section 3).
        choices: our choices where the paper is silent.
    """

    figure: str
    title: str
    kind: str
    panels: tuple[Panel, ...]
    metrics: tuple[str, ...]
    full: Scale
    quick: Scale
    lr: float = 0.1
    gamma: float = 0.99
    claims: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()

    @property
    def panel_names(self) -> tuple[str, ...]:
        """The panel names, in order."""
        return tuple(p.name for p in self.panels)

    def panel(self, name: str) -> Panel:
        """The panel called ``name``.

        Raises:
            ValueError: no such panel (the message lists them).
        """
        for p in self.panels:
            if p.name == name:
                return p
        raise ValueError(
            f"{self.figure} has no panel {name!r}; its panels are {', '.join(self.panel_names)}"
        )

    def methods(self) -> tuple[str, ...]:
        """The curve labels (``method`` column values other than ``teacher``), in order."""
        return tuple(dict.fromkeys(c.label for p in self.panels for c in p.curves))


# ------------------------------------------------------------------------------ figures
_GRID = "DistillGrid-v0"
_CHAIN = "DistillChain-v0"
_ACTIONS = (4, 40, 400, 4000)
_FIG4_METHODS = (
    "on_policy_distill",
    "entropy_regularised",
    "expected_entropy_regularised",
    "baseline",
)
_FIG10_METHODS = (
    "teacher_distill",
    "on_policy_distill",
    "n_distill",
    "entropy_regularised",
    "expected_entropy_regularised",
    "baseline",
)
_FIG5_METHODS = (
    "baseline",
    "on_policy_distill",
    "on_policy_distill+R",
    "on_policy_distill+R+Vcond",
    "entropy_regularised",
    "kl_regularised",
    "td_v_zero",
    "td_v_teacher",
    "teacher_v_reward",
)
_FIG6_METHODS = (
    "baseline",
    "on_policy_distill",
    "on_policy_distill+R",
    "on_policy_distill+R+Vcond",
    "entropy_regularised",
    "td_v_zero",
    "td_v_teacher",
    "teacher_v_reward",
)
_FIG9_LENGTHS = (5, 11, 21, 41)


def _curves(methods: Sequence[str]) -> tuple[Curve, ...]:
    return tuple(Curve(m, m) for m in methods)


def _fig3_panels() -> tuple[Panel, ...]:
    controls = (
        Curve("student_driven", "on_policy_distill", "student"),
        Curve("teacher_driven", "on_policy_distill", "teacher"),
        Curve("uniform_driven", "on_policy_distill", "uniform"),
    )
    return tuple(
        Panel(f"T={t:g}", TeacherSpec("q_learning", temperature=t), controls)
        for t in (0.0, 0.01, 0.1)
    )


def _actions_panels(methods: Sequence[str]) -> tuple[Panel, ...]:
    return tuple(
        Panel(
            f"A={a}",
            TeacherSpec("optimal", env_kwargs={"n_actions": a} if a != 4 else {}),
            _curves(methods),
            critic="td",
        )
        for a in _ACTIONS
    )


def _ac_panels(kinds: Sequence[str]) -> tuple[Panel, ...]:
    panels = []
    for kind in kinds:
        temperature = None if kind == "a2c" else 0.0
        clean = TeacherSpec(kind, temperature=temperature)
        panels.append(Panel(f"{kind}/mc", clean, _curves(_FIG5_METHODS), critic="mc"))
        panels.append(Panel(f"{kind}/td", clean, _curves(_FIG5_METHODS), critic="td"))
        for noise in (0.15, 0.25):
            noisy = TeacherSpec(kind, temperature=temperature, noise=noise)
            panels.append(
                Panel(f"{kind}/td_noise={noise:g}", noisy, _curves(_FIG5_METHODS), critic="td")
            )
    return tuple(panels)


def _corridor_panels(lengths: Sequence[int]) -> tuple[Panel, ...]:
    return tuple(
        Panel(
            f"length={n}/{kind}",
            TeacherSpec(kind, env_id=_CHAIN, env_kwargs={"length": n}),
            _curves(_FIG6_METHODS),
            critic="td",
        )
        for n in lengths
        for kind in ("optimal", "adversarial")
    )


_GRID_FULL = Scale(mdps=1000, iterations=30_000, eval_points=30)
_GRID_QUICK = Scale(mdps=12, iterations=300, eval_points=10, teacher_episodes=300)
_CHAIN_QUICK = Scale(mdps=12, iterations=300, eval_points=10, teacher_episodes=300)
# Figs. 4 and 10: planning and evaluating |A| = 4000 teachers and students is O(A) per state.
_ACTIONS_QUICK = Scale(mdps=4, iterations=100, eval_points=10, teacher_episodes=100)
_AC_CLAIMS = (
    "With a clean teacher every distillation variant reaches the teacher's return within a few "
    "thousand iterations; Teacher V reward more slowly, TD + V_pi slower still; TD + V_0 stays "
    "low.",
    "With a noisy (deterministic, partly wrong) teacher, the pure cloning methods (On-policy "
    "distill, Entropy regularised, KL regularised) peak and then decay as they copy the wrong "
    "decisions, while +R, +R+V cond and especially Teacher V reward match or beat the teacher.",
    "The baseline (RL without a teacher) learns slowly but steadily.",
)

#: Every figure, by id.
EXPERIMENTS: dict[str, Experiment] = {
    "fig2": Experiment(
        figure="fig2",
        title="Oscillation MDP: exact expected-update dynamics (App. C)",
        kind="oscillation",
        panels=tuple(
            Panel(m, TeacherSpec("custom", env_id="DistillOscillation-v0"), (Curve(m, m),))
            for m in ("on_policy_distill+R", "n_distill+R")
        ),
        metrics=("prob_R_s0", "prob_R_sR", "loss"),
        full=Scale(mdps=1, iterations=9000, eval_points=900, teacher_episodes=0),
        quick=Scale(mdps=1, iterations=9000, eval_points=300, teacher_episodes=0),
        lr=0.03,
        gamma=1.0,
        claims=(
            "On-policy distill + R has a centre at theta = 0 (first integral "
            "H = e^x + e^-x + e^y + e^-y) and cycles forever, pi swinging between low and high "
            "values with a period of a few thousand steps.",
            "N-distill + R (the Theorem 2 correction) converges to R at s0 and R at sR within a "
            "few thousand steps.",
        ),
        choices=(
            "Exact expected update (every trajectory enumerated), step size 0.03, gamma 1, "
            "start pi(L|s0) = pi(L|sR) = 0.9, loss -4 pi_theta(R|sR) in sR only.",
            "Teacher rows: the metrics of the teacher's own policy (uniform at s0, R at sR).",
        ),
    ),
    "fig3": Experiment(
        figure="fig3",
        title="Choice of control policy (Q-learning teacher at temperature T)",
        kind="curves",
        panels=_fig3_panels(),
        metrics=("kl_student", "kl_teacher", "kl_uniform", "return"),
        full=_GRID_FULL,
        quick=_GRID_QUICK,
        claims=(
            "Student-driven control has the lowest KL over its own trajectories and reaches the "
            "teacher's return about 3x faster than teacher-driven control.",
            "Teacher-driven control wins only on KL over the teacher's trajectories.",
            "Uniform-driven control is best on KL over uniform trajectories but slowest on return.",
            "Higher teacher temperatures narrow the gaps.",
        ),
        choices=(
            "One Q-learning run per MDP (A.4, 30 000 episodes); T = 0, 0.01, 0.1 are softmax "
            "policies of the same Q table.",
            "All three curves are on_policy_distill (per-step cross-entropy) with control "
            "student / teacher / uniform; no critic.",
            "KLs are exact expected per-episode sums of KL(pi || pi_theta) along trajectories "
            "of the student, the teacher and the uniform policy.",
        ),
    ),
    "fig4": Experiment(
        figure="fig4",
        title="Number of actions |A| (optimal teacher)",
        kind="curves",
        panels=_actions_panels(_FIG4_METHODS),
        metrics=("return",),
        full=_GRID_FULL,
        quick=_ACTIONS_QUICK,
        claims=(
            "At |A| = 4 all distillation methods reach the teacher quickly.",
            "As |A| grows, Entropy regularised (reward-only signal) collapses and ends far "
            "below its start.",
            "Exp. entropy regularised stays on par with or above On-policy distill and is best "
            "at large |A|.",
            "The RL baseline degrades badly with |A|.",
        ),
        choices=(
            "Optimal (value-iteration) teacher: the paper does not name Fig. 4's teacher.",
            "TD(1) critic for the methods with a reward channel.",
            "|A| >= 400 panels cost most where the student's rows fill up (baseline, the "
            "entropy methods): see the measured costs in docs/results.md; --max-actions 40 "
            "leaves them out.",
        ),
    ),
    "fig5": Experiment(
        figure="fig5",
        title="Actor-critic students, imperfect Q-learning teachers",
        kind="curves",
        panels=_ac_panels(("q_learning",)),
        metrics=("return",),
        full=_GRID_FULL,
        quick=_GRID_QUICK,
        claims=_AC_CLAIMS,
        choices=(
            "Greedy Q-learning teacher (T = 0); its V_pi is max_a Q.",
            "Noise: a fixed wrong action in 15% / 25% of the acting states (seeded); the noisy "
            "teacher's V_pi is Q(s, chosen action).",
            "The mc column uses Monte Carlo critics as printed; entropy-type methods are "
            "unstable there with a greedy teacher (log floor 1e-8).",
        ),
    ),
    "fig6": Experiment(
        figure="fig6",
        title="Corridor: optimal versus adversarial teacher",
        kind="curves",
        panels=_corridor_panels((11,)),
        metrics=("return",),
        full=_GRID_FULL,
        quick=_CHAIN_QUICK,
        claims=(
            "With the optimal teacher the cloning methods are fastest and Teacher V reward is "
            "slower.",
            "With the adversarial teacher the cloning methods converge to the teacher's bad "
            "return, TD + V_pi is dragged down, and Teacher V reward still learns the optimum "
            "(slowly), as does the baseline.",
        ),
        choices=(
            "Corridor of 11 cells, -1 left, +1 right, start in the middle, absorb 0.01, no "
            "noise; 1000 independent students.",
            "TD(1) critic.",
        ),
    ),
    "fig7": Experiment(
        figure="fig7",
        title="An example 20x20 random MDP",
        kind="layout",
        panels=(),
        metrics=(),
        full=Scale(mdps=1, iterations=0, eval_points=1, teacher_episodes=0),
        quick=Scale(mdps=1, iterations=0, eval_points=1, teacher_episodes=0),
        claims=(
            "Initial state (centre) blue, terminal states green, rewards written on the cells, "
            "walls black; about 35 walls, 41 '-1' cells and a handful each of +10, +5, -5, -10.",
        ),
        choices=("The layout of --seed (default 0); -5/-10 cells drawn red so the sign shows.",),
    ),
    "fig8": Experiment(
        figure="fig8",
        title="Actor-critic students, Q-learning and A2C teachers",
        kind="curves",
        panels=_ac_panels(("q_learning", "a2c")),
        metrics=("return",),
        full=_GRID_FULL,
        quick=_GRID_QUICK,
        claims=_AC_CLAIMS,
        choices=(
            "Fig. 5's panels plus the same four with an A2C teacher (A.3, Monte Carlo critic, "
            "30 000 episodes); its V_pi is its critic (for the noisy A2C teacher: the clean "
            "teacher's critic).",
        ),
    ),
    "fig9": Experiment(
        figure="fig9",
        title="Corridors of several lengths: optimal versus adversarial teacher",
        kind="curves",
        panels=_corridor_panels(_FIG9_LENGTHS),
        metrics=("return",),
        full=_GRID_FULL,
        quick=_CHAIN_QUICK,
        claims=(
            "As Fig. 6, for several corridor sizes: the longer the corridor, the slower the "
            "methods that must discover the reward themselves.",
        ),
        choices=("Lengths 5, 11, 21, 41 (PAPER.md 7.10: unconfirmed).",),
    ),
    "fig10": Experiment(
        figure="fig10",
        title="Number of actions |A|, more methods (optimal teacher)",
        kind="curves",
        panels=_actions_panels(_FIG10_METHODS),
        metrics=("return",),
        full=_GRID_FULL,
        quick=_ACTIONS_QUICK,
        claims=(
            "As Fig. 4; the methods with a loss term (teacher distill, on-policy distill, "
            "N-distill, Exp. entropy regularised) stay close to the teacher as |A| grows.",
        ),
        choices=(
            "Methods (PAPER.md 7.14: unconfirmed): Fig. 4's plus teacher_distill and n_distill.",
        ),
    ),
}

#: The figure ids, in order.
FIGURES: tuple[str, ...] = tuple(EXPERIMENTS)


def get_experiment(figure: str) -> Experiment:
    """The experiment of ``figure``.

    Raises:
        ValueError: an unknown figure id (the message lists them).
    """
    if figure not in EXPERIMENTS:
        raise ValueError(f"figure must be one of {', '.join(FIGURES)}; got {figure!r}")
    return EXPERIMENTS[figure]


# ------------------------------------------------------------------------------ analysis
def _progress_iteration(
    iterations: Sequence[int], means: Sequence[float], target: float, share: float
) -> int | None:
    """First iteration at which a curve has covered ``share`` of the way from start to target."""
    start = means[0]
    gap = target - start
    if not (math.isfinite(start) and math.isfinite(target)) or gap == 0.0:
        return None
    for it, m in zip(iterations, means, strict=True):
        if math.isfinite(m) and (m - start) / gap >= share:
            return int(it)
    return None


def analyse(rows: Sequence[CurveRow], share: float = 0.9) -> list[dict[str, Any]]:
    """A few numbers per curve of a figure's rows (the experiment's analysis, bsuite's score).

    For every (panel, method, metric) other than the teacher's, in the order of ``rows``:
    ``final`` (mean and 95% interval at the last iteration), ``best`` (the best mean over the
    curve: highest for ``return`` and probabilities, lowest for KLs and losses), ``teacher``
    (the teacher's level, if the rows have it) and ``reach`` (the first iteration at which the
    mean has covered ``share`` of the way from its start to the teacher's level; ``None`` if it
    never does or there is no teacher row).

    Args:
        rows: results rows of one or more figures.
        share: the fraction of the way to the teacher that counts as reaching it.

    Returns:
        One dict per curve with the keys ``figure, panel, method, metric, start, final,
        final_ci, best, teacher, reach, n_mdps``.
    """
    series: dict[tuple[str, str, str, str], list[CurveRow]] = {}
    for r in rows:
        series.setdefault((r.figure, r.panel, r.method, r.metric), []).append(r)
    out: list[dict[str, Any]] = []
    for (figure, panel, method, metric), points in series.items():
        if method == "teacher":
            continue
        points = sorted(points, key=lambda r: r.iteration)
        its = [r.iteration for r in points]
        means = [r.mean for r in points]
        teacher_rows = series.get((figure, panel, "teacher", metric))
        teacher = None
        if teacher_rows:
            teacher = float(sorted(teacher_rows, key=lambda r: r.iteration)[-1].mean)
        lower_is_better = metric.startswith("kl_") or metric == "loss"
        finite = [m for m in means if math.isfinite(m)]
        best = (min(finite) if lower_is_better else max(finite)) if finite else math.nan
        last = points[-1]
        out.append(
            {
                "figure": figure,
                "panel": panel,
                "method": method,
                "metric": metric,
                "start": means[0],
                "final": last.mean,
                "final_ci": [last.ci_low, last.ci_high],
                "best": best,
                "teacher": teacher,
                "reach": None
                if teacher is None
                else _progress_iteration(its, means, teacher, share),
                "n_mdps": last.n_mdps,
            }
        )
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.3g}"
    return str(value)


def format_analysis(records: Sequence[Mapping[str, Any]], metric: str | None = None) -> str:
    """A Markdown table of :func:`analyse`'s records (optionally of one metric only)."""
    lines = [
        "| panel | method | metric | start | final (95% CI) | best | teacher | reach |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if metric is not None and r["metric"] != metric:
            continue
        low, high = r["final_ci"]
        ci = "" if not (math.isfinite(low) and math.isfinite(high)) else f" ({low:.3g}, {high:.3g})"
        lines.append(
            f"| {r['panel']} | {r['method']} | {r['metric']} | {_fmt(r['start'])} | "
            f"{_fmt(r['final'])}{ci} | {_fmt(r['best'])} | {_fmt(r['teacher'])} | "
            f"{_fmt(r['reach'])} |"
        )
    return "\n".join(lines) + "\n"
