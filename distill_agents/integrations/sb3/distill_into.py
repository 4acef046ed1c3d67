"""Distillation of any teacher into the policy network of an SB3 model (Rusu et al., 2016).

:func:`distill_into_sb3` collects observations by rolling out the teacher, the student or a
uniform policy, stores them with the teacher's targets in a FIFO dataset, and fits the network
to them with the model's own optimizer; the model keeps learning with ``.learn()`` afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from distill_agents.integrations.sb3.network import (
    Q,
    as_model_batch,
    check_temperature,
    model_kind,
    network_scores,
    sample_actions,
)
from distill_agents.planning import softmax_policy
from distill_agents.updates import TEACHER_PROB_FLOOR
from gridworld_env.base import check_int

__all__ = ["CONTROLS", "LOSSES", "TEACHER_SCORES", "distill_into_sb3"]

#: Control policies of :func:`distill_into_sb3`.
CONTROLS = ("teacher", "student", "uniform")
#: Losses of :func:`distill_into_sb3`.
LOSSES = ("kl", "mse")
#: Where the KL targets of :func:`distill_into_sb3` come from.
TEACHER_SCORES = ("auto", "log_probs", "q_values")


@dataclass
class _Settings:
    """The checked arguments of :func:`distill_into_sb3` (a ValueError for a bad one)."""

    kind: str
    temperature: float
    control: str
    loss: str
    teacher_scores: str
    steps: int
    batch_size: int
    train_freq: int
    gradient_steps: int
    buffer_size: int
    lr: float | None
    teacher_prob_floor: float
    obs_to_teacher: Callable[[Any], Any] | None

    def __post_init__(self) -> None:
        self.temperature = check_temperature(self.temperature)
        if self.control not in CONTROLS:
            raise ValueError(f"control must be one of {list(CONTROLS)}, got {self.control!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        if self.teacher_scores not in TEACHER_SCORES:
            raise ValueError(
                f"teacher_scores must be one of {list(TEACHER_SCORES)}, got {self.teacher_scores!r}"
            )
        if self.loss == "mse" and self.kind != Q:
            raise ValueError(
                "loss='mse' regresses Q-values and needs a DQN model; use loss='kl' for PPO/A2C"
            )
        self.steps = check_int("steps", self.steps, 0)
        self.batch_size = check_int("batch_size", self.batch_size, 1)
        self.train_freq = check_int("train_freq", self.train_freq, 1)
        self.gradient_steps = check_int("gradient_steps", self.gradient_steps, 0)
        self.buffer_size = check_int("buffer_size", self.buffer_size, 1)
        lr = self.lr
        if lr is not None and not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number or None, got {lr!r}")
        floor = self.teacher_prob_floor
        if not (isinstance(floor, (int, float)) and 0.0 < floor < 1.0):
            raise ValueError(f"teacher_prob_floor must be in (0, 1), got {floor!r}")
        if self.obs_to_teacher is not None and not callable(self.obs_to_teacher):
            raise ValueError(
                f"obs_to_teacher must be callable or None, got {self.obs_to_teacher!r}"
            )


class _TeacherQuery:
    """Targets from any teacher for a batch of the model's observations."""

    def __init__(self, teacher: Any, settings: _Settings, n_actions: int) -> None:
        if not callable(getattr(teacher, "action_probs", None)):
            raise ValueError(
                "teacher must have action_probs(obs) -> [A] (e.g. a TabularTeacher, a "
                f"TabularPolicy or an SB3Teacher), got {type(teacher).__name__}"
            )
        self.teacher = teacher
        self.mapping = settings.obs_to_teacher
        self.loss = loss = settings.loss
        self.temperature = settings.temperature
        self.floor = float(settings.teacher_prob_floor)
        self.n_actions = n_actions
        self.scores = scores = settings.teacher_scores
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
    settings = _Settings(
        model_kind(model), temperature, control, loss, teacher_scores, steps, batch_size,
        train_freq, gradient_steps, buffer_size, lr, teacher_prob_floor, obs_to_teacher,
    )  # fmt: skip
    vec = _as_vec_env(env, model)
    query = _TeacherQuery(teacher, settings, int(model.action_space.n))
    _DistillLoop(model, vec, query, settings, seed).run(callback)
    if settings.kind == Q:
        model.policy.q_net_target.load_state_dict(model.policy.q_net.state_dict())
    if vec is model.get_env():
        model._last_obs = None  # we stepped the model's own env: learn() must reset it
    return model


class _Dataset:
    """A FIFO dataset of ``capacity`` model observations and their teacher targets."""

    def __init__(self, capacity: int, space: spaces.Space, n_actions: int) -> None:
        shape: tuple[int, ...] = tuple(space.shape or ())
        self.obs = np.zeros((capacity, *shape), dtype=space.dtype)
        self.targets = np.zeros((capacity, n_actions), dtype=np.float32)
        self.capacity = capacity
        self.filled, self.cursor = 0, 0

    def add(self, batch: NDArray, targets: NDArray[np.float64]) -> None:
        """Store a batch, overwriting the oldest rows once full."""
        rows = (self.cursor + np.arange(batch.shape[0])) % self.capacity
        self.obs[rows] = batch
        self.targets[rows] = targets
        self.cursor = int((self.cursor + batch.shape[0]) % self.capacity)
        self.filled = min(self.filled + batch.shape[0], self.capacity)


class _DistillLoop:
    """The rounds of :func:`distill_into_sb3`: collect ``train_freq`` steps, then train."""

    def __init__(
        self, model: Any, vec: VecEnv, query: _TeacherQuery, settings: _Settings, seed: int | None
    ) -> None:
        self.model, self.vec, self.query, self.settings = model, vec, query, settings
        self.policy = model.policy
        self.n_actions = int(model.action_space.n)
        self.space = model.observation_space
        self.rng = np.random.default_rng(seed)
        self.data = _Dataset(settings.buffer_size, self.space, self.n_actions)
        self.seed = seed
        self.done_steps = 0

    def run(self, callback: Callable[[int, float], bool | None] | None) -> None:
        """Train until ``steps`` env steps are taken or ``callback`` returns ``False``."""
        settings, policy = self.settings, self.policy
        optimizer = policy.optimizer
        saved_lrs = [group["lr"] for group in optimizer.param_groups]
        was_training = policy.training
        if self.seed is not None:
            self.vec.seed(int(np.random.SeedSequence(self.seed).generate_state(1)[0]))
        obs = self.vec.reset()
        try:
            if settings.lr is not None:
                for group in optimizer.param_groups:
                    group["lr"] = float(settings.lr)
            while self.done_steps < settings.steps:
                obs = self.collect(obs)
                policy.set_training_mode(True)
                if not self.train(callback):
                    break
        finally:
            for group, saved in zip(optimizer.param_groups, saved_lrs, strict=True):
                group["lr"] = saved
            policy.set_training_mode(was_training)

    def collect(self, obs: Any) -> Any:
        """Up to ``train_freq`` vectorised steps with the control policy; the last obs."""
        for _ in range(self.settings.train_freq):
            batch = as_model_batch(self.space, obs, None)
            teacher_probs, targets = self.query(batch)
            acting = self.acting_probs(batch, teacher_probs)
            self.data.add(batch, targets)
            obs, _, _, _ = self.vec.step(sample_actions(acting, self.rng))
            self.done_steps += batch.shape[0]
            if self.done_steps >= self.settings.steps:
                break
        return obs

    def acting_probs(self, batch: NDArray, teacher_probs: NDArray[np.float64]) -> NDArray:
        """The control policy's probabilities ``[B, A]`` on a batch."""
        control, n_actions = self.settings.control, self.n_actions
        if control == "teacher":
            return teacher_probs
        if control == "uniform":
            return np.full((batch.shape[0], n_actions), 1.0 / n_actions)
        self.policy.set_training_mode(False)
        with torch.no_grad():
            obs_t, _ = self.policy.obs_to_tensor(batch)
            scores = network_scores(self.policy, self.settings.kind, obs_t).double().cpu().numpy()
        loss = self.settings.loss
        return softmax_policy(scores, self.settings.temperature if loss == "mse" else 1.0)

    def train(self, callback: Callable[[int, float], bool | None] | None) -> bool:
        """``gradient_steps`` minibatch steps; ``False`` when ``callback`` asks to stop."""
        settings, policy, data = self.settings, self.policy, self.data
        max_grad_norm = getattr(self.model, "max_grad_norm", None)
        for _ in range(settings.gradient_steps):
            idx = self.rng.integers(0, data.filled, size=settings.batch_size)
            obs_t, _ = policy.obs_to_tensor(data.obs[idx])
            out = network_scores(policy, settings.kind, obs_t)
            target = torch.as_tensor(data.targets[idx], dtype=out.dtype, device=out.device)
            if settings.loss == "kl":
                log_q = torch.log_softmax(out, dim=-1)
                per_obs = (torch.special.xlogy(target, target) - target * log_q).sum(-1)
            else:
                per_obs = ((out - target) ** 2).sum(-1)
            value = per_obs.mean()
            policy.optimizer.zero_grad()
            value.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
            policy.optimizer.step()
            if callback is not None and callback(self.done_steps, float(value.item())) is False:
                return False
        return True
