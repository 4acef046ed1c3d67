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

This module needs the ``sb3`` extra (``pip install "distillgrid[sb3]"``); importing it without
Stable-Baselines3 or PyTorch raises an ``ImportError`` that says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import ArrayLike, NDArray

from distill_agents.distill import teacher_tables
from distill_agents.planning import softmax_policy
from distill_agents.policy import TabularPolicy
from distill_agents.updates import TEACHER_PROB_FLOOR
from gridworld_env.base import check_int
from gridworld_env.wrappers import TableIndexWrapper

INSTALL_HINT = 'pip install "distillgrid[sb3]"'

try:
    import torch
    from stable_baselines3.common.distributions import CategoricalDistribution
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
except ImportError as _err:  # pragma: no cover - exercised by a test that hides SB3
    raise ImportError(
        "distill_agents.integrations.sb3 needs Stable-Baselines3 and PyTorch "
        f"({_err}); install the optional extra with: {INSTALL_HINT}"
    ) from _err

__all__ = [
    "CONTROLS",
    "INSTALL_HINT",
    "LOSSES",
    "TEACHER_SCORES",
    "SB3Teacher",
    "distill_into_sb3",
    "to_tabular_policy",
]

#: Control policies of :func:`distill_into_sb3`.
CONTROLS = ("teacher", "student", "uniform")
#: Losses of :func:`distill_into_sb3`.
LOSSES = ("kl", "mse")
#: Where the KL targets of :func:`distill_into_sb3` come from.
TEACHER_SCORES = ("auto", "log_probs", "q_values")

_ACTOR_CRITIC = "actor_critic"
_Q = "q"
_CHUNK = 4096


# ============================================================================== helpers
def _check_temperature(temperature: Any) -> float:
    if isinstance(temperature, bool) or not isinstance(
        temperature, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    value = float(temperature)
    if not (np.isfinite(value) and value >= 0.0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    return value


def _model_kind(model: Any) -> str:
    """``"actor_critic"`` (PPO, A2C) or ``"q"`` (DQN); a ValueError for anything else."""
    policy = getattr(model, "policy", None)
    action_space = getattr(model, "action_space", None)
    if policy is None or action_space is None:
        raise ValueError(
            f"model must be a Stable-Baselines3 model (PPO, A2C or DQN), got {type(model).__name__}"
        )
    if not isinstance(action_space, spaces.Discrete) or int(action_space.start) != 0:
        raise ValueError(
            f"model must have a Discrete action space starting at 0, got {action_space}"
        )
    if isinstance(policy, ActorCriticPolicy):
        return _ACTOR_CRITIC
    if isinstance(getattr(policy, "q_net", None), torch.nn.Module):
        return _Q
    raise ValueError(
        "model must be an SB3 PPO or A2C model (an ActorCriticPolicy) or a DQN model (a policy "
        f"with q_net); got a {type(model).__name__} with a {type(policy).__name__}"
    )


def _network_scores(policy: Any, kind: str, obs: Any) -> torch.Tensor:
    """``[B, A]``: log-probabilities (PPO/A2C) or Q-values (DQN) of a batch, with autograd."""
    if kind == _ACTOR_CRITIC:
        dist = policy.get_distribution(obs)
        if not isinstance(dist, CategoricalDistribution):
            raise ValueError(
                f"the model's action distribution must be categorical, got {type(dist).__name__}"
            )
        logits: torch.Tensor = dist.distribution.logits
        return logits
    q_values: torch.Tensor = policy.q_net(obs)
    return q_values


def _check_model_obs(space: spaces.Space, batch: NDArray) -> None:
    """A ValueError for integer observations outside a Discrete / MultiDiscrete space."""
    if isinstance(space, spaces.Discrete):
        low, high = int(space.start), int(space.start + space.n)
        if batch.size and (batch.min() < low or batch.max() >= high):
            raise ValueError(
                f"observations must lie in the model's observation space {space} "
                f"([{low}, {high})), got values in [{batch.min()}, {batch.max()}]"
            )
    elif isinstance(space, spaces.MultiDiscrete):
        nvec = np.asarray(space.nvec)
        start = np.asarray(getattr(space, "start", np.zeros_like(nvec)))
        if batch.size and (np.any(batch < start) or np.any(batch >= start + nvec)):
            raise ValueError(
                f"observations must lie in the model's observation space {space}; got values "
                "outside it (a -1 row of observation_of_state? map states without an "
                "observation away first)"
            )


def _as_model_batch(
    space: spaces.Space, observations: Any, mapping: Callable[[Any], Any] | None
) -> NDArray:
    """Stack observations (mapped by ``mapping`` first) into ``[B, *space.shape]``."""
    shape: tuple[int, ...] = tuple(space.shape or ())
    if mapping is not None:
        items = [np.asarray(mapping(o)) for o in observations]
        batch = np.stack(items) if items else np.zeros((0, *shape), dtype=np.int64)
    else:
        batch = np.asarray(observations)
    if batch.ndim < len(shape) or batch.shape[batch.ndim - len(shape) :] != shape:
        raise ValueError(
            f"observations must have shape [B, *{shape}] for the model's observation space "
            f"{space}, got {batch.shape}"
        )
    batch = batch.reshape((-1, *shape))
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
        if batch.dtype.kind not in "iu":
            if not (batch.dtype.kind == "f" and np.all(batch == np.round(batch))):
                raise ValueError(f"observations must be integers for {space}, got {batch.dtype}")
            batch = batch.astype(np.int64)
        _check_model_obs(space, batch)
    return batch


def _sample(probs: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.int64]:
    """One action per row of ``probs`` ``[B, A]`` by inverse CDF (one uniform per row)."""
    cum = np.cumsum(probs, axis=-1)
    u = rng.random((probs.shape[0], 1)) * cum[:, -1:]
    actions: NDArray[np.int64] = np.minimum((cum <= u).sum(axis=-1), probs.shape[1] - 1).astype(
        np.int64
    )
    return actions


# ============================================================================= teacher
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
        self.kind = _model_kind(model)
        self.model = model
        self._temperature = _check_temperature(temperature)
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
        self._temperature = _check_temperature(value)

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
        return _as_model_batch(self.model.observation_space, observations, self.obs_to_model)

    def _forward(self, observations: Any) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """``(scores [B, A], critic values [B] or None)`` in float64, in chunks, no grad."""
        batch = self.model_observations(observations)
        policy = self.model.policy
        n_actions = self.n_actions
        scores = np.empty((batch.shape[0], n_actions))
        critic = np.empty(batch.shape[0]) if self.kind == _ACTOR_CRITIC else None
        was_training = policy.training
        policy.set_training_mode(False)
        try:
            with torch.no_grad():
                for start in range(0, batch.shape[0], _CHUNK):
                    obs, _ = policy.obs_to_tensor(batch[start : start + _CHUNK])
                    out = _network_scores(policy, self.kind, obs)
                    scores[start : start + _CHUNK] = out.double().cpu().numpy()
                    if critic is not None:
                        vals = policy.predict_values(obs).double().cpu().numpy()
                        critic[start : start + _CHUNK] = vals.reshape(-1)
        finally:
            policy.set_training_mode(was_training)
        return scores, critic

    def _outputs(self, observations: Any) -> dict[str, NDArray[np.float64] | None]:
        scores, critic = self._forward(observations)
        probs = softmax_policy(scores, self._temperature)
        if self.kind == _Q:
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
        if self.kind != _Q:
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


# ================================================================= tabular adapters
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


# ====================================================================== into an SB3 net
class _TeacherQuery:
    """Targets from any teacher for a batch of the model's observations."""

    def __init__(
        self,
        teacher: Any,
        mapping: Callable[[Any], Any] | None,
        loss: str,
        temperature: float,
        floor: float,
        n_actions: int,
        scores: str = "auto",
    ) -> None:
        if not callable(getattr(teacher, "action_probs", None)):
            raise ValueError(
                "teacher must have action_probs(obs) -> [A] (e.g. a TabularTeacher, a "
                f"TabularPolicy or an SB3Teacher), got {type(teacher).__name__}"
            )
        self.teacher = teacher
        self.mapping = mapping
        self.loss = loss
        self.temperature = temperature
        self.floor = floor
        self.n_actions = n_actions
        self.scores = scores
        self.has_q: bool | None = False if scores == "log_probs" and loss == "kl" else None

    def _inputs(self, batch: NDArray) -> list[Any]:
        if self.mapping is None:
            return list(batch)
        return [self.mapping(o) for o in batch]

    def _call(self, names: tuple[str, ...], inputs: list[Any]) -> NDArray[np.float64] | None:
        for name in names:
            batched = getattr(self.teacher, f"{name}_batch", None)
            single = getattr(self.teacher, name, None)
            if callable(batched):
                out = np.asarray(batched(inputs), dtype=np.float64)
            elif callable(single):
                out = np.array([np.asarray(single(x), dtype=np.float64) for x in inputs])
            else:
                continue
            if out.shape != (len(inputs), self.n_actions) or not np.all(np.isfinite(out)):
                raise ValueError(
                    f"teacher.{name} must return finite rows of shape [A] = ({self.n_actions},), "
                    f"got {out.shape}"
                )
            return out
        return None

    def __call__(self, batch: NDArray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(teacher probs [B, A], targets [B, A])`` (targets: KL probabilities or Q)."""
        inputs = self._inputs(batch)
        probs = self._call(("action_probs",), inputs)
        assert probs is not None
        if np.any(probs < 0) or not np.allclose(probs.sum(axis=-1), 1.0, atol=1e-6):
            raise ValueError("teacher.action_probs must return probabilities that sum to 1")
        probs = probs / probs.sum(axis=-1, keepdims=True)
        q_values = None
        if self.has_q is not False:
            try:
                q_values = self._call(("q_values", "action_values"), inputs)
            except (ValueError, NotImplementedError):
                if self.loss == "mse" or self.scores == "q_values":
                    raise
                q_values = None
            self.has_q = q_values is not None
        if q_values is None and self.scores == "q_values":
            raise ValueError(
                "teacher_scores='q_values' needs a teacher with q_values(obs) or action_values(obs)"
            )
        if self.loss == "mse":
            if q_values is None:
                raise ValueError(
                    "loss='mse' regresses Q-values: the teacher must provide q_values(obs) or "
                    "action_values(obs) (e.g. a TabularTeacher with q_values, or a DQN "
                    "SB3Teacher)"
                )
            return probs, q_values
        scores = q_values if q_values is not None else np.log(np.maximum(probs, self.floor))
        return probs, softmax_policy(scores, self.temperature)


def _as_vec_env(env: Any, model: Any) -> VecEnv:
    if env is None:
        vec = model.get_env()
        if vec is None:
            raise ValueError("env is None and the model has no environment: pass env=")
    elif isinstance(env, VecEnv):
        vec = env
    elif isinstance(env, gym.Env):
        vec = DummyVecEnv([lambda: env])
    else:
        raise ValueError(
            f"env must be a gymnasium.Env, an SB3 VecEnv or None, got {type(env).__name__}"
        )
    if vec.observation_space != model.observation_space:
        raise ValueError(
            f"env's observation space {vec.observation_space} differs from the model's "
            f"{model.observation_space}"
        )
    if vec.action_space != model.action_space:
        raise ValueError(
            f"env's action space {vec.action_space} differs from the model's {model.action_space}"
        )
    return vec


def distill_into_sb3(
    model: Any,
    teacher: Any,
    env: gym.Env | VecEnv | None = None,
    *,
    steps: int = 10_000,
    temperature: float = 1.0,
    control: str = "teacher",
    loss: str = "kl",
    batch_size: int = 64,
    train_freq: int = 4,
    gradient_steps: int = 1,
    lr: float | None = None,
    buffer_size: int = 100_000,
    obs_to_teacher: Callable[[Any], Any] | None = None,
    teacher_scores: str = "auto",
    teacher_prob_floor: float = TEACHER_PROB_FLOOR,
    seed: int | None = None,
    callback: Callable[[int, float], bool | None] | None = None,
) -> Any:
    """Distil ``teacher`` into the policy network of an SB3 model (Rusu et al.'s direction).

    Loop: step the (vectorised) ``env`` ``train_freq`` times with the control policy, store the
    visited observations with their teacher targets in a FIFO dataset of ``buffer_size``
    (DAgger-style aggregation), then take ``gradient_steps`` minibatch steps of ``batch_size``
    observations drawn uniformly from it with the model's own optimizer
    (``model.policy.optimizer``) and gradient clipping (``model.max_grad_norm``); repeat until
    ``steps`` environment steps have been taken. Losses (per observation, averaged):

    - ``"kl"``: ``KL(p_T || pi_student)`` with ``p_T = softmax(scores / temperature)``. With
      ``teacher_scores="auto"`` (the convention of :mod:`distill_agents.supervised`) the scores
      are the teacher's Q-values if it has them (``q_values`` / ``action_values``: a DQN
      :class:`SB3Teacher`, a ``TabularTeacher`` with ``q_values``; Rusu et al.'s
      ``softmax(q / tau)``) and ``log pi`` (floored at ``teacher_prob_floor``) otherwise, so
      that for a teacher without Q-values ``temperature=1`` targets the teacher's own policy;
      ``"log_probs"`` always uses ``log pi``, ``"q_values"`` requires Q-values. ``temperature=0``
      targets the greedy policy of the scores.
      ``pi_student`` is the PPO/A2C action distribution, or ``softmax(Q)`` of a DQN's
      Q-network (student temperature 1, as in :mod:`distill_agents.supervised`).
    - ``"mse"`` (DQN only): ``||Q_teacher - Q_student||^2``; needs the teacher's Q-values.

    Control: ``"teacher"`` samples from ``teacher.action_probs``; ``"student"`` from the
    network's own distribution (the KL student above; with ``"mse"``,
    ``softmax(Q / temperature)``): on-policy data, like DAgger; ``"uniform"``: uniform actions.

    Only the policy (PPO/A2C actor; DQN Q-network) is trained: the PPO/A2C critic is left as it
    is. For DQN the target network is synchronised with the Q-network at the end. When
    ``env`` is the model's own environment, the next ``.learn()`` resets it. The
    optimizer's learning rate is ``lr`` during distillation and restored afterwards (SB3's own
    schedule takes over again in ``.learn()``); the optimizer's internal state (e.g. Adam's
    moments) carries over.

    Args:
        model: an SB3 ``PPO``, ``A2C`` or ``DQN`` with ``Discrete`` actions.
        teacher: any object with ``action_probs(obs) -> [A]`` (a batched
            ``action_probs_batch`` is used when present) over the env's observations, or over
            ``obs_to_teacher(obs)``.
        env: a ``gymnasium.Env`` or SB3 ``VecEnv`` with the model's spaces; ``None`` uses
            ``model.get_env()``.
        steps: environment steps (summed over the vectorised envs).
        temperature: ``>= 0``, see the losses.
        control: ``"teacher"``, ``"student"`` or ``"uniform"``.
        loss: ``"kl"`` or ``"mse"``.
        batch_size: observations per gradient step.
        train_freq: vectorised env steps between rounds of gradient steps.
        gradient_steps: gradient steps per round.
        lr: learning rate during distillation; ``None`` keeps the optimizer's current one.
        buffer_size: capacity of the observation dataset.
        obs_to_teacher: maps one env observation to the teacher's input (e.g.
            ``TableIndexWrapper.obs_to_index`` for a tabular teacher while the model sees raw
            observations).
        teacher_scores: ``"auto"``, ``"log_probs"`` or ``"q_values"`` (see the losses).
        teacher_prob_floor: floor of the teacher's probabilities inside ``log``.
        seed: seeds the env (``VecEnv.seed``), the action draws and the minibatches.
        callback: ``callback(env_steps_so_far, loss)`` after every gradient step; returning
            ``False`` stops.

    Returns:
        The same ``model`` object, ready for ``.learn()``, ``.predict()`` and ``.save()``.

    Raises:
        ValueError: bad arguments, mismatched spaces, ``"mse"`` with a PPO/A2C model or a
            teacher without Q-values.
    """
    kind = _model_kind(model)
    temperature = _check_temperature(temperature)
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {list(CONTROLS)}, got {control!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    if teacher_scores not in TEACHER_SCORES:
        raise ValueError(
            f"teacher_scores must be one of {list(TEACHER_SCORES)}, got {teacher_scores!r}"
        )
    if loss == "mse" and kind != _Q:
        raise ValueError(
            "loss='mse' regresses Q-values and needs a DQN model; use loss='kl' for PPO/A2C"
        )
    steps = check_int("steps", steps, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    train_freq = check_int("train_freq", train_freq, 1)
    gradient_steps = check_int("gradient_steps", gradient_steps, 0)
    buffer_size = check_int("buffer_size", buffer_size, 1)
    if lr is not None and not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number or None, got {lr!r}")
    if not (isinstance(teacher_prob_floor, (int, float)) and 0.0 < teacher_prob_floor < 1.0):
        raise ValueError(f"teacher_prob_floor must be in (0, 1), got {teacher_prob_floor!r}")
    if obs_to_teacher is not None and not callable(obs_to_teacher):
        raise ValueError(f"obs_to_teacher must be callable or None, got {obs_to_teacher!r}")

    vec = _as_vec_env(env, model)
    policy = model.policy
    n_actions = int(model.action_space.n)
    space = model.observation_space
    query = _TeacherQuery(
        teacher,
        obs_to_teacher,
        loss,
        temperature,
        float(teacher_prob_floor),
        n_actions,
        teacher_scores,
    )
    rng = np.random.default_rng(seed)
    obs_buf = np.zeros((buffer_size, *space.shape), dtype=space.dtype)
    target_buf = np.zeros((buffer_size, n_actions), dtype=np.float32)
    filled, cursor = 0, 0
    optimizer = policy.optimizer
    saved_lrs = [group["lr"] for group in optimizer.param_groups]
    max_grad_norm = getattr(model, "max_grad_norm", None)
    was_training = policy.training

    def student_probs(batch: NDArray) -> NDArray[np.float64]:
        with torch.no_grad():
            obs_t, _ = policy.obs_to_tensor(batch)
            scores = _network_scores(policy, kind, obs_t).double().cpu().numpy()
        return softmax_policy(scores, temperature if loss == "mse" else 1.0)

    if seed is not None:
        vec.seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
    obs = vec.reset()
    done_steps = 0
    try:
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = float(lr)
        stop = False
        while done_steps < steps and not stop:
            for _ in range(train_freq):
                batch = _as_model_batch(space, obs, None)
                teacher_probs, targets = query(batch)
                if control == "teacher":
                    acting = teacher_probs
                elif control == "student":
                    policy.set_training_mode(False)
                    acting = student_probs(batch)
                else:
                    acting = np.full((batch.shape[0], n_actions), 1.0 / n_actions)
                rows = (cursor + np.arange(batch.shape[0])) % buffer_size
                obs_buf[rows] = batch
                target_buf[rows] = targets
                cursor = int((cursor + batch.shape[0]) % buffer_size)
                filled = min(filled + batch.shape[0], buffer_size)
                obs, _, _, _ = vec.step(_sample(acting, rng))
                done_steps += batch.shape[0]
                if done_steps >= steps:
                    break
            policy.set_training_mode(True)
            for _ in range(gradient_steps):
                idx = rng.integers(0, filled, size=batch_size)
                obs_t, _ = policy.obs_to_tensor(obs_buf[idx])
                out = _network_scores(policy, kind, obs_t)
                target = torch.as_tensor(target_buf[idx], dtype=out.dtype, device=out.device)
                if loss == "kl":
                    log_q = torch.log_softmax(out, dim=-1)
                    per_obs = (torch.special.xlogy(target, target) - target * log_q).sum(-1)
                else:
                    per_obs = ((out - target) ** 2).sum(-1)
                value = per_obs.mean()
                optimizer.zero_grad()
                value.backward()
                if max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
                optimizer.step()
                if callback is not None and callback(done_steps, float(value.item())) is False:
                    stop = True
                    break
    finally:
        for group, saved in zip(optimizer.param_groups, saved_lrs, strict=True):
            group["lr"] = saved
        policy.set_training_mode(was_training)
    if kind == _Q:
        policy.q_net_target.load_state_dict(policy.q_net.state_dict())
    if vec is model.get_env():
        model._last_obs = None  # we stepped the model's own env: learn() must reset it
    return model
