"""Stable-Baselines3 interop: SB3Teacher, evaluate_policy, make_vec_env, distill_into_sb3."""

from __future__ import annotations

import builtins
import importlib
import json
import sys

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
torch = pytest.importorskip("torch")

from helpers import ROOT  # noqa: E402
from stable_baselines3 import A2C, DQN, PPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

import gridworld_env  # noqa: E402
from distill_agents import distill, planning, supervised_distill, teacher_tables  # noqa: E402
from distill_agents.integrations.sb3 import (  # noqa: E402
    SB3Teacher,
    distill_into_sb3,
    to_tabular_policy,
)
from distill_agents.teachers import TabularTeacher  # noqa: E402

torch.set_num_threads(1)

#: A small map: the +10 goal is 6 moves away past -1 cells; a -5 trap sits next to it.
LAYOUT = [
    "#######",
    "#..-.G#",
    "#.#.#.#",
    "#S..-x#",
    "#######",
]
PARTIAL = {"layout": LAYOUT, "observation": "partial", "view_size": 3}
FULL = {"layout": LAYOUT, "observation": "full"}


def grid(**kwargs):
    return gym.make("DistillGrid-v0", **kwargs)


def optimal_teacher(env):
    """The greedy optimal teacher over the table indices of a TableIndexWrapper (or full obs)."""
    mdp = env.unwrapped.mdp
    values, q_values = planning.value_iteration(mdp, gamma=0.99)
    policy = planning.greedy_policy(q_values)
    if isinstance(env, gridworld_env.TableIndexWrapper):
        index = env.state_to_index
        n = env.observation_space.n
        rows = np.array([np.flatnonzero(index == i)[0] for i in range(n)])
    else:
        rows = np.arange(env.observation_space.n)
    return TabularTeacher(policy[rows], values[rows], q_values[rows]), planning.expected_return(
        mdp, policy
    )


def set_output_layer(model, bias):
    """Make the network's output constant: zero weights and the given bias."""
    layer = model.policy.action_net if isinstance(model, (PPO, A2C)) else model.q_net.q_net[-1]
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))


def entropy(p):
    return -(p * np.log(np.maximum(p, 1e-300))).sum(-1)


def make_model(cls, env, **kwargs):
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("device", "cpu")
    if cls is PPO:
        kwargs.setdefault("n_steps", 64)
        kwargs.setdefault("batch_size", 64)
    if cls is A2C:
        kwargs.setdefault("n_steps", 8)
    if cls is DQN:
        kwargs.setdefault("learning_starts", 0)
    return cls("MlpPolicy", env, **kwargs)


# ------------------------------------------------------------------------ missing SB3
@pytest.mark.parametrize("missing", ["stable_baselines3", "torch"])
def test_missing_dependency_names_the_extra(monkeypatch, missing):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == missing or name.startswith(missing + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.delitem(sys.modules, "distill_agents.integrations.sb3")
    with pytest.raises(ImportError, match=r'pip install "distillgrid\[sb3\]"') as info:
        importlib.import_module("distill_agents.integrations.sb3")
    assert missing in str(info.value)
    # the package itself never needs the extra
    package = importlib.reload(sys.modules["distill_agents.integrations"])
    assert package.__all__ == []


# --------------------------------------------------------------------------- SB3Teacher
@pytest.mark.parametrize("cls", [PPO, A2C, DQN])
def test_teacher_gives_distributions_and_values(cls):
    env = gridworld_env.TableIndexWrapper(grid(**PARTIAL))
    model = make_model(cls, env.unwrapped)  # trained on raw MultiDiscrete windows
    teacher = SB3Teacher(model, obs_to_model=env.index_to_obs)
    n, a = env.observation_space.n, env.action_space.n
    assert teacher.n_obs == n and teacher.n_actions == a
    probs, values = teacher_tables(teacher, n, a, need_values=True)
    assert probs.shape == (n, a) and values.shape == (n,)
    assert np.all(probs >= 0) and np.allclose(probs.sum(-1), 1.0, atol=1e-12)
    assert np.all(np.isfinite(values))
    for i in (0, n - 1):
        row = teacher.action_probs(i)
        assert row.shape == (a,) and np.isclose(row.sum(), 1.0)
    if cls is DQN:
        q = teacher.action_values_batch(np.arange(n))
        assert np.allclose(values, (probs * q).sum(-1))  # V = sum_a pi_T(a) Q(a)
        assert np.allclose(teacher.action_values(2), q[2])
        # Rusu et al.'s MSE regression reads DQN's Q-values through action_values
        student = supervised_distill(env, teacher, loss="mse", iterations=3, seed=0)
        assert np.abs(student.logits).max() > 0
    else:
        with pytest.raises(ValueError, match="only available for DQN"):
            teacher.action_values(0)


@pytest.mark.parametrize("cls", [PPO, DQN])
def test_temperature_is_softmax_of_scores_over_t(cls):
    model = make_model(cls, grid(**FULL))
    bias = np.array([0.3, 1.5, -0.7, 1.0])
    set_output_layer(model, bias)
    # PPO's scores are log-probabilities log softmax(bias); DQN's are the Q-values = bias:
    # both give softmax(bias / T).
    for temperature in (0.25, 1.0, 3.0):
        got = SB3Teacher(model, temperature).action_probs(0)
        want = np.exp(bias / temperature) / np.exp(bias / temperature).sum()
        np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_array_equal(SB3Teacher(model, 0.0).action_probs(3), [0, 1, 0, 0])
    assert SB3Teacher(model, 1e-3).action_probs(3)[1] > 1 - 1e-9


@pytest.mark.parametrize("cls", [PPO, A2C, DQN])
def test_temperature_orders_entropy(cls):
    model = make_model(cls, grid(**FULL))
    with torch.no_grad():  # distinct, non-trivial outputs
        layer = model.policy.action_net if cls is not DQN else model.q_net.q_net[-1]
        layer.weight.mul_(100.0)
    obs = np.arange(model.observation_space.n)
    ents = [entropy(SB3Teacher(model, t).action_probs_batch(obs)) for t in (0.1, 1.0, 10.0)]
    assert np.all(ents[0] < ents[1]) and np.all(ents[1] < ents[2])
    assert np.all(ents[2] <= np.log(4) + 1e-12)
    greedy = SB3Teacher(model, 0.0).action_probs_batch(obs)
    sharp = SB3Teacher(model, 1e-4).action_probs_batch(obs)
    np.testing.assert_allclose(sharp, greedy, atol=1e-6)
    np.testing.assert_array_equal(
        SB3Teacher(model).action_probs_batch(obs).argmax(-1), greedy.argmax(-1)
    )


def test_batched_tables_match_one_forward_per_observation():
    env = gridworld_env.TableIndexWrapper(grid(**PARTIAL))
    model = make_model(PPO, env.unwrapped)
    teacher = SB3Teacher(model, 0.7, obs_to_model=env.index_to_obs)
    probs, values = teacher.tables()
    policy = model.policy
    for i in range(env.observation_space.n):  # the slow reference: SB3's own API, one by one
        obs_t, _ = policy.obs_to_tensor(env.index_to_obs(i))
        with torch.no_grad():
            logits = policy.get_distribution(obs_t).distribution.logits[0].double().numpy()
            value = float(policy.predict_values(obs_t)[0, 0])
        want = np.exp(logits / 0.7) / np.exp(logits / 0.7).sum()
        np.testing.assert_allclose(probs[i], want, atol=1e-6)
        assert values[i] == pytest.approx(value, abs=1e-6)
    raw = np.stack([env.index_to_obs(i) for i in range(3)])
    np.testing.assert_allclose(SB3Teacher(model, 0.7).action_probs_batch(raw), probs[:3])


def test_table_cache_follows_parameter_updates():
    model = make_model(PPO, grid(**FULL))
    teacher = SB3Teacher(model)
    assert teacher.n_obs == 35  # inferred from the model's Discrete(W * H)
    before = teacher.action_probs(8).copy()
    set_output_layer(model, [0.0, 2.0, 0.0, 0.0])
    after = teacher.action_probs(8)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, np.exp([0, 2, 0, 0]) / np.exp([0, 2, 0, 0]).sum(), atol=1e-6)
    model.learn(64)  # optimizer steps update the parameters in place
    np.testing.assert_allclose(
        teacher.action_probs(8), SB3Teacher(model).action_probs_batch([8])[0], atol=1e-12
    )


def test_teacher_rejects_bad_input():
    model = make_model(PPO, grid(**FULL))
    with pytest.raises(ValueError, match="temperature"):
        SB3Teacher(model, -1.0)
    with pytest.raises(ValueError, match=r"obs must be an index in \[0, 35\)"):
        SB3Teacher(model).action_probs(35)
    with pytest.raises(ValueError, match="observation space"):
        SB3Teacher(model).action_probs_batch([40])
    with pytest.raises(ValueError, match="model must"):
        SB3Teacher(object())


def test_distill_uses_an_sb3_teacher():
    chain = gym.make("DistillChain-v0")
    model = make_model(PPO, chain)
    set_output_layer(model, [0.0, 3.0])  # prefers R everywhere
    teacher = SB3Teacher(model)
    student = distill(chain, teacher, "teacher_distill", iterations=60, lr=0.5, seed=0)
    visited = np.arange(5, 10)  # from the middle start to the right end
    assert np.all(student.probs[visited, 1] > 0.75)
    # a method that needs V_pi reads the PPO critic through teacher.value
    student = distill(chain, teacher, "teacher_v_reward", iterations=5, seed=0)
    assert student.logits.shape == (11, 2)


# ------------------------------------------------------------- SB3 evaluation tooling
def test_evaluate_policy_accepts_tabular_teacher_and_student():
    env = gridworld_env.TableIndexWrapper(grid(**PARTIAL, noise=0.0))
    teacher, exact = optimal_teacher(env)
    venv = DummyVecEnv([lambda: Monitor(gridworld_env.TableIndexWrapper(grid(**PARTIAL)))])
    venv.seed(0)
    as_policy = to_tabular_policy(teacher, env.observation_space.n, 4, seed=0)
    mean, _ = evaluate_policy(as_policy, venv, n_eval_episodes=100, deterministic=True)
    # noise=0: returns are 8 (reach G) or absorbed earlier; the mean matches the exact return
    assert mean == pytest.approx(exact, abs=0.6)
    student = distill(env, teacher, "teacher_distill", iterations=100, lr=0.5, seed=0)
    mean_student, _ = evaluate_policy(student, venv, n_eval_episodes=100, deterministic=True)
    assert mean_student == pytest.approx(exact, abs=0.6)


@pytest.mark.parametrize("mode", ["full", "partial", "index"])
def test_make_vec_env_and_mlp_policy_every_observation_mode(mode):
    kwargs = {"layout": LAYOUT, "observation": "full" if mode == "full" else "partial"}
    wrapper = gridworld_env.TableIndexWrapper if mode == "index" else None
    venv = make_vec_env(
        "gridworld_env:DistillGrid-v0", n_envs=2, seed=0, env_kwargs=kwargs, wrapper_class=wrapper
    )
    model = make_model(PPO, venv)
    # SB3 one-hot encodes Discrete / MultiDiscrete inputs
    n_inputs = {"full": 7 * 5, "partial": 7 * 9**2}.get(mode) or venv.observation_space.n
    assert model.policy.features_dim == n_inputs
    model.learn(256)
    assert model.num_timesteps >= 256
    actions, _ = model.predict(venv.reset(), deterministic=True)
    assert actions.shape == (2,) and np.all((actions >= 0) & (actions < 4))


# -------------------------------------------------------------------- distill_into_sb3
@pytest.mark.parametrize(
    ("cls", "control", "noise", "mode"),
    [
        (PPO, "teacher", 0.0, "full"),
        (DQN, "uniform", 0.1, "full"),  # off-policy data reaches rarely visited states
        (A2C, "student", 0.1, "partial"),
    ],
)
def test_network_distilled_from_optimal_teacher_reaches_its_return(cls, control, noise, mode):
    kwargs = FULL if mode == "full" else PARTIAL
    raw = grid(**kwargs, noise=noise)
    if mode == "full":
        table, to_teacher, inputs = raw, None, raw.unwrapped.observation_of_state
    else:  # tabular teacher over indices, network over raw windows
        table = gridworld_env.TableIndexWrapper(grid(**kwargs, noise=noise))
        to_teacher, inputs = table.obs_to_index, raw.unwrapped.observation_of_state
    teacher, exact = optimal_teacher(table)
    model = make_model(cls, raw)
    out = distill_into_sb3(
        model,
        teacher,
        steps=800,
        control=control,
        teacher_scores="log_probs",
        lr=3e-3,
        obs_to_teacher=to_teacher,
        seed=0,
    )
    assert out is model
    mdp = raw.unwrapped.mdp
    greedy = SB3Teacher(model).state_policy(inputs, greedy=True)
    assert planning.expected_return(mdp, greedy) == pytest.approx(exact, abs=1e-6)
    # untrained, the same network is far from it
    fresh = SB3Teacher(make_model(cls, raw)).state_policy(inputs, greedy=True)
    assert planning.expected_return(mdp, fresh) < exact - 1.0
    steps = model.num_timesteps
    model.learn(64)  # still a normal SB3 model
    assert model.num_timesteps > steps


def test_distill_into_dqn_with_mse_regresses_q_values():
    env = grid(**FULL, noise=0.1)
    teacher, _ = optimal_teacher(env)
    model = make_model(DQN, env)
    losses = []
    distill_into_sb3(
        model,
        teacher,
        steps=1000,
        loss="mse",
        control="uniform",
        lr=3e-3,
        seed=0,
        callback=lambda step, loss: losses.append(loss),
    )
    assert np.mean(losses[-20:]) < 0.05 * np.mean(losses[:5])
    start = env.unwrapped.observation_of_state[env.unwrapped.mdp.initial.argmax()]
    q_net = SB3Teacher(model).action_values(int(start))
    np.testing.assert_allclose(q_net, teacher.action_values(int(start)), atol=0.5)
    target = model.q_net_target(model.policy.obs_to_tensor(np.array([start]))[0])
    np.testing.assert_allclose(target.detach().numpy()[0], q_net, atol=1e-5)  # synchronised


def test_distill_into_sb3_stops_and_validates():
    env = grid(**FULL)
    teacher, _ = optimal_teacher(env)
    model = make_model(PPO, env)
    calls = []
    distill_into_sb3(
        model,
        teacher,
        steps=10_000,
        seed=0,
        callback=lambda step, _loss: calls.append(step) or len(calls) < 3,
    )
    assert len(calls) == 3 and calls[-1] < 100
    with pytest.raises(ValueError, match="control must be one of"):
        distill_into_sb3(model, teacher, control="expert")
    with pytest.raises(ValueError, match=r"loss='mse'.*DQN"):
        distill_into_sb3(model, teacher, loss="mse")
    with pytest.raises(ValueError, match="temperature"):
        distill_into_sb3(model, teacher, temperature=float("nan"))
    with pytest.raises(ValueError, match="observation space"):
        distill_into_sb3(model, teacher, grid(**PARTIAL))
    with pytest.raises(ValueError, match="action_probs"):
        distill_into_sb3(model, object())


# ------------------------------------------------------------------- slow: PPO teacher
@pytest.fixture(scope="module")
def ppo_teacher():
    venv = make_vec_env("gridworld_env:DistillGrid-v0", n_envs=4, seed=0, env_kwargs=PARTIAL)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=128,
        batch_size=128,
        n_epochs=4,
        learning_rate=3e-3,
        seed=0,
        device="cpu",
    )
    model.learn(10_000)
    return model


@pytest.mark.slow
def test_ppo_learns_small_layout_well_above_random(ppo_teacher):
    env = grid(**PARTIAL)
    mdp, obs_of_state = env.unwrapped.mdp, env.unwrapped.observation_of_state
    _, q_values = planning.value_iteration(mdp, gamma=0.99)
    optimal = planning.expected_return(mdp, planning.greedy_policy(q_values))
    uniform = planning.expected_return(mdp, np.full(q_values.shape, 0.25))
    greedy = SB3Teacher(ppo_teacher).state_policy(obs_of_state, greedy=True)
    learned = planning.expected_return(mdp, greedy)
    assert uniform < 0 < 0.95 * optimal < learned
    venv = DummyVecEnv([lambda: Monitor(grid(**PARTIAL))])
    venv.seed(0)
    mean, _ = evaluate_policy(ppo_teacher, venv, n_eval_episodes=100, deterministic=True)
    assert mean > uniform + 8.0


@pytest.mark.slow
def test_tabular_student_from_ppo_reaches_85_percent(ppo_teacher):
    env = gridworld_env.TableIndexWrapper(grid(**PARTIAL))
    teacher = SB3Teacher(ppo_teacher, obs_to_model=env.index_to_obs)
    student = distill(env, teacher, "on_policy_distill", iterations=300, lr=0.5, seed=0)

    def venv(wrap):
        out = DummyVecEnv(
            [
                lambda: Monitor(
                    gridworld_env.TableIndexWrapper(grid(**PARTIAL)) if wrap else grid(**PARTIAL)
                )
            ]
        )
        out.seed(1)
        return out

    teacher_mean, _ = evaluate_policy(ppo_teacher, venv(False), 200, deterministic=True)
    student_mean, _ = evaluate_policy(student, venv(True), 200, deterministic=True)
    assert teacher_mean > 5.0
    assert student_mean >= 0.85 * teacher_mean
    # and exactly: the student's greedy policy is as good as the teacher's
    mdp = env.unwrapped.mdp
    student_exact = planning.expected_return(
        mdp, planning.greedy_policy(student.state_policy(env.state_to_index))
    )
    teacher_exact = planning.expected_return(
        mdp, teacher.state_policy(env.state_to_index, greedy=True)
    )
    assert student_exact >= 0.85 * teacher_exact


def test_example_script_runs_with_tiny_settings(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        script = importlib.import_module("sb3_ppo_to_tabular")
    finally:
        sys.path.pop(0)
    args = script.parse_args(
        [
            "--ppo-steps",
            "512",
            "--iterations",
            "20",
            "--eval-episodes",
            "5",
            "--out",
            str(tmp_path / "r.png"),
        ]
    )
    results = script.main(args)
    assert (tmp_path / "r.png").stat().st_size > 1000
    assert set(results) == {"uniform (exact)", "PPO teacher", "tabular student", "optimal (exact)"}
    assert results["uniform (exact)"] < results["optimal (exact)"]


def test_sb3_teacher_drives_the_batched_runner():
    """An SB3 model is a teacher for the batched runner through Teachers.from_policy."""
    from distill_agents.runner import run_distillation
    from distill_agents.teachers import Teachers

    kwargs = {"layout": ["S..G", ".#..", "...."], "noise": 0.0}
    env = gridworld_env.TableIndexWrapper(gym.make("DistillGrid-v0", **kwargs))
    model = PPO("MlpPolicy", env, n_steps=64, seed=0, device="cpu")
    teacher = SB3Teacher(model, temperature=1.0)
    teachers = Teachers.from_policy(teacher, "DistillGrid-v0", kwargs)
    assert teachers.n_mdps == 1 and teachers.kind == "custom"
    n = env.observation_space.n
    expected = np.stack([teacher.action_probs(o) for o in range(n)])
    np.testing.assert_allclose(teachers.probs[0, :n], expected, atol=1e-12)
    result = run_distillation(teachers, "on_policy_distill", iterations=50, eval_every=25, seed=0)
    assert np.isfinite(result.metrics["return"]).all()


def test_distill_command_takes_an_sb3_model(tmp_path, capsys):
    from distill_agents.cli import main
    from distill_agents.results import read_csv

    kwargs = {"layout": ["S..G", ".#..", "...."], "noise": 0.0, "observation": "partial"}
    model = PPO("MlpPolicy", gym.make("DistillGrid-v0", **kwargs), n_steps=64, seed=0, device="cpu")
    model.save(tmp_path / "ppo.zip")
    argv = [
        "distill",
        "--method",
        "on_policy_distill",
        "--teacher",
        str(tmp_path / "ppo.zip"),
        "--sb3-algo",
        "PPO",
        "--env",
        "DistillGrid-v0",
        "--env-kwargs",
        json.dumps(kwargs),
        "--iterations",
        "40",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(argv) == 0
    rows = read_csv(tmp_path / "on_policy_distill.csv")
    assert {r.method for r in rows} == {"on_policy_distill", "teacher"}
    capsys.readouterr()
    assert main([*argv[:7], "--iterations", "5"]) == 2  # --sb3-algo without --env
    assert "--env" in capsys.readouterr().err
