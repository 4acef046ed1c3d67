"""``TabularPolicy``: a softmax policy over table indices, with an optional critic.

The student of every distillation method (paper A.5): one logit per (table index, action),
``pi_theta(a | o) = softmax(theta[o])[a]``, and a value ``V_theta(o)`` where the method learns
one. It is also a valid teacher (``action_probs``/``value``) and a drop-in SB3-style policy
(``predict``), so ``stable_baselines3.common.evaluation.evaluate_policy`` accepts it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from distill_agents.numerics import softmax
from distill_agents.storage import ArraySpec, FileFormatError, load_arrays, save_arrays

__all__ = ["TabularPolicy"]

_KIND = "tabular_policy"


class TabularPolicy:
    """A tabular softmax policy ``[n, A]`` with an optional critic ``[n]``.

    Args:
        logits: ``[n, A]`` finite logits (copied to float64).
        values: ``[n]`` state values ``V_theta``, or ``None`` if the policy has no critic.
        seed: seed of the generator used by :meth:`predict` when sampling.

    Raises:
        ValueError: non-finite or wrongly shaped arrays.
    """

    def __init__(
        self,
        logits: ArrayLike,
        values: ArrayLike | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        table = np.array(logits, dtype=np.float64)
        if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] < 1:
            raise ValueError(f"logits must have shape [n, A] with n, A >= 1, got {table.shape}")
        if not np.all(np.isfinite(table)):
            raise ValueError("logits must be finite")
        self.logits: NDArray[np.float64] = table
        self.values: NDArray[np.float64] | None = None
        if values is not None:
            vals = np.array(values, dtype=np.float64)
            if vals.shape != (table.shape[0],):
                raise ValueError(
                    f"values must have shape [n] = ({table.shape[0]},) to match logits, got "
                    f"{vals.shape}"
                )
            if not np.all(np.isfinite(vals)):
                raise ValueError("values must be finite")
            self.values = vals
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    # ----------------------------------------------------------------- sizes and tables
    @property
    def n_obs(self) -> int:
        """Number of table rows ``n``."""
        return int(self.logits.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return int(self.logits.shape[1])

    @property
    def probs(self) -> NDArray[np.float64]:
        """Action probabilities ``[n, A]`` (a fresh array)."""
        return softmax(self.logits)

    def seed(self, seed: int | None = None) -> None:
        """Reseed the generator used by :meth:`predict`."""
        self._rng = np.random.default_rng(seed)

    def _index(self, obs: Any) -> int:
        if isinstance(obs, (bool, np.bool_)):
            raise ValueError(f"obs must be an integer table index, got {obs!r}")
        try:
            value = np.asarray(obs)
            if value.size != 1 or not np.issubdtype(value.dtype, np.integer):
                raise TypeError
            index = int(value.reshape(()))
        except (TypeError, ValueError):
            raise ValueError(
                f"obs must be an integer table index in [0, {self.n_obs}), got {obs!r}"
            ) from None
        if not 0 <= index < self.n_obs:
            raise ValueError(f"obs must be in [0, {self.n_obs}), got {index}")
        return index

    def action_probs(self, obs: Any) -> NDArray[np.float64]:
        """``pi_theta(. | obs)``, ``[A]``."""
        return softmax(self.logits[self._index(obs)])

    def value(self, obs: Any) -> float:
        """``V_theta(obs)``.

        Raises:
            ValueError: the policy has no critic.
        """
        if self.values is None:
            raise ValueError("this TabularPolicy has no values (it was trained without a critic)")
        return float(self.values[self._index(obs)])

    def state_policy(self, state_to_index: ArrayLike) -> NDArray[np.float64]:
        """The policy over states ``[S, A]`` (see ``planning.observation_policy_to_state_policy``).

        Args:
            state_to_index: ``[S]`` table index of each state (-1 for states without one), e.g.
                ``TableIndexWrapper.state_to_index`` or ``env.unwrapped.observation_of_state``
                for ``Discrete`` observations.
        """
        from distill_agents.planning import observation_policy_to_state_policy

        return observation_policy_to_state_policy(self.probs, state_to_index)

    # --------------------------------------------------------------------- SB3 interface
    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[NDArray[np.int64], Any]:
        """SB3's ``predict``: actions for one observation or a batch.

        Args:
            observation: a table index, or an array of them ``[B]`` (or ``[B, 1]``, as SB3's
                vectorised envs give for ``Discrete`` observations).
            state: recurrent state (unused, returned as is).
            episode_start: unused (SB3 compatibility).
            deterministic: greedy actions (the first maximiser) instead of samples from the
                policy's own generator.

        Returns:
            ``(actions, state)``: an int64 array of shape ``()`` for a single observation, else
            ``[B]``.
        """
        obs = np.asarray(observation)
        if obs.dtype.kind not in "iu" and not (
            obs.dtype.kind == "f" and np.all(np.isfinite(obs)) and np.all(obs == np.round(obs))
        ):
            raise ValueError(
                f"observation must hold integer table indices in [0, {self.n_obs}), got "
                f"{observation!r}"
            )
        single = obs.ndim == 0
        if obs.ndim == 2 and obs.shape[1] == 1:
            obs = obs[:, 0]
        if obs.ndim > 1:
            raise ValueError(
                f"observation must be a table index or a batch [B] / [B, 1] of them, got shape "
                f"{obs.shape}"
            )
        flat = obs.reshape(-1).astype(np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= self.n_obs):
            raise ValueError(
                f"observation must be in [0, {self.n_obs}), got {flat.min()}..{flat.max()}"
            )
        rows = self.logits[flat]
        if deterministic:
            actions = rows.argmax(axis=-1).astype(np.int64)
        else:
            cum = np.cumsum(softmax(rows), axis=-1)
            u = self._rng.random(flat.size)[:, None] * cum[:, -1:]
            actions = np.minimum((cum <= u).sum(axis=-1), self.n_actions - 1).astype(np.int64)
        return (actions.reshape(()) if single else actions), state

    # ---------------------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the policy to ``path`` (``.npz``, no pickle, atomic).

        Returns:
            The path written (``.npz`` appended if missing).
        """
        arrays: dict[str, NDArray] = {"logits": self.logits}
        if self.values is not None:
            arrays["values"] = self.values
        return save_arrays(
            path, _KIND, arrays, meta={"n_obs": self.n_obs, "n_actions": self.n_actions}
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], seed: int | None = None) -> TabularPolicy:
        """Read a policy written by :meth:`save` (validated: kind, shapes, finiteness).

        Raises:
            FileFormatError: a missing, truncated, tampered or foreign file.
        """
        arrays, meta = load_arrays(
            path,
            _KIND,
            {"logits": ArraySpec("f", 2), "values": ArraySpec("f", 1, optional=True)},
        )
        logits = arrays["logits"]
        values = arrays.get("values")
        if meta.get("n_obs") != logits.shape[0] or meta.get("n_actions") != logits.shape[1]:
            raise FileFormatError(
                f"{path}: logits shape {logits.shape} disagrees with the recorded sizes "
                f"({meta.get('n_obs')}, {meta.get('n_actions')})"
            )
        if values is not None and values.shape != (logits.shape[0],):
            raise FileFormatError(
                f"{path}: values shape {values.shape} does not match logits {logits.shape}"
            )
        if logits.size == 0:
            raise FileFormatError(f"{path}: empty logits")
        return cls(logits, values, seed=seed)

    def __repr__(self) -> str:
        critic = "with values" if self.values is not None else "no values"
        return f"TabularPolicy(n_obs={self.n_obs}, n_actions={self.n_actions}, {critic})"
