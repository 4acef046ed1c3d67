"""``DistillChain-v0``: the corridor MDP of Czarnecki et al. (2019), Figs. 6 and 9."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from gridworld_env.base import TabularEnv, check_no_unknown_kwargs, check_render_mode
from gridworld_env.mdp import TabularMDP, movement_mdp

__all__ = ["DistillChainEnv", "chain_mdp", "chain_observation_table", "check_chain_args"]

#: Movement actions: L = 0 (cell - 1) and R = 1 (cell + 1); actions >= 2 stay put.
N_MOVES = 2
LEFT_REWARD = -1.0
RIGHT_REWARD = 1.0


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_chain_args(
    length: Any, n_actions: Any, noise: Any, absorb_prob: Any
) -> tuple[int, int, float, float]:
    """Validate the corridor's settings and return them as plain Python numbers.

    Raises:
        ValueError: a bad argument, named in the message with the accepted values.
    """
    if not _is_int(length) or length < 3 or length % 2 == 0:
        raise ValueError(
            f"length must be an odd integer >= 3 (the start is the middle cell), got {length!r}"
        )
    if not _is_int(n_actions) or n_actions < N_MOVES:
        raise ValueError(
            f"n_actions must be an integer >= 2 (L, R, then actions that stay put), "
            f"got {n_actions!r}"
        )
    for name, value in (("noise", noise), ("absorb_prob", absorb_prob)):
        if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return int(length), int(n_actions), float(noise), float(absorb_prob)


def chain_mdp(
    length: int = 11, n_actions: int = 2, noise: float = 0.0, absorb_prob: float = 0.01
) -> TabularMDP:
    """Build the exact model of the corridor (SPEC 1.2).

    States: cell ``i`` is state ``i`` (``0 .. length - 1``) and ``s_term`` is state ``length``.
    The start is the middle cell ``length // 2``; cells ``0`` (-1) and ``length - 1`` (+1) are
    terminal. Rows: L, R, plus one shared "stay" row for every extra action (``K = 2`` or 3).
    Each row has ``M = 4`` outcomes: the intended move (``(1 - absorb) (1 - noise)``), each of the
    two moves (``(1 - absorb) noise / 2`` each) and ``s_term`` (``absorb``, reward 0). The reward
    of an outcome is that of the landing cell. Terminal states are absorbing with reward 0.

    Args:
        length: number of cells, odd and >= 3.
        n_actions: ``A >= 2``; actions ``>= 2`` do not move the agent.
        noise: transition noise in [0, 1].
        absorb_prob: probability of absorption into ``s_term`` after every action, in [0, 1].

    Returns:
        The model, with ``S = length + 1`` states.
    """
    length, n_actions, noise, absorb_prob = check_chain_args(length, n_actions, noise, absorb_prob)
    cells = np.arange(length)
    # dest[s, d]: where move d leads from cell s (the walls at both ends are never hit: the end
    # cells are terminal); d = 2 is "stay".
    dest = np.stack(
        [np.maximum(cells - 1, 0), np.minimum(cells + 1, length - 1), cells], axis=1
    ).astype(np.int64)

    cell_reward = np.zeros(length)
    cell_reward[0], cell_reward[length - 1] = LEFT_REWARD, RIGHT_REWARD
    cell_terminal = np.zeros(length, dtype=bool)
    cell_terminal[[0, length - 1]] = True
    return movement_mdp(
        dest, cell_reward, cell_terminal, n_actions, noise, absorb_prob, start=length // 2
    )


def chain_observation_table(length: int) -> NDArray[np.int64]:
    """Observation of every state ``[length + 1]``: the cell index, -1 for ``s_term``."""
    return np.append(np.arange(length, dtype=np.int64), -1)


class DistillChainEnv(TabularEnv):
    """The corridor MDP of "Distilling Policy Distillation" (Czarnecki et al., 2019, Figs. 6, 9).

    ## Description

    A 1-D corridor of ``length`` cells (11 by default). The agent starts in the middle cell; the
    left end pays -1 and the right end +1, and both end the episode. The paper distils an optimal
    and an adversarial (reward-minimising) teacher on it: the optimal start value is
    ``(1 - absorb_prob) ** (length // 2)`` without noise, the adversarial one its negative.

    ## Action Space

    ``Discrete(n_actions)``: L = 0 (cell - 1), R = 1 (cell + 1); actions 2 and above leave the
    agent in place.

    ## Observation Space

    ``Discrete(length)``: the agent's cell index.

    ## Starting State

    The middle cell ``length // 2``.

    ## Transitions and Rewards

    After every action: with probability ``absorb_prob`` the agent moves to the absorbing state
    ``s_term`` (reward 0, ``terminated=True``, the observation repeats the last cell). Otherwise
    the intended move happens with probability ``1 - noise`` and each of the two moves (L, R) with
    ``noise / 2`` (for an extra action the intended move is staying put). Landing on cell 0 pays
    -1, landing on cell ``length - 1`` pays +1; every other step pays 0.

    ## Episode End

    Reaching either end or absorption sets ``terminated=True``. ``truncated`` is only set by the
    registered time limit (``max_episode_steps=1000``). ``info["state"]`` is the true state
    (``length`` for ``s_term``).

    ## Arguments

    ```python
    gym.make("DistillChain-v0", length=11, n_actions=2, noise=0.0, absorb_prob=0.01,
             render_mode=None)
    ```

    ``render_mode="ansi"`` gives one line such as ``-....A....+``.

    ## Exact model

    ``env.unwrapped.mdp`` (:class:`~gridworld_env.TabularMDP`, built by :func:`chain_mdp`) and
    ``env.unwrapped.observation_of_state``.

    ## Version History

    - v0: initial release.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        length: int = 11,
        n_actions: int = 2,
        noise: float = 0.0,
        absorb_prob: float = 0.01,
        render_mode: str | None = None,
        **unknown: Any,
    ) -> None:
        check_no_unknown_kwargs(type(self), unknown)
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.length, self.n_actions, self.noise, self.absorb_prob = check_chain_args(
            length, n_actions, noise, absorb_prob
        )
        self.action_space = spaces.Discrete(self.n_actions)
        self.observation_space = spaces.Discrete(self.length)
        self._set_model(
            chain_mdp(self.length, self.n_actions, self.noise, self.absorb_prob),
            chain_observation_table(self.length),
        )

    @property
    def agent_cell(self) -> int | None:
        """The agent's cell (its last cell after absorption), or ``None`` before ``reset``."""
        return None if self._state < 0 else self._obs_state

    def render(self) -> str | None:
        """Render the corridor as one line of text, e.g. ``-....A....+``."""
        if self.render_mode is None:
            return None
        line = ["-"] + ["."] * (self.length - 2) + ["+"]
        if self.agent_cell is not None:
            line[self.agent_cell] = "A"
        return "".join(line) + "\n"
