"""The exact model of every environment in the package: :class:`TabularMDP`.

The model is stored *compactly*: actions that behave identically (for example the thousands
of "do nothing" actions of the paper's Fig. 4) share one *row*, and each row lists at most ``M``
successor outcomes instead of a dense distribution over all states. The dense views
``transitions[S, A, S]`` and ``rewards[S, A]`` are materialised only on request.

This one structure is the single source of truth for the dynamics: the single environments
sample from it, the vector environment stacks it, and the planners solve it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["TabularMDP", "movement_mdp", "reachable_states"]

_ATOL = 1e-9


def _readonly(array: NDArray, dtype: type) -> NDArray:
    out: NDArray = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite MDP with discrete actions, stored as sparse successor lists per action row.

    Attributes:
        next_states: ``[S, K, M]`` int64. Outcome ``m`` of row ``k`` in state ``s`` moves to
            ``next_states[s, k, m]``. Outcomes may repeat a state; their probabilities add up.
        next_probs: ``[S, K, M]`` float64. Probability of each outcome; sums to 1 over ``M``.
        next_rewards: ``[S, K, M]`` float64. Reward received with each outcome.
        action_rows: ``[A]`` int64. Action ``a`` uses row ``action_rows[a]``.
        initial: ``[S]`` float64. Initial-state distribution.
        terminal: ``[S]`` bool. True for states in which the episode has ended (absorbing,
            reward 0).

    Dense views (materialised on request, so beware of ``S * A * S`` memory):
        ``transitions[s, a, s_next]`` and ``rewards[s, a]`` (expected immediate reward).
    """

    next_states: NDArray[np.int64]
    next_probs: NDArray[np.float64]
    next_rewards: NDArray[np.float64]
    action_rows: NDArray[np.int64]
    initial: NDArray[np.float64]
    terminal: NDArray[np.bool_]

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "next_states", _readonly(self.next_states, np.int64))
        set_(self, "next_probs", _readonly(self.next_probs, np.float64))
        set_(self, "next_rewards", _readonly(self.next_rewards, np.float64))
        set_(self, "action_rows", _readonly(self.action_rows, np.int64))
        set_(self, "initial", _readonly(self.initial, np.float64))
        set_(self, "terminal", _readonly(self.terminal, np.bool_))
        self._validate()

    def _validate(self) -> None:
        ns, npr, nr = self.next_states, self.next_probs, self.next_rewards
        if ns.ndim != 3:
            raise ValueError(f"next_states must have shape [S, K, M], got {ns.shape}")
        if npr.shape != ns.shape or nr.shape != ns.shape:
            raise ValueError(
                "next_states, next_probs and next_rewards must share one shape [S, K, M], got "
                f"{ns.shape}, {npr.shape}, {nr.shape}"
            )
        n_states, n_rows, _ = ns.shape
        if self.initial.shape != (n_states,) or self.terminal.shape != (n_states,):
            raise ValueError(
                f"initial and terminal must have shape [S] = ({n_states},), got "
                f"{self.initial.shape} and {self.terminal.shape}"
            )
        if self.action_rows.ndim != 1 or self.action_rows.size == 0:
            raise ValueError("action_rows must be a non-empty 1-D array [A]")
        if self.action_rows.min() < 0 or self.action_rows.max() >= n_rows:
            raise ValueError(f"action_rows must index rows 0..{n_rows - 1}")
        if ns.min() < 0 or ns.max() >= n_states:
            raise ValueError(f"next_states must index states 0..{n_states - 1}")
        if not (np.all(np.isfinite(npr)) and np.all(npr >= 0)):
            raise ValueError("next_probs must be finite and non-negative")
        if not np.all(np.isfinite(nr)):
            raise ValueError("next_rewards must be finite")
        if not np.allclose(npr.sum(axis=-1), 1.0, atol=_ATOL):
            raise ValueError("next_probs must sum to 1 over the outcome axis")
        if not (np.all(self.initial >= 0) and abs(self.initial.sum() - 1.0) < _ATOL):
            raise ValueError("initial must be a probability distribution over states")

    # ------------------------------------------------------------------ sizes
    @property
    def n_states(self) -> int:
        """Number of states ``S`` (including any absorbing ``s_term``)."""
        return int(self.next_states.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return int(self.action_rows.shape[0])

    @property
    def n_rows(self) -> int:
        """Number of distinct action rows ``K`` (``K <= A``)."""
        return int(self.next_states.shape[1])

    # ------------------------------------------------------------ dense views
    def row_transitions(self) -> NDArray[np.float64]:
        """Dense transition rows ``[S, K, S]``: P(s_next | s, row k)."""
        n_states, n_rows, _ = self.next_states.shape
        dense = np.zeros((n_states, n_rows, n_states))
        s_idx = np.broadcast_to(np.arange(n_states)[:, None, None], self.next_states.shape)
        k_idx = np.broadcast_to(np.arange(n_rows)[None, :, None], self.next_states.shape)
        np.add.at(dense, (s_idx, k_idx, self.next_states), self.next_probs)
        return dense

    def row_rewards(self) -> NDArray[np.float64]:
        """Expected immediate reward per row ``[S, K]``."""
        return np.einsum("skm,skm->sk", self.next_probs, self.next_rewards)

    @property
    def transitions(self) -> NDArray[np.float64]:
        """Dense ``[S, A, S]`` float64 array of P(s_next | s, a); rows sum to 1.

        Materialised on every access: for large action sets prefer :meth:`row_transitions`
        with :attr:`action_rows`.
        """
        return self.row_transitions()[:, self.action_rows, :]

    @property
    def rewards(self) -> NDArray[np.float64]:
        """Dense ``[S, A]`` float64 array of expected immediate rewards."""
        return self.row_rewards()[:, self.action_rows]

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_dense(
        cls,
        transitions: NDArray,
        rewards: NDArray,
        initial: NDArray,
        terminal: NDArray,
    ) -> TabularMDP:
        """Build a model from dense arrays ``transitions[S, A, S]`` and ``rewards[S, A]``.

        The reward of ``(s, a)`` is received whatever the next state is.
        """
        transitions = np.asarray(transitions, dtype=np.float64)
        rewards = np.asarray(rewards, dtype=np.float64)
        if transitions.ndim != 3 or transitions.shape[0] != transitions.shape[2]:
            raise ValueError(f"transitions must have shape [S, A, S], got {transitions.shape}")
        n_states, n_actions, _ = transitions.shape
        if rewards.shape != (n_states, n_actions):
            raise ValueError(f"rewards must have shape [S, A] = {(n_states, n_actions)}")
        next_states = np.broadcast_to(np.arange(n_states), transitions.shape)
        next_rewards = np.broadcast_to(rewards[:, :, None], transitions.shape)
        return cls(
            next_states=next_states,
            next_probs=transitions,
            next_rewards=next_rewards,
            action_rows=np.arange(n_actions),
            initial=initial,
            terminal=terminal,
        )


def reachable_states(mdp: TabularMDP) -> NDArray[np.bool_]:
    """Boolean mask ``[S]`` of the states reachable from the initial distribution.

    A state is reachable if some sequence of actions gives it positive probability. Terminal
    states are reached but not expanded (the episode ends there).
    """
    reached = mdp.initial > 0
    frontier = np.flatnonzero(reached)
    rows = np.unique(mdp.action_rows)
    while frontier.size:
        expand = frontier[~mdp.terminal[frontier]]
        succ = mdp.next_states[expand][:, rows, :]
        prob = mdp.next_probs[expand][:, rows, :]
        new = np.unique(succ[prob > 0])
        new = new[~reached[new]]
        reached[new] = True
        frontier = new
    return reached


def movement_mdp(
    dest: NDArray[np.int64],
    cell_reward: NDArray[np.float64],
    cell_terminal: NDArray[np.bool_],
    n_actions: int,
    noise: float,
    absorb_prob: float,
    start: int,
    dead: NDArray[np.bool_] | None = None,
    stay_reward: bool = True,
) -> TabularMDP:
    """The model of a world of cells with ``D`` noisy movement actions and an absorbing ``s_term``.

    This is the one rule behind ``DistillGrid-v0`` (``D = 4``) and ``DistillChain-v0``
    (``D = 2``), SPEC 1.1/1.2. After any action: with probability ``absorb_prob`` the agent moves
    to ``s_term`` (state ``C``, reward 0); otherwise the action's intended move happens with
    probability ``1 - noise`` and each of the ``D`` moves with ``noise / D``. Actions ``>= D``
    share one "stay" row whose intended move is staying put. The reward of an outcome is the
    reward of the cell landed in (with ``stay_reward=False``: 0 where the agent stays in its
    cell). Terminal cells and ``s_term`` are absorbing with reward 0; dead cells (walls) move to
    ``s_term`` with probability 1, reward 0, and are not terminal.

    Args:
        dest: ``[C, D + 1]`` int: the cell each move leads to from each cell (the cell itself
            when blocked); the last column is "stay" (the cell itself).
        cell_reward: ``[C]`` reward of landing in each cell.
        cell_terminal: ``[C]`` True for terminal cells.
        n_actions: ``A >= D``.
        noise: transition noise in [0, 1].
        absorb_prob: absorption probability in [0, 1].
        start: the start cell.
        dead: ``[C]`` True for cells that do not exist (walls), or ``None``.
        stay_reward: ``True`` (default): an outcome that leaves the agent in its cell (a stay
            action, or a move blocked by a wall or the edge) pays the cell's reward again;
            ``False``: it pays 0.

    Returns:
        The model with ``S = C + 1`` states, ``K = D`` rows if ``A == D`` else ``D + 1``, and
        ``M = D + 2`` outcomes per row (intended move, the ``D`` moves, ``s_term``).
    """
    n_cells, n_moves = dest.shape[0], dest.shape[1] - 1
    s_term = n_cells
    n_rows = n_moves if n_actions == n_moves else n_moves + 1
    next_states = np.full((n_cells + 1, n_rows, n_moves + 2), s_term, dtype=np.int64)
    next_probs = np.zeros((n_cells + 1, n_rows, n_moves + 2))
    live = 1.0 - absorb_prob
    for k in range(n_rows):
        next_states[:n_cells, k, 0] = dest[:, k]
        next_states[:n_cells, k, 1 : 1 + n_moves] = dest[:, :n_moves]
        next_probs[:n_cells, k, 0] = live * (1.0 - noise)
        next_probs[:n_cells, k, 1 : 1 + n_moves] = live * noise / n_moves
    next_probs[:n_cells, :, -1] = absorb_prob
    next_rewards = np.append(cell_reward, 0.0)[next_states]
    next_rewards[:, :, -1] = 0.0
    if not stay_reward:
        stays = next_states[:n_cells] == np.arange(n_cells)[:, None, None]
        next_rewards[:n_cells][stays] = 0.0

    terminal = np.append(cell_terminal, True)
    absorbing = np.flatnonzero(terminal)
    walls = np.flatnonzero(dead) if dead is not None else np.zeros(0, dtype=np.int64)
    for states, target in (
        (absorbing, absorbing[:, None]),
        (walls, np.full((walls.size, 1), s_term)),
    ):
        next_states[states] = target[:, :, None]
        next_probs[states] = 0.0
        next_probs[states, :, 0] = 1.0
        next_rewards[states] = 0.0

    action_rows = np.minimum(np.arange(n_actions), n_rows - 1)
    initial = np.zeros(n_cells + 1)
    initial[start] = 1.0
    return TabularMDP(next_states, next_probs, next_rewards, action_rows, initial, terminal)
