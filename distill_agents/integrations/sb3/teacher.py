"""Stable-Baselines3 models as teachers of the tabular students, and teachers as policies.

:class:`SB3Teacher` adapts a trained PPO, A2C or DQN model to the teacher interface every
student trainer of the package accepts (``action_probs(obs) -> [A]``, ``value(obs)``, and
``action_values(obs)`` for DQN); :func:`to_tabular_policy` turns any teacher over table indices
into a :class:`~distill_agents.TabularPolicy`, which SB3's ``evaluate_policy`` accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from numpy.typing import ArrayLike, NDArray

from distill_agents.distill import teacher_tables
from distill_agents.integrations.sb3.network import (
    ACTOR_CRITIC,
    CHUNK,
    Q,
    as_model_batch,
    check_temperature,
    model_kind,
    network_scores,
)
from distill_agents.planning import softmax_policy
from distill_agents.policy import TabularPolicy
from gridworld_env.base import check_int
from gridworld_env.wrappers import TableIndexWrapper

__all__ = ["SB3Teacher", "to_tabular_policy"]


class SB3Teacher:
    """A Stable-Baselines3 PPO, A2C or DQN model as a teacher for the tabular students.

    ``action_probs(obs)`` is ``softmax(scores(obs) / T)``: for PPO/A2C the scores are the
    log-probabilities of the policy's categorical action distribution
    (``model.policy.get_distribution(obs).distribution``), so ``T = 1`` gives the policy
    itself; for DQN they are the Q-values of ``model.q_net`` (a Boltzmann policy; Rusu et al.'s
    ``softmax(q / tau)``). ``T = 0`` is the greedy policy (ties split).

    ``value(obs)``: PPO/A2C return the critic ``model.policy.predict_values`` (the value of the
    model's own policy under its own ``gamma``, whatever ``T``); DQN returns the expected
    Q-value under the tempered policy, ``sum_a pi_T(a|obs) Q(obs, a)`` (``max_a Q`` at
    ``T = 0``). ``action_values(obs)`` gives DQN's raw Q-values (the supervised MSE/KL losses
    use them); PPO/A2C raise ``ValueError`` there.

    Observations: by default the teacher takes the model's own observations. If the model was
    trained on the raw environment (e.g. partial ``MultiDiscrete`` windows) while the student
    works on table indices, pass ``obs_to_model=wrapper.index_to_obs`` (a
    :class:`gridworld_env.TableIndexWrapper`): the teacher then takes table indices.

    Speed: when the teacher's inputs are integer indices ``0..n-1`` with ``n`` known (the
    model's own ``Discrete(n)`` space, ``obs_to_model=TableIndexWrapper.index_to_obs`` of a
    wrapper, or ``n_obs=n``), the first integer query computes the whole table in one batched
    forward pass (:meth:`tables`) and later queries read it; the table is rebuilt automatically
    when the network's parameters change (any in-place update, e.g. ``.learn()`` or
    ``set_parameters``). This is what makes ``distill(env, SB3Teacher(model), ...)``, which
    queries every index once, cost one forward pass. :meth:`action_probs_batch` answers any
    batch in one pass.

    Args:
        model: a trained SB3 ``PPO``, ``A2C`` or ``DQN`` (``Discrete`` actions).
        temperature: ``T >= 0``.
        obs_to_model: maps one teacher input to one model observation; ``None`` for the
            identity.
        n_obs: number of integer teacher inputs, enabling the table cache (inferred where
            possible, see above).

    Raises:
        ValueError: an unsupported model, a bad temperature or ``n_obs``.

    Example:
        ```python
        env = TableIndexWrapper(gym.make("DistillGrid-v0", observation="partial"))
        model = PPO("MlpPolicy", env.unwrapped).learn(10_000)  # on raw observations
        teacher = SB3Teacher(model, obs_to_model=env.index_to_obs)
        student = distill(env, teacher, "on_policy_distill")
        ```
    """

    def __init__(
        self,
        model: Any,
        temperature: float = 1.0,
        obs_to_model: Callable[[Any], Any] | None = None,
        *,
        n_obs: int | None = None,
    ) -> None:
        self.kind = model_kind(model)
        self.model = model
        self._temperature = check_temperature(temperature)
        if obs_to_model is not None and not callable(obs_to_model):
            raise ValueError(f"obs_to_model must be callable or None, got {obs_to_model!r}")
        self.obs_to_model = obs_to_model
        self.n_obs: int | None = (
            self._infer_n_obs() if n_obs is None else check_int("n_obs", n_obs, 1)
        )
        self._cache_key: tuple[Any, ...] | None = None
        self._cache: dict[str, NDArray[np.float64] | None] = {}

    def _infer_n_obs(self) -> int | None:
        space: Any = None
        if self.obs_to_model is None:
            space = self.model.observation_space
        elif getattr(self.obs_to_model, "__func__", None) is TableIndexWrapper.index_to_obs:
            space = self.obs_to_model.__self__.observation_space  # type: ignore[attr-defined]
        if isinstance(space, spaces.Discrete) and int(space.start) == 0:
            return int(space.n)
        return None

    # ----------------------------------------------------------------------- properties
    @property
    def temperature(self) -> float:
        """The temperature ``T``."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = check_temperature(value)

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return int(self.model.action_space.n)

    @property
    def has_values(self) -> bool:
        """Always ``True``: the critic (PPO/A2C) or the expected Q-value (DQN)."""
        return True

    # ------------------------------------------------------------------------- forward
    def model_observations(self, observations: Sequence[Any] | NDArray) -> NDArray:
        """Teacher inputs ``[B, ...]`` -> the model's observations ``[B, *obs_shape]``."""
        return as_model_batch(self.model.observation_space, observations, self.obs_to_model)

    def _forward(self, observations: Any) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """``(scores [B, A], critic values [B] or None)`` in float64, in chunks, no grad."""
        batch = self.model_observations(observations)
        policy = self.model.policy
        n_actions = self.n_actions
        scores = np.empty((batch.shape[0], n_actions))
        critic = np.empty(batch.shape[0]) if self.kind == ACTOR_CRITIC else None
        was_training = policy.training
        policy.set_training_mode(False)
        try:
            with torch.no_grad():
                for start in range(0, batch.shape[0], CHUNK):
                    obs, _ = policy.obs_to_tensor(batch[start : start + CHUNK])
                    out = network_scores(policy, self.kind, obs)
                    scores[start : start + CHUNK] = out.double().cpu().numpy()
                    if critic is not None:
                        vals = policy.predict_values(obs).double().cpu().numpy()
                        critic[start : start + CHUNK] = vals.reshape(-1)
        finally:
            policy.set_training_mode(was_training)
        return scores, critic

    def _outputs(self, observations: Any) -> dict[str, NDArray[np.float64] | None]:
        scores, critic = self._forward(observations)
        probs = softmax_policy(scores, self._temperature)
        if self.kind == Q:
            return {"probs": probs, "values": (probs * scores).sum(axis=-1), "q_values": scores}
        return {"probs": probs, "values": critic, "q_values": None}

    # --------------------------------------------------------------------- batch queries
    def action_probs_batch(self, observations: Sequence[Any] | NDArray) -> NDArray[np.float64]:
        """``pi_T(. | obs)`` for a batch of teacher inputs, ``[B, A]`` (one forward pass)."""
        probs = self._outputs(observations)["probs"]
        assert probs is not None
        return probs

    def values_batch(self, observations: Sequence[Any] | NDArray) -> NDArray[np.float64]:
        """``V(obs)`` for a batch, ``[B]`` (see the class docstring)."""
        values = self._outputs(observations)["values"]
        assert values is not None
        return values

    def action_values_batch(self, observations: Sequence[Any] | NDArray) -> NDArray[np.float64]:
        """DQN's ``Q(obs, .)`` for a batch, ``[B, A]``.

        Raises:
            ValueError: the model is not a DQN (PPO/A2C have no action values).
        """
        self._require_q()
        scores, _ = self._forward(observations)
        return scores

    def _require_q(self) -> None:
        if self.kind != Q:
            raise ValueError(
                "action values Q are only available for DQN models; this teacher is a "
                f"{type(self.model).__name__} (use action_probs / value)"
            )

    # ------------------------------------------------------------------------- tables
    def _version(self) -> tuple[Any, ...]:
        policy = self.model.policy
        return (
            id(policy),
            self._temperature,
            tuple(p._version for p in policy.parameters()),
        )

    def tables(self, n_obs: int | None = None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The teacher on every integer input ``0..n-1`` in one batched pass (cached).

        Args:
            n_obs: ``n``; defaults to the teacher's own ``n_obs``.

        Returns:
            ``(probs [n, A], values [n])`` (read-only; rebuilt when the network changes).

        Raises:
            ValueError: ``n`` is unknown or disagrees with the teacher's.
        """
        n = self.n_obs if n_obs is None else check_int("n_obs", n_obs, 1)
        if n is None:
            raise ValueError(
                "n_obs is unknown: pass SB3Teacher(..., n_obs=n) or tables(n_obs=n) (the teacher "
                "only infers it from a Discrete model observation space or a "
                "TableIndexWrapper.index_to_obs mapping)"
            )
        if self.n_obs is not None and n != self.n_obs:
            raise ValueError(f"n_obs={n} disagrees with this teacher's n_obs={self.n_obs}")
        self.n_obs = n
        key = self._version()
        if key != self._cache_key:
            out = self._outputs(np.arange(n))
            for array in out.values():
                if array is not None:
                    array.flags.writeable = False
            self._cache, self._cache_key = out, key
        probs, values = self._cache["probs"], self._cache["values"]
        assert probs is not None and values is not None
        return probs, values

    def _cached(self, obs: Any, name: str) -> NDArray[np.float64] | None:
        """Row ``obs`` of a cached table, or ``None`` when ``obs`` is not a cacheable index."""
        if self.n_obs is None or isinstance(obs, (bool, np.bool_)):
            return None
        scalar_array = isinstance(obs, np.ndarray) and obs.ndim == 0 and obs.dtype.kind in "iu"
        if not (isinstance(obs, (int, np.integer)) or scalar_array):
            return None
        index = int(obs)
        if not 0 <= index < self.n_obs:
            raise ValueError(f"obs must be an index in [0, {self.n_obs}), got {obs!r}")
        self.tables()
        table = self._cache[name]
        return None if table is None else table[index]

    # ---------------------------------------------------------------- teacher interface
    def action_probs(self, obs: Any) -> NDArray[np.float64]:
        """``pi_T(. | obs)``, ``[A]``."""
        row = self._cached(obs, "probs")
        if row is not None:
            return row
        return self.action_probs_batch([obs])[0]

    def value(self, obs: Any) -> float:
        """``V(obs)`` (PPO/A2C: the critic; DQN: ``sum_a pi_T(a|obs) Q(obs, a)``)."""
        row = self._cached(obs, "values")
        if row is not None:
            return float(row)
        return float(self.values_batch([obs])[0])

    def action_values(self, obs: Any) -> NDArray[np.float64]:
        """DQN's ``Q(obs, .)``, ``[A]``.

        Raises:
            ValueError: the model is not a DQN.
        """
        self._require_q()
        row = self._cached(obs, "q_values")
        if row is not None:
            return row
        return self.action_values_batch([obs])[0]

    def state_policy(self, inputs_of_state: ArrayLike, greedy: bool = False) -> NDArray[np.float64]:
        """The teacher as a state policy ``[S, A]`` for exact evaluation (``planning``).

        Args:
            inputs_of_state: the teacher input of every state, ``[S]`` or ``[S, D]``: e.g.
                ``env.unwrapped.observation_of_state`` for a model on raw observations, or
                ``wrapper.state_to_index`` with ``obs_to_model=wrapper.index_to_obs``. Rows with
                a negative entry (walls, ``s_term``, unreachable states) get a uniform row.
            greedy: one-hot on the first most probable action (SB3's ``deterministic=True``).

        Returns:
            ``[S, A]`` probabilities.
        """
        inputs = np.asarray(inputs_of_state)
        if inputs.ndim not in (1, 2):
            raise ValueError(f"inputs_of_state must be [S] or [S, D], got {inputs.shape}")
        valid = (inputs.reshape(inputs.shape[0], -1) >= 0).all(axis=1)
        out = np.full((inputs.shape[0], self.n_actions), 1.0 / self.n_actions)
        if valid.any():
            rows = inputs[valid]
            if self.n_obs is not None and inputs.ndim == 1:
                probs = self.tables()[0][rows.astype(np.int64)]
            else:
                probs = self.action_probs_batch(rows)
            if greedy:
                probs = np.eye(self.n_actions)[probs.argmax(axis=-1)]
            out[valid] = probs
        return out

    def __repr__(self) -> str:
        return (
            f"SB3Teacher({type(self.model).__name__}, temperature={self._temperature}, "
            f"n_obs={self.n_obs})"
        )


def to_tabular_policy(
    teacher: Any,
    n_obs: int,
    n_actions: int,
    *,
    floor: float = float(np.finfo(np.float64).tiny),
    seed: int | np.random.Generator | None = None,
) -> TabularPolicy:
    """Any teacher over table indices as a :class:`TabularPolicy` (e.g. for ``evaluate_policy``).

    The logits are ``log(max(pi, floor))``: a greedy teacher keeps its zeros up to ``floor``
    (about 1e-308 by default), so ``predict`` samples from the teacher's distribution and
    ``predict(..., deterministic=True)`` takes its first most probable action. The teacher's
    values, when it has them, become the policy's ``values``.

    Args:
        teacher: anything :func:`distill_agents.distill.teacher_tables` accepts (a
            ``TabularTeacher``, an :class:`SB3Teacher` over indices, an array ``[n, A]``).
        n_obs: number of table indices ``n``.
        n_actions: number of actions ``A``.
        floor: smallest probability kept inside the log, in ``(0, 1)``.
        seed: seed of the policy's ``predict`` generator.
    """
    if not (isinstance(floor, (int, float)) and 0.0 < floor < 1.0):
        raise ValueError(f"floor must be a number in (0, 1), got {floor!r}")
    probs, values = teacher_tables(teacher, n_obs, n_actions)
    return TabularPolicy(np.log(np.maximum(probs, floor)), values, seed=seed)
