"""Tabular teachers for many MDPs at once: the tables, their policies, saving and loading."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from distill_agents import planning
from distill_agents.storage import ArraySpec, FileFormatError, load_arrays, save_arrays

__all__ = [
    "FILE_KIND",
    "NOISE_STREAM",
    "SIMPLEX_ATOL",
    "TEACHER_KINDS",
    "TabularTeacher",
    "Teachers",
]


#: The teacher kinds a :class:`Teachers` may hold.
TEACHER_KINDS = ("q_learning", "a2c", "optimal", "adversarial", "custom")
#: ``kind`` of the ``.npz`` files written by :meth:`Teachers.save`.
FILE_KIND = "teachers"
#: First ``spawn_key`` entry of the per-MDP random streams of :func:`noisy_teachers`.
NOISE_STREAM = 2
#: Tolerance on the row sums of teacher probabilities.
SIMPLEX_ATOL = 1e-6


def _readonly(array: ArrayLike, dtype: Any) -> NDArray:
    out: NDArray = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


def _json_copy(value: Any, name: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be JSON-serialisable, got {value!r} ({err})") from None


# ------------------------------------------------------------------------ one MDP's teacher
class TabularTeacher:
    """The teacher of one MDP over its table indices: what students query.

    Args:
        probs: ``[n, A]`` action probabilities per table index.
        values: ``[n]`` ``V_pi`` per table index, or ``None`` (the teacher has no values).
        q_values: ``[n, A]`` action values, or ``None``.
        kind: the teacher kind (for messages).

    Example:
        ```python
        teacher = Teachers.load("runs/t/teachers.npz").teacher(0)
        teacher.action_probs(obs)   # [A]
        teacher.value(obs)          # float
        ```
    """

    def __init__(
        self,
        probs: ArrayLike,
        values: ArrayLike | None = None,
        q_values: ArrayLike | None = None,
        kind: str = "custom",
    ) -> None:
        self.probs = _readonly(probs, np.float64)
        if self.probs.ndim != 2 or self.probs.shape[0] < 1 or self.probs.shape[1] < 1:
            raise ValueError(f"probs must have shape [n, A] with n, A >= 1, got {self.probs.shape}")
        _check_simplex(self.probs, "probs")
        n = self.probs.shape[0]
        self.values = None if values is None else _readonly(values, np.float64)
        if self.values is not None and self.values.shape != (n,):
            raise ValueError(f"values must have shape [n] = ({n},), got {self.values.shape}")
        self.q_values = None if q_values is None else _readonly(q_values, np.float64)
        if self.q_values is not None and self.q_values.shape != self.probs.shape:
            raise ValueError(
                f"q_values must have the shape of probs {self.probs.shape}, got "
                f"{self.q_values.shape}"
            )
        self.kind = kind

    @property
    def n_observations(self) -> int:
        """Number of table indices ``n``."""
        return int(self.probs.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return int(self.probs.shape[1])

    @property
    def has_values(self) -> bool:
        """Whether :meth:`value` is available."""
        return self.values is not None

    def _index(self, obs: Any) -> int:
        try:
            index = int(obs)
        except (TypeError, ValueError):
            raise ValueError(
                f"obs must be a table index in [0, {self.n_observations}), got {obs!r}"
            ) from None
        if not 0 <= index < self.n_observations or index != obs:
            raise ValueError(
                f"obs must be a table index in [0, {self.n_observations}), got {obs!r}"
            )
        return index

    def action_probs(self, obs: Any) -> NDArray[np.float64]:
        """``pi(.|obs)``, ``[A]`` (a read-only view)."""
        return self.probs[self._index(obs)]

    def value(self, obs: Any) -> float:
        """``V_pi(obs)``.

        Raises:
            ValueError: the teacher has no values, or a bad ``obs``.
        """
        if self.values is None:
            raise ValueError(
                f"this {self.kind} teacher has no values V_pi; methods that need them "
                "(teacher_v_reward, td_v_teacher, +Vcond) cannot use it"
            )
        return float(self.values[self._index(obs)])

    def action_values(self, obs: Any) -> NDArray[np.float64]:
        """``Q(obs, .)``, ``[A]``.

        Raises:
            ValueError: the teacher has no action values, or a bad ``obs``.
        """
        if self.q_values is None:
            raise ValueError(f"this {self.kind} teacher has no action values Q")
        return self.q_values[self._index(obs)]


def _check_simplex(probs: NDArray, name: str) -> None:
    if not (np.all(np.isfinite(probs)) and np.all(probs >= 0.0)):
        raise ValueError(f"{name} must hold finite, non-negative probabilities")
    sums = probs.sum(axis=-1)
    bad = np.abs(sums - 1.0) > SIMPLEX_ATOL
    if bad.any():
        where = tuple(int(x) for x in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} rows must sum to 1 (probabilities over actions); the row at {where} sums "
            f"to {float(sums[where])!r}"
        )


# ------------------------------------------------------------------------- the container
@dataclass(frozen=True, eq=False)
class Teachers:
    """Teachers of ``B`` MDPs over their table indices (read-only arrays).

    Attributes:
        kind: one of :data:`TEACHER_KINDS`.
        probs: ``[B, N, A]`` float64 action probabilities; rows ``o >= n_indices[i]`` are
            uniform padding.
        n_indices: ``[B]`` int64, number of table indices of each MDP (``1 <= n_indices <= N``).
        values: ``[B, N]`` float64 ``V_pi`` (0 in padding rows), or ``None``.
        q_values: ``[B, N, A]`` float64 action values, or ``None``.
        acting: ``[B, N]`` bool, the indices at which the agent acts (observed in a reachable
            non-terminal state; terminal cells have an index but no decision). Default: every
            index below ``n_indices``.
        layout_seeds: ``[B]`` int64 layout seed of each MDP, -1 where none (hand-written or
            seedless environments). Default: all -1.
        env_id: Gymnasium id of the environment, or ``None``.
        env_kwargs: JSON kwargs of the single env shared by all MDPs (without the per-MDP
            ``layout_seed``; see :meth:`env_kwargs_for`).
        temperature: the policy temperature (``None`` where it does not apply).
        noise: share of acting indices given a wrong action (:func:`noisy_teachers`), 0 if none.
        settings: JSON record of how the teachers were made (training settings, seeds, ...).
    """

    kind: str
    probs: NDArray[np.float64]
    n_indices: NDArray[np.int64]
    values: NDArray[np.float64] | None = None
    q_values: NDArray[np.float64] | None = None
    acting: NDArray[np.bool_] | None = None
    layout_seeds: NDArray[np.int64] | None = None
    env_id: str | None = None
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    temperature: float | None = None
    noise: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.kind not in TEACHER_KINDS:
            raise ValueError(f"kind must be one of {TEACHER_KINDS}, got {self.kind!r}")
        probs = _readonly(self.probs, np.float64)
        set_(self, "probs", probs)
        if probs.ndim != 3 or min(probs.shape) < 1:
            raise ValueError(f"probs must have shape [B, N, A] with sizes >= 1, got {probs.shape}")
        b, n, _ = probs.shape
        set_(self, "n_indices", _readonly(self.n_indices, np.int64))
        if self.n_indices.shape != (b,):
            raise ValueError(f"n_indices must have shape [B] = ({b},), got {self.n_indices.shape}")
        if self.n_indices.min() < 1 or self.n_indices.max() > n:
            raise ValueError(
                f"n_indices must lie in [1, N] = [1, {n}], got values in "
                f"[{self.n_indices.min()}, {self.n_indices.max()}]"
            )
        _check_simplex(probs, "probs")
        if self.values is not None:
            set_(self, "values", _readonly(self.values, np.float64))
            assert self.values is not None
            if self.values.shape != (b, n):
                raise ValueError(
                    f"values must have shape [B, N] = {(b, n)}, got {self.values.shape}"
                )
            if not np.all(np.isfinite(self.values)):
                raise ValueError("values must be finite")
        if self.q_values is not None:
            set_(self, "q_values", _readonly(self.q_values, np.float64))
            assert self.q_values is not None
            if self.q_values.shape != probs.shape:
                raise ValueError(
                    f"q_values must have the shape of probs {probs.shape}, got "
                    f"{self.q_values.shape}"
                )
            if not np.all(np.isfinite(self.q_values)):
                raise ValueError("q_values must be finite")
        inside = np.arange(n)[None, :] < self.n_indices[:, None]
        acting = inside if self.acting is None else self.acting
        set_(self, "acting", _readonly(acting, np.bool_))
        assert self.acting is not None
        if self.acting.shape != (b, n):
            raise ValueError(f"acting must have shape [B, N] = {(b, n)}, got {self.acting.shape}")
        if (self.acting & ~inside).any():
            raise ValueError("acting must be False at indices >= n_indices (padding rows)")
        seeds = np.full(b, -1) if self.layout_seeds is None else self.layout_seeds
        set_(self, "layout_seeds", _readonly(seeds, np.int64))
        assert self.layout_seeds is not None
        if self.layout_seeds.shape != (b,) or self.layout_seeds.min() < -1:
            raise ValueError(
                f"layout_seeds must have shape [B] = ({b},) with values >= -1, got "
                f"{self.layout_seeds.shape}"
            )
        if self.env_id is not None and not isinstance(self.env_id, str):
            raise ValueError(f"env_id must be a string or None, got {self.env_id!r}")
        if not isinstance(self.env_kwargs, Mapping):
            raise ValueError(f"env_kwargs must be a mapping, got {type(self.env_kwargs).__name__}")
        set_(self, "env_kwargs", _json_copy(dict(self.env_kwargs), "env_kwargs"))
        set_(self, "settings", _json_copy(dict(self.settings), "settings"))
        if self.temperature is not None:
            if isinstance(self.temperature, bool) or not (float(self.temperature) >= 0.0):
                raise ValueError(f"temperature must be None or >= 0, got {self.temperature!r}")
            set_(self, "temperature", float(self.temperature))
        if isinstance(self.noise, bool) or not 0.0 <= float(self.noise) < 1.0:
            raise ValueError(f"noise must be a number in [0, 1), got {self.noise!r}")
        set_(self, "noise", float(self.noise))

    # ------------------------------------------------------------------ sizes
    @property
    def n_mdps(self) -> int:
        """Number of MDPs ``B``."""
        return int(self.probs.shape[0])

    @property
    def n_index(self) -> int:
        """Table rows per MDP ``N`` (the largest ``n_indices``)."""
        return int(self.probs.shape[1])

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return int(self.probs.shape[2])

    def __len__(self) -> int:
        return self.n_mdps

    def _mdp(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ValueError(f"i must be an MDP index in [0, {self.n_mdps}), got {i!r}")
        if not 0 <= i < self.n_mdps:
            raise ValueError(f"i must be an MDP index in [0, {self.n_mdps}), got {i}")
        return int(i)

    # ------------------------------------------------------------------ access
    def teacher(self, i: int) -> TabularTeacher:
        """The teacher of MDP ``i`` over its ``n_indices[i]`` table indices."""
        i = self._mdp(i)
        n = int(self.n_indices[i])
        return TabularTeacher(
            self.probs[i, :n],
            None if self.values is None else self.values[i, :n],
            None if self.q_values is None else self.q_values[i, :n],
            kind=self.kind,
        )

    def state_policy(self, i: int, state_to_index: ArrayLike) -> NDArray[np.float64]:
        """MDP ``i``'s teacher as a state policy ``[S, A]`` for exact evaluation.

        Args:
            i: the MDP.
            state_to_index: ``[S]`` int, the table index of each state (-1: none), e.g.
                ``TableIndexWrapper(env).state_to_index`` or ``envs.models.state_to_index[i]``.
        """
        i = self._mdp(i)
        index = np.asarray(state_to_index)
        if index.size and index.max() >= self.n_indices[i]:
            raise ValueError(
                f"state_to_index must hold -1 or indices below n_indices[{i}] = "
                f"{self.n_indices[i]}, got {index.max()}"
            )
        return planning.observation_policy_to_state_policy(self.probs[i], index)

    def state_policies(self, state_to_index: ArrayLike) -> NDArray[np.float64]:
        """Every teacher as a state policy ``[B, S, A]`` (``state_to_index``: ``[B, S]``)."""
        index = np.asarray(state_to_index)
        if index.ndim != 2 or index.shape[0] != self.n_mdps:
            raise ValueError(
                f"state_to_index must have shape [B, S] with B = {self.n_mdps}, got {index.shape}"
            )
        if (index >= self.n_indices[:, None]).any():
            raise ValueError("state_to_index must hold -1 or indices below each MDP's n_indices")
        return planning.observation_policy_to_state_policy(self.probs, index)

    def env_kwargs_for(self, i: int) -> dict[str, Any]:
        """The single-env kwargs that rebuild MDP ``i`` (``env_kwargs`` plus its layout seed)."""
        i = self._mdp(i)
        kwargs = dict(self.env_kwargs)
        if self.layout_seeds is not None and self.layout_seeds[i] >= 0 and "layout" not in kwargs:
            kwargs["layout_seed"] = int(self.layout_seeds[i])
        return kwargs

    def make_env(self, i: int, **extra: Any) -> Any:
        """``TableIndexWrapper(gym.make(env_id, **env_kwargs_for(i), **extra))``: MDP ``i``'s env.

        Its observations are this teacher's table indices (checked against ``n_indices``).
        """
        import gymnasium as gym

        import gridworld_env
        from gridworld_env import TableIndexWrapper

        del gridworld_env  # imported to register the ids
        if self.env_id is None:
            raise ValueError("these teachers record no env_id; build the environment yourself")
        env = TableIndexWrapper(gym.make(self.env_id, **self.env_kwargs_for(i), **extra))
        n = int(env.observation_space.n)  # type: ignore[attr-defined]
        if n != self.n_indices[i]:
            raise ValueError(
                f"MDP {i}'s environment has {n} table indices but its teacher has "
                f"{self.n_indices[i]}: the environment does not match these teachers"
            )
        return env

    # ------------------------------------------------------------------ combining
    def replace(self, **changes: Any) -> Teachers:
        """A copy with some fields changed (validated again)."""
        fields = {
            name: getattr(self, name)
            for name in (
                "kind",
                "probs",
                "n_indices",
                "values",
                "q_values",
                "acting",
                "layout_seeds",
                "env_id",
                "env_kwargs",
                "temperature",
                "noise",
                "settings",
            )
        }
        fields.update(changes)
        return Teachers(**fields)

    def subset(self, lo: int, hi: int) -> Teachers:
        """The teachers of MDPs ``lo .. hi - 1`` (same table width ``N`` and metadata)."""
        if not 0 <= lo < hi <= self.n_mdps:
            raise ValueError(f"need 0 <= lo < hi <= n_mdps = {self.n_mdps}, got lo={lo}, hi={hi}")

        def part(array: NDArray | None) -> NDArray | None:
            return None if array is None else array[lo:hi]

        return self.replace(
            probs=self.probs[lo:hi],
            n_indices=self.n_indices[lo:hi],
            values=part(self.values),
            q_values=part(self.q_values),
            acting=part(self.acting),
            layout_seeds=part(self.layout_seeds),
        )

    @classmethod
    def from_policy(
        cls,
        teacher: Any,
        env_id: str,
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> Teachers:
        """Wrap one teacher of any kind as a batch of one, for the batched runner.

        Args:
            teacher: anything :func:`distill_agents.distill.teacher_tables` accepts: an object
                with ``action_probs(obs)`` (and ``value(obs)``) over table indices, such as
                :class:`~distill_agents.integrations.sb3.SB3Teacher` or a
                :class:`~distill_agents.policy.TabularPolicy`, or an ``[n, A]`` array.
            env_id: the environment id; its kwargs must fix the layout (an integer
                ``layout_seed`` or a ``layout``).
            env_kwargs: the single env's kwargs (JSON); the teacher's table indices are those
                :class:`~gridworld_env.TableIndexWrapper` gives on that env.

        Returns:
            ``Teachers`` of kind ``"custom"`` with ``B = 1``.
        """
        import gymnasium as gym

        from distill_agents.distill import teacher_tables

        kwargs = dict(env_kwargs or {})
        vector_kwargs = dict(kwargs)
        partial = vector_kwargs.pop("observation", "full") == "partial"
        envs: Any = gym.make_vec(  # our native vector env: it has .models
            env_id,
            num_envs=1,
            vectorization_mode="vector_entry_point",
            observation="partial_index" if partial else "index",
            **vector_kwargs,
        )
        n_obs = int(envs.models.n_indices[0])
        probs, values = teacher_tables(teacher, n_obs, int(envs.single_action_space.n))
        layout_seed = kwargs.pop("layout_seed", None)
        return cls(
            kind="custom",
            probs=probs[None],
            n_indices=np.array([n_obs]),
            values=None if values is None else values[None],
            layout_seeds=None if layout_seed is None else np.array([layout_seed]),
            env_id=env_id,
            env_kwargs=kwargs,
            settings={"source": type(teacher).__name__},
        )

    @classmethod
    def concatenate(cls, parts: Iterable[Teachers]) -> Teachers:
        """Join teachers of consecutive chunks of MDPs (same kind, actions and settings).

        Tables are padded to the largest ``N`` (uniform probabilities, zero values).
        """
        parts = list(parts)
        if not parts:
            raise ValueError("parts must hold at least one Teachers")
        first = parts[0]
        for name in ("kind", "env_id", "env_kwargs", "temperature", "noise", "n_actions"):
            for p in parts[1:]:
                if getattr(p, name) != getattr(first, name):
                    raise ValueError(
                        f"parts must share {name}: {getattr(first, name)!r} != {getattr(p, name)!r}"
                    )
        for name in ("values", "q_values"):
            if len({getattr(p, name) is None for p in parts}) > 1:
                raise ValueError(f"parts must all have {name} or all lack them")
        n = max(p.n_index for p in parts)

        def pad(array: NDArray, fill: float) -> NDArray:
            width = [(0, 0)] * array.ndim
            width[1] = (0, n - array.shape[1])
            return np.pad(array, width, constant_values=fill)

        a = first.n_actions
        assert all(p.acting is not None for p in parts)
        return cls(
            kind=first.kind,
            probs=np.concatenate([pad(p.probs, 1.0 / a) for p in parts]),
            n_indices=np.concatenate([p.n_indices for p in parts]),
            values=None
            if first.values is None
            else np.concatenate([pad(p.values, 0.0) for p in parts]),  # type: ignore[arg-type]
            q_values=None
            if first.q_values is None
            else np.concatenate([pad(p.q_values, 0.0) for p in parts]),  # type: ignore[arg-type]
            acting=np.concatenate([pad(p.acting, False) for p in parts]),  # type: ignore[arg-type]
            layout_seeds=np.concatenate([p.layout_seeds for p in parts]),
            env_id=first.env_id,
            env_kwargs=first.env_kwargs,
            temperature=first.temperature,
            noise=first.noise,
            settings=first.settings,
        )

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the teachers to ``path`` (``.npz``, no pickle, atomic); returns the path."""
        arrays: dict[str, NDArray] = {
            "probs": self.probs,
            "n_indices": self.n_indices,
            "acting": self.acting,  # type: ignore[dict-item]
            "layout_seeds": self.layout_seeds,  # type: ignore[dict-item]
        }
        if self.values is not None:
            arrays["values"] = self.values
        if self.q_values is not None:
            arrays["q_values"] = self.q_values
        meta = {
            "teacher_kind": self.kind,
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "temperature": self.temperature,
            "noise": self.noise,
            "settings": dict(self.settings),
        }
        return save_arrays(path, FILE_KIND, arrays, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Teachers:
        """Read teachers written by :meth:`save`, validating every array.

        Raises:
            FileFormatError: a missing, truncated or tampered file, or inconsistent tables
                (shapes that disagree, probabilities off the simplex, ``n_indices > N``, ...).
        """
        specs = {
            "probs": ArraySpec("f", 3),
            "n_indices": ArraySpec("iu", 1),
            "acting": ArraySpec("b", 2),
            "layout_seeds": ArraySpec("iu", 1),
            "values": ArraySpec("f", 2, optional=True),
            "q_values": ArraySpec("f", 3, optional=True),
        }
        arrays, meta = load_arrays(path, FILE_KIND, specs)
        try:
            return cls(
                kind=meta.get("teacher_kind"),  # type: ignore[arg-type]
                probs=arrays["probs"],
                n_indices=arrays["n_indices"],
                values=arrays.get("values"),
                q_values=arrays.get("q_values"),
                acting=arrays["acting"],
                layout_seeds=arrays["layout_seeds"],
                env_id=meta.get("env_id"),
                env_kwargs=meta.get("env_kwargs", {}),
                temperature=meta.get("temperature"),
                noise=meta.get("noise", 0.0),
                settings=meta.get("settings", {}),
            )
        except (ValueError, TypeError) as err:
            raise FileFormatError(f"{path}: invalid teachers ({err})") from None
