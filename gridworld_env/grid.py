"""``DistillGrid-v0``: the random grid-world MDPs of Czarnecki et al. (2019), appendix A.1/A.2."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from gridworld_env import layout as lay
from gridworld_env.base import TabularEnv, check_int, check_no_unknown_kwargs, check_render_mode
from gridworld_env.mdp import TabularMDP, movement_mdp

__all__ = [
    "DistillGridEnv",
    "GridConfig",
    "grid_mdp",
    "grid_observation_table",
    "make_grid_config",
]

N_MOVES = 4
#: (d_row, d_col) of the movement actions L, R, U, D = 0, 1, 2, 3.
MOVES = ((0, -1), (0, 1), (-1, 0), (1, 0))
OBSERVATIONS = ("full", "partial")


def _fraction(name: str, value: Any, upper_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0 or (upper_open and value == 1.0):
        bound = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{name} must be in {bound}, got {value}")
    return value


class GridConfig:
    """Validated settings of a grid-world (everything but the layout itself)."""

    def __init__(
        self,
        width: int,
        height: int,
        observation: str,
        view_size: int,
        n_actions: int,
        noise: float,
        absorb_prob: float,
        wall_prob: float,
        reward_probs: dict[str, float],
        layout_seed: int | None,
        cells: NDArray[np.int8] | None,
        start: tuple[int, int],
        stay_reward: bool = True,
    ) -> None:
        self.width = width
        self.height = height
        self.observation = observation
        self.view_size = view_size
        self.n_actions = n_actions
        self.noise = noise
        self.absorb_prob = absorb_prob
        self.wall_prob = wall_prob
        self.reward_probs = reward_probs
        self.layout_seed = layout_seed
        self.cells = cells
        self.start = start
        self.stay_reward = stay_reward

    def draw_cells(self, rng: np.random.Generator) -> NDArray[np.int8]:
        """Draw a layout from the A.2 generator with ``rng``."""
        return lay.generate_cells(rng, self.width, self.height, self.wall_prob, self.reward_probs)


def make_grid_config(
    width: int | None = None,
    height: int | None = None,
    observation: str = "full",
    view_size: int = 9,
    n_actions: int = 4,
    noise: float = 0.1,
    absorb_prob: float = 0.01,
    wall_prob: float = 1 / 12,
    reward_probs: Mapping[Any, float] | None = None,
    layout_seed: int | None = 0,
    layout: Sequence[str] | None = None,
    stay_reward: bool = True,
) -> GridConfig:
    """Validate the ``DistillGrid-v0`` keyword arguments (see :class:`DistillGridEnv`).

    Raises:
        ValueError: a bad argument, named in the message with the accepted values.
    """
    if observation not in OBSERVATIONS:
        raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
    if not isinstance(stay_reward, (bool, np.bool_)):
        raise ValueError(f"stay_reward must be True or False, got {stay_reward!r}")
    view_size = check_int("view_size", view_size, 3)
    if view_size % 2 == 0:
        raise ValueError(f"view_size must be odd (the agent sits in the centre), got {view_size}")
    n_actions = check_int("n_actions", n_actions, N_MOVES)
    noise = _fraction("noise", noise)
    absorb_prob = _fraction("absorb_prob", absorb_prob)
    probs = lay.normalize_reward_probs(reward_probs)
    wall_prob = lay.check_generator_probs(wall_prob, probs)
    if layout_seed is not None:
        layout_seed = check_int("layout_seed", layout_seed, 0)
    cells: NDArray[np.int8] | None = None
    if layout is not None:
        cells, start = lay.parse_layout(layout)
        map_height, map_width = cells.shape
        for name, given, actual in (("width", width, map_width), ("height", height, map_height)):
            if given is not None and given != actual:
                raise ValueError(
                    f"{name}={given} disagrees with the hand-written layout, which has "
                    f"{name} {actual}; omit {name} or make them agree"
                )
        width, height = map_width, map_height
    else:
        width = 20 if width is None else check_int("width", width, 3)
        height = 20 if height is None else check_int("height", height, 3)
        start = (height // 2, width // 2)
    return GridConfig(
        width=width,
        height=height,
        observation=observation,
        view_size=view_size,
        n_actions=n_actions,
        noise=noise,
        absorb_prob=absorb_prob,
        wall_prob=wall_prob,
        reward_probs=probs,
        layout_seed=layout_seed,
        cells=cells,
        start=start,
        stay_reward=bool(stay_reward),
    )


def grid_mdp(
    cells: NDArray[np.int8],
    start: tuple[int, int],
    n_actions: int = 4,
    noise: float = 0.1,
    absorb_prob: float = 0.01,
    stay_reward: bool = True,
) -> TabularMDP:
    """Build the exact model of a grid layout (SPEC 1.1).

    States: cell ``row * W + col`` is state ``row * W + col``; ``s_term`` is state ``W * H``.
    Rows: one per movement action L, R, U, D, plus one shared "stay" row for every extra action.
    Each row has ``M = 6`` outcomes: the intended move (probability ``(1 - absorb) (1 - noise)``),
    each of the four moves (``(1 - absorb) noise / 4`` each) and ``s_term`` (``absorb``, reward 0).
    The reward of an outcome is the reward of the landing cell. Terminal cells and ``s_term`` are
    absorbing with reward 0; walls move to ``s_term`` with probability 1 and reward 0.

    Args:
        cells: ``[H, W]`` cell codes (see :mod:`gridworld_env.layout`).
        start: ``(row, col)`` of the start cell.
        n_actions: ``A >= 4``.
        noise: transition noise eta.
        absorb_prob: probability of absorption into ``s_term`` after every action.
        stay_reward: whether an outcome that leaves the agent in its cell pays the cell's reward
            again (:func:`~gridworld_env.mdp.movement_mdp`).

    Returns:
        The model, with ``n_rows = 4`` if ``A == 4`` else 5.
    """
    height, width = cells.shape
    n_cells = height * width
    rows, cols = np.divmod(np.arange(n_cells), width)
    flat = cells.reshape(-1)
    # dest[s, d]: where move d leads from cell s (stays put at edges and walls); d = 4 is "stay".
    dest = np.empty((n_cells, N_MOVES + 1), dtype=np.int64)
    for d, (d_row, d_col) in enumerate(MOVES):
        r, c = rows + d_row, cols + d_col
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        target = np.where(inside, r * width + c, 0)
        blocked = ~inside | (flat[target] == lay.WALL)
        dest[:, d] = np.where(blocked, np.arange(n_cells), target)
    dest[:, N_MOVES] = np.arange(n_cells)

    return movement_mdp(
        dest,
        lay.CELL_REWARD[flat],
        lay.CELL_TERMINAL[flat],
        n_actions,
        noise,
        absorb_prob,
        start=start[0] * width + start[1],
        dead=flat == lay.WALL,
        stay_reward=stay_reward,
    )


def grid_observation_table(
    cells: NDArray[np.int8], observation: str, view_size: int
) -> NDArray[np.int64]:
    """Observation of every state: ``[S]`` (full) or ``[S, view_size**2]`` (partial).

    Rows of walls and ``s_term`` are -1. A partial observation is the row-major window of cell
    codes centred on the agent, with 0 (wall) outside the grid.
    """
    height, width = cells.shape
    n_cells = height * width
    wall_or_term = np.append(cells.reshape(-1) == lay.WALL, True)
    if observation == "full":
        table = np.append(np.arange(n_cells), -1)
        table[wall_or_term] = -1
        return table
    half = view_size // 2
    padded = np.pad(cells, half, constant_values=lay.WALL)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (view_size, view_size))
    table = np.full((n_cells + 1, view_size * view_size), -1, dtype=np.int64)
    table[:n_cells] = windows.reshape(n_cells, view_size * view_size)
    table[wall_or_term] = -1
    return table


class DistillGridEnv(TabularEnv):
    """Random grid-world MDPs from "Distilling Policy Distillation" (Czarnecki et al., 2019).

    ## Description

    A ``W x H`` grid (20 x 20 by default) of empty cells, walls, -1 penalty cells and terminal
    cells worth +10, +5, -5 or -10, drawn by the generator of the paper's appendix A.2 (or given as
    a hand-written map). The agent starts in the centre.

    ## Action Space

    ``Discrete(n_actions)``: L, R, U, D = 0, 1, 2, 3 move the agent (col - 1, col + 1, row - 1,
    row + 1); actions 4 and above leave it in place (paper Fig. 4 uses up to 4000 actions). A move
    off the grid or into a wall leaves the agent in place.

    ## Observation Space

    - ``observation="full"``: ``Discrete(W * H)``, the agent's cell ``row * W + col``.
    - ``observation="partial"``: ``MultiDiscrete([7] * view_size**2)``, the row-major window of
      cell codes centred on the agent: 0 wall or outside, 1 empty, 2 (-1), 3 (+10, terminal),
      4 (+5, terminal), 5 (-5, terminal), 6 (-10, terminal).

    ## Starting State

    The centre cell ``(H // 2, W // 2)`` (or the ``S`` of a hand-written map).

    ## Transitions and Rewards

    After every action: with probability ``absorb_prob`` the agent moves to the absorbing state
    ``s_term`` (reward 0, ``terminated=True``, the observation repeats the last cell's). Otherwise
    the intended move happens with probability ``1 - noise`` and each of the four moves with
    ``noise / 4``. The reward is that of the cell the agent lands in (also when it stays on a
    -1 cell; with ``stay_reward=False`` a step that leaves the agent in its cell pays 0).

    ## Episode End

    Landing on a terminal cell or absorption sets ``terminated=True``. ``truncated`` is only set by
    the registered time limit (``max_episode_steps=1000``). ``info["state"]`` is the true state
    (``W * H`` for ``s_term``).

    ## Arguments

    ```python
    gym.make("DistillGrid-v0", width=None, height=None, observation="full", view_size=9,
             n_actions=4, noise=0.1, absorb_prob=0.01, wall_prob=1/12, reward_probs=None,
             layout_seed=0, layout=None, render_mode=None, stay_reward=True)
    ```

    ``stay_reward``: ``True`` (the package's reading of the appendix): a step that leaves the
    agent in its cell (actions 4 and above, or a move blocked by a wall or the edge) pays the
    cell's reward again, so standing on a -1 cell costs -1 per step; ``False``: it pays 0. The
    paper does not say; with ``n_actions=4000`` almost every action stays, which makes the choice
    matter (``Readings.stay_reward``).

    ``layout_seed``: an integer fixes the layout (drawn with ``np.random.default_rng(seed)``);
    ``None`` draws it from the env's ``np_random`` at the first ``reset`` and keeps it.
    ``layout``: a hand-written map (``#`` wall, ``S`` start, ``.`` empty, ``-`` -1, ``G`` +10,
    ``g`` +5, ``x`` -5, ``X`` -10; terminals in upper/lower case as listed).

    ## Exact model

    ``env.unwrapped.mdp`` (:class:`~gridworld_env.TabularMDP`), ``env.unwrapped.layout`` (tuple of
    strings) and ``env.unwrapped.observation_of_state``.

    ## Version History

    - v0: initial release; ``stay_reward`` added (default unchanged).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        width: int | None = None,
        height: int | None = None,
        observation: str = "full",
        view_size: int = 9,
        n_actions: int = 4,
        noise: float = 0.1,
        absorb_prob: float = 0.01,
        wall_prob: float = 1 / 12,
        reward_probs: Mapping[Any, float] | None = None,
        layout_seed: int | None = 0,
        layout: Sequence[str] | None = None,
        render_mode: str | None = None,
        stay_reward: bool = True,
        **unknown: Any,
    ) -> None:
        check_no_unknown_kwargs(type(self), unknown)
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.config = make_grid_config(
            width,
            height,
            observation,
            view_size,
            n_actions,
            noise,
            absorb_prob,
            wall_prob,
            reward_probs,
            layout_seed,
            layout,
            stay_reward,
        )
        cfg = self.config
        self.action_space = spaces.Discrete(cfg.n_actions)
        if cfg.observation == "full":
            self.observation_space: spaces.Space = spaces.Discrete(cfg.width * cfg.height)
        else:
            self.observation_space = spaces.MultiDiscrete(
                np.full(cfg.view_size**2, lay.N_CELL_CODES, dtype=np.int64)
            )
        self._cells: NDArray[np.int8] | None = None
        if cfg.cells is not None:
            self._use_cells(cfg.cells)
        elif cfg.layout_seed is not None:
            self._use_cells(cfg.draw_cells(np.random.default_rng(cfg.layout_seed)))

    def _use_cells(self, cells: NDArray[np.int8]) -> None:
        cfg = self.config
        self._cells = cells
        self._set_model(
            grid_mdp(cells, cfg.start, cfg.n_actions, cfg.noise, cfg.absorb_prob, cfg.stay_reward),
            grid_observation_table(cells, cfg.observation, cfg.view_size),
        )

    def _prepare_reset(self) -> None:
        if self._cells is None:
            self._use_cells(self.config.draw_cells(self.np_random))

    @property
    def cells(self) -> NDArray[np.int8] | None:
        """``[H, W]`` cell codes of the layout in use (``None`` before a deferred draw)."""
        return self._cells

    @property
    def layout(self) -> tuple[str, ...] | None:
        """The layout as a tuple of strings (pass it back as ``layout=`` to rebuild the MDP)."""
        if self._cells is None:
            return None
        return lay.cells_to_strings(self._cells, self.config.start)

    @property
    def agent_position(self) -> tuple[int, int] | None:
        """``(row, col)`` of the agent's cell (its last cell after absorption), or ``None``."""
        if self._state < 0:
            return None
        return divmod(self._obs_state, self.config.width)

    def render(self) -> Any:
        """Render as text (``"ansi"``) or a Fig. 7-style picture (``"rgb_array"``)."""
        if self.render_mode is None:
            return None
        from gridworld_env import rendering

        cells = self.cells
        if cells is None:
            raise RuntimeError("nothing to render before the layout is drawn; call reset() first")
        agent = self.agent_position
        if self.render_mode == "ansi":
            return rendering.render_ansi(cells, self.config.start, agent)
        view = self.config.view_size if self.config.observation == "partial" else None
        return rendering.render_rgb(cells, self.config.start, agent, view)
