"""The native batched vector env: same dynamics as the single envs, Gymnasium's batched API."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.passive_env_checker import check_obs
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space, iterate

import gridworld_env
from gridworld_env import TableIndexWrapper
from gridworld_env.vector import (
    DistillChainVectorEnv,
    DistillGridVectorEnv,
    DistillOscillationVectorEnv,
    StackedModels,
    TabularVectorEnv,
    chunk_size_for,
    env_bytes_per_mdp,
)


def make_vec(n_envs: int, env_id: str = "DistillGrid-v0", **kwargs):
    return gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point", **kwargs)


def rollout(envs, actions, seed=0):
    """All outputs of reset(seed) and then one step per row of ``actions``."""
    obs, info = envs.reset(seed=seed)
    out = [(obs, np.zeros(envs.num_envs), None, None, info["state"])]
    for row in actions:
        obs, rew, term, trunc, info = envs.step(row)
        out.append((obs, rew, term, trunc, info["state"]))
    return out


def assert_rollouts_equal(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        for x, y in zip(a, b, strict=True):
            if x is None:
                assert y is None
            else:
                np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------ registration, spaces
@pytest.mark.parametrize(
    ("env_id", "cls"),
    [
        ("DistillGrid-v0", DistillGridVectorEnv),
        ("DistillChain-v0", DistillChainVectorEnv),
        ("DistillOscillation-v0", DistillOscillationVectorEnv),
    ],
)
def test_make_vec_builds_the_native_vector_env_for_every_id(env_id, cls):
    envs = make_vec(3, env_id)
    assert type(envs) is cls and isinstance(envs, gym.vector.VectorEnv)
    assert envs.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert envs.num_envs == 3
    assert envs.max_episode_steps == gridworld_env.MAX_EPISODE_STEPS  # passed by make_vec
    assert envs.spec is not None and envs.spec.id == env_id
    single = gym.make(env_id)
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    assert envs.observation_space == batch_space(single.observation_space, 3)
    assert envs.action_space == batch_space(single.action_space, 3)


@pytest.mark.parametrize("observation", ["full", "partial", "index", "partial_index"])
def test_outputs_have_the_declared_types_and_lie_in_the_spaces(observation):
    envs = make_vec(5, observation=observation, width=7, height=6, layout_seed=2)
    assert envs.observation_space == batch_space(envs.single_observation_space, 5)
    obs, info = envs.reset(seed=1)
    assert obs.dtype == np.int64 and envs.observation_space.contains(obs)
    assert info["state"].dtype == np.int64 and info["state"].shape == (5,)
    rng = np.random.default_rng(0)
    for _ in range(300):
        obs, rew, term, trunc, info = envs.step(envs.action_space.sample())
        assert envs.observation_space.contains(obs), obs
        assert obs.shape == envs.observation_space.shape
        assert rew.dtype == np.float64 and rew.shape == (5,)
        assert term.dtype == np.bool_ and trunc.dtype == np.bool_
        assert info["_state"].all()
        envs.action_space.seed(int(rng.integers(1000)))


def test_passive_checker_accepts_every_sub_env_observation_and_data_is_not_reused():
    # Gymnasium 1.4 has no vector-env checker; apply its single-env checks that carry over.
    envs = make_vec(4, observation="partial", layout_seed=0)
    obs, _ = envs.reset(seed=0)
    for sub_obs in iterate(envs.observation_space, obs):
        check_obs(sub_obs, envs.single_observation_space, "reset")
    previous = envs.step(np.zeros(4, dtype=np.int64))
    current = envs.step(np.ones(4, dtype=np.int64))
    for sub_obs in iterate(envs.observation_space, current[0]):
        check_obs(sub_obs, envs.single_observation_space, "step")
    for old, new in zip(previous[:4], current[:4], strict=True):
        assert not np.shares_memory(old, new)
    assert not np.shares_memory(previous[4]["state"], current[4]["state"])
    states = envs.states
    current[4]["state"][:] = -5  # the caller owns what it gets back
    np.testing.assert_array_equal(envs.states, states)


def test_index_space_is_the_largest_table_and_each_sub_env_stays_below_its_own():
    envs = make_vec(6, observation="index", layout_seed=0)
    n_indices = envs.models.n_indices
    assert envs.single_observation_space == gym.spaces.Discrete(int(n_indices.max()))
    assert len(set(n_indices.tolist())) > 1  # random layouts differ in reachable cells
    obs, _ = envs.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(500):
        assert np.all(obs < n_indices)
        obs, *_ = envs.step(rng.integers(0, 4, 6))


# ------------------------------------------------------------- same MDPs as the single env
def test_layouts_are_those_of_single_envs_with_consecutive_seeds():
    kwargs = {"width": 9, "height": 7, "wall_prob": 0.2}
    envs = make_vec(5, layout_seed=11, **kwargs)
    assert envs.layout_seeds == (11, 12, 13, 14, 15)
    for i in range(5):
        single = gym.make("DistillGrid-v0", layout_seed=11 + i, **kwargs).unwrapped
        assert envs.layouts[i] == single.layout
        np.testing.assert_array_equal(envs.mdp(i).next_states, single.mdp.next_states)
    assert len(set(envs.layouts)) == 5
    # A chunk starting at layout_seed=base + start holds the same MDPs as the big batch.
    chunk = make_vec(2, layout_seed=14, **kwargs)
    assert chunk.layouts == envs.layouts[3:]


def test_models_stack_the_single_env_models():
    envs = make_vec(3, layout_seed=5, observation="partial", n_actions=6)
    models = envs.models
    assert isinstance(models, StackedModels)
    assert models.next_states.shape == (3, 401, 5, 6)
    assert (models.n_envs, models.n_states, models.n_actions, models.n_rows) == (3, 401, 6, 5)
    assert models.observation_of_state.shape == (3, 401, 81)
    for i in range(3):
        single = gym.make(
            "DistillGrid-v0", layout_seed=5 + i, observation="partial", n_actions=6
        ).unwrapped
        wrapper = TableIndexWrapper(single)
        mdp = models.mdp(i)
        for name in ("next_states", "next_probs", "next_rewards", "initial", "terminal"):
            np.testing.assert_array_equal(getattr(mdp, name), getattr(single.mdp, name))
        np.testing.assert_array_equal(mdp.action_rows, single.mdp.action_rows)
        np.testing.assert_array_equal(models.observation_of_state[i], single.observation_of_state)
        np.testing.assert_array_equal(models.state_to_index[i], wrapper.state_to_index)
        assert models.n_indices[i] == wrapper.observation_space.n
    assert not models.next_probs.flags.writeable
    assert envs.models is models  # cached
    assert envs.nbytes > 0


@pytest.mark.parametrize("observation", ["full", "partial"])
def test_deterministic_trajectories_equal_single_envs_across_autoresets(observation):
    base, n_envs, n_steps = 20, 6, 400
    kwargs = {"width": 5, "height": 5, "noise": 0.0, "absorb_prob": 0.0}
    envs = make_vec(
        n_envs, layout_seed=base, observation=observation, max_episode_steps=40, **kwargs
    )
    singles = [
        gym.make(
            "DistillGrid-v0",
            layout_seed=base + i,
            observation=observation,
            max_episode_steps=40,
            **kwargs,
        )
        for i in range(n_envs)
    ]
    actions = np.random.default_rng(3).integers(0, 4, (n_steps, n_envs))
    obs, info = envs.reset(seed=0)
    pending = [False] * n_envs
    for i, env in enumerate(singles):
        single_obs, single_info = env.reset(seed=0)
        np.testing.assert_array_equal(obs[i], single_obs)
        assert info["state"][i] == single_info["state"]
    n_ends = np.zeros(n_envs, dtype=int)
    for row in actions:
        obs, rew, term, trunc, info = envs.step(row)
        for i, env in enumerate(singles):
            if pending[i]:  # NEXT_STEP: this step resets the sub-env
                expected = (*env.reset(), 0.0, False, False)
                single_obs, single_info, single_rew, single_term, single_trunc = expected
            else:
                single_obs, single_rew, single_term, single_trunc, single_info = env.step(
                    int(row[i])
                )
            np.testing.assert_array_equal(obs[i], single_obs)
            assert rew[i] == single_rew
            assert term[i] == single_term and trunc[i] == single_trunc
            assert info["state"][i] == single_info["state"]
            pending[i] = bool(single_term or single_trunc)
            n_ends[i] += pending[i]
    assert n_ends.min() >= 2  # every sub-env went through autoresets
    assert n_ends.sum() > n_ends.size * 2


def test_matches_gymnasium_sync_vector_env_of_single_envs():
    """Gymnasium's own SyncVectorEnv (next-step autoreset, TimeLimit) is the reference."""
    base, n_envs = 40, 5
    kwargs = {"width": 4, "height": 4, "noise": 0.0, "absorb_prob": 0.0}
    envs = make_vec(n_envs, layout_seed=base, max_episode_steps=25, **kwargs)
    sync = gym.vector.SyncVectorEnv(
        [
            (
                lambda i=i: gym.make(
                    "DistillGrid-v0", layout_seed=base + i, max_episode_steps=25, **kwargs
                )
            )
            for i in range(n_envs)
        ]
    )
    actions = np.random.default_rng(0).integers(0, 4, (300, n_envs))
    ours, theirs = rollout(envs, actions), rollout(sync, actions)
    assert_rollouts_equal(ours, theirs)
    assert sum(int(t.sum()) for _, _, t, _, _ in ours[1:]) > n_envs  # episodes ended


@pytest.mark.parametrize("observation", ["index", "partial_index"])
def test_index_observations_equal_table_index_wrapper(observation):
    base_observation = "partial" if observation == "partial_index" else "full"
    kwargs = {"width": 6, "height": 6, "noise": 0.0, "absorb_prob": 0.0, "view_size": 3}
    envs = make_vec(4, layout_seed=8, observation=observation, **kwargs)
    wrapped = [
        TableIndexWrapper(
            gym.make("DistillGrid-v0", layout_seed=8 + i, observation=base_observation, **kwargs)
        )
        for i in range(4)
    ]
    for i, env in enumerate(wrapped):
        np.testing.assert_array_equal(envs.models.state_to_index[i], env.state_to_index)
    actions = np.random.default_rng(5).integers(0, 4, (300, 4))
    obs, _ = envs.reset(seed=0)
    for i, env in enumerate(wrapped):
        assert obs[i] == env.reset(seed=0)[0]
    pending = [False] * 4
    for row in actions:
        obs, *_ = envs.step(row)
        for i, env in enumerate(wrapped):
            if pending[i]:
                expected, *_ = env.reset()
                pending[i] = False
            else:
                expected, _, t, tr, _ = env.step(int(row[i]))
                pending[i] = t or tr
            assert obs[i] == expected


def test_transition_frequencies_match_the_model_rows():
    n_envs, n_samples = 3, 20000
    envs = make_vec(n_envs, layout_seed=2, noise=0.4, absorb_prob=0.05)
    actions = np.array([0, 1, 3])
    counts = np.zeros((n_envs, envs.models.n_states))
    reward_of = [{} for _ in range(n_envs)]
    envs.reset(seed=123)
    for _ in range(n_samples):
        _, rew, _, _, info = envs.step(actions)
        for i, (s, r) in enumerate(zip(info["state"], rew, strict=True)):
            counts[i, s] += 1
            reward_of[i].setdefault(int(s), set()).add(float(r))
        envs.reset()
    for i in range(n_envs):
        mdp = envs.mdp(i)
        start = int(np.flatnonzero(mdp.initial)[0])
        probs = mdp.transitions[start, actions[i]]
        freq = counts[i] / n_samples
        tolerance = 5 * np.sqrt(probs * (1 - probs) / n_samples) + 1e-12
        assert np.all(np.abs(freq - probs) <= tolerance), (i, freq[probs > 0], probs[probs > 0])
        assert counts[i][probs == 0].sum() == 0
        # The reward received with each outcome is the model's reward for that outcome.
        for s, rewards in reward_of[i].items():
            mask = (mdp.next_states[start, mdp.action_rows[actions[i]]] == s) & (
                mdp.next_probs[start, mdp.action_rows[actions[i]]] > 0
            )
            assert rewards == set(mdp.next_rewards[start, mdp.action_rows[actions[i]]][mask])


def test_successive_steps_draw_fresh_independent_uniforms():
    # A long noisy corridor, always pushing right: each step moves right with probability
    # 1 - noise + noise / 2 = 0.75 and left otherwise, whatever happened before.
    n_envs, n_steps = 8, 400
    envs = make_vec(n_envs, "DistillChain-v0", length=2001, noise=0.5, absorb_prob=0.0)
    _, info = envs.reset(seed=0)
    states = [info["state"]]
    for _ in range(n_steps):
        states.append(envs.step(np.ones(n_envs, dtype=np.int64))[4]["state"])
    moves = np.diff(np.array(states), axis=0)
    assert set(np.unique(moves).tolist()) == {-1, 1}
    right = moves == 1
    assert abs(right.mean() - 0.75) < 5 * np.sqrt(0.75 * 0.25 / right.size)
    assert np.all(np.abs(right.mean(axis=0) - 0.75) < 0.12)  # every sub-env, not the average
    same_as_before = (right[1:] == right[:-1]).mean()  # 0.75**2 + 0.25**2 if independent
    assert abs(same_as_before - 0.625) < 5 * np.sqrt(0.625 * 0.375 / right[1:].size)


def test_partial_observation_after_absorption_repeats_the_last_cell():
    envs = make_vec(2, layout_seed=0, observation="partial", absorb_prob=1.0)
    obs0, _ = envs.reset(seed=0)
    obs1, rew, term, _, info = envs.step(np.array([1, 2]))
    s_term = envs.models.n_states - 1
    np.testing.assert_array_equal(info["state"], [s_term, s_term])
    assert term.all() and np.all(rew == 0)
    np.testing.assert_array_equal(obs1, obs0)


# --------------------------------------------------------------------------- autoreset
CORRIDOR = ("###", "GS.", "###")


def test_next_step_autoreset_on_termination_and_truncation():
    envs = make_vec(2, layout=CORRIDOR, noise=0.0, absorb_prob=0.0, max_episode_steps=2)
    obs, info = envs.reset(seed=0)
    np.testing.assert_array_equal(obs, [4, 4])
    # Sub-env 0 steps onto G (+10, terminal); sub-env 1 moves right onto the empty cell.
    obs, rew, term, trunc, info = envs.step(np.array([0, 1]))
    np.testing.assert_array_equal(obs, [3, 5])
    np.testing.assert_array_equal(rew, [10.0, 0.0])
    np.testing.assert_array_equal(term, [True, False])
    np.testing.assert_array_equal(trunc, [False, False])
    # Sub-env 0 is reset (its action ignored, reward 0, not done); sub-env 1 hits the time limit.
    obs, rew, term, trunc, info = envs.step(np.array([1, 1]))
    np.testing.assert_array_equal(obs, [4, 5])
    np.testing.assert_array_equal(info["state"], [4, 5])
    np.testing.assert_array_equal(rew, [0.0, 0.0])
    np.testing.assert_array_equal(term, [False, False])
    np.testing.assert_array_equal(trunc, [False, True])
    # Now sub-env 1 is reset, sub-env 0 plays on.
    obs, rew, term, trunc, info = envs.step(np.array([1, 0]))
    np.testing.assert_array_equal(obs, [5, 4])
    np.testing.assert_array_equal(rew, [0.0, 0.0])
    np.testing.assert_array_equal(term | trunc, [False, False])


def test_reset_mask_resets_only_the_masked_sub_envs():
    envs = make_vec(3, layout=CORRIDOR, noise=0.0, absorb_prob=0.0)
    envs.reset(seed=0)
    envs.step(np.array([1, 1, 1]))
    obs, info = envs.reset(options={"reset_mask": np.array([True, False, True])})
    np.testing.assert_array_equal(obs, [4, 5, 4])
    np.testing.assert_array_equal(info["_state"], [True, False, True])
    with pytest.raises(ValueError, match="reset_mask"):
        envs.reset(options={"reset_mask": np.array([1, 0, 1])})


# ----------------------------------------------------------------------- reproducibility
def test_reset_seed_makes_the_whole_batch_reproducible():
    actions = np.random.default_rng(0).integers(0, 4, (300, 7))
    first = rollout(make_vec(7, layout_seed=3), actions, seed=42)
    envs = make_vec(7, layout_seed=3)
    assert_rollouts_equal(first, rollout(envs, actions, seed=42))
    assert_rollouts_equal(first, rollout(envs, actions, seed=42))  # same env, reseeded
    other = rollout(envs, actions, seed=43)
    assert any(not np.array_equal(a[4], b[4]) for a, b in zip(first, other, strict=True))


def test_parallel_and_serial_kernels_give_identical_results():
    actions = np.random.default_rng(1).integers(0, 4, (200, 300))
    kwargs = {"width": 8, "height": 8, "layout_seed": 0, "max_episode_steps": 30}
    serial = make_vec(300, parallel=False, **kwargs)
    parallel = make_vec(300, parallel=True, **kwargs)
    assert not serial.parallel and parallel.parallel
    assert_rollouts_equal(rollout(serial, actions, seed=9), rollout(parallel, actions, seed=9))


def test_actions_of_any_layout_step_like_contiguous_actions():
    # After its first step the env calls its kernel's machine code directly for C-contiguous
    # writeable int64 actions; strided, read-only and other actions take numba's dispatch.
    rng = np.random.default_rng(2)
    wide = rng.integers(0, 4, (60, 2 * 40))
    kwargs = {"width": 6, "height": 6, "layout_seed": 1, "max_episode_steps": 9}
    plain, mixed = make_vec(40, **kwargs), make_vec(40, **kwargs)
    plain.reset(seed=4)
    mixed.reset(seed=4)
    for t, row in enumerate(wide):
        strided = row[::2]
        frozen = strided.copy()
        frozen.flags.writeable = False
        given = [strided.copy(), strided, frozen, strided.tolist(), strided.astype(np.int32)][t % 5]
        for a, b in zip(plain.step(strided.copy()), mixed.step(given), strict=True):
            if isinstance(a, dict):
                np.testing.assert_array_equal(a["state"], b["state"])
            else:
                np.testing.assert_array_equal(a, b)


def test_deferred_layouts_are_drawn_from_the_reset_seed():
    envs = make_vec(3, layout_seed=None, width=6, height=6)
    with pytest.raises(RuntimeError, match="reset"):
        _ = envs.models
    envs.reset(seed=5)
    again = make_vec(3, layout_seed=None, width=6, height=6)
    again.reset(seed=5)
    assert envs.layouts == again.layouts
    seeds = envs.layout_seeds
    assert seeds is not None and list(seeds) == list(range(seeds[0], seeds[0] + 3))
    for i in range(3):
        single = gym.make("DistillGrid-v0", layout_seed=seeds[i], width=6, height=6)
        assert envs.layouts[i] == single.unwrapped.layout
    envs.reset(seed=6)  # layouts are kept once drawn
    assert envs.layouts == again.layouts


def test_pickled_env_continues_identically():
    envs = make_vec(4, layout_seed=1)
    envs.reset(seed=0)
    for _ in range(10):
        envs.step(np.zeros(4, dtype=np.int64))
    clone = pickle.loads(pickle.dumps(envs))
    actions = np.random.default_rng(2).integers(0, 4, (50, 4))
    for row in actions:
        for a, b in zip(envs.step(row)[:4], clone.step(row)[:4], strict=True):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_envs": 0}, "num_envs"),
        ({"num_envs": 2.5}, "num_envs"),
        ({"num_envs": True}, "num_envs"),
        ({"observation": "pixels"}, "observation"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
        ({"parallel": "yes"}, "parallel"),
        ({"layout_seed": -1}, "layout_seed"),
        ({"noise": 2.0}, "noise"),
        ({"render_mode": "human"}, "render_mode"),
        ({"layouts": [CORRIDOR]}, "layouts"),
        ({"layouts": [CORRIDOR, ("####", "GS..", "####")]}, "layouts"),
        ({"layouts": [CORRIDOR, ("###", "GS.", "##")]}, "layouts\\[1\\]"),
        ({"layouts": [CORRIDOR, CORRIDOR], "layout": CORRIDOR}, "layout"),
        ({"observation": "index", "layout_seed": None}, "layout"),
    ],
)
def test_bad_grid_kwargs_raise_value_errors_naming_them(kwargs, match):
    kwargs = {"num_envs": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        DistillGridVectorEnv(**kwargs)


def test_bad_chain_and_oscillation_kwargs():
    with pytest.raises(ValueError, match="observation"):
        DistillChainVectorEnv(num_envs=2, observation="full")
    with pytest.raises(ValueError, match="length"):
        DistillChainVectorEnv(num_envs=2, length=4)
    with pytest.raises(ValueError, match="num_envs"):
        DistillOscillationVectorEnv(num_envs=0)


@pytest.mark.parametrize(
    "actions",
    [
        np.zeros(4, dtype=np.int64),  # wrong shape
        np.zeros((3, 1), dtype=np.int64),
        np.zeros(3, dtype=np.float64),  # wrong dtype
        np.zeros(3, dtype=bool),
        np.array([0, 1, 4]),  # out of range
        np.array([0, -1, 2]),
        np.array([0, 1, 2**64 - 1], dtype=np.uint64),
        [0, 1, 7],
    ],
)
def test_bad_actions_raise_value_errors_and_change_nothing(actions):
    envs, twin = make_vec(3, layout_seed=4), make_vec(3, layout_seed=4)
    envs.reset(seed=0)
    twin.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        envs.step(actions)
    good = np.array([1, 2, 3], dtype=np.int32)  # any integer dtype is accepted
    for _ in range(100):
        for a, b in zip(envs.step(good)[:4], twin.step(good)[:4], strict=True):
            np.testing.assert_array_equal(a, b)


def test_step_before_reset_is_a_clear_error():
    envs = make_vec(2)
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.zeros(2, dtype=np.int64))


# ------------------------------------------------------------------ chain and oscillation
def test_chain_vector_env_equals_the_single_env():
    kwargs = {"length": 5, "n_actions": 3, "noise": 0.0, "absorb_prob": 0.0}
    envs = make_vec(4, "DistillChain-v0", **kwargs)
    sync = gym.vector.SyncVectorEnv(
        [lambda: gym.make("DistillChain-v0", **kwargs) for _ in range(4)]
    )
    actions = np.random.default_rng(0).integers(0, 3, (100, 4))
    assert_rollouts_equal(rollout(envs, actions), rollout(sync, actions))
    single = gym.make("DistillChain-v0", **kwargs).unwrapped
    np.testing.assert_array_equal(envs.models.next_probs[2], single.mdp.next_probs)


def test_oscillation_vector_env_equals_the_single_env_and_indexes_observations():
    envs = make_vec(3, "DistillOscillation-v0")
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("DistillOscillation-v0")] * 3)
    actions = np.random.default_rng(0).integers(0, 2, (40, 3))
    assert_rollouts_equal(rollout(envs, actions), rollout(sync, actions))
    indexed = make_vec(3, "DistillOscillation-v0", observation="index")
    assert indexed.single_observation_space == gym.spaces.Discrete(2)
    single = TableIndexWrapper(gym.make("DistillOscillation-v0"))
    np.testing.assert_array_equal(indexed.models.state_to_index[0], single.state_to_index)


# ---------------------------------------------------------------- gymnasium compatibility
def test_gymnasium_vector_wrappers_accept_the_env():
    envs = gym.wrappers.vector.RecordEpisodeStatistics(make_vec(3, layout_seed=0))
    envs = gym.wrappers.vector.DictInfoToList(envs)
    _, infos = envs.reset(seed=0)
    assert [info["state"] for info in infos] == [210, 210, 210]
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(2000):
        *_, infos = envs.step(rng.integers(0, 4, 3))
        finished += sum("episode" in info for info in infos)
    assert finished > 0


def test_render_gives_one_frame_per_sub_env():
    envs = make_vec(2, layout=CORRIDOR, render_mode="ansi")
    envs.reset(seed=0)
    single = gym.make("DistillGrid-v0", layout=CORRIDOR, render_mode="ansi")
    single.reset(seed=0)
    assert envs.render() == (single.render(), single.render())
    chain = make_vec(2, "DistillChain-v0", render_mode="ansi")
    chain.reset(seed=0)
    assert chain.render() == ("-....A....+\n",) * 2
    assert make_vec(2).render() is None


def test_chunk_size_for_fits_the_budget():
    per_mdp = 401 * 4000 * 8 + env_bytes_per_mdp(401, 4000)
    assert chunk_size_for(4000, 100 * per_mdp) == 100
    assert chunk_size_for(4000, 100 * per_mdp - 1) == 99
    three = 3 * 401 * 4000 * 8 + env_bytes_per_mdp(401, 4000)
    assert chunk_size_for(4000, 100 * three, tables_per_mdp=3) == 100
    assert chunk_size_for(4000, 1.0) == 1
    # The env's own memory does not grow with the number of actions beyond one stay row.
    assert env_bytes_per_mdp(401, 4000) == env_bytes_per_mdp(401, 5) > env_bytes_per_mdp(401, 4)
    envs = make_vec(2, n_actions=4000, observation="partial")
    assert envs.nbytes + envs.models.next_probs.nbytes < 2 * env_bytes_per_mdp(401, 4000, 81)
    assert chunk_size_for(4, 24e9) > 1000
    with pytest.raises(ValueError, match="budget_bytes"):
        chunk_size_for(4, 0)
    with pytest.raises(ValueError, match="n_actions"):
        chunk_size_for(0, 1e9)


def test_vector_envs_share_one_base_class():
    assert issubclass(DistillGridVectorEnv, TabularVectorEnv)
    assert issubclass(DistillChainVectorEnv, TabularVectorEnv)


def test_bench_quick_runs(capsys):
    from distill_agents import bench

    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "FrozenLake-v1" in out and "SyncVectorEnv" in out and "partial" in out


def test_compiled_for_gives_the_machine_code_of_a_call_or_the_dispatcher():
    from numba import njit

    from gridworld_env.kernels import compiled_for

    @njit
    def plus_one(x):
        return x + 1

    assert plus_one(np.int32(3)) == 4  # compiled for int32 only
    direct = compiled_for(plus_one, (np.int32(3),))
    assert direct is not plus_one and direct(np.int32(5)) == 6
    # No machine code for int64 arguments (numba would convert them, or compile): the dispatcher.
    assert compiled_for(plus_one, (np.int64(3),)) is plus_one
