"""Readings: the choices the paper leaves open, as named options (PAPER.md section 7).

A :class:`Readings` record holds one value per choice; its defaults are the package's reading
(what ``distill-grid reproduce`` does without ``--set``). ``reproduce --set KEY=VALUE``
(repeatable) and :meth:`Readings.parse` set them from text; :meth:`Readings.changed` is what a
run's piece keys record (nothing for the defaults, so a run with the defaults keeps the files
and pieces it had before readings existed, and runs with different readings never mix).

Fields
    ``teacher_prob_floor``
        Floor of the teacher's probabilities inside ``log`` (``log(max(pi, floor))``): what a
        greedy teacher's zero probabilities become in the entropy-regularised rewards and in
        the ``log pi`` of the expected methods. Default ``1e-8``
        (:data:`distill_agents.updates.TEACHER_PROB_FLOOR`).
    ``fig4_teacher``
        The teacher of Figs. 4 and 10 (the paper does not name it): ``optimal`` (value
        iteration on the model, default) or ``q_learning`` (trained like Fig. 3's, with
        ``--teacher-episodes``).
    ``temperature``
        The policy temperature of every teacher that has one (planned and Q-learning teachers;
        not A2C), except in Fig. 3, whose panels are its temperatures. ``None`` (default): each
        figure's own (greedy, ``0``, everywhere but Fig. 3).
    ``adversarial_value``
        The value table ``V_pi`` that the methods read from the adversarial corridor teacher of
        Figs. 6 and 9: ``own`` (default: its own critic, the value of the objective it
        optimises, the negated reward, i.e. minus the true value of its policy; the paper's
        ``V_pi`` is the teacher's own value estimate, as for Fig. 8's A2C teacher and its
        critic) or ``true`` (the true value of its policy under the task's reward).
    ``critic``
        The critic of the methods that learn one: ``mc`` or ``td`` for every panel, or ``None``
        (default: each panel's own; methods with a fixed critic keep theirs).
    ``lr``
        The students' learning rate. ``None`` (default): each figure's own (``0.1``).
    ``kl_metric``
        What the KL columns report (Fig. 3's ``kl_*`` metrics): ``episode_sum``
        (default: the expected sum over an episode of the control policy of the per-state KL)
        or ``step_mean`` (that sum over the episode's expected length).
    ``noise``
        How a noisy teacher (Figs. 5 and 8) is made from the clean one
        (:func:`distill_agents.teachers.noisy_teachers`): ``fixed`` (default: a fixed wrong
        action at the given share of acting table indices), ``path`` (the same share, only on
        the clean teacher's path) or ``q_values`` (the greedy action of the Q-values plus
        Gaussian noise scaled by the share).
    ``noisy_value``
        The value table ``V_pi`` of a noisy teacher (Figs. 5 and 8): ``clean_q`` (default: the
        clean teacher's ``Q`` of the noisy action, e.g. 6.65 at the start state against a true
        4.40 at 15% noise) or ``exact`` (the exact value of the noisy policy on the model,
        :func:`distill_agents.teachers.exact_values`).
    ``teacher_control``
        The control policy of teacher-driven curves (Fig. 3's teacher-driven column, Teacher
        distill): ``greedy`` (default: the teacher itself) or ``epsilon`` (the 0.1-greedy
        teacher of Fig. 3's title: a uniformly random action with probability 0.1, the
        runner's ``control="epsilon_teacher"``).
    ``stay_reward``
        What a grid step that leaves the agent in its cell pays (actions 4 and above, or a
        move blocked by a wall or the edge): ``repeat`` (default: the cell's reward again, so
        standing on a -1 cell costs -1 per step) or ``none`` (0: ``DistillGrid-v0``'s
        ``stay_reward=False``). With ``|A| = 4000`` almost every action stays.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from distill_agents.updates import TEACHER_PROB_FLOOR

__all__ = ["READING_NAMES", "Readings", "apply_readings"]


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError("must be a finite number > 0")
    return value


def _floor(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise ValueError("must be a number in (0, 1)")
    return value


def _temperature(text: str) -> float | None:
    if text.lower() == "none":
        return None
    value = float(text)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError("must be a finite number >= 0, or none")
    return value


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_optional(text: str) -> Any:
        return None if text.lower() == "none" else parse(text)

    return parse_optional


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


#: Per field: the parser of its text and the accepted values as the one-line errors name them.
_PARSERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "teacher_prob_floor": (_floor, "a number in (0, 1)"),
    "fig4_teacher": (_choice("optimal", "q_learning"), "optimal, q_learning"),
    "temperature": (_temperature, "a number >= 0, or none"),
    "adversarial_value": (_choice("own", "true"), "own, true"),
    "critic": (_optional(_choice("mc", "td")), "mc, td, none"),
    "lr": (_optional(_positive_float), "a number > 0, or none"),
    "kl_metric": (_choice("episode_sum", "step_mean"), "episode_sum, step_mean"),
    "noise": (_choice("fixed", "path", "q_values"), "fixed, path, q_values"),
    "noisy_value": (_choice("clean_q", "exact"), "clean_q, exact"),
    "stay_reward": (_choice("repeat", "none"), "repeat, none"),
    "teacher_control": (_choice("greedy", "epsilon"), "greedy, epsilon"),
}


@dataclass(frozen=True)
class Readings:
    """One value per open choice of the paper; the defaults are the package's reading.

    See the module docstring for each field.
    """

    teacher_prob_floor: float = TEACHER_PROB_FLOOR
    fig4_teacher: str = "optimal"
    temperature: float | None = None
    adversarial_value: str = "own"
    critic: str | None = None
    lr: float | None = None
    kl_metric: str = "episode_sum"
    noise: str = "fixed"
    noisy_value: str = "clean_q"
    stay_reward: str = "repeat"
    teacher_control: str = "greedy"

    def __post_init__(self) -> None:
        for name, (parse, accepted) in _PARSERS.items():
            value = getattr(self, name)
            try:
                ok = value is None or parse(str(value)) == value
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"reading {name} must be {accepted}, got {value!r}")

    def changed(self) -> dict[str, Any]:
        """The fields that differ from the defaults, by name (empty for the defaults)."""
        default = Readings()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }

    def describe(self) -> str:
        """``name=value`` of the changed fields, comma-separated (``"defaults"`` if none)."""
        changed = self.changed()
        return ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"

    @classmethod
    def parse(cls, items: Sequence[str], base: Readings | None = None) -> Readings:
        """``base`` (default: the defaults) with ``KEY=VALUE`` items applied in order.

        Raises:
            ValueError: an item without ``=``, an unknown key or a bad value (one line naming
                the accepted keys or values).
        """
        values: dict[str, Any] = {}
        for item in items:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
            if key not in _PARSERS:
                raise ValueError(
                    f"--set: unknown reading {key!r}; readings: {', '.join(READING_NAMES)}"
                )
            parse, accepted = _PARSERS[key]
            try:
                values[key] = parse(text.strip())
            except ValueError:
                raise ValueError(f"--set {key}: must be {accepted}, got {text.strip()!r}") from None
        return dataclasses.replace(base or cls(), **values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Readings:
        """Readings from ``{name: value}`` (e.g. :meth:`changed` read back from JSON)."""
        unknown = [k for k in values if k not in _PARSERS]
        if unknown:
            raise ValueError(
                f"unknown reading {unknown[0]!r}; readings: {', '.join(READING_NAMES)}"
            )
        return cls(**dict(values))


#: The readings' names, in the record's order.
READING_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Readings))


def apply_readings(exp: Any, readings: Readings) -> Any:
    """``exp`` (an :class:`~distill_agents.experiments.Experiment`) as ``readings`` read it.

    Changes the teacher kind of Figs. 4 and 10 (``fig4_teacher``), the teachers' temperature
    (not Fig. 3's: its panels are temperatures), every panel's critic, the learning rate and
    the grid environments' ``stay_reward`` and the control of teacher-driven curves.
    The readings applied elsewhere (``teacher_prob_floor`` and ``kl_metric``: the runner;
    ``adversarial_value``, ``noise`` and ``noisy_value``: the teachers of a piece) leave ``exp``
    unchanged.
    """
    panels = []
    for panel in exp.panels:
        spec = panel.teacher
        if exp.figure in ("fig4", "fig10") and readings.fig4_teacher != "optimal":
            spec = dataclasses.replace(spec, kind=readings.fig4_teacher)
        tempered = exp.figure != "fig3" and spec.temperature is not None
        if readings.temperature is not None and tempered:
            spec = dataclasses.replace(spec, temperature=readings.temperature)
        if readings.stay_reward == "none" and spec.env_id == "DistillGrid-v0":
            spec = dataclasses.replace(spec, env_kwargs={**spec.env_kwargs, "stay_reward": False})
        critic = panel.critic if readings.critic is None else readings.critic
        curves = panel.curves
        if readings.teacher_control == "epsilon":
            curves = tuple(_epsilon_teacher(curve) for curve in curves)
        panels.append(dataclasses.replace(panel, teacher=spec, critic=critic, curves=curves))
    lr = exp.lr if readings.lr is None else readings.lr
    return dataclasses.replace(exp, panels=tuple(panels), lr=lr)


def _epsilon_teacher(curve: Any) -> Any:
    """``curve`` with the epsilon-greedy teacher as control where the teacher drives it."""
    from distill_agents import methods as M

    control = curve.control or M.parse_method(curve.method).default_control
    return dataclasses.replace(curve, control="epsilon_teacher") if control == "teacher" else curve
