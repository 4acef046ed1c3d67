"""Helpers shared by several test modules (importable as ``helpers``: see conftest.py).

- :func:`softmax` and :func:`numerical_gradient`: the reference arithmetic the update and
  theorem tests compare the package's analytic gradients with;
- :func:`rollout` and :func:`assert_same_continuation`: traces of environments, and two copies
  stepped in lockstep;
- :data:`ROOT`: the repository's root (the scripts and docs the tests read are found from it,
  wherever under ``tests/`` the test module sits).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]


def softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Softmax over the last axis (max-shifted)."""
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numerical_gradient(fn: Any, x: NDArray[np.float64], h: float = 1e-6) -> NDArray[np.float64]:
    """Central differences of ``sum(fn(x))`` in every entry of ``x`` (step ``h``)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += h
        minus[i] -= h
        grad[i] = (np.sum(fn(plus)) - np.sum(fn(minus))) / (2 * h)
    return grad


def rollout(env: Any, seed: int, n_steps: int = 400) -> list[Any]:
    """``n_steps`` random actions from ``reset(seed=seed)``, resetting at episode ends: the
    observations, rewards, flags and ``info["state"]`` in order."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    trace: list[Any] = [(np.asarray(obs).tolist(), info["state"])]
    for _ in range(n_steps):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        trace.append((np.asarray(obs).tolist(), reward, terminated, truncated, info["state"]))
        if terminated or truncated:
            obs, info = env.reset()
            trace.append((np.asarray(obs).tolist(), info["state"]))
    return trace


def assert_same_continuation(env: Any, copy: Any, actions: Sequence[int], reset_seed: int) -> None:
    """Step ``env`` and ``copy`` with ``actions``: every step and reset must be equal."""
    for action in actions:
        a, b = env.step(action), copy.step(action)
        assert a == b
        if a[2] or a[3]:
            assert env.reset(seed=reset_seed) == copy.reset(seed=reset_seed)
