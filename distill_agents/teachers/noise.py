"""Noisy teachers (Fig. 5's teacher noise): three procedures that make some actions wrong."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from distill_agents import planning
from distill_agents.teachers.build import padding_mask, policy_values
from distill_agents.teachers.tables import NOISE_STREAM, Teachers

__all__ = [
    "NOISE_PROCEDURES",
    "noisy_teachers",
]


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
    pad = padding_mask(teachers.n_indices, n)
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
