"""Tabular teachers for many MDPs at once: the tables, their policies, saving and loading.

A *teacher* gives, for every table index ``o`` of an MDP (the observations
:class:`~gridworld_env.TableIndexWrapper` enumerates, or the ``"index"``/``"partial_index"``
observations of the vector env), action probabilities ``pi(.|o)`` and, where it has them, a
value ``V_pi(o)`` and action values ``Q(o, .)`` (SPEC section 2; Czarnecki et al., 2019, A.3,
A.4, Figs. 5, 6, 8).

:class:`Teachers` holds the teachers of ``B`` MDPs as ``[B, N, A]`` arrays (``N`` the largest
number of table indices; rows at and beyond ``n_indices[i]`` are padding with a uniform policy
and zero values) plus what is needed to rebuild each MDP (env id, env kwargs, layout seeds).
``Teachers.teacher(i)`` is the single-MDP object students use
(:class:`TabularTeacher`: ``action_probs(obs)``, ``value(obs)``).

Kinds and their tables:

- ``q_learning``: ``q_values`` from tabular Q-learning (A.4); ``probs = softmax(Q / T)``
  (``T = 0``: greedy, ties split uniformly); ``values = sum_a pi(a|o) Q(o, a)``.
- ``a2c``: softmax actor ``probs = softmax(logits)`` and its critic ``values`` (A.3); no
  ``q_values``.
- ``optimal`` / ``adversarial``: value iteration on the exact model (``gamma = 0.99``),
  maximising / minimising the return; greedy (or Boltzmann at ``T > 0``) in the state's Q
  values, mapped to table indices (:func:`planned_teachers`).
- ``custom``: any arrays a user supplies.

Any kind can be made *noisy* (Fig. 5's "teacher noise", :func:`noisy_teachers`).
"""

from __future__ import annotations

import json
import math
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
    "NOISE_PROCEDURES",
    "NOISE_STREAM",
    "TEACHER_KINDS",
    "TabularTeacher",
    "Teachers",
    "a2c_teachers",
    "acting_indices",
    "exact_values",
    "index_average",
    "noisy_teachers",
    "planned_teachers",
    "policy_values",
    "q_learning_teachers",
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


# ------------------------------------------------------------------------ building teachers
def policy_values(probs: ArrayLike, q_values: ArrayLike) -> NDArray[np.float64]:
    """``V_pi(o) = sum_a pi(a|o) Q(o, a)`` (``[..., A]`` inputs, ``[...]`` output).

    For a greedy policy this is ``max_a Q(o, a)`` (SPEC 2; PAPER 5.2).
    """
    p = np.asarray(probs, dtype=np.float64)
    q = np.asarray(q_values, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(
            f"probs and q_values must have the same shape, got {p.shape} and {q.shape}"
        )
    return np.einsum("...a,...a->...", p, q)


def _padding_mask(n_indices: NDArray[np.int64], n: int) -> NDArray[np.bool_]:
    return np.arange(n)[None, :] >= np.asarray(n_indices)[:, None]


def q_learning_teachers(
    q_values: ArrayLike, n_indices: ArrayLike, temperature: float = 0.0, **meta: Any
) -> Teachers:
    """Teachers from Q tables: ``pi = softmax(Q / T)`` (``T = 0`` greedy), ``V = sum pi Q``.

    Args:
        q_values: ``[B, N, A]`` action values (padding rows are zeroed).
        n_indices: ``[B]`` table indices per MDP.
        temperature: ``T >= 0``.
        **meta: further :class:`Teachers` fields (``acting``, ``env_id``, ``settings``, ...).
    """
    q = np.array(q_values, dtype=np.float64)
    pad = _padding_mask(np.asarray(n_indices), q.shape[1])
    q[pad] = 0.0
    probs = planning.softmax_policy(q, temperature)
    return Teachers(
        kind="q_learning",
        probs=probs,
        n_indices=np.asarray(n_indices),
        values=policy_values(probs, q),
        q_values=q,
        temperature=temperature,
        **meta,
    )


def a2c_teachers(
    logits: ArrayLike, values: ArrayLike, n_indices: ArrayLike, **meta: Any
) -> Teachers:
    """Teachers from a tabular actor-critic: ``pi = softmax(logits)``, its critic ``values``.

    Args:
        logits: ``[B, N, A]`` actor logits.
        values: ``[B, N]`` critic.
        n_indices: ``[B]`` table indices per MDP.
        **meta: further :class:`Teachers` fields.
    """
    theta = np.array(logits, dtype=np.float64)
    v = np.array(values, dtype=np.float64)
    pad = _padding_mask(np.asarray(n_indices), theta.shape[1])
    theta[pad] = 0.0
    v[pad] = 0.0
    return Teachers(
        kind="a2c",
        probs=planning.softmax_policy(theta, 1.0),
        n_indices=np.asarray(n_indices),
        values=v,
        temperature=None,
        **meta,
    )


def index_average(
    state_arrays: ArrayLike,
    state_to_index: ArrayLike,
    weights: ArrayLike,
    n_index: int,
) -> NDArray[np.float64]:
    """Average per-state rows over the states that share a table index.

    ``out[b, o] = sum_{s: idx(s) = o} w(s) x(s) / sum_{s: idx(s) = o} w(s)``; where every state
    of an index has weight 0 the states count equally; indices no state maps to get 0.
    With full observations each index has exactly one state and this is a re-indexing.

    Args:
        state_arrays: ``[B, S, ...]`` per-state rows (probabilities, values, Q values).
        state_to_index: ``[B, S]`` table index of each state, -1 for none.
        weights: ``[B, S]`` non-negative weights (e.g. expected visits).
        n_index: ``N``, rows of the output.

    Returns:
        ``[B, N, ...]``.
    """
    x = np.asarray(state_arrays, dtype=np.float64)
    index = np.asarray(state_to_index)
    w = np.asarray(weights, dtype=np.float64)
    b, s = index.shape
    if x.shape[:2] != (b, s) or w.shape != (b, s):
        raise ValueError(
            f"state_arrays [B, S, ...], state_to_index [B, S] and weights [B, S] must agree, got "
            f"{x.shape}, {index.shape}, {w.shape}"
        )
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite and non-negative")
    trailing = x.shape[2:]
    has = index >= 0
    keys = (np.arange(b)[:, None] * n_index + index)[has]
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    weight = w[has][order]
    rows = x[has].reshape(keys.size, -1)[order]
    out = np.zeros((b * n_index, rows.shape[1]))
    if keys.size:
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        total = np.add.reduceat(weight, starts)
        # Indices whose states all have weight 0: weigh their states equally.
        unweighted = np.repeat(total == 0.0, np.diff(np.r_[starts, keys.size]))
        weight = np.where(unweighted, 1.0, weight)
        total = np.add.reduceat(weight, starts)
        sums = np.add.reduceat(weight[:, None] * rows, starts, axis=0)
        out[keys[starts]] = sums / total[:, None]
    return out.reshape(b, n_index, *trailing)


def planned_teachers(
    models: Any,
    minimise: bool = False,
    gamma: float = 0.99,
    temperature: float = 0.0,
    **meta: Any,
) -> Teachers:
    """Optimal (``minimise=False``) or adversarial teachers by value iteration on exact models.

    Per MDP: ``(V*, Q*) = value_iteration(mdp, gamma, minimise)``; the state policy is greedy in
    ``Q*`` (``-Q*`` when minimising; ties split uniformly), or ``softmax(+-Q* / T)`` for
    ``T > 0``. It is mapped to table indices by :func:`index_average` weighted by the state
    policy's own expected visits from the start: with full observations (one state per index)
    this is exact; with partial observations the states sharing an index are averaged in the
    proportion the policy visits them (an index none of its states is visited under gets their
    plain average, as do all indices if the policy can loop forever). ``q_values`` are
    averaged the same way and ``values = sum_a pi Q``.

    Args:
        models: :class:`gridworld_env.vector.StackedModels` (``envs.models`` of an index vector
            env), with ``state_to_index`` and ``n_indices``.
        minimise: adversarial teacher.
        gamma: discount of value iteration.
        temperature: ``T >= 0``.
        **meta: further :class:`Teachers` fields.
    """
    mdps = [models.mdp(i) for i in range(models.n_envs)]
    _, q_states = planning.value_iteration(mdps, gamma=gamma, minimise=minimise)
    q_states = np.asarray(q_states)
    state_policy = planning.softmax_policy(-q_states if minimise else q_states, temperature)
    try:
        visits = planning.expected_visits(mdps, state_policy)
    except ValueError:  # the policy never ends from some state: weigh aliased states equally
        visits = np.zeros(state_policy.shape[:2])
    n = int(np.max(models.n_indices))
    index = np.asarray(models.state_to_index)
    probs = index_average(state_policy, index, visits, n)
    q = index_average(q_states, index, visits, n)
    pad = _padding_mask(np.asarray(models.n_indices), n)
    probs[pad] = 1.0 / probs.shape[-1]
    probs /= probs.sum(axis=-1, keepdims=True)
    meta.setdefault("acting", acting_indices(models))
    return Teachers(
        kind="adversarial" if minimise else "optimal",
        probs=probs,
        n_indices=np.asarray(models.n_indices),
        values=policy_values(probs, q),
        q_values=q,
        temperature=temperature,
        **meta,
    )


def exact_values(teachers: Teachers, models: Any, gamma: float = 0.99) -> Teachers:
    """``teachers`` with ``values`` replaced by the exact values of their own policies.

    Per MDP: the index policy as a state policy, :func:`planning.policy_evaluation` with
    ``gamma`` on the model, and the state values averaged per table index by
    :func:`index_average` weighted by the policy's expected visits (exact with full
    observations). A noisy teacher made by :func:`noisy_teachers` keeps the clean teacher's
    ``Q`` of its noisy action as ``V``; this gives it the value of the policy it follows.

    Args:
        teachers: the teachers.
        models: :class:`gridworld_env.vector.StackedModels` of their MDPs (an index vector env's
            ``models``).
        gamma: discount in [0, 1].
    """
    mdps = [models.mdp(i) for i in range(models.n_envs)]
    index = np.asarray(models.state_to_index)
    state_policy = planning.observation_policy_to_state_policy(
        teachers.probs[:, : int(np.max(models.n_indices))], index
    )
    v_states = np.asarray(planning.policy_evaluation(mdps, state_policy, gamma))
    try:
        visits = planning.expected_visits(mdps, state_policy)
    except ValueError:  # the policy never ends from some state: weigh aliased states equally
        visits = np.zeros(state_policy.shape[:2])
    n = int(np.max(models.n_indices))
    values = np.zeros((teachers.n_mdps, teachers.n_index))
    values[:, :n] = index_average(v_states, index, visits, n)
    values[_padding_mask(teachers.n_indices, teachers.n_index)] = 0.0
    return teachers.replace(values=values)


def acting_indices(models: Any) -> NDArray[np.bool_]:
    """``[B, N]`` bool: table indices observed in some non-terminal state with an index.

    Args:
        models: :class:`gridworld_env.vector.StackedModels` of an index vector env.
    """
    index = np.asarray(models.state_to_index)
    b = index.shape[0]
    n = int(np.max(models.n_indices))
    live = (index >= 0) & ~np.asarray(models.terminal)
    out = np.zeros((b, n), dtype=bool)
    rows = np.broadcast_to(np.arange(b)[:, None], index.shape)
    out[rows[live], index[live]] = True
    return out


#: How :func:`noisy_teachers` makes a teacher noisy.
NOISE_PROCEDURES = ("fixed", "path", "q_values")


def noisy_teachers(
    teachers: Teachers,
    fraction: float,
    seed: int,
    first_mdp: int = 0,
    procedure: str = "fixed",
    models: Any = None,
) -> Teachers:
    """Fig. 5's noisy teachers: deterministic, with a fixed wrong action at a share of indices.

    For MDP ``i`` (global index ``first_mdp + i``), with its own generator
    ``np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(NOISE_STREAM, first_mdp + i)))``
    (so the noise of an MDP does not depend on how the MDPs are chunked):

    1. the source's greedy action per index (``argmax probs``; ties broken by a seeded choice);
    2. ``k = floor(fraction * n_acting + 1/2)`` of the ``n_acting`` acting indices, drawn
       without replacement, get a uniformly drawn *wrong* action (never the one of step 1);
    3. the policy is one-hot on these actions. Values: ``Q(o, chosen action)`` where the source
       has ``q_values`` (``V = sum pi Q`` of the new policy), otherwise the source's values
       (e.g. an A2C critic, which then describes the clean teacher).

    That is ``procedure="fixed"`` (Fig. 5's reading). The others (``Readings.noise``):

    - ``"path"``: as ``"fixed"``, but the ``k = floor(fraction * n_path + 1/2)`` wrong indices
      are drawn among the ``n_path`` acting indices on the clean teacher's path: those it
      visits at least half a time per episode (expected visits of its greedy policy from the
      start, on ``models``; with full observations one state per index).
    - ``"q_values"``: the greedy action of ``Q + sigma * z`` with ``z`` standard normal per
      index and action and ``sigma = fraction * (max - min)`` of the clean values over the
      MDP's acting indices (needs ``q_values``); wrong actions fall where the clean teacher is
      nearly indifferent, and their share is not fixed.

    Args:
        teachers: the source teachers (``A >= 2``).
        fraction: share of acting indices made wrong, in ``[0, 1)`` (``"q_values"``: the noise
            scale).
        seed: seed of the noise.
        first_mdp: global index of ``teachers``' first MDP (for chunks).
        procedure: ``"fixed"`` (default), ``"path"`` or ``"q_values"``.
        models: the MDPs' :class:`gridworld_env.vector.StackedModels` (``"path"`` only).

    Returns:
        Teachers of the same kind with ``noise = fraction`` and ``temperature = 0``.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)):
        raise ValueError(f"fraction must be a number in [0, 1), got {fraction!r}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    a = teachers.n_actions
    if a < 2:
        raise ValueError("noisy teachers need at least 2 actions (a wrong action must exist)")
    if procedure not in NOISE_PROCEDURES:
        raise ValueError(f"procedure must be one of {list(NOISE_PROCEDURES)}, got {procedure!r}")
    if procedure == "q_values":
        chosen = _q_noise_actions(teachers, fraction, seed, first_mdp)
    else:
        on_path = None if procedure == "fixed" else _path_indices(teachers, models)
        chosen = _fixed_noise_actions(teachers, fraction, seed, first_mdp, on_path)
    return _one_hot_teachers(teachers, chosen, fraction, seed)


def _fixed_noise_actions(
    teachers: Teachers,
    fraction: float,
    seed: int,
    first_mdp: int,
    on_path: NDArray[np.bool_] | None,
) -> NDArray[np.int64]:
    """The actions of :func:`noisy_teachers` ``"fixed"`` (``on_path``: ``"path"``)."""
    a = teachers.n_actions
    b, n = teachers.n_mdps, teachers.n_index
    assert teachers.acting is not None
    chosen = np.zeros((b, n), dtype=np.int64)
    for i in range(b):
        rng = np.random.default_rng(
            np.random.SeedSequence(int(seed), spawn_key=(NOISE_STREAM, int(first_mdp) + i))
        )
        n_i = int(teachers.n_indices[i])  # draws depend on the MDP's own table only
        p = teachers.probs[i, :n_i]
        best = p >= p.max(axis=-1, keepdims=True)
        keys = rng.random((n_i, a))
        greedy = np.zeros(n, dtype=np.int64)
        greedy[:n_i] = np.argmax(np.where(best, keys, -1.0), axis=-1)
        acting = np.flatnonzero(teachers.acting[i] if on_path is None else on_path[i])
        k = math.floor(fraction * acting.size + 0.5)
        flip = np.sort(rng.choice(acting, size=k, replace=False))
        wrong = rng.integers(0, a - 1, size=k)
        wrong += wrong >= greedy[flip]
        greedy[flip] = wrong
        chosen[i] = greedy
    return chosen


def _path_indices(teachers: Teachers, models: Any) -> NDArray[np.bool_]:
    """``[B, N]``: acting indices the greedy clean teacher visits at least 1/2 time per episode."""
    if models is None:
        raise ValueError("procedure 'path' needs the MDPs' models")
    mdps = [models.mdp(i) for i in range(models.n_envs)]
    index = np.asarray(models.state_to_index)
    n = int(np.max(models.n_indices))
    greedy = planning.greedy_policy(np.log(np.maximum(teachers.probs[:, :n], 1e-300)))
    visits = planning.expected_visits(
        mdps, planning.observation_policy_to_state_policy(greedy, index)
    )
    per_index = np.zeros((teachers.n_mdps, n))  # expected visits of each index's states
    has = index >= 0
    rows = np.broadcast_to(np.arange(index.shape[0])[:, None], index.shape)
    np.add.at(per_index, (rows[has], index[has]), np.asarray(visits)[has])
    out = np.zeros((teachers.n_mdps, teachers.n_index), dtype=bool)
    assert teachers.acting is not None
    out[:, :n] = (per_index >= 0.5) & teachers.acting[:, :n]
    return out


def _q_noise_actions(
    teachers: Teachers, fraction: float, seed: int, first_mdp: int
) -> NDArray[np.int64]:
    """The actions of :func:`noisy_teachers` ``"q_values"``."""
    if teachers.q_values is None:
        raise ValueError("procedure 'q_values' needs teachers with q_values")
    assert teachers.acting is not None
    b, n = teachers.n_mdps, teachers.n_index
    chosen = np.zeros((b, n), dtype=np.int64)
    for i in range(b):
        rng = np.random.default_rng(
            np.random.SeedSequence(int(seed), spawn_key=(NOISE_STREAM, int(first_mdp) + i, 1))
        )
        q = teachers.q_values[i]
        acting = teachers.acting[i]
        v = q.max(axis=-1)[acting]
        sigma = fraction * float(v.max() - v.min()) if v.size else 0.0
        chosen[i] = np.argmax(q + sigma * rng.standard_normal(q.shape), axis=-1)
    return chosen


def _one_hot_teachers(
    teachers: Teachers, chosen: NDArray[np.int64], fraction: float, seed: int
) -> Teachers:
    """Deterministic teachers on ``chosen`` (values as :func:`noisy_teachers` says)."""
    b, n, a = teachers.probs.shape
    probs = np.zeros((b, n, a))
    np.put_along_axis(probs, chosen[..., None], 1.0, axis=-1)
    pad = _padding_mask(teachers.n_indices, n)
    probs[pad] = 1.0 / a
    values: NDArray[np.float64] | None = teachers.values
    if teachers.q_values is not None:
        values = policy_values(probs, teachers.q_values)
        values[pad] = 0.0
    settings = dict(teachers.settings)
    settings["noise_seed"] = int(seed)
    return teachers.replace(
        probs=probs, values=values, temperature=0.0, noise=float(fraction), settings=settings
    )
