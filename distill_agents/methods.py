"""Distillation methods by id, control policies and mixture schedules (paper Table 1, Sec. 3-4).

Every method is an instance of the general update rule of Czarnecki et al. (2019), Eq. 1,

    E_q [ sum_t  -grad log pi_theta(a_t | s_t) * Ahat_t  +  grad l_t ],

applied as descent on the student's logits theta. A method is fully described by three parts,
kept separate here and in :mod:`distill_agents.updates`:

1. the **control policy** ``q`` that samples the episode (``teacher``, ``student``, ``uniform``
   or a ``mixture``);
2. the **loss term** ``l_t`` (a function of the current state);
3. the **reward term** ``rhat_i``, whose discounted sum ``Rhat_t = sum_{i>=t} gamma^(i-t)
   rhat_i`` is turned into an advantage ``Ahat_t`` by the critic (none, Monte Carlo or TD(1),
   paper A.3).

:func:`parse_method` turns a method id into a :class:`MethodSpec`, and
:meth:`MethodSpec.params` turns that into the small numeric vectors (``coef`` float64,
``codes`` int64) the compiled update of :mod:`distill_agents.updates` reads.

Method ids (SPEC 3) and their exact definitions. ``pi`` is the teacher, ``pi_theta`` the
student, ``V_pi`` the teacher's value, ``V_theta`` the student's critic, ``H_x(p || q) =
-sum_a p(a) log q(a)``, and ``log pi`` is always the *floored* log
``log(max(pi, TEACHER_PROB_FLOOR))`` (a greedy teacher has ``pi = 0`` off its argmax):

- ``teacher_distill`` (control teacher): l_t = H_x(pi(s_t) || pi_theta(s_t)); rhat_i = 0.
- ``on_policy_distill`` (student): l_t = H_x(pi(s_t) || pi_theta(s_t)); rhat_i = 0.
- ``entropy_regularised`` (student): l_t = 0; rhat_i = log pi(a_i | s_i).
- ``n_distill`` (student): l_t = H_x(pi(s_t) || pi_theta(s_t));
  rhat_i = -gamma H_x(pi(s_{i+1}) || pi_theta(s_{i+1})).
- ``expected_entropy_regularised`` (student): l_t = H_x(pi_theta(s_t) || pi(s_t));
  rhat_i = gamma log pi(a_{i+1} | s_{i+1}).
- ``teacher_v_reward`` (student): l_t = 0; rhat_i = r_i + gamma V_pi(s_{i+1}) - V_pi(s_i).
- ``td_v_teacher`` (student, paper "TD + V_pi"): l_t = 0; rhat_i = r_i, advantage
  r_t + gamma V_pi(s_{t+1}) - V_theta(s_t).
- ``td_v_zero`` (student, "TD + V_0"): the same with V_pi replaced by 0.
- ``kl_regularised`` (student): l_t = 0; rhat_i = r_i + log pi(a_i | s_i) - log pi_theta(a_i | s_i).
- ``baseline`` (student): l_t = 0; rhat_i = r_i (actor-critic on the task, no teacher).

Quantities after the end of an episode are 0 (V(terminal) = 0, no loss, no next action).
When an episode is *truncated* (time limit), the step after the last is still part of the
task: bootstrapped values use V(s_T), the state-level correction uses l_state(s_T), and the
sampled correction ``log pi(a_T | s_T)`` is replaced by its expectation under the student,
``-H_x(pi_theta(s_T) || pi(s_T))``.

Variants:

- ``<m>+R`` for ``m`` in ``teacher_distill``, ``on_policy_distill``, ``entropy_regularised``,
  ``n_distill``, ``expected_entropy_regularised``: adds the environment reward ``r_i`` to
  ``rhat_i`` (the methods that already contain ``r_i`` have no ``+R`` form).
- ``<m>+Vcond`` / ``<m>+R+Vcond`` for the methods whose loss is ``H_x(pi || pi_theta)``
  (``teacher_distill``, ``on_policy_distill``, ``n_distill``): the loss at ``s`` (and its
  Theorem-2 correction) is multiplied by ``[V_pi(s) > V_theta(s)]`` (Proposition 2; the paper's
  figures use ``on_policy_distill+R+Vcond``).

Choices where the paper is silent or ambiguous (PAPER.md 1.3, 1.4, 5.1, 7):

- ``teacher_v_reward`` is the Sec. 4 / Proposition 4 form (potential-based shaping with the
  teacher's value). Table 1's printed form ``r_i + V_pi(s_{i+1}) - V_theta(s_i)``, read as a
  one-step advantage, is ``td_v_teacher``; summed into a return with a learned critic it feeds
  the critic back into its own target and diverges at lr 0.1, so it is not offered (the
  coefficient ``C_STUDENT_V`` of the kernel still supports it).
- The Theorem-2 corrections of ``n_distill`` and ``expected_entropy_regularised`` carry a factor
  ``gamma`` (the next-state term is one step in the future, like ``gamma V_pi(s_{i+1})`` in
  ``teacher_v_reward``). With ``gamma = 1`` (the paper's theory) they are exactly Table 1's
  entries, and the expected update is exactly the gradient of Table 1's loss column; with
  ``gamma < 1`` it is the usual discounted policy gradient of ``sum_t gamma^t l_t`` without the
  ``gamma^t`` weight.
- ``td_v_teacher`` / ``td_v_zero`` always use the one-step advantage ``r_t + gamma V(s_{t+1}) -
  V_theta(s_t)`` with ``V = V_pi`` (``V = 0``), and fit ``V_theta`` to the same target; asking
  them for ``critic="mc"`` is an error.
- Methods whose reward channel is empty and that are not ``+Vcond`` (``teacher_distill``,
  ``on_policy_distill``) need no critic: they run without one whatever ``critic`` says, and
  their student has no values.
- The critic is a baseline for the *whole* ``rhat`` (task reward plus intrinsic terms), fitted by
  L2 with the policy's learning rate (A.3); the loss and reward weights are 1.
- ``kl_regularised`` is Distral-style KL-regularised RL with weight 1 (PAPER.md 1.4).
- The default critic is TD(1) (``"td"``; the paper's A.3 offers Monte Carlo and TD(1), and
  Fig. 5 uses TD(1) in three of its four columns). Measured reason: with a greedy teacher the
  floored log-probabilities put rewards of ``log(1e-8) = -18.4`` per off-teacher step into the
  return of ``entropy_regularised``, ``expected_entropy_regularised`` and ``kl_regularised``;
  with Monte Carlo returns (``critic="mc"``) at lr 0.1 their first updates saturate the softmax
  and about half of the runs lock into a wrong deterministic policy (corridor, 8 seeds), while
  TD(1) reaches the teacher in every run. The cloning methods and ``teacher_v_reward`` learn
  with either critic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BASE_METHODS",
    "CONTROLS",
    "CRITICS",
    "DISTILL_LOSSES",
    "METHOD_IDS",
    "TEACHER_CONTROLS",
    "TEACHER_EPSILON",
    "BetaSchedule",
    "MethodSpec",
    "as_beta_schedule",
    "control_code",
    "parse_method",
]

# --------------------------------------------------------------------------- numeric layout
# Indices into the float64 coefficient vector ``coef`` read by the compiled update.
#: r_i (environment reward).
C_ENV = 0
#: log pi(a_i | s_i) (floored teacher log-probability).
C_TEACHER_LOGP = 1
#: log pi_theta(a_i | s_i).
C_STUDENT_LOGP = 2
#: gamma * V_pi(s_{i+1}) (0 after the end of the episode).
C_TEACHER_V_NEXT = 3
#: V_pi(s_i).
C_TEACHER_V = 4
#: V_theta(s_i) (the student's critic before the update).
C_STUDENT_V = 5
#: Loss weight of H_x(pi(s_t) || pi_theta(s_t)).
C_LOSS_CE = 6
#: Loss weight of -sum_a pi(a|s_t) pi_theta(a|s_t) (the "information potential", App. C).
C_LOSS_IP = 7
#: Loss weight of H_x(pi_theta(s_t) || pi(s_t)).
C_LOSS_RCE = 8
#: Weight of the state-level Theorem-2 correction -gamma * l_state(s_{i+1}).
C_NEXT_LOSS = 9
#: Weight of the sampled Theorem-2 correction gamma * log pi(a_{i+1} | s_{i+1}).
C_NEXT_LOGP = 10
N_COEF = 11

# Indices into the int64 code vector ``codes``.
#: Critic mode: CRITIC_NONE, CRITIC_MC or CRITIC_TD.
K_CRITIC = 0
#: Value bootstrapped at s_{t+1}: BOOT_STUDENT (V_theta), BOOT_TEACHER (V_pi) or BOOT_ZERO.
K_BOOTSTRAP = 1
#: 1: gate the state-level loss by [V_pi(s) > V_theta(s)].
K_VCOND = 2
#: 1 (training): the critic's L2 step is applied visit by visit, V(s_t) += lr (target_t - V(s_t))
#: with the current V, a contraction towards each target. 0: summed at the episode's starting
#: values, sum_t (target_t - V0(s_t)) -- the linear direction :func:`updates.expected_update`
#: needs, but at lr 0.1 a state visited more than ~20 times in one episode overshoots and the
#: critic diverges (measured: |V| = 5e11 after 300 episodes on a 20x20 grid).
K_CRITIC_SEQUENTIAL = 3
N_CODES = 4

CRITIC_NONE, CRITIC_MC, CRITIC_TD = 0, 1, 2
BOOT_STUDENT, BOOT_TEACHER, BOOT_ZERO = 0, 1, 2
CONTROL_TEACHER, CONTROL_STUDENT, CONTROL_UNIFORM, CONTROL_MIXTURE = 0, 1, 2, 3
#: The epsilon-greedy teacher: a uniformly random action with probability
#: :data:`TEACHER_EPSILON`, else the teacher's (Fig. 3's "0.1-greedy teacher").
CONTROL_EPSILON_TEACHER = 4
TEACHER_EPSILON = 0.1

#: Control policies, by name, with their integer codes.
CONTROLS: dict[str, int] = {
    "teacher": CONTROL_TEACHER,
    "student": CONTROL_STUDENT,
    "uniform": CONTROL_UNIFORM,
    "mixture": CONTROL_MIXTURE,
    "epsilon_teacher": CONTROL_EPSILON_TEACHER,
}
#: Controls that draw from the teacher (its draw tables are needed).
TEACHER_CONTROLS = (CONTROL_TEACHER, CONTROL_MIXTURE, CONTROL_EPSILON_TEACHER)
#: Critic modes accepted by ``critic=`` (``None`` picks the method's default).
CRITICS: dict[str, int] = {"none": CRITIC_NONE, "mc": CRITIC_MC, "td": CRITIC_TD}
#: Per-state distillation losses: the default cross-entropy H_x(pi || pi_theta), or the
#: "information potential" -4 sum_a pi(a|s) pi_theta(a|s) of the paper's oscillation example
#: (App. C, Fig. 2; SPEC 1.3: l(theta | sR) = -4 pi_theta(R | sR) for a teacher on R).
DISTILL_LOSSES = ("cross_entropy", "information_potential")
_IP_SCALE = 4.0


@dataclass(frozen=True)
class _Base:
    control: str
    coef: dict[int, float]
    bootstrap: int = BOOT_STUDENT
    critic: str | None = None  # forced critic mode, if any
    plus_r: bool = False  # "+R" allowed
    vcond: bool = False  # "+Vcond" allowed
    teacher: bool = True  # needs a teacher at all


#: The base methods (ids without variants) and their definition (see the module docstring).
BASE_METHODS: dict[str, _Base] = {
    "teacher_distill": _Base("teacher", {C_LOSS_CE: 1.0}, plus_r=True, vcond=True),
    "on_policy_distill": _Base("student", {C_LOSS_CE: 1.0}, plus_r=True, vcond=True),
    "entropy_regularised": _Base("student", {C_TEACHER_LOGP: 1.0}, plus_r=True),
    "n_distill": _Base("student", {C_LOSS_CE: 1.0, C_NEXT_LOSS: 1.0}, plus_r=True, vcond=True),
    "expected_entropy_regularised": _Base(
        "student", {C_LOSS_RCE: 1.0, C_NEXT_LOGP: 1.0}, plus_r=True
    ),
    "teacher_v_reward": _Base("student", {C_ENV: 1.0, C_TEACHER_V_NEXT: 1.0, C_TEACHER_V: -1.0}),
    "td_v_teacher": _Base("student", {C_ENV: 1.0}, bootstrap=BOOT_TEACHER, critic="td"),
    "td_v_zero": _Base("student", {C_ENV: 1.0}, bootstrap=BOOT_ZERO, critic="td", teacher=False),
    "kl_regularised": _Base("student", {C_ENV: 1.0, C_TEACHER_LOGP: 1.0, C_STUDENT_LOGP: -1.0}),
    "baseline": _Base("student", {C_ENV: 1.0}, teacher=False),
}


def _all_ids() -> tuple[str, ...]:
    ids: list[str] = []
    for name, base in BASE_METHODS.items():
        ids.append(name)
        if base.plus_r:
            ids.append(f"{name}+R")
        if base.vcond:
            ids.append(f"{name}+Vcond")
            ids.append(f"{name}+R+Vcond")
    return tuple(ids)


#: Every accepted method id.
METHOD_IDS: tuple[str, ...] = _all_ids()

_REWARD_COEFS = (
    C_ENV,
    C_TEACHER_LOGP,
    C_STUDENT_LOGP,
    C_TEACHER_V_NEXT,
    C_TEACHER_V,
    C_STUDENT_V,
    C_NEXT_LOSS,
    C_NEXT_LOGP,
)


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method id.

    Attributes:
        id: the canonical id (e.g. ``"on_policy_distill+R+Vcond"``).
        base: the base method (e.g. ``"on_policy_distill"``).
        plus_r: the ``+R`` variant (environment reward added to ``rhat``).
        vcond: the ``+Vcond`` variant (loss gated by ``V_pi(s) > V_theta(s)``).
        default_control: the method's own control policy (``"teacher"`` or ``"student"``).
        coefficients: ``{coef index: weight}`` of the loss and reward terms (see the module
            constants ``C_*``).
        bootstrap: what the TD target bootstraps from (``BOOT_*``).
        forced_critic: a critic mode the method requires (``"td"`` for ``td_v_*``), or None.
        needs_teacher: the method reads the teacher's policy or value at all.
    """

    id: str
    base: str
    plus_r: bool
    vcond: bool
    default_control: str
    coefficients: tuple[tuple[int, float], ...]
    bootstrap: int
    forced_critic: str | None
    needs_teacher: bool

    @property
    def needs_teacher_values(self) -> bool:
        """True if the method reads ``V_pi`` (teacher-value rewards, V-gating, TD + V_pi)."""
        coef = dict(self.coefficients)
        return bool(
            self.vcond
            or self.bootstrap == BOOT_TEACHER
            or coef.get(C_TEACHER_V_NEXT, 0.0)
            or coef.get(C_TEACHER_V, 0.0)
        )

    @property
    def needs_teacher_probs(self) -> bool:
        """True if the method reads the teacher's action probabilities."""
        coef = dict(self.coefficients)
        return any(
            coef.get(c, 0.0)
            for c in (C_TEACHER_LOGP, C_LOSS_CE, C_LOSS_IP, C_LOSS_RCE, C_NEXT_LOSS, C_NEXT_LOGP)
        )

    @property
    def has_reward_channel(self) -> bool:
        """True if ``rhat`` is not identically zero (the method has a policy-gradient term)."""
        coef = dict(self.coefficients)
        return any(coef.get(c, 0.0) for c in _REWARD_COEFS)

    @property
    def uses_critic(self) -> bool:
        """True if the method learns a critic ``V_theta`` (reward channel or V-gating)."""
        return self.has_reward_channel or self.vcond

    def critic_mode(self, critic: str | None = None) -> str:
        """Resolve the critic mode: ``"none"``, ``"mc"`` or ``"td"``.

        Args:
            critic: ``None`` (the default, ``"td"``),
                ``"none"`` (plain REINFORCE, no baseline), ``"mc"`` or ``"td"``.

        Raises:
            ValueError: an unknown mode, or a mode the method cannot use.
        """
        if critic is not None and critic not in CRITICS:
            raise ValueError(f"critic must be None or one of {sorted(CRITICS)}, got {critic!r}")
        if self.forced_critic is not None:
            if critic not in (None, self.forced_critic):
                raise ValueError(
                    f"method {self.id!r} always bootstraps one step (critic="
                    f"{self.forced_critic!r}); got critic={critic!r}"
                )
            return self.forced_critic
        if not self.uses_critic:
            return "none"
        if critic == "none" and self.vcond:
            raise ValueError(
                f"method {self.id!r} gates its loss with the student's critic; critic must be "
                f"'mc' or 'td', got 'none'"
            )
        return critic or "td"

    def params(
        self, critic: str | None = None, distill_loss: str = "cross_entropy"
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """The numeric form read by :func:`distill_agents.updates.episode_update`.

        Args:
            critic: see :meth:`critic_mode`.
            distill_loss: ``"cross_entropy"`` (default) or ``"information_potential"``: the
                per-state loss of the methods whose loss is ``H_x(pi || pi_theta)`` (the
                latter is the paper's App. C loss ``-4 sum_a pi(a|s) pi_theta(a|s)``, used by
                the oscillation example of Fig. 2).

        Returns:
            ``(coef [N_COEF] float64, codes [N_CODES] int64)``.
        """
        if distill_loss not in DISTILL_LOSSES:
            raise ValueError(
                f"distill_loss must be one of {list(DISTILL_LOSSES)}, got {distill_loss!r}"
            )
        coef = np.zeros(N_COEF)
        for index, weight in self.coefficients:
            coef[index] = weight
        if distill_loss == "information_potential":
            if coef[C_LOSS_CE] == 0.0:
                raise ValueError(
                    f"distill_loss='information_potential' replaces the H_x(pi || pi_theta) "
                    f"loss; method {self.id!r} has no such loss"
                )
            coef[C_LOSS_IP] = _IP_SCALE * coef[C_LOSS_CE]
            coef[C_LOSS_CE] = 0.0
        codes = np.zeros(N_CODES, dtype=np.int64)
        codes[K_CRITIC] = CRITICS[self.critic_mode(critic)]
        codes[K_BOOTSTRAP] = self.bootstrap
        codes[K_VCOND] = int(self.vcond)
        codes[K_CRITIC_SEQUENTIAL] = 1
        return coef, codes


def parse_method(method: str | MethodSpec) -> MethodSpec:
    """Parse a method id (SPEC 3) into a :class:`MethodSpec`.

    Args:
        method: a base id (e.g. ``"n_distill"``) with optional ``"+R"`` and ``"+Vcond"``
            suffixes, in that order (e.g. ``"on_policy_distill+R+Vcond"``), or a spec.

    Raises:
        ValueError: an unknown id or an unsupported variant; the message lists every accepted
            id.
    """
    if isinstance(method, MethodSpec):
        return method
    if not isinstance(method, str) or method not in METHOD_IDS:
        raise ValueError(f"method must be one of {', '.join(METHOD_IDS)}; got {method!r}")
    parts = method.split("+")
    name = parts[0]
    plus_r = "R" in parts[1:]
    vcond = "Vcond" in parts[1:]
    base = BASE_METHODS[name]
    coef = dict(base.coef)
    if plus_r:
        coef[C_ENV] = coef.get(C_ENV, 0.0) + 1.0
    return MethodSpec(
        id=method,
        base=name,
        plus_r=plus_r,
        vcond=vcond,
        default_control=base.control,
        coefficients=tuple(sorted(coef.items())),
        bootstrap=base.bootstrap,
        forced_critic=base.critic,
        needs_teacher=base.teacher,
    )


def control_code(control: str) -> int:
    """The integer code of a control policy name.

    Raises:
        ValueError: an unknown control policy, naming the accepted ones.
    """
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {list(CONTROLS)}, got {control!r}")
    return CONTROLS[control]


# ------------------------------------------------------------------------- mixture schedule
@dataclass(frozen=True)
class BetaSchedule:
    """Probability ``beta_i`` of following the teacher at each step of iteration ``i``.

    The ``mixture`` control samples every action from ``beta_i * pi + (1 - beta_i) *
    pi_theta`` (equivalently: at each step, follow the teacher with probability ``beta_i``,
    else the student), as in DAgger (Ross et al., 2011), whose schedules decay ``beta`` from 1
    (pure teacher) towards 0 (pure student):

    - ``"constant"``: ``beta_i = start``;
    - ``"linear"``: from ``start`` at iteration 0 to ``end`` at iteration ``steps`` (default:
      the run's last iteration), constant afterwards;
    - ``"exponential"``: ``beta_i = end + (start - end) * decay ** i`` (DAgger's ``p^i`` with
      ``start = 1, end = 0``).

    Args:
        kind: ``"constant"``, ``"linear"`` or ``"exponential"``.
        start: ``beta_0`` in [0, 1].
        end: limit value in [0, 1] (ignored by ``"constant"``).
        decay: factor per iteration in (0, 1] (``"exponential"`` only).
        steps: iterations of the linear ramp (``None``: the whole run).
    """

    kind: str = "constant"
    start: float = 0.5
    end: float = 0.0
    decay: float = 0.99
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "linear", "exponential"):
            raise ValueError(
                f"BetaSchedule kind must be 'constant', 'linear' or 'exponential', got "
                f"{self.kind!r}"
            )
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"BetaSchedule {name} must be in [0, 1], got {value!r}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"BetaSchedule decay must be in (0, 1], got {self.decay!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"BetaSchedule steps must be None or an int >= 1, got {self.steps}")

    def value(self, iteration: int, total: int | None = None) -> float:
        """``beta`` at ``iteration`` (0-based) of a run of ``total`` iterations."""
        if self.kind == "constant":
            return float(self.start)
        if self.kind == "exponential":
            return float(self.end + (self.start - self.end) * self.decay**iteration)
        steps = self.steps if self.steps is not None else max((total or 1) - 1, 1)
        if iteration >= steps:
            return float(self.end)
        return float(self.start + (self.end - self.start) * (iteration / steps))


def as_beta_schedule(beta: Any) -> BetaSchedule | Callable[[int], float]:
    """Accept a float (constant), a :class:`BetaSchedule`, or a callable ``iteration -> beta``.

    Raises:
        ValueError: anything else, or a float outside [0, 1].
    """
    if isinstance(beta, BetaSchedule):
        return beta
    if isinstance(beta, (int, float, np.integer, np.floating)) and not isinstance(beta, bool):
        return BetaSchedule("constant", start=float(beta))
    if callable(beta):
        return beta
    raise ValueError(
        "beta must be a number in [0, 1], a BetaSchedule, or a callable iteration -> beta; "
        f"got {beta!r}"
    )


def beta_at(schedule: BetaSchedule | Callable[[int], float], iteration: int, total: int) -> float:
    """Evaluate a schedule and check the value lies in [0, 1]."""
    value = (
        schedule.value(iteration, total)
        if isinstance(schedule, BetaSchedule)
        else float(schedule(iteration))
    )
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"beta at iteration {iteration} must be in [0, 1], got {value!r}")
    return value
