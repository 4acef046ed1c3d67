"""The Gymnasium/Minigrid-style battery, run over every registered id of the package."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env
from helpers import rollout

import gridworld_env

ENV_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith("Distill"))
# (id, kwargs) configurations: every id with defaults plus the grid's other modes.
CONFIGS = [(env_id, {}) for env_id in ENV_IDS] + [
    ("DistillGrid-v0", {"observation": "partial"}),
    ("DistillGrid-v0", {"observation": "partial", "view_size": 5, "n_actions": 7}),
    ("DistillGrid-v0", {"layout_seed": None}),
]
CONFIG_IDS = [f"{env_id}-{json.dumps(kw, sort_keys=True)}" for env_id, kw in CONFIGS]


def test_all_ids_registered():
    assert ENV_IDS == ["DistillChain-v0", "DistillGrid-v0", "DistillOscillation-v0"]


def test_reimport_is_idempotent_and_silent():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gridworld_env.register_envs()
        import importlib

        importlib.reload(gridworld_env)
    assert caught == []


def test_module_prefixed_id_works_without_import():
    code = (
        "import gymnasium as gym\n"
        "env = gym.make('gridworld_env:DistillGrid-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "print(obs, info['state'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["210", "210"]


@pytest.mark.parametrize(("env_id", "kwargs"), CONFIGS, ids=CONFIG_IDS)
def test_gymnasium_check_env_has_no_warnings(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize(("env_id", "kwargs"), CONFIGS, ids=CONFIG_IDS)
def test_sb3_check_env_has_no_warnings(env_id, kwargs):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    for wrap in (False, True):
        env = gym.make(env_id, **kwargs)
        if wrap:
            env.reset(seed=0)  # fixes a deferred layout
            env = gridworld_env.TableIndexWrapper(env)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sb3_checker.check_env(env)
        assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize(("env_id", "kwargs"), CONFIGS, ids=CONFIG_IDS)
def test_same_seed_same_rollout(env_id, kwargs):
    first = rollout(gym.make(env_id, **kwargs), seed=42)
    second = rollout(gym.make(env_id, **kwargs), seed=42)
    third = rollout(gym.make(env_id, **kwargs), seed=43)
    assert first == second
    if env_id != "DistillOscillation-v0":  # deterministic MDP: only the actions differ
        assert first != third


@pytest.mark.parametrize(("env_id", "kwargs"), CONFIGS, ids=CONFIG_IDS)
def test_pickle_roundtrip_continues_identically(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    env.reset(seed=0)
    for action in [0, 1] * 3:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    clone = pickle.loads(pickle.dumps(env))
    for action in [1, 0, 1, 1, 0, 0, 1, 0] * 5:
        a = env.step(action)
        b = clone.step(action)
        assert np.asarray(a[0]).tolist() == np.asarray(b[0]).tolist()
        assert a[1:] == b[1:]
        if a[2] or a[3]:
            env.reset(seed=1)
            clone.reset(seed=1)


@pytest.mark.parametrize(("env_id", "kwargs"), CONFIGS, ids=CONFIG_IDS)
def test_json_spec_roundtrip(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    spec_json = env.spec.to_json()
    remade = gym.make(EnvSpec.from_json(spec_json))
    assert remade.spec.kwargs == env.spec.kwargs
    assert rollout(remade, seed=1, n_steps=50) == rollout(env, seed=1, n_steps=50)


@pytest.mark.parametrize(("env_id", "kwargs"), CONFIGS, ids=CONFIG_IDS)
def test_every_render_mode(env_id, kwargs):
    modes = gym.make(env_id, **kwargs).metadata["render_modes"]
    assert "ansi" in modes
    for mode in modes:
        env = gym.make(env_id, render_mode=mode, **kwargs)
        env.reset(seed=0)
        frame = env.render()
        if mode == "ansi":
            assert isinstance(frame, str) and frame.strip()
        elif mode == "rgb_array":
            assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
            assert frame.std() > 0
    silent = gym.make(env_id, **kwargs)
    silent.reset(seed=0)
    assert silent.render() is None


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_exact_model_and_info_state(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    mdp = env.unwrapped.mdp
    table = env.unwrapped.observation_of_state
    assert isinstance(mdp, gridworld_env.TabularMDP)
    assert table.dtype == np.int64 and table.shape[0] == mdp.n_states
    assert mdp.initial[info["state"]] > 0
    np.testing.assert_array_equal(np.asarray(table[info["state"]]), np.asarray(obs))
    np.testing.assert_allclose(mdp.transitions.sum(-1), 1.0, atol=1e-12)


def test_time_limit_truncates():
    layout = ("S..", "...", "..G")
    env = gym.make("DistillGrid-v0", layout=layout, absorb_prob=0.0, noise=0.0)
    env.reset(seed=0)
    for step in range(gridworld_env.MAX_EPISODE_STEPS):
        _, _, terminated, truncated, _ = env.step(0)  # bump the left edge forever
        assert not terminated
        assert truncated == (step == gridworld_env.MAX_EPISODE_STEPS - 1)
