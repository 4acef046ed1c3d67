"""Stable-Baselines3 interop, both directions (SPEC 3.1; Rusu et al., 2016).

SB3 model -> tabular student: :class:`SB3Teacher` adapts a trained PPO, A2C or DQN model to the
teacher interface every student trainer of the package accepts (``action_probs(obs) -> [A]``,
``value(obs)``, and ``action_values(obs)`` for DQN), so ``distill(env, SB3Teacher(model), ...)``
works as for a tabular teacher.

Tabular (or any) teacher -> SB3 network: :func:`distill_into_sb3` trains the policy network of an
SB3 model to match a teacher (forward KL with a temperature, or MSE on Q-values for DQN, as in
Rusu et al.) on observations collected by rolling out the teacher, the student (on-policy,
DAgger-like) or a uniform policy, and hands back the same model, which can keep learning with
``.learn()``.

Students and teachers in SB3's evaluation tools: :class:`~distill_agents.TabularPolicy` has SB3's
``predict``, so ``stable_baselines3.common.evaluation.evaluate_policy`` accepts it directly;
:func:`to_tabular_policy` turns any teacher (e.g. a ``TabularTeacher``) into one.

Conventions:

- Temperature ``T``: the teacher distribution is ``softmax(scores / T)``, with ``scores`` the
  action distribution's log-probabilities for PPO/A2C (``T = 1`` leaves the policy unchanged)
  and the Q-values for DQN; ``T = 0`` is the greedy distribution (ties split), small ``T``
  approaches it, large ``T`` approaches uniform.
- The student's own temperature is 1, as in :mod:`distill_agents.supervised`: a DQN student
  distilled with ``loss="kl"`` uses its Q-network outputs as logits.
- Everything runs through ``torch`` on the model's own device, with ``torch.no_grad`` when
  querying; probabilities are computed in float64 from the network's float32 outputs.

Modules: :mod:`~distill_agents.integrations.sb3.network` (a model's kind, its network scores,
checks of its observations), :mod:`~distill_agents.integrations.sb3.teacher`
(:class:`SB3Teacher`, :func:`to_tabular_policy`) and
:mod:`~distill_agents.integrations.sb3.distill_into` (:func:`distill_into_sb3`); this package
re-exports their public names.

This package needs the ``sb3`` extra (``pip install "distillgrid[sb3]"``); importing it without
Stable-Baselines3 or PyTorch raises an ``ImportError`` that says so.
"""

from __future__ import annotations

INSTALL_HINT = 'pip install "distillgrid[sb3]"'

try:
    import torch  # noqa: F401
    from stable_baselines3.common.vec_env import VecEnv  # noqa: F401
except ImportError as _err:  # pragma: no cover - exercised by a test that hides SB3
    raise ImportError(
        "distill_agents.integrations.sb3 needs Stable-Baselines3 and PyTorch "
        f"({_err}); install the optional extra with: {INSTALL_HINT}"
    ) from _err

from distill_agents.integrations.sb3.distill_into import (  # noqa: E402
    CONTROLS,
    LOSSES,
    TEACHER_SCORES,
    distill_into_sb3,
)
from distill_agents.integrations.sb3.teacher import SB3Teacher, to_tabular_policy  # noqa: E402

__all__ = [
    "CONTROLS",
    "INSTALL_HINT",
    "LOSSES",
    "TEACHER_SCORES",
    "SB3Teacher",
    "distill_into_sb3",
    "to_tabular_policy",
]
