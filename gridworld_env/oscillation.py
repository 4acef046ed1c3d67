"""``DistillOscillation-v0``: the 7-state MDP of Czarnecki et al. (2019), Fig. 2 and appendix C."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from gridworld_env.base import TabularEnv, check_no_unknown_kwargs, check_render_mode
from gridworld_env.mdp import TabularMDP

__all__ = [
    "STATE_NAMES",
    "DistillOscillationEnv",
    "oscillation_mdp",
    "oscillation_observation_table",
]

#: State names in index order: s0, sL, sR, sLL, sLR, sRL, sRR = 0..6.
STATE_NAMES = ("s0", "sL", "sR", "sLL", "sLR", "sRL", "sRR")
S0, SL, SR, SLL, SLR, SRL, SRR = range(7)
LEFT, RIGHT = 0, 1
#: (state, action) -> (next state, reward) for the three decision states.
_EDGES = {
    (S0, LEFT): (SL, 0.0),
    (S0, RIGHT): (SR, 0.0),
    (SL, LEFT): (SLL, -1.0),
    (SL, RIGHT): (SLR, -2.0),
    (SR, LEFT): (SRL, 0.0),
    (SR, RIGHT): (SRR, -3.0),
}


def oscillation_mdp() -> TabularMDP:
    """Build the exact model of the oscillation MDP (SPEC 1.3).

    Deterministic, two actions (L, R = 0, 1), no absorption: ``s0`` leads to ``sL``/``sR``
    (reward 0); ``sL`` ends with -1 (L) or -2 (R); ``sR`` ends with 0 (L) or -3 (R). The four
    leaves ``sLL, sLR, sRL, sRR`` (3..6) are terminal, absorbing with reward 0.

    Returns:
        The model, ``S = 7``, ``A = K = 2``, ``M = 1``.
    """
    n_states = len(STATE_NAMES)
    next_states = np.repeat(np.arange(n_states)[:, None, None], 2, axis=1)
    next_rewards = np.zeros((n_states, 2, 1))
    for (state, action), (succ, reward) in _EDGES.items():
        next_states[state, action, 0] = succ
        next_rewards[state, action, 0] = reward
    terminal = np.arange(n_states) >= SLL
    initial = np.zeros(n_states)
    initial[S0] = 1.0
    return TabularMDP(
        next_states=next_states,
        next_probs=np.ones((n_states, 2, 1)),
        next_rewards=next_rewards,
        action_rows=np.arange(2),
        initial=initial,
        terminal=terminal,
    )


def oscillation_observation_table() -> NDArray[np.int64]:
    """Observation of every state ``[7]``: 0 in ``s0``, 1 everywhere else (``sL``, ``sR`` alias)."""
    return (np.arange(len(STATE_NAMES)) != S0).astype(np.int64)


class DistillOscillationEnv(TabularEnv):
    """The oscillation example of "Distilling Policy Distillation" (Czarnecki et al., 2019).

    ## Description

    Seven states ``s0, sL, sR, sLL, sLR, sRL, sRR`` (indices 0..6) and two steps per episode.
    The paper's student shares one parameter between ``sL`` and ``sR``, so the observation aliases
    them. The paper's teacher is deterministic and prefers R in ``sR`` (it is *not* the
    reward-optimal policy: in ``sR``, L pays 0 and R pays -3), so the distillation loss lives in
    ``sR`` only: ``l(theta | sR) = -4 * pi_theta(R | sR)``, the "information potential" loss
    ``4 * sum_a pi(a|s) pi_theta(a|s) - 4`` with the teacher on R. With the environment reward
    added ("On-policy distill + R") the expected-update dynamics circle a centre forever (Fig. 2);
    the Theorem-2 correction ("N-distill + R") converges.

    ## Action Space

    ``Discrete(2)``: L = 0, R = 1.

    ## Observation Space

    ``Discrete(2)``: 0 in ``s0``, 1 in every other state (``sL`` and ``sR`` look the same;
    terminal states included). ``info["state"]`` is the true state index.

    ## Starting State

    ``s0``.

    ## Transitions and Rewards

    Deterministic: from ``s0``, L goes to ``sL`` and R to ``sR`` (reward 0); from ``sL``, L ends
    with -1 and R with -2; from ``sR``, L ends with 0 and R with -3. No absorption.

    ## Episode End

    After the second action (``terminated=True``). The best return is 0 (R, then L), the worst -3
    (R, then R).

    ## Arguments

    ```python
    gym.make("DistillOscillation-v0", render_mode=None)
    ```

    ``render_mode="ansi"`` names the current state, e.g. ``s0 > sL [sR] > sLL sLR sRL sRR``.

    ## Exact model

    ``env.unwrapped.mdp`` (:class:`~gridworld_env.TabularMDP`, built by :func:`oscillation_mdp`)
    and ``env.unwrapped.observation_of_state``.

    ## Version History

    - v0: initial release.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **unknown: Any) -> None:
        check_no_unknown_kwargs(type(self), unknown)
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.action_space = spaces.Discrete(2)
        self.observation_space = spaces.Discrete(2)
        self._set_model(oscillation_mdp(), oscillation_observation_table())

    @property
    def state_name(self) -> str | None:
        """Name of the current true state (``"s0"`` .. ``"sRR"``), ``None`` before ``reset``."""
        return None if self._state < 0 else STATE_NAMES[self._state]

    def render(self) -> str | None:
        """Render as one line naming every state, the current one in brackets."""
        if self.render_mode is None:
            return None
        names = [f"[{n}]" if i == self._state else n for i, n in enumerate(STATE_NAMES)]
        return f"{names[0]} > {names[1]} {names[2]} > {' '.join(names[3:])}\n"
