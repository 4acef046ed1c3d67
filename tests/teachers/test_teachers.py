"""Teachers: Q-learning and A2C through the vector env, planned and noisy teachers, files."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from distill_agents import planning
from distill_agents.storage import FileFormatError, save_arrays
from distill_agents.teacher_training import TeacherEnv, make_teachers, train_a2c, train_q_learning
from distill_agents.teachers import (
    TabularTeacher,
    Teachers,
    build,
    index_average,
    kernels,
    make,
    noisy_teachers,
    planned_teachers,
    policy_kernels,
    policy_values,
    q_learning_teachers,
    training,
)
from distill_agents.teachers.records import (
    A2CParams,
    A2CTables,
    Actors,
    EpisodeBuffers,
    QParams,
    Tallies,
)

Q_PARAMS = QParams(0.1, 0.1, 0.9)
CORRIDOR = ["#####", "S..-G", "#####"]  # deterministic with noise = absorb_prob = 0
TWO_ROUTES = ["S..", ".#.", "-.G"]
SMALL = ["S....", ".#-#.", "..#..", "-...G"]


def deterministic(layout):
    return TeacherEnv("DistillGrid-v0", {"layout": layout, "noise": 0.0, "absorb_prob": 0.0})


def live_states(models, i=0):
    index = models.state_to_index[i]
    return (index >= 0) & ~models.terminal[i]


# --------------------------------------------------------------------------- Q-learning
def test_q_learning_converges_to_value_iteration_on_a_deterministic_corridor():
    result = train_q_learning(deterministic(CORRIDOR), 1, episodes=5000, lr=0.05, seed=0)
    models = result.models
    _, q_star = planning.value_iteration(models.mdp(0), gamma=0.99)
    live = live_states(models)
    learned = result.q_values[0][models.state_to_index[0][live]]
    # Every (state, action) of the corridor is tried often under 0.1-greedy behaviour.
    np.testing.assert_allclose(learned, q_star[live], atol=0.05)
    assert result.steps[0] == result.stats.updates


def test_q_learning_finds_the_optimal_values_along_the_optimal_route():
    result = train_q_learning(deterministic(TWO_ROUTES), 1, episodes=4000, lr=0.05, seed=1)
    models = result.models
    mdp = models.mdp(0)
    v_star, q_star = planning.value_iteration(mdp, gamma=0.99)
    on_route = (planning.expected_visits(mdp, planning.greedy_policy(q_star)) > 0) & live_states(
        models
    )
    rows = result.q_values[0][models.state_to_index[0][on_route]]
    np.testing.assert_allclose(rows.max(axis=-1), v_star[on_route], atol=1e-6)
    assert np.array_equal(rows.argmax(axis=-1), q_star[on_route].argmax(axis=-1))


def test_q_learning_same_seed_same_tables_other_seed_other_tables():
    env = TeacherEnv()
    first = train_q_learning(env, 3, episodes=60, seed=7)
    second = train_q_learning(env, 3, episodes=60, seed=7)
    other = train_q_learning(env, 3, episodes=60, seed=8)
    assert np.array_equal(first.q_values, second.q_values)
    assert np.array_equal(first.steps, second.steps)
    assert not np.array_equal(first.q_values, other.q_values)


@pytest.mark.slow  # numba's OpenMP threads stall for milliseconds per call on a busy machine
def test_serial_and_threaded_training_give_identical_results(monkeypatch):
    env = TeacherEnv()
    monkeypatch.setattr(training, "THREAD_MIN_ACTORS", None)
    serial = train_q_learning(env, 3, episodes=6, seed=3, max_actors=3)
    monkeypatch.setattr(training, "THREAD_MIN_ACTORS", 1)
    parallel = train_q_learning(env, 3, episodes=6, seed=3, max_actors=3)
    assert np.array_equal(serial.q_values, parallel.q_values)
    a2c_threads = train_a2c(env, 3, episodes=4, seed=3)
    monkeypatch.setattr(training, "THREAD_MIN_ACTORS", None)
    a2c_serial = train_a2c(env, 3, episodes=4, seed=3)
    assert np.array_equal(a2c_serial.logits, a2c_threads.logits)


def test_threaded_kernels_match_serial_kernels():
    rng = np.random.default_rng(0)
    b, n, a = 12, 5, 3
    group = np.repeat(np.arange(4), 3)  # 4 MDPs with 3 actors each
    bounds_serial = np.array([0, b])
    bounds_threads = training._thread_bounds(group, 2)
    state = {
        "q": rng.normal(size=(4, n, a)),
        "obs": rng.integers(0, n, b),
        "actions": rng.integers(0, a, b),
        "status": np.full(b, kernels.ACTING, dtype=np.int8),
        "started": np.full(4, 3),
        "completed": np.zeros(4, dtype=np.int64),
        "steps": np.zeros(4, dtype=np.int64),
    }
    copies = [{k: v.copy() for k, v in state.items()} for _ in range(2)]
    for _ in range(20):
        rewards, next_obs = rng.normal(size=b), rng.integers(0, n, b)
        term, trunc, u = rng.random(b) < 0.2, rng.random(b) < 0.05, rng.random(b)
        for kernel, bounds, st in (
            (kernels.q_step, bounds_serial, copies[0]),
            (kernels.q_step_parallel, bounds_threads, copies[1]),
        ):
            counts = np.zeros((bounds.size, 2), dtype=np.int64)
            actors = Actors(bounds, group, st["obs"], st["actions"], st["status"], counts)
            tallies = Tallies(st["started"], st["completed"], st["steps"], 10)
            kernel(actors, tallies, st["q"], QParams(0.1, 0.1, 0.9), rewards, next_obs, term,
                   trunc, u, True)  # fmt: skip
            st["totals"] = counts[-1].copy()
        for key in copies[0]:
            np.testing.assert_array_equal(copies[0][key], copies[1][key])


def test_every_mdp_learns_from_exactly_the_requested_episodes(monkeypatch):
    # Free builds in the cost model: several phases with several actors per MDP.
    monkeypatch.setattr(training, "BUILD_COST", 0.0)
    result = train_q_learning(TeacherEnv(), 5, episodes=150, seed=0, max_actors=4)
    assert result.stats.phases > 1
    assert any(actors > live for actors, live, *_ in result.stats.phase_log)  # replicated MDPs
    np.testing.assert_array_equal(result.episodes, 150)
    assert result.steps.sum() == result.stats.updates <= result.stats.env_steps
    # One-step episodes (every move from S lands on a goal): steps count episodes exactly.
    star = TeacherEnv("DistillGrid-v0", {"layout": ["#G#", "GSG", "#G#"], "noise": 0.0})
    one_step = train_q_learning(star, 3, episodes=40, seed=0, max_actors=4)
    np.testing.assert_array_equal(one_step.steps, 40)
    a2c = train_a2c(star, 2, episodes=25, seed=0)
    np.testing.assert_array_equal(a2c.steps, 25)
    np.testing.assert_array_equal(a2c.episodes, 25)


def test_thread_bounds_never_split_an_mdp():
    group = np.array([0, 0, 0, 1, 2, 2, 2, 2, 3], dtype=np.int64)
    for n in (1, 2, 3, 4, 9):
        bounds = training._thread_bounds(group, n)
        assert bounds[0] == 0 and bounds[-1] == group.size
        assert np.all(np.diff(bounds) > 0)
        for cut in bounds[1:-1]:
            assert group[cut] != group[cut - 1]


# ------------------------------------------------------------------------ policy forms
def test_greedy_and_boltzmann_policies_have_the_stated_form():
    q = np.array([[[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.5, -1.0, 0.0, 0.2]]])
    greedy = q_learning_teachers(q, [3], temperature=0.0)
    np.testing.assert_array_equal(
        greedy.probs[0], [[0, 0.5, 0.5, 0], [0.25, 0.25, 0.25, 0.25], [1, 0, 0, 0]]
    )
    np.testing.assert_allclose(greedy.values[0], [3.0, 2.0, 0.5])
    warm = q_learning_teachers(q, [3], temperature=0.5)
    expected = np.exp(q / 0.5) / np.exp(q / 0.5).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(warm.probs, expected, rtol=1e-12)
    np.testing.assert_allclose(warm.values, (expected * q).sum(axis=-1), rtol=1e-12)
    assert warm.temperature == 0.5 and warm.kind == "q_learning"


def test_padding_rows_are_uniform_with_zero_values():
    q = np.arange(12.0).reshape(1, 3, 4)
    teachers = q_learning_teachers(q, [2])
    np.testing.assert_array_equal(teachers.probs[0, 2], [0.25] * 4)
    assert teachers.values[0, 2] == 0.0
    assert teachers.teacher(0).n_observations == 2


def test_greedy_choice_splits_ties_evenly():
    row = np.array([1.0, 3.0, 3.0, 0.0, 3.0])
    picks = [policy_kernels.greedy(row, np.uint64(0), 5, u) for u in (np.arange(3000) + 0.5) / 3000]
    counts = np.bincount(picks, minlength=5)
    np.testing.assert_array_equal(counts, [0, 1000, 1000, 0, 1000])
    explore = [
        policy_kernels.epsilon_greedy(row, np.uint64(0), 5, u, 0.1)
        for u in (np.arange(1000) + 0.5) / 1000 * 0.1
    ]
    np.testing.assert_array_equal(np.bincount(explore, minlength=5), [200] * 5)


def test_epsilon_greedy_frequencies_with_random_uniforms():
    row = np.array([0.0, 2.0, 1.0, 2.0])
    rng = np.random.default_rng(0)
    picks = np.array(
        [policy_kernels.epsilon_greedy(row, np.uint64(0), 4, u, 0.2) for u in rng.random(40_000)]
    )
    freq = np.bincount(picks, minlength=4) / picks.size
    # 0.2 / 4 = 0.05 each at random; the two greedy actions share 0.8.
    np.testing.assert_allclose(freq, [0.05, 0.45, 0.05, 0.45], atol=0.01)


# ------------------------------------------------------------------------------- A2C
@pytest.mark.parametrize("variant", ["mc", "td"])
def test_a2c_teacher_beats_the_uniform_policy_by_far(variant):
    env = TeacherEnv("DistillGrid-v0", {"layout": SMALL, "noise": 0.1})
    result = train_a2c(env, 2, episodes=1500, variant=variant, seed=0)
    teachers = build.a2c_teachers(result.logits, result.values, result.n_indices)
    models = result.models
    mdps = [models.mdp(i) for i in range(2)]
    returns = planning.expected_return(mdps, teachers.state_policies(models.state_to_index))
    uniform = planning.expected_return(mdps, np.full((2, models.n_states, 4), 0.25))
    best, _ = planning.value_iteration(mdps, gamma=1.0)
    optimal = best[:, np.argmax(models.initial[0])]
    assert np.all(uniform < 0.0)
    assert np.all(returns > uniform + 0.8 * (optimal - uniform)), (returns, uniform, optimal)
    assert np.all(returns <= optimal + 1e-9)


def test_a2c_critic_tracks_the_actor_value():
    env = TeacherEnv("DistillGrid-v0", {"layout": SMALL, "noise": 0.0, "absorb_prob": 0.0})
    result = train_a2c(env, 1, episodes=1500, variant="td", seed=2)
    teachers = build.a2c_teachers(result.logits, result.values, result.n_indices)
    models = result.models
    policy = teachers.state_policy(0, models.state_to_index[0])
    v_pi = planning.policy_evaluation(models.mdp(0), policy, gamma=0.99)
    start = int(np.argmax(models.initial[0]))
    assert teachers.teacher(0).value(models.state_to_index[0][start]) == pytest.approx(
        v_pi[start], abs=0.5
    )


# ---------------------------------------------------------------------- planned teachers
def test_optimal_teacher_return_equals_value_iterations():
    run = make_teachers("optimal", n_mdps=3, seed=4)
    env = TeacherEnv(layout_base=4)
    models = env.make_vec(range(3)).models
    mdps = [models.mdp(i) for i in range(3)]
    _, q = planning.value_iteration(mdps, gamma=0.99)
    reference = planning.expected_return(mdps, planning.greedy_policy(q))
    np.testing.assert_allclose(run.teacher_return, reference, rtol=1e-10, atol=1e-10)
    assert np.all(run.teacher_return <= run.optimal_return + 1e-9)
    assert np.all(run.teacher_return > run.uniform_return)
    # Full observations: one state per index, the teacher is the state policy exactly.
    policy = run.teachers.state_policies(models.state_to_index)
    live = (models.state_to_index >= 0) & ~models.terminal
    np.testing.assert_array_equal(policy[live], planning.greedy_policy(q)[live])


def test_adversarial_teacher_is_below_uniform():
    run = make_teachers("adversarial", n_mdps=3, seed=0)
    assert np.all(run.teacher_return < run.uniform_return)
    chain = make_teachers("adversarial", "DistillChain-v0", {"length": 7}, n_mdps=1)
    assert chain.teacher_return[0] < 0.0 < chain.optimal_return[0]
    assert chain.teachers.layout_seeds[0] == -1


def test_partial_observation_teachers_average_aliased_states():
    kwargs = {"observation": "partial", "view_size": 3}
    run = make_teachers("optimal", env_kwargs=kwargs, n_mdps=2, seed=1)
    teachers = run.teachers
    assert np.all(run.teacher_return <= run.optimal_return + 1e-9)
    assert np.all(run.teacher_return > run.uniform_return)
    np.testing.assert_allclose(teachers.probs.sum(axis=-1), 1.0)
    # Partial views alias cells: fewer indices than reachable cells.
    full = make_teachers("optimal", n_mdps=2, seed=1)
    assert np.all(teachers.n_indices < full.teachers.n_indices)


def test_index_average_weights_aliased_states_by_visits():
    rows = np.array([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8]]])
    index = np.array([[0, 1, 1, -1]])
    visits = np.array([[2.0, 1.0, 3.0, 5.0]])
    out = index_average(rows, index, visits, 3)
    np.testing.assert_allclose(out[0], [[1.0, 0.0], [0.375, 0.625], [0.0, 0.0]])
    unvisited = index_average(rows, index, np.zeros((1, 4)), 2)
    np.testing.assert_allclose(unvisited[0], [[1.0, 0.0], [0.25, 0.75]])


# ------------------------------------------------------------------------ noisy teachers
@pytest.mark.parametrize("fraction", [0.15, 0.25, 0.5])
def test_noisy_teacher_differs_in_exactly_the_requested_share(fraction):
    source = make_teachers("optimal", n_mdps=4, seed=2).teachers
    noisy = noisy_teachers(source, fraction, seed=9)
    assert noisy.noise == fraction and noisy.temperature == 0.0
    for i in range(4):
        acting = np.flatnonzero(source.acting[i])
        chosen = noisy.probs[i].argmax(axis=-1)
        n = source.n_indices[i]
        np.testing.assert_array_equal(noisy.probs[i][:n].max(axis=-1), 1.0)  # deterministic
        best = source.probs[i] >= source.probs[i].max(axis=-1, keepdims=True)
        wrong = ~best[np.arange(source.n_index), chosen]
        # Exactly the requested share of acting indices, and nothing else, is wrong.
        assert wrong[acting].sum() == math.floor(fraction * acting.size + 0.5)
        assert not wrong[np.setdiff1d(np.arange(n), acting)].any()
        # Values follow the new policy: V = Q(o, chosen).
        np.testing.assert_allclose(
            noisy.values[i][acting], source.q_values[i][acting, chosen[acting]]
        )


def test_noise_depends_on_each_mdp_alone():
    source = make_teachers("optimal", n_mdps=4, seed=3).teachers
    whole = noisy_teachers(source, 0.25, seed=1)
    part = noisy_teachers(_subset(source, 2, 4), 0.25, seed=1, first_mdp=2)
    n = part.n_index
    np.testing.assert_array_equal(whole.probs[2:, :n], part.probs)
    assert not np.array_equal(noisy_teachers(source, 0.25, seed=2).probs, whole.probs)


def _subset(teachers, lo, hi):
    n = int(teachers.n_indices[lo:hi].max())
    return Teachers(
        kind=teachers.kind,
        probs=teachers.probs[lo:hi, :n],
        n_indices=teachers.n_indices[lo:hi],
        values=teachers.values[lo:hi, :n],
        q_values=teachers.q_values[lo:hi, :n],
        acting=teachers.acting[lo:hi, :n],
        layout_seeds=teachers.layout_seeds[lo:hi],
    )


def test_noise_needs_a_valid_fraction():
    source = q_learning_teachers(np.zeros((1, 2, 4)), [2])
    for bad in (-0.1, 1.0, float("nan"), "0.2"):
        with pytest.raises(ValueError, match="fraction"):
            noisy_teachers(source, bad, seed=0)
    with pytest.raises(ValueError, match="at least 2 actions"):
        noisy_teachers(q_learning_teachers(np.zeros((1, 2, 1)), [2]), 0.5, seed=0)


# ------------------------------------------------------------------------- the container
def test_tabular_teacher_interface():
    teacher = TabularTeacher([[0.5, 0.5], [1.0, 0.0]], values=[1.5, -2.0], kind="q_learning")
    np.testing.assert_array_equal(teacher.action_probs(1), [1.0, 0.0])
    np.testing.assert_array_equal(teacher.action_probs(np.int64(0)), [0.5, 0.5])
    assert teacher.value(1) == -2.0 and teacher.has_values
    for bad in (2, -1, 0.5, "x", None):
        with pytest.raises(ValueError, match="obs must be a table index"):
            teacher.action_probs(bad)
    no_values = TabularTeacher([[1.0]])
    with pytest.raises(ValueError, match="has no values"):
        no_values.value(0)
    with pytest.raises(ValueError, match="sum to 1"):
        TabularTeacher([[0.5, 0.4]])


def test_teacher_of_an_mdp_matches_its_env(tmp_path):
    run = make_teachers("optimal", n_mdps=2, seed=5)
    env = run.teachers.make_env(1)
    obs, _ = env.reset(seed=0)
    teacher = run.teachers.teacher(1)
    assert teacher.n_observations == env.observation_space.n
    assert teacher.action_probs(obs).sum() == pytest.approx(1.0)
    assert run.teachers.env_kwargs_for(1)["layout_seed"] == 6
    assert teacher.value(obs) == pytest.approx(run.teachers.values[1, obs])


def test_save_then_load_gives_identical_teachers(tmp_path):
    run = make_teachers("q_learning", n_mdps=2, episodes=30, seed=1, temperature=0.1)
    path = run.teachers.save(tmp_path / "t.npz")
    loaded = Teachers.load(path)
    for name in ("probs", "values", "q_values", "n_indices", "acting", "layout_seeds"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(run.teachers, name))
    for name in ("kind", "env_id", "env_kwargs", "temperature", "noise", "settings"):
        assert getattr(loaded, name) == getattr(run.teachers, name)
    a2c = make_teachers("a2c", n_mdps=1, episodes=20, seed=1).teachers
    loaded_a2c = Teachers.load(a2c.save(tmp_path / "a.npz"))
    assert loaded_a2c.q_values is None and loaded_a2c.kind == "a2c"
    np.testing.assert_array_equal(loaded_a2c.values, a2c.values)


def test_truncated_file_is_refused(tmp_path):
    teachers = make_teachers("optimal", n_mdps=1).teachers
    path = teachers.save(tmp_path / "t.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"truncated|unreadable"):
        Teachers.load(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(probs=a["probs"] * 1.5), "sum to 1"),
        (lambda a: a.update(n_indices=a["n_indices"] + 1000), "n_indices"),
        (lambda a: a.update(values=a["values"][:, :-1]), "values must have shape"),
        (lambda a: a.update(acting=np.ones_like(a["acting"])), "acting"),
        (lambda a: a.pop("probs"), "missing array 'probs'"),
    ],
)
def test_tampered_file_is_refused_with_a_clear_message(tmp_path, change, message):
    teachers = make_teachers("optimal", n_mdps=2).teachers
    arrays = {
        "probs": np.array(teachers.probs),
        "n_indices": np.array(teachers.n_indices),
        "acting": np.array(teachers.acting),
        "layout_seeds": np.array(teachers.layout_seeds),
        "values": np.array(teachers.values),
    }
    change(arrays)
    path = save_arrays(tmp_path / "bad.npz", "teachers", arrays, {"teacher_kind": "optimal"})
    with pytest.raises(FileFormatError, match=message):
        Teachers.load(path)


def test_wrong_kind_of_file_is_refused(tmp_path):
    path = save_arrays(tmp_path / "x.npz", "student", {"probs": np.ones((1, 1, 1))})
    with pytest.raises(FileFormatError, match="expected 'teachers'"):
        Teachers.load(path)


def test_container_validates_its_arrays():
    probs = np.full((2, 3, 4), 0.25)
    with pytest.raises(ValueError, match="kind"):
        Teachers(kind="magic", probs=probs, n_indices=[3, 3])
    with pytest.raises(ValueError, match="n_indices must lie"):
        Teachers(kind="custom", probs=probs, n_indices=[3, 4])
    with pytest.raises(ValueError, match="n_indices must have shape"):
        Teachers(kind="custom", probs=probs, n_indices=[3])
    with pytest.raises(ValueError, match="q_values must have the shape"):
        Teachers(kind="custom", probs=probs, n_indices=[3, 3], q_values=np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="noise"):
        Teachers(kind="custom", probs=probs, n_indices=[3, 3], noise=1.0)
    with pytest.raises(ValueError, match="JSON"):
        Teachers(kind="custom", probs=probs, n_indices=[3, 3], settings={"x": object()})
    teachers = Teachers(kind="custom", probs=probs, n_indices=[3, 2])
    assert teachers.acting.sum() == 5 and np.all(teachers.layout_seeds == -1)
    with pytest.raises(ValueError, match="read-only"):
        teachers.probs[0, 0, 0] = 1.0


def test_policy_values_is_the_expectation_of_q():
    probs = np.array([[0.2, 0.8], [1.0, 0.0]])
    q = np.array([[1.0, 2.0], [3.0, -1.0]])
    np.testing.assert_allclose(policy_values(probs, q), [1.8, 3.0])


def test_state_policy_maps_indices_to_states():
    models = TeacherEnv(layout_base=0).make_vec([0]).models
    teachers = planned_teachers(models)
    policy = teachers.state_policy(0, models.state_to_index[0])
    index = models.state_to_index[0]
    has = index >= 0
    np.testing.assert_array_equal(policy[has], teachers.probs[0][index[has]])
    np.testing.assert_array_equal(policy[~has], 0.25)


# ------------------------------------------------------------------------- environments
def test_replicated_sub_envs_have_the_same_tables_as_seeded_ones():
    env = TeacherEnv(layout_base=10)
    seeded = env.make_vec([0, 1, 2]).models
    replicated = env.make_vec([2, 2, 0, 1]).models
    for j, mdp in enumerate([2, 2, 0, 1]):
        np.testing.assert_array_equal(replicated.state_to_index[j], seeded.state_to_index[mdp])
        np.testing.assert_array_equal(replicated.next_states[j], seeded.next_states[mdp])
        np.testing.assert_array_equal(replicated.next_probs[j], seeded.next_probs[mdp])


def test_teacher_env_rejects_bad_kwargs():
    with pytest.raises(ValueError, match="env_id"):
        TeacherEnv("FrozenLake-v1")
    with pytest.raises(ValueError, match="observation"):
        TeacherEnv("DistillGrid-v0", {"observation": "pixels"})
    with pytest.raises(ValueError, match="layout_seed"):
        TeacherEnv("DistillGrid-v0", {"layout_seed": None})
    with pytest.raises(ValueError, match="num_envs"):
        TeacherEnv("DistillGrid-v0", {"num_envs": 3})
    with pytest.raises(ValueError, match="observation"):
        TeacherEnv("DistillChain-v0", {"observation": "index"})


def test_fixed_layout_kwargs_give_every_mdp_the_same_layout():
    run = make_teachers("optimal", env_kwargs={"layout_seed": 42}, n_mdps=2)
    assert list(run.teachers.layout_seeds) == [42, 42]
    np.testing.assert_array_equal(run.teachers.probs[0], run.teachers.probs[1])


def test_chunks_of_planned_teachers_match_one_chunk():
    whole = make_teachers("optimal", n_mdps=5, seed=0, noise=0.25)
    chunked = make_teachers("optimal", n_mdps=5, seed=0, noise=0.25, chunk_size=2, workers=1)
    n = whole.teachers.n_index
    np.testing.assert_array_equal(whole.teachers.probs, chunked.teachers.probs[:, :n])
    np.testing.assert_array_equal(whole.teacher_return, chunked.teacher_return)


def test_trained_chunks_are_reproducible_and_recorded():
    first = make_teachers("q_learning", n_mdps=3, episodes=20, chunk_size=2, seed=1, workers=1)
    second = make_teachers("q_learning", n_mdps=3, episodes=20, chunk_size=2, seed=1, workers=1)
    np.testing.assert_array_equal(first.teachers.q_values, second.teachers.q_values)
    assert first.teachers.settings["chunk_size"] == 2
    assert first.stats is not None and first.stats.updates > 0


def test_reference_loop_learns_like_the_trainer():
    env = deterministic(CORRIDOR)
    models = env.make_vec([0]).models
    from gridworld_env import kernels as env_kernels

    outcomes = np.zeros((1, models.n_states, models.n_rows, models.next_states.shape[-1]),
                        dtype=env_kernels.OUTCOME_DTYPE)  # fmt: skip
    env_kernels.pack_outcomes(models.mdp(0), models.state_to_index[0], outcomes[0])
    initial_cum = np.cumsum(models.initial, axis=1)
    q = np.zeros((1, int(models.n_indices[0]), 4))
    steps = np.zeros(1, dtype=np.int64)
    kernels.q_learning_reference(
        outcomes, models.action_rows, np.array(models.terminal), initial_cum,
        np.array(models.state_to_index), np.array([12345], dtype=np.uint64), 5000, 1000, 0.1,
        0.05, 0.99, q, steps,
    )  # fmt: skip
    _, q_star = planning.value_iteration(models.mdp(0), gamma=0.99)
    live = live_states(models)
    np.testing.assert_allclose(q[0][models.state_to_index[0][live]], q_star[live], atol=0.05)
    assert steps[0] >= 5000 * 4


# ------------------------------------------------------------------ kernels, exact cases
def drive(kernel, own, group, obs, actions, rewards, next_obs, term, trunc, status,
          started, completed, steps, n_episodes, allow=True, u=None):  # fmt: skip
    """One agent-kernel call with one thread range; returns (busy, updates).

    ``own``: the kernel's records after the tallies (Q-learning: Q values and QParams).
    """
    b = group.size
    counts = np.zeros((2, 2 if isinstance(own[-1], QParams) else 3), dtype=np.int64)
    actors = Actors(np.array([0, b]), group, obs, actions, status, counts)
    tallies = Tallies(started, completed, steps, n_episodes)
    kernel(actors, tallies, *own, np.asarray(rewards, float), np.asarray(next_obs),
           np.asarray(term), np.asarray(trunc), np.full(b, 0.5) if u is None else u,
           allow)  # fmt: skip
    return int(counts[-1, 0]), int(counts[-1, 1])


@pytest.mark.parametrize(
    ("terminated", "truncated", "expected"),
    [(False, False, 0.1 * (0.5 + 0.9 * 3.0)), (True, False, 0.05), (False, True, 0.32)],
)
def test_q_update_bootstraps_unless_terminated(terminated, truncated, expected):
    q = np.zeros((1, 3, 2))
    q[0, 2] = [1.0, 3.0]
    group = np.zeros(1, dtype=np.int64)
    obs, actions = np.array([0]), np.array([1])
    status = np.array([kernels.ACTING], dtype=np.int8)
    started, completed, steps = np.array([1]), np.array([0]), np.array([0])
    drive(kernels.q_step, (q, Q_PARAMS), group, obs, actions, [0.5], [2], [terminated],
          [truncated], status, started, completed, steps, 10)  # fmt: skip
    assert q[0, 0, 1] == pytest.approx(expected)
    assert q[0, 0, 0] == 0.0 and steps[0] == 1
    ended = terminated or truncated
    assert status[0] == (kernels.ENDED if ended else kernels.ACTING)
    assert completed[0] == int(ended) and obs[0] == 2
    # The autoreset step after an ended episode is not learned from.
    before = q.copy()
    drive(kernels.q_step, (q, Q_PARAMS), group, obs, actions, [7.0], [0], [False],
          [False], status, started, completed, steps, 10)  # fmt: skip
    if ended:
        np.testing.assert_array_equal(q, before)
        assert status[0] == kernels.ACTING and started[0] == 2


def test_kernel_starts_exactly_the_requested_episodes_across_actors():
    q = np.zeros((1, 2, 2))
    group = np.zeros(3, dtype=np.int64)
    obs, actions = np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
    status = np.full(3, kernels.ENDED, dtype=np.int8)
    started, completed, steps = (np.zeros(1, dtype=np.int64) for _ in range(3))
    ones, zeros = np.ones(3, dtype=bool), np.zeros(3, dtype=bool)
    args = (kernels.q_step, (q, Q_PARAMS), group, obs, actions)
    busy, _ = drive(*args, np.zeros(3), np.zeros(3, dtype=np.int64), zeros, zeros, status,
                    started, completed, steps, 5)  # fmt: skip
    assert busy == 3 and started[0] == 3
    history = []
    for _ in range(6):  # every step ends the episode, then an autoreset step follows
        busy, updates = drive(*args, np.ones(3), np.ones(3, dtype=np.int64), ones, zeros,
                              status, started, completed, steps, 5)  # fmt: skip
        history.append((busy, updates, int(completed[0])))
        busy, _ = drive(*args, np.zeros(3), np.zeros(3, dtype=np.int64), zeros, zeros, status,
                        started, completed, steps, 5)  # fmt: skip
        if busy == 0:
            break
    assert completed[0] == 5 and started[0] == 5 and steps[0] == 5
    # Ended actors count as busy while their MDP may still start episodes.
    assert history == [(3, 3, 3), (0, 2, 5)]
    assert np.all(status == kernels.IDLE)


def test_drain_starts_no_new_episode():
    q = np.zeros((1, 2, 2))
    group = np.zeros(2, dtype=np.int64)
    status = np.full(2, kernels.ENDED, dtype=np.int8)
    started, completed, steps = (np.zeros(1, dtype=np.int64) for _ in range(3))
    busy, _ = drive(kernels.q_step, (q, Q_PARAMS), group, np.zeros(2, dtype=np.int64),
                    np.zeros(2, dtype=np.int64), np.zeros(2), np.zeros(2, dtype=np.int64),
                    np.zeros(2, dtype=bool), np.zeros(2, dtype=bool), status, started,
                    completed, steps, 100, allow=False)  # fmt: skip
    assert busy == 0 and started[0] == 0 and np.all(status == kernels.IDLE)


def reference_a2c_episode(logits, values, obs, acts, rewards, terminated, gamma, lr, mc):
    """Slow, obvious A2C episode update (the documented sequential rule)."""
    logits, values = logits.copy(), values.copy()
    t_len = len(acts)
    if mc:
        g = 0.0 if terminated else values[obs[-1]]
        returns = []
        for r in reversed(rewards):
            g = r + gamma * g
            returns.append(g)
        returns = returns[::-1]
    for t in range(t_len):
        o, a = obs[t], acts[t]
        if mc:
            delta = returns[t] - values[o]
        else:
            boot = 0.0 if (t == t_len - 1 and terminated) else values[obs[t + 1]]
            delta = rewards[t] + gamma * boot - values[o]
        values[o] += lr * delta
        pi = np.exp(logits[o] - logits[o].max())
        pi /= pi.sum()
        grad = -pi
        grad[a] += 1.0
        logits[o] += lr * delta * grad
    return logits, values


@pytest.mark.parametrize("mc", [True, False])
@pytest.mark.parametrize("terminated", [True, False])
def test_a2c_kernel_matches_the_slow_reference(mc, terminated):
    rng = np.random.default_rng(5)
    n, a, length, gamma, lr = 4, 3, 9, 0.9, 0.1
    logits0 = rng.normal(size=(1, n, a))
    values0 = rng.normal(size=(1, n))
    obs_seq = rng.integers(0, n, size=length + 1)  # states repeat: order matters
    act_seq = rng.integers(0, a, size=length)
    rew_seq = rng.normal(size=length)
    logits, values = logits0.copy(), values0.copy()
    group = np.zeros(1, dtype=np.int64)
    obs, actions = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    status = np.array([kernels.ENDED], dtype=np.int8)
    started, completed, steps = (np.zeros(1, dtype=np.int64) for _ in range(3))
    limit = 20
    buffers = EpisodeBuffers(np.zeros((1, limit + 1), dtype=np.int64),
                             np.zeros((1, limit), dtype=np.int64), np.zeros((1, limit)),
                             np.zeros(1, dtype=np.int64))  # fmt: skip
    own = (A2CTables(logits, values), A2CParams(lr, lr, gamma, mc), buffers)
    no = [False]
    drive(kernels.a2c_step, own, group, obs, actions, [0.0],
          [obs_seq[0]], no, no, status, started, completed, steps, 1)  # fmt: skip
    for t in range(length):
        actions[0] = act_seq[t]  # pretend the actor chose these actions
        last = t == length - 1
        drive(kernels.a2c_step, own, group, obs, actions, [rew_seq[t]],
              [obs_seq[t + 1]], [last and terminated], [last and not terminated], status,
              started, completed, steps, 1)  # fmt: skip
    ref_logits, ref_values = reference_a2c_episode(
        logits0[0], values0[0], obs_seq, act_seq, rew_seq, terminated, gamma, lr, mc
    )
    np.testing.assert_allclose(logits[0], ref_logits, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(values[0], ref_values, rtol=1e-12, atol=1e-12)
    assert completed[0] == 1 and steps[0] == length


def test_exact_returns_in_small_batches_match_one_batch(monkeypatch):
    run = make_teachers("optimal", n_mdps=3, seed=2)
    monkeypatch.setattr(make, "EVAL_BUDGET_BYTES", 1.0)  # one MDP per batch
    models = TeacherEnv(layout_base=2).make_vec(range(3)).models
    teacher, optimal, uniform = make._exact_returns(models, run.teachers)
    np.testing.assert_array_equal(teacher, run.teacher_return)
    np.testing.assert_array_equal(optimal, run.optimal_return)
    np.testing.assert_array_equal(uniform, run.uniform_return)


def test_undiscounted_optimum_by_policy_iteration_equals_value_iteration():
    for env in (TeacherEnv(layout_base=3), TeacherEnv("DistillChain-v0", {"length": 9})):
        models = env.make_vec(range(3)).models
        best, _ = planning.value_iteration([models.mdp(i) for i in range(3)], gamma=1.0)
        expected = np.einsum("bs,bs->b", models.initial, best)
        np.testing.assert_allclose(make._undiscounted_optimum(models, 0, 3), expected,
                                   atol=1e-8)  # fmt: skip
    no_exit = ["###", "S..", "###"]  # no terminal cell and no absorption: no policy ends
    stuck = TeacherEnv("DistillGrid-v0", {"layout": no_exit, "absorb_prob": 0.0})
    with pytest.raises(ValueError):
        make._undiscounted_optimum(stuck.make_vec([0]).models, 0, 1)


def test_worker_processes_give_the_same_teachers():
    kwargs = {"n_mdps": 4, "episodes": 30, "chunk_size": 2, "seed": 3}
    here = make_teachers("q_learning", workers=1, **kwargs)
    spread = make_teachers("q_learning", workers=2, **kwargs)
    np.testing.assert_array_equal(here.teachers.q_values, spread.teachers.q_values)
    np.testing.assert_array_equal(here.teacher_return, spread.teacher_return)
    assert not spread.teachers.probs.flags.writeable
    assert spread.stats is not None and spread.stats.updates == here.stats.updates


def test_subset_selects_mdps_and_keeps_everything_else():
    envs = gym.make_vec(
        "DistillGrid-v0", num_envs=4, vectorization_mode="vector_entry_point",
        observation="index", width=6, height=6, layout_seed=3,
    )  # fmt: skip
    teachers = planned_teachers(envs.models, env_id="DistillGrid-v0", layout_seeds=np.arange(3, 7))
    part = teachers.subset(1, 3)
    np.testing.assert_array_equal(part.probs, teachers.probs[1:3])
    np.testing.assert_array_equal(part.values, teachers.values[1:3])
    np.testing.assert_array_equal(part.layout_seeds, [4, 5])
    assert (part.kind, part.env_id, part.probs.shape[1]) == (
        teachers.kind,
        teachers.env_id,
        teachers.probs.shape[1],
    )
    with pytest.raises(ValueError, match="lo < hi"):
        teachers.subset(2, 2)


def test_exact_values_are_the_values_of_the_teachers_own_policy():
    from distill_agents.teachers import exact_values, noisy_teachers, planned_teachers

    models = TeacherEnv(layout_base=5).make_vec(range(3)).models
    optimal = planned_teachers(models, gamma=0.99)
    # A greedy optimal teacher's values are V*: exact_values gives them back.
    again = exact_values(optimal, models, gamma=0.99)
    live = optimal.acting
    np.testing.assert_allclose(again.values[live], optimal.values[live], rtol=1e-9, atol=1e-9)
    # A noisy teacher keeps the clean Q of its noisy action; exact_values gives the value of
    # the noisy policy itself, which policy_evaluation computes directly on the states.
    noisy = noisy_teachers(optimal, 0.3, seed=0)
    exact = exact_values(noisy, models, gamma=0.99)
    mdps = [models.mdp(i) for i in range(3)]
    policy = noisy.state_policies(models.state_to_index)
    v = planning.policy_evaluation(mdps, policy, gamma=0.99)
    index = models.state_to_index
    for i in range(3):
        has = (index[i] >= 0) & ~models.terminal[i]
        np.testing.assert_allclose(exact.values[i, index[i][has]], v[i][has], rtol=1e-9, atol=1e-9)
    assert np.all(exact.values[live] <= noisy.values[live] + 1e-9)  # Q* overrates the noisy policy
    assert np.any(exact.values[live] < noisy.values[live] - 0.1)
    np.testing.assert_array_equal(exact.probs, noisy.probs)


def test_noise_procedures_put_wrong_actions_where_they_say():
    from distill_agents.teachers import noisy_teachers, planned_teachers

    models = TeacherEnv(layout_base=6).make_vec(range(3)).models
    clean = planned_teachers(models, gamma=0.99)
    greedy = clean.probs.argmax(axis=-1)
    fixed = noisy_teachers(clean, 0.3, seed=1)
    np.testing.assert_array_equal(
        noisy_teachers(clean, 0.3, seed=1, procedure="fixed").probs, fixed.probs
    )
    path = noisy_teachers(clean, 0.3, seed=1, procedure="path", models=models)
    # The clean teacher's path: acting indices it visits at least half a time per episode.
    mdps = [models.mdp(i) for i in range(3)]
    visits = planning.expected_visits(mdps, clean.state_policies(models.state_to_index))
    for i in range(3):
        index = models.state_to_index[i]
        on_path = np.zeros(clean.n_index, dtype=bool)
        has = (index >= 0) & (visits[i] >= 0.5)
        on_path[index[has]] = True
        on_path &= clean.acting[i]
        wrong = (path.probs[i].argmax(axis=-1) != greedy[i]) & clean.acting[i]
        assert wrong.sum() == math.floor(0.3 * on_path.sum() + 0.5) > 0
        assert not np.any(wrong & ~on_path)
    # Q-value noise: none at scale 0, more wrong actions at a larger scale.
    zero = noisy_teachers(clean, 0.0, seed=1, procedure="q_values")
    np.testing.assert_array_equal(
        zero.probs.argmax(-1)[clean.acting], clean.q_values.argmax(-1)[clean.acting]
    )
    few = noisy_teachers(clean, 0.05, seed=1, procedure="q_values")
    many = noisy_teachers(clean, 0.9, seed=1, procedure="q_values")
    n_wrong = [int(((t.probs.argmax(-1) != greedy) & clean.acting).sum()) for t in (few, many)]
    assert 0 < n_wrong[0] < n_wrong[1]
    with pytest.raises(ValueError, match="procedure must be one of"):
        noisy_teachers(clean, 0.3, seed=1, procedure="random")
    with pytest.raises(ValueError, match="procedure 'path' needs the MDPs' models"):
        noisy_teachers(clean, 0.3, seed=1, procedure="path")
    with pytest.raises(ValueError, match="procedure 'q_values' needs teachers with q_values"):
        noisy_teachers(clean.replace(q_values=None), 0.3, seed=1, procedure="q_values")
