"""The native vector env of DistillGrid-v0: many random grid MDPs at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from numpy.typing import NDArray

from gridworld_env import layout as lay
from gridworld_env.base import check_no_unknown_kwargs, check_render_mode
from gridworld_env.grid import GridConfig, grid_mdp, grid_observation_table, make_grid_config
from gridworld_env.mdp import TabularMDP
from gridworld_env.registration import MAX_EPISODE_STEPS
from gridworld_env.vector.base import INDEX_MODES, TabularVectorEnv

__all__ = [
    "DistillGridVectorEnv",
]


class DistillGridVectorEnv(TabularVectorEnv):
    """``B`` random grid-world MDPs of ``DistillGrid-v0`` in one vector env.

    ```python
    envs = gym.make_vec("DistillGrid-v0", num_envs=1000, vectorization_mode="vector_entry_point",
                        layout_seed=0, observation="index", noise=0.1)
    obs, infos = envs.reset(seed=0)
    obs, rewards, terminations, truncations, infos = envs.step(actions)   # actions: [1000] int
    ```

    ## Arguments

    The keyword arguments of ``DistillGrid-v0`` (validated by the same function), plus:

    - ``num_envs``: ``B >= 1``.
    - ``layout_seed``: ``base`` (default 0): sub-env ``i`` uses layout seed ``base + i``, i.e.
      the layout of ``gym.make("DistillGrid-v0", layout_seed=base + i)`` (same generator, same
      stream). ``None``: at the first ``reset`` an integer ``base`` is drawn from the vector
      env's ``np_random`` (so ``reset(seed=s)`` fixes it) and then kept; until then the models
      are not available. :attr:`layout_seeds` gives the seeds in use.
    - ``layout``: one hand-written map shared by every sub-env (overrides ``layout_seed``).
    - ``layouts``: a list of ``B`` hand-written maps of equal size, one per sub-env.
    - ``observation``: ``"full"`` (``[B]``, the agent's cell), ``"partial"`` (``[B, D]`` cell
      codes of the ``view_size`` window, ``D = view_size**2``), ``"index"`` (``[B]`` table indices
      of the full observations, as ``TableIndexWrapper`` over ``observation="full"`` gives them:
      each sub-env numbers its own reachable cells) or ``"partial_index"`` (``[B]`` table indices
      of the partial observations, as ``TableIndexWrapper`` over ``observation="partial"``:
      aliased windows share an index). With index observations the single observation space is
      ``Discrete(max over sub-envs of n_indices)``; sub-env ``i`` only emits indices below
      ``models.n_indices[i]``. Index modes need fixed layouts (not ``layout_seed=None``).
    - ``max_episode_steps``: time limit per sub-env (default 1000, as the registered id; ``None``
      for none). ``gym.make_vec`` passes the registered value.
    - ``render_mode``: ``None``, ``"ansi"`` or ``"rgb_array"``; :meth:`render` returns one frame
      per sub-env.
    - ``parallel``: ``None`` (automatic: numba threads from ``PARALLEL_MIN_ENVS = 512``
      sub-envs on), ``True``, ``False``; results do not depend on it.
    """

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": ["ansi", "rgb_array"],
        "render_fps": 4,
    }

    def __init__(
        self,
        num_envs: int = 1,
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
        layouts: Sequence[Sequence[str]] | None = None,
        max_episode_steps: int | None = MAX_EPISODE_STEPS,
        render_mode: str | None = None,
        parallel: bool | None = None,
        stay_reward: bool = True,
        **unknown: Any,
    ) -> None:
        check_no_unknown_kwargs(type(self), unknown)
        check_render_mode(render_mode, self.metadata["render_modes"])
        modes = ("full", "partial", *INDEX_MODES)
        if observation not in modes:
            raise ValueError(f"observation must be one of {modes}, got {observation!r}")
        base_observation = "partial" if observation in ("partial", "partial_index") else "full"
        if layout is not None and layouts is not None:
            raise ValueError("pass either layout (one shared map) or layouts (one per sub-env)")
        self.config: GridConfig = make_grid_config(
            width,
            height,
            base_observation,
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
        index = observation in INDEX_MODES
        native: spaces.Space | None = None
        if not index:
            native = (
                spaces.Discrete(cfg.width * cfg.height)
                if observation == "full"
                else spaces.MultiDiscrete(np.full(cfg.view_size**2, lay.N_CELL_CODES, np.int64))
            )
        self.observation = observation
        self._setup(
            num_envs, cfg.n_actions, native, index, max_episode_steps, render_mode, parallel
        )
        self._cells: list[NDArray[np.int8]] | None = None
        self._starts: list[tuple[int, int]] = []
        # Models of the distinct layouts, keyed by id() of their cell array: sub-envs that share
        # a map (a shared `layout=`, or repeats in `layouts=`) share one model.
        self._model_cache: dict[int, tuple[Any, ...]] = {}
        self._layout_seeds: tuple[int, ...] | None = None
        if layouts is not None:
            self._use_layouts(layouts, width, height)
        elif cfg.cells is not None:
            self._cells = [cfg.cells] * self.num_envs
            self._starts = [cfg.start] * self.num_envs
        elif cfg.layout_seed is not None:
            self._draw_layouts(cfg.layout_seed)
        elif index:
            raise ValueError(
                f"observation={observation!r} needs fixed layouts to enumerate the table indices "
                "up front: pass an integer layout_seed, layout or layouts"
            )
        if self._cells is not None:
            self._install()

    def _use_layouts(self, layouts: Any, width: Any, height: Any) -> None:
        if isinstance(layouts, str) or not isinstance(layouts, Sequence):
            raise ValueError(
                f"layouts must be a list of num_envs={self.num_envs} maps (lists of strings), "
                f"got {type(layouts).__name__}"
            )
        if len(layouts) != self.num_envs:
            raise ValueError(
                f"layouts must hold one map per sub-env: num_envs={self.num_envs}, got "
                f"{len(layouts)} maps"
            )
        cfg = self.config
        cells, starts = [], []
        parsed_maps: dict[tuple[str, ...], tuple[Any, Any]] = {}  # identical maps share cells
        for i, one in enumerate(layouts):
            key = tuple(one) if isinstance(one, Sequence) and not isinstance(one, str) else None
            if key is not None and key in parsed_maps:
                cells.append(parsed_maps[key][0])
                starts.append(parsed_maps[key][1])
                continue
            try:
                parsed = make_grid_config(width=width, height=height, layout=one)
            except ValueError as err:
                raise type(err)(f"layouts[{i}]: {err}") from None
            assert parsed.cells is not None
            if parsed.cells.shape != (cfg.height, cfg.width) and i > 0:
                raise ValueError(
                    f"layouts must all have the same size: layouts[0] is "
                    f"{cfg.height}x{cfg.width} (rows x columns), layouts[{i}] is "
                    f"{parsed.cells.shape[0]}x{parsed.cells.shape[1]}"
                )
            if i == 0:
                cfg.height, cfg.width = parsed.cells.shape
                self._set_native_space()
            cells.append(parsed.cells)
            starts.append(parsed.start)
            if key is not None:
                parsed_maps[key] = (parsed.cells, parsed.start)
        self._cells, self._starts = cells, starts

    def _install(self) -> None:
        super()._install()
        self._model_cache.clear()  # only needed while the tables are built (~0.2 MB per map)

    def _set_native_space(self) -> None:
        cfg = self.config
        if self.observation == "full":
            self._set_observation_space(spaces.Discrete(cfg.width * cfg.height))

    def _draw_layouts(self, base: int) -> None:
        cfg = self.config
        self._layout_seeds = tuple(base + i for i in range(self.num_envs))
        self._cells = [cfg.draw_cells(np.random.default_rng(seed)) for seed in self._layout_seeds]
        self._starts = [cfg.start] * self.num_envs

    def _prepare_reset(self) -> None:
        if self._cells is None:
            self._draw_layouts(int(self.np_random.integers(0, 2**31)))
            self._install()

    def _sub_model(self, i: int) -> tuple[TabularMDP, NDArray[np.int64]]:
        assert self._cells is not None
        cfg = self.config
        cells, start = self._cells[i], self._starts[i]
        hit = self._model_cache.get(id(cells))
        if hit is not None and hit[0] is cells and hit[1] == start:
            return hit[2], hit[3]
        mdp = grid_mdp(cells, start, cfg.n_actions, cfg.noise, cfg.absorb_prob, cfg.stay_reward)
        table = grid_observation_table(cells, cfg.observation, cfg.view_size)
        self._model_cache[id(cells)] = (cells, start, mdp, table)
        return mdp, table

    def _select_own(self, source: TabularVectorEnv, idx: NDArray[np.int64]) -> None:
        assert isinstance(source, DistillGridVectorEnv) and source._cells is not None
        self._cells = [source._cells[i] for i in idx]
        self._starts = [source._starts[i] for i in idx]
        seeds = source._layout_seeds
        self._layout_seeds = None if seeds is None else tuple(int(seeds[i]) for i in idx)
        self._model_cache = {}

    @property
    def layout_seeds(self) -> tuple[int, ...] | None:
        """Layout seed of each sub-env (``None`` for hand-written maps or before the draw)."""
        return self._layout_seeds

    @property
    def cells(self) -> tuple[NDArray[np.int8], ...]:
        """``[H, W]`` cell codes of each sub-env's layout."""
        self._require_models()
        assert self._cells is not None
        return tuple(self._cells)

    @property
    def layouts(self) -> tuple[tuple[str, ...], ...]:
        """Each sub-env's layout as a tuple of strings (``layout=`` of the single env)."""
        return tuple(
            lay.cells_to_strings(cells, start)
            for cells, start in zip(self.cells, self._starts, strict=True)
        )

    def _render_one(self, i: int, state: int, obs_state: int) -> Any:
        from gridworld_env import rendering

        cfg = self.config
        assert self._cells is not None
        agent = divmod(obs_state, cfg.width)
        if self.render_mode == "ansi":
            return rendering.render_ansi(self._cells[i], self._starts[i], agent)
        view = cfg.view_size if cfg.observation == "partial" else None
        return rendering.render_rgb(self._cells[i], self._starts[i], agent, view)
