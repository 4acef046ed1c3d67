"""``TabularPolicy``: probabilities, SB3-style predict, files."""

from __future__ import annotations

import zipfile

import gymnasium as gym
import numpy as np
import pytest

import gridworld_env  # noqa: F401 -- registers the environments
from distill_agents import TabularPolicy
from distill_agents.storage import FileFormatError, save_arrays

LOGITS = np.array([[0.0, 1.0, -1.0], [2.0, 2.0, 0.0], [0.0, 0.0, 5.0]])


def test_probabilities_and_values():
    policy = TabularPolicy(LOGITS, values=[1.0, 2.0, 3.0])
    probs = policy.probs
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0)
    np.testing.assert_allclose(
        policy.action_probs(1), np.array([np.e**2, np.e**2, 1]) / (2 * np.e**2 + 1)
    )
    np.testing.assert_allclose(policy.action_probs(np.int64(0)), probs[0])
    assert policy.value(2) == 3.0
    assert (policy.n_obs, policy.n_actions) == (3, 3)
    assert "with values" in repr(policy)
    with pytest.raises(ValueError, match="has no values"):
        TabularPolicy(LOGITS).value(0)
    with pytest.raises(ValueError, match=r"obs must be in \[0, 3\)"):
        policy.action_probs(3)
    with pytest.raises(ValueError, match="integer table index"):
        policy.action_probs(1.5)


def test_state_policy_maps_through_the_index():
    policy = TabularPolicy(LOGITS)
    state = policy.state_policy(np.array([2, 0, -1]))
    np.testing.assert_allclose(state[0], policy.probs[2])
    np.testing.assert_allclose(state[1], policy.probs[0])
    np.testing.assert_allclose(state[2], 1 / 3)


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"logits must have shape \[n, A\]"):
        TabularPolicy(np.zeros(3))
    with pytest.raises(ValueError, match="logits must be finite"):
        TabularPolicy([[0.0, np.inf]])
    with pytest.raises(ValueError, match=r"values must have shape \[n\] = \(3,\)"):
        TabularPolicy(LOGITS, values=np.zeros(2))


def test_predict_single_and_batch():
    policy = TabularPolicy(LOGITS, seed=0)
    action, state = policy.predict(2, deterministic=True)
    assert action.shape == () and int(action) == 2 and state is None
    actions, _ = policy.predict(np.array([0, 1, 2]), deterministic=True)
    np.testing.assert_array_equal(actions, [1, 0, 2])  # ties: the first maximiser
    column, _ = policy.predict(np.array([[0], [2]]), deterministic=True)
    np.testing.assert_array_equal(column, [1, 2])
    marker = object()
    assert policy.predict(0, state=marker)[1] is marker
    with pytest.raises(ValueError, match=r"observation must be in \[0, 3\)"):
        policy.predict([0, 5])
    with pytest.raises(ValueError, match=r"batch \[B\] / \[B, 1\]"):
        policy.predict(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="integer table indices"):
        policy.predict(0.5)


def test_predict_samples_from_the_policy_and_is_seedable():
    policy = TabularPolicy(LOGITS, seed=1)
    obs = np.ones(30_000, dtype=int)
    actions, _ = policy.predict(obs)
    freq = np.bincount(actions, minlength=3) / obs.size
    np.testing.assert_allclose(freq, policy.probs[1], atol=0.01)
    a = TabularPolicy(LOGITS, seed=5).predict(np.zeros(50, dtype=int))[0]
    b = TabularPolicy(LOGITS, seed=5).predict(np.zeros(50, dtype=int))[0]
    np.testing.assert_array_equal(a, b)
    policy.seed(5)
    np.testing.assert_array_equal(policy.predict(np.zeros(50, dtype=int))[0], a)


def test_save_and_load_round_trip(tmp_path):
    policy = TabularPolicy(LOGITS, values=[1.0, -2.0, 0.5])
    path = policy.save(tmp_path / "student")
    assert path.suffix == ".npz"
    loaded = TabularPolicy.load(path)
    np.testing.assert_array_equal(loaded.logits, LOGITS)
    np.testing.assert_array_equal(loaded.values, [1.0, -2.0, 0.5])
    bare = TabularPolicy.load(TabularPolicy(LOGITS).save(tmp_path / "bare.npz"))
    assert bare.values is None
    with zipfile.ZipFile(path) as archive:
        assert not any(name.endswith(".pkl") for name in archive.namelist())


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(FileFormatError, match="no such file"):
        TabularPolicy.load(tmp_path / "missing.npz")
    other = save_arrays(tmp_path / "other.npz", "teachers", {"logits": LOGITS})
    with pytest.raises(FileFormatError, match="expected 'tabular_policy'"):
        TabularPolicy.load(other)
    path = TabularPolicy(LOGITS).save(tmp_path / "s.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(FileFormatError):
        TabularPolicy.load(truncated)
    mismatched = save_arrays(
        tmp_path / "mismatch.npz", "tabular_policy", {"logits": LOGITS, "values": np.zeros(2)},
        meta={"n_obs": 3, "n_actions": 3},
    )  # fmt: skip
    with pytest.raises(FileFormatError, match="values shape"):
        TabularPolicy.load(mismatched)
    lying = save_arrays(
        tmp_path / "lying.npz", "tabular_policy", {"logits": LOGITS},
        meta={"n_obs": 4, "n_actions": 3},
    )  # fmt: skip
    with pytest.raises(FileFormatError, match="disagrees with the recorded sizes"):
        TabularPolicy.load(lying)
    nonfinite = save_arrays(
        tmp_path / "nan.npz", "tabular_policy", {"logits": LOGITS * np.nan},
        meta={"n_obs": 3, "n_actions": 3},
    )  # fmt: skip
    with pytest.raises(FileFormatError, match="non-finite"):
        TabularPolicy.load(nonfinite)


def test_sb3_evaluate_policy_accepts_it():
    evaluation = pytest.importorskip("stable_baselines3.common.evaluation")
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    logits = np.zeros((11, 2))
    logits[:, 1] = 20.0  # always right: return 0.99 ** 5 in expectation
    policy = TabularPolicy(logits, seed=0)
    venv = DummyVecEnv([lambda: Monitor(gym.make("DistillChain-v0"))] * 2)
    venv.seed(0)
    mean, _ = evaluation.evaluate_policy(policy, venv, n_eval_episodes=200, deterministic=True)
    assert 0.85 < mean <= 1.0
