"""Which distillation method to use: the paper's decision diagram (Fig. 1, SPEC 3.2).

Transcribed from Czarnecki et al. (2019), Fig. 1 (PAPER.md section 6). Five yes/no questions:

1. *Eval outside teacher?* Will the student be evaluated outside the teacher's state
   distribution? If not, distil on the teacher's trajectories: ``teacher_distill``.
2. *Convergence guarantees?* Do you need a rule that is a gradient field (Theorems 1, 2)? Then
   ``on_policy_distill`` (not a gradient field) is never offered.
3. *Improvement over speed?* Should the student improve beyond the teacher with the task reward
   (``+R``) rather than clone it as fast as possible?
4. *Is teacher strong?* (only when improving) A strong teacher is cloned with the reward added.
5. *Does teacher have V?* (only for a weak teacher) A teacher value allows ``teacher_v_reward``.

Questions that the diagram does not reach on a path are ignored.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Recommendation", "recommend"]


class Recommendation(NamedTuple):
    """The diagram's answer.

    Attributes:
        preferred: the method(s) the paper recommends (thick, dark green boxes).
        feasible: methods that also work (light green boxes).
    """

    preferred: tuple[str, ...]
    feasible: tuple[str, ...]


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def recommend(
    eval_outside_teacher: bool,
    convergence_guarantees: bool,
    improvement_over_speed: bool,
    teacher_strong: bool,
    teacher_has_value: bool,
) -> Recommendation:
    """Walk the paper's Fig. 1 decision diagram.

    Args:
        eval_outside_teacher: the student is evaluated outside the teacher's state
            distribution.
        convergence_guarantees: only rules with convergence guarantees (gradient fields).
        improvement_over_speed: prefer improving on the teacher with the task reward over the
            fastest cloning.
        teacher_strong: the teacher is strong (near-optimal).
        teacher_has_value: the teacher provides a value function ``V_pi``.

    Returns:
        :class:`Recommendation` with method ids as in :data:`distill_agents.methods.METHOD_IDS`.

    Raises:
        ValueError: an argument that is not a bool.

    Example:
        >>> recommend(True, True, True, False, True).preferred
        ('teacher_v_reward',)
    """
    outside = _flag("eval_outside_teacher", eval_outside_teacher)
    guarantees = _flag("convergence_guarantees", convergence_guarantees)
    improve = _flag("improvement_over_speed", improvement_over_speed)
    strong = _flag("teacher_strong", teacher_strong)
    has_value = _flag("teacher_has_value", teacher_has_value)

    if not outside:
        return Recommendation(("teacher_distill",), ())
    suffix = "+R" if improve else ""
    if improve and not strong and has_value:
        return Recommendation(("teacher_v_reward",), ())
    feasible = [f"n_distill{suffix}"]
    if not guarantees:
        feasible.insert(0, f"on_policy_distill{suffix}")
    return Recommendation((f"expected_entropy_regularised{suffix}",), tuple(feasible))
