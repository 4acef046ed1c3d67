"""The batched runner: equivalence with ``distill``, learning, seeding, chunking, evaluation."""

from __future__ import annotations

import inspect

import gymnasium as gym
import numpy as np
import pytest

import gridworld_env  # noqa: F401 -- registers the environments
from distill_agents import BetaSchedule, distill, planning
from distill_agents import runner as R
from distill_agents.bench.students import bench_students
from distill_agents.results import summarize
from distill_agents.row_kernels import dense_table
from distill_agents.runner import chunks as runner_chunks
from distill_agents.runner import envs as runner_envs
from distill_agents.runner.evaluation import Evaluator
from distill_agents.teachers import Teachers, planned_teachers

SMALL = {"width": 6, "height": 6}


def grid_teachers(n: int, seed: int = 0, minimise: bool = False, **kwargs) -> Teachers:
    """Optimal (or adversarial) teachers of ``n`` random grids with layout seeds seed..."""
    kw = {**SMALL, **kwargs}
    observation = "partial_index" if kw.get("observation") == "partial" else "index"
    vector_kw = {k: v for k, v in kw.items() if k != "observation"}
    envs = gym.make_vec(
        "DistillGrid-v0",
        num_envs=n,
        vectorization_mode="vector_entry_point",
        observation=observation,
        layout_seed=seed,
        **vector_kw,
    )
    return planned_teachers(
        envs.models,
        minimise=minimise,
        env_id="DistillGrid-v0",
        env_kwargs=kw,
        layout_seeds=np.arange(seed, seed + n),
    )


def chain_teachers(n: int, length: int = 11) -> Teachers:
    envs = gym.make_vec(
        "DistillChain-v0",
        num_envs=n,
        vectorization_mode="vector_entry_point",
        observation="index",
        length=length,
    )
    return planned_teachers(envs.models, env_id="DistillChain-v0", env_kwargs={"length": length})


def subset(teachers: Teachers, lo: int, hi: int) -> Teachers:
    return teachers.subset(lo, hi)


def exact_return(teachers: Teachers, i: int, logits: np.ndarray) -> float:
    env = teachers.make_env(i)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    policy = planning.observation_policy_to_state_policy(p, env.state_to_index)
    return float(planning.expected_return(env.unwrapped.mdp, policy))


@pytest.fixture(scope="module")
def grids() -> Teachers:
    return grid_teachers(20)


# ------------------------------------------------------------------- equivalence with distill
EXACT_CASES = [
    ("grid", {}, "on_policy_distill", {}),
    ("grid", {}, "teacher_v_reward", {"critic": "td"}),
    ("grid", {}, "n_distill+R", {"control": "mixture", "beta": BetaSchedule("linear", 1.0, 0.0)}),
    ("grid", {"observation": "partial", "view_size": 3}, "teacher_distill", {}),
    ("chain", {}, "expected_entropy_regularised", {"control": "uniform"}),
    ("chain", {}, "on_policy_distill+R+Vcond", {}),
    ("grid", {}, "on_policy_distill", {"control": "epsilon_teacher"}),
]


@pytest.mark.parametrize(("family", "env_kw", "method", "kwargs"), EXACT_CASES)
@pytest.mark.parametrize("loop", R.LOOPS)
def test_each_mdp_learns_exactly_as_single_env_distill(family, env_kw, method, kwargs, loop):
    # With deterministic moves (noise 0) the vector env and the single env turn the same
    # uniforms into the same outcomes, so the per-MDP streams make the two paths identical.
    if family == "grid":
        teachers = grid_teachers(4, seed=3, noise=0.0, **env_kw)
    else:
        teachers = chain_teachers(3)
    result = R.run_distillation(
        teachers,
        method,
        iterations=60,
        eval_every=20,
        seed=5,
        keep_students=True,
        loop=loop,
        **kwargs,
    )
    for i in range(teachers.n_mdps):
        single = distill(
            teachers.make_env(i),
            teachers.teacher(i),
            method,
            iterations=60,
            seed=R.mdp_seed(5, i),
            **kwargs,
        )
        batched = result.student(i)
        np.testing.assert_array_equal(batched.logits, single.logits)
        if single.values is not None:
            assert batched.values is not None
            np.testing.assert_array_equal(batched.values, single.values)


def test_stochastic_dynamics_agree_with_distill_in_distribution():
    # With noise the vector env orders outcomes by probability and the single env by model
    # order: the same uniforms give different outcomes, so the two paths are compared
    # statistically (paired over 30 MDPs, after 40 episodes, far from convergence).
    teachers = grid_teachers(30, seed=100, width=5, height=5)
    iterations = 40
    result = R.run_distillation(
        teachers, "on_policy_distill", iterations=iterations, eval_every=iterations, seed=1
    )
    batched = result.metrics["return"][:, -1]
    single = np.array(
        [
            exact_return(
                teachers,
                i,
                distill(
                    teachers.make_env(i),
                    teachers.teacher(i),
                    "on_policy_distill",
                    iterations=iterations,
                    seed=R.mdp_seed(1, i),
                ).logits,
            )
            for i in range(teachers.n_mdps)
        ]
    )
    diff = batched - single
    assert not np.array_equal(batched, single)  # the streams differ by design
    assert abs(diff.mean()) <= 3.0 * diff.std(ddof=1) / np.sqrt(diff.size) + 1e-9
    start = result.metrics["return"][:, 0].mean()
    assert batched.mean() > start + 0.5 * (result.teacher_metrics["return"].mean() - start)


# ------------------------------------------------------------------------------ learning
@pytest.mark.parametrize("method", ["teacher_distill", "on_policy_distill"])
def test_students_reach_the_optimal_teachers_return(grids, method):
    result = R.run_distillation(grids, method, iterations=400, eval_every=100, seed=0)
    curve = result.metrics["return"].mean(axis=0)
    teacher = result.teacher_metrics["return"].mean()
    assert curve[0] < 0.5 * teacher  # a uniform student is far from it
    assert curve[-1] >= 0.95 * teacher
    assert curve[-1] > curve[1] > curve[0]


def test_baseline_learns_without_looking_at_the_teacher(grids):
    scrambled = grids.replace(probs=np.full(grids.probs.shape, 1.0 / grids.n_actions))
    a = R.run_distillation(grids, "baseline", iterations=50, eval_every=50, seed=2)
    b = R.run_distillation(scrambled, "baseline", iterations=50, eval_every=50, seed=2)
    np.testing.assert_array_equal(a.metrics["return"], b.metrics["return"])
    assert a.metrics["return"][:, -1].mean() > a.metrics["return"][:, 0].mean()


# ------------------------------------------------------------------------------- seeding
def test_same_seed_same_results_bit_for_bit_and_other_seeds_differ(grids):
    part = subset(grids, 0, 6)
    kw = {"iterations": 30, "eval_every": 10, "metrics": R.METRICS, "keep_students": True}
    a = R.run_distillation(part, "on_policy_distill", seed=7, **kw)
    b = R.run_distillation(part, "on_policy_distill", seed=7, **kw)
    c = R.run_distillation(part, "on_policy_distill", seed=8, **kw)
    for name in R.METRICS:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name])
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.env_steps, b.env_steps)
    assert not np.array_equal(a.logits, c.logits)


def _assert_same(a: R.RunResult, b: R.RunResult) -> None:
    for name in a.metrics:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name])
        np.testing.assert_array_equal(a.teacher_metrics[name], b.teacher_metrics[name])
    np.testing.assert_array_equal(a.env_steps, b.env_steps)
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.critic, b.critic)


def test_results_do_not_depend_on_chunks_splits_or_compaction(grids, monkeypatch):
    part = subset(grids, 0, 7)
    kw = {"iterations": 40, "eval_every": 10, "seed": 3, "keep_students": True, "loop": "vector"}
    method = "on_policy_distill+R"
    whole = R.run_distillation(part, method, chunk_size=7, compact=False, **kw)
    assert whole.env_builds == 1
    for chunk_size in (1, 3):
        _assert_same(whole, R.run_distillation(part, method, chunk_size=chunk_size, **kw))
    # Split over "processes": first_mdp keeps the global MDP indices (hence the seeds).
    pieces = [
        R.run_distillation(subset(part, 0, 4), method, **kw),
        R.run_distillation(subset(part, 4, 7), method, first_mdp=4, **kw),
    ]
    _assert_same(whole, R.RunResult.concatenate(pieces))
    # Compaction at every opportunity: many vector envs, the same learning.
    monkeypatch.setattr(runner_chunks, "BUILD_COST", 0.0)
    monkeypatch.setattr(runner_chunks, "PLAN_EVERY", 1)
    monkeypatch.setattr(runner_chunks, "DRAIN_BELOW", 1.0)
    compacted = R.run_distillation(part, method, **kw)
    assert compacted.env_builds > 3
    _assert_same(whole, compacted)


# 4 actions (grids), 40 and 2 (the corridor): each copy of run_mdps' body (one per action count
# it specialises on, and the general one) against the vector loop.
COMPILED_CASES = [
    ("grid", {"noise": 0.2}, "on_policy_distill", {"metrics": R.METRICS}),
    ("grid", {"noise": 0.1}, "n_distill+R", {"control": "mixture", "critic": "td"}),
    ("grid", {"noise": 0.1}, "teacher_distill", {"control": "uniform"}),
    ("grid", {"observation": "partial", "view_size": 3}, "on_policy_distill+R+Vcond", {}),
    ("grid", {"n_actions": 40}, "entropy_regularised+R", {"control": "student"}),
    ("chain", {}, "teacher_v_reward", {"critic": "mc"}),
    ("grid", {"n_actions": 40}, "expected_entropy_regularised", {"control": "epsilon_teacher"}),
]


@pytest.mark.parametrize(("family", "env_kw", "method", "kwargs"), COMPILED_CASES)
def test_compiled_loop_gives_the_vector_loops_students_bit_for_bit(
    family, env_kw, method, kwargs, monkeypatch
):
    teachers = grid_teachers(9, seed=21, **env_kw) if family == "grid" else chain_teachers(4)
    kw = {"iterations": 50, "eval_every": 10, "seed": 2, "keep_students": True, **kwargs}
    vector = R.run_distillation(teachers, method, chunk_size=4, loop="vector", **kw)
    # Tiny buffers (refills mid-run, every few episodes) and a short time limit (truncated
    # episodes): still the same uniforms in the same order, so the same students.
    monkeypatch.setattr(runner_chunks, "COMPILED_BUFFER", 64)
    compiled = R.run_distillation(teachers, method, **kw)  # the default loop
    _assert_same(vector, compiled)
    assert compiled.step_calls == 0 and vector.step_calls > 0
    short = {**kw, "max_episode_steps": 7}
    _assert_same(
        R.run_distillation(teachers, method, loop="vector", **short),
        R.run_distillation(teachers, method, chunk_size=5, **short),
    )


GROUP_CASES = [
    ("on_policy_distill", {"control": "uniform", "metrics": R.METRICS}),
    ("teacher_v_reward", {"control": "uniform", "critic": "td"}),
    ("kl_regularised", {"control": "uniform", "critic": "mc"}),
    ("teacher_v_reward", {"control": "teacher", "critic": "td"}),
]


@pytest.mark.parametrize(("method", "kwargs"), GROUP_CASES)
def test_a_group_trains_each_student_as_its_own_run_would(grids, method, kwargs, monkeypatch):
    from distill_agents.teachers import noisy_teachers

    part = subset(grids, 0, 9)
    if kwargs["control"] == "teacher":  # the same control policy, other values
        assert part.values is not None
        group = [part, part.replace(values=0.5 * part.values)]
    else:
        group = [part, noisy_teachers(part, 0.3, seed=1), noisy_teachers(part, 0.6, seed=2)]
    kw = {"iterations": 60, "eval_every": 20, "seed": 4, "keep_students": True, **kwargs}
    monkeypatch.setattr(runner_chunks, "COMPILED_BUFFER", 64)  # refills mid-run
    seen: list[int] = []
    together = R.run_distillation_group(group, method, chunk_size=4, progress=seen.append, **kw)
    assert sum(seen) == len(group) * 9 * 60
    assert len(together) == len(group)
    for teachers, result in zip(group, together, strict=True):
        _assert_same(R.run_distillation(teachers, method, **kw), result)
        assert result.settings["group_size"] == len(group)
    # The students differ (they learn from different teachers).
    assert not np.array_equal(together[0].logits, together[1].logits)


def test_a_group_refuses_what_it_cannot_share(grids):
    from distill_agents.teachers import noisy_teachers

    part = subset(grids, 0, 3)
    other = noisy_teachers(part, 0.5, seed=1)
    kw = {"iterations": 2, "eval_every": 1}
    with pytest.raises(ValueError, match="depends on the student"):
        R.run_distillation_group([part, other], "on_policy_distill", control="student", **kw)
    with pytest.raises(ValueError, match="depends on the student"):
        R.run_distillation_group([part, other], "on_policy_distill", **kw)  # its own: student
    with pytest.raises(ValueError, match="equal probabilities"):
        R.run_distillation_group([part, other], "teacher_distill", **kw)
    with pytest.raises(ValueError, match="other MDPs"):
        R.run_distillation_group([part, subset(grids, 3, 6)], "teacher_distill", **kw)
    vector = {**kw, "loop": "vector"}
    with pytest.raises(ValueError, match='loop="compiled"'):
        R.run_distillation_group([part, other], "on_policy_distill", control="uniform", **vector)
    with pytest.raises(ValueError, match="non-empty"):
        R.run_distillation_group([], "on_policy_distill", **kw)
    with pytest.raises(TypeError, match="unknown_option"):  # as run_distillation would
        R.run_distillation_group([part], "on_policy_distill", unknown_option=1, **kw)
    # A group of one is run_distillation.
    (alone,) = R.run_distillation_group([part], "on_policy_distill", keep_students=True, **kw)
    _assert_same(alone, R.run_distillation(part, "on_policy_distill", keep_students=True, **kw))


def test_a_parsed_method_and_its_id_train_the_same_students(grids):
    from distill_agents.methods import parse_method
    from distill_agents.runner.distillation import RunSettings, run_group

    part = subset(grids, 0, 3)
    kw = {"iterations": 6, "eval_every": 3, "critic": "mc", "keep_students": True}
    by_id = R.run_distillation(part, "on_policy_distill+R+Vcond", **kw)
    spec = parse_method("on_policy_distill+R+Vcond")
    by_spec = R.run_distillation(part, spec, **kw)
    _assert_same(by_id, by_spec)
    assert by_spec.method == by_id.method == spec.id
    assert by_spec.settings == by_id.settings
    # run_group takes the parsed method and one settings record.
    defaults = inspect.signature(R.run_distillation).parameters
    settings = RunSettings(
        **{name: p.default for name, p in defaults.items() if p.kind == p.KEYWORD_ONLY}
        | {"iterations": 6, "eval_every": 3, "critic": "mc", "keep_students": True}
    )
    (grouped,) = run_group([part], spec, settings)
    _assert_same(by_id, grouped)


def test_compiled_loop_reports_progress_and_rejects_unknown_loops(grids):
    part = subset(grids, 0, 3)
    seen: list[int] = []
    R.run_distillation(
        part,
        "on_policy_distill",
        iterations=12,
        eval_every=4,
        progress=seen.append,
    )
    assert sum(seen) == 3 * 12
    with pytest.raises(ValueError, match="loop must be one of"):
        R.run_distillation(part, "on_policy_distill", iterations=2, eval_every=2, loop="numba")


def test_memory_budget_sets_the_chunk_size_without_changing_results():
    teachers = grid_teachers(3, seed=9, n_actions=40)
    kw = {"iterations": 20, "eval_every": 20, "seed": 0, "keep_students": True}
    small = R.run_distillation(teachers, "on_policy_distill", memory_budget=1.0, **kw)
    big = R.run_distillation(teachers, "on_policy_distill", **kw)
    assert small.settings["chunk_size"] == 1
    assert big.settings["chunk_size"] >= 3
    _assert_same(small, big)


# ---------------------------------------------------------------------------- evaluation
@pytest.mark.parametrize("env_kw", [{}, {"n_actions": 40}, {"observation": "partial"}])
def test_metrics_are_the_exact_planning_values(env_kw):
    # The runner evaluates on action rows and table indices; planning on [S, A] state policies.
    part = grid_teachers(4, seed=11, **env_kw)
    result = R.run_distillation(
        part, "on_policy_distill", iterations=25, eval_every=25, metrics=R.METRICS,
        keep_students=True,
    )  # fmt: skip
    for i in range(part.n_mdps):
        env = part.make_env(i)
        mdp, index = env.unwrapped.mdp, env.state_to_index
        student = result.student(i).state_policy(index)
        teacher = part.state_policy(i, index)
        uniform = np.full(student.shape, 1.0 / student.shape[1])
        expected = {
            "return": planning.expected_return(mdp, student),
            "kl_student": planning.expected_kl(mdp, student, teacher, student),
            "kl_teacher": planning.expected_kl(mdp, teacher, teacher, student),
            "kl_uniform": planning.expected_kl(mdp, uniform, teacher, student),
        }
        for name, value in expected.items():
            assert result.metrics[name][i, -1] == pytest.approx(value, rel=1e-12, abs=1e-12)
        assert result.metrics["return"][i, 0] == pytest.approx(
            planning.expected_return(mdp, uniform), rel=1e-12
        )
        assert result.teacher_metrics["return"][i] == pytest.approx(
            planning.expected_return(mdp, teacher), rel=1e-12
        )
        for name in ("kl_student", "kl_teacher", "kl_uniform"):
            assert result.teacher_metrics[name][i] == 0.0


def test_snapshots_are_taken_exactly_at_the_evaluation_points(grids):
    part = subset(grids, 0, 5)
    np.testing.assert_array_equal(R.eval_iterations(10, 4), [0, 4, 8, 10])
    np.testing.assert_array_equal(R.eval_iterations(8, 4), [0, 4, 8])
    kw = {"seed": 4, "loop": "vector"}  # the vector loop's snapshot slots
    long = R.run_distillation(part, "n_distill", iterations=10, eval_every=4, **kw)
    assert long.metrics["return"].shape == (5, 4)
    for column, its in enumerate([4, 8, 10]):
        short = R.run_distillation(part, "n_distill", iterations=its, eval_every=its, **kw)
        # Per-MDP streams: the first `its` episodes of the long run are the short run's.
        np.testing.assert_array_equal(
            long.metrics["return"][:, column + 1], short.metrics["return"][:, -1]
        )


def test_early_evaluation_points_are_extra_columns_of_the_same_run(grids):
    part = subset(grids, 0, 3)
    assert R.early_iterations(1000, 30_000) == (10, 20, 50, 100, 200, 500)
    assert R.early_iterations(100, 3000) == (10, 20, 50) and R.early_iterations(10, 300) == ()
    plain = R.run_distillation(part, "n_distill", iterations=60, eval_every=30, seed=2,
                               loop="vector")  # fmt: skip
    early = R.run_distillation(part, "n_distill", iterations=60, eval_every=30, seed=2,
                               eval_at=(10, 20, 30))  # fmt: skip
    np.testing.assert_array_equal(early.eval_iterations, [0, 10, 20, 30, 60])
    # Evaluating more often changes no learning: the regular columns are the same numbers.
    np.testing.assert_array_equal(early.metrics["return"][:, [0, 3, 4]], plain.metrics["return"])
    np.testing.assert_array_equal(early.env_steps, plain.env_steps)


def test_zero_iterations_evaluates_the_initial_students_only(grids):
    part = subset(grids, 0, 3)
    result = R.run_distillation(part, "on_policy_distill", iterations=0, eval_every=5)
    np.testing.assert_array_equal(result.eval_iterations, [0])
    assert result.step_calls == 0
    assert np.all(result.env_steps == 0)
    assert np.all(np.isfinite(result.metrics["return"]))


def test_rows_summarise_across_mdps(grids):
    part = subset(grids, 0, 6)
    result = R.run_distillation(
        part, "on_policy_distill", iterations=20, eval_every=10, metrics=("return", "kl_student")
    )
    rows = result.to_rows("figX", "p", method="student_driven")
    assert len(rows) == 2 * 3 * 2  # metrics x evaluation points x (student, teacher)
    students = [r for r in rows if r.method == "student_driven" and r.metric == "return"]
    mean, low, high, _ = summarize(result.metrics["return"])
    assert [r.iteration for r in students] == [0, 10, 20]
    assert [r.mean for r in students] == list(mean)
    assert [r.ci_low for r in students] == list(low)
    assert [r.ci_high for r in students] == list(high)
    assert all(r.n_mdps == 6 for r in rows)
    teacher = [r for r in rows if r.method == "teacher" and r.metric == "return"]
    assert len(teacher) == 3
    for r in teacher:
        assert r.mean == pytest.approx(result.teacher_metrics["return"].mean(), rel=1e-12)
    assert all(r.method != "teacher" for r in result.to_rows("f", "p", include_teacher=False))


def test_progress_counts_every_episode(grids):
    part = subset(grids, 0, 4)
    counts: list[int] = []
    R.run_distillation(
        part,
        "on_policy_distill",
        iterations=15,
        eval_every=15,
        progress=counts.append,
        loop="vector",
    )
    assert sum(counts) == 4 * 15


# --------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "policy_distill"}, "method must be one of"),
        ({"control": "greedy"}, "control must be one of"),
        ({"critic": "q"}, "critic must be"),
        ({"metrics": ("return", "loss")}, "metrics must be"),
        ({"metrics": ()}, "metrics must be"),
        ({"iterations": -1}, "iterations must be an integer >= 0"),
        ({"eval_every": 0}, "eval_every must be an integer >= 1"),
        ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
        ({"seed": -2}, "seed must be an integer >= 0"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"gamma": 1.5}, "gamma must be a number in"),
        ({"progress": "yes"}, "progress must be"),
        ({"eval_at": [99]}, "eval_at must hold iterations in"),
        ({"eval_at": [-1]}, "eval_at must be an integer >= 0"),
    ],
)
def test_bad_arguments_are_clear_errors(grids, kwargs, match):
    args = {"method": "on_policy_distill", "iterations": 5, "eval_every": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        R.run_distillation(subset(grids, 0, 2), **args)


def test_teachers_that_do_not_fit_are_refused(grids):
    part = subset(grids, 0, 2)
    with pytest.raises(ValueError, match="needs the teacher's values"):
        R.run_distillation(
            part.replace(values=None), "teacher_v_reward", iterations=1, eval_every=1
        )
    with pytest.raises(ValueError, match="table indices but its teacher has"):
        R.run_distillation(
            part.replace(env_kwargs={"width": 7, "height": 7}), "on_policy_distill",
            iterations=1, eval_every=1,
        )  # fmt: skip
    with pytest.raises(ValueError, match="record no env_id"):
        R.run_distillation(
            part.replace(env_id=None), "on_policy_distill", iterations=1, eval_every=1
        )
    with pytest.raises(ValueError, match="must be a Teachers container"):
        R.run_distillation(part.probs, "on_policy_distill", iterations=1, eval_every=1)


def test_student_needs_keep_students(grids):
    result = R.run_distillation(
        subset(grids, 0, 2), "on_policy_distill", iterations=2, eval_every=2
    )
    with pytest.raises(ValueError, match="keep_students=True"):
        result.student(0)


def test_per_mdp_uniforms_only_serve_the_vector_envs_blocks():
    seen = []
    gen = R.PerMDPUniforms(3, lambda block: seen.append(block.shape) or block.fill(0.25))
    block = np.empty((2, 3))
    assert gen.random(out=block) is block
    assert seen == [(2, 3)] and np.all(block == 0.25)
    for draw in (
        lambda: gen.random(),
        lambda: gen.random(out=np.empty((2, 4))),
        lambda: gen.integers(0, 3),
    ):
        with pytest.raises(RuntimeError, match="PerMDPUniforms"):
            draw()


def test_mdp_seed_is_a_function_of_seed_and_index():
    assert R.mdp_seed(0, 1) == R.mdp_seed(0, 1)
    assert len({R.mdp_seed(s, g) for s in range(3) for g in range(3)}) == 9
    with pytest.raises(ValueError, match="mdp must be a non-negative integer"):
        R.mdp_seed(0, -1)


def test_bench_students_runs_and_both_loops_learn():
    out = bench_students(
        n_mdps=4, iterations=30, action_counts=(4, 400), action_mdps=2, action_iterations=20,
        action_methods=("on_policy_distill", "baseline"),
    )  # fmt: skip
    assert out["runner_env_steps"] > 4 * 30 and out["reference_env_steps"] > 4 * 30
    assert out["runner_steps_per_s"] > 0 and out["reference_steps_per_s"] > 0
    assert out["ratio"] == pytest.approx(out["runner_steps_per_s"] / out["reference_steps_per_s"])
    assert out["compiled_same_students"] and out["compiled_steps_per_s"] > 0
    # Both loops run the same method on the same MDPs: both improve on the uniform student.
    assert out["final_return"] > 2.0 and out["reference_final_return"] > 2.0
    assert out["peak_rss_bytes"] > 0
    q = out["q_learning"]
    assert q["env_steps"] >= 4 * 30 and q["steps_per_s"] > 0 and q["threads"] >= 1
    rows = out["actions"]["rows"]
    assert [(r["method"], r["n_actions"]) for r in rows] == [
        ("on_policy_distill", 4), ("baseline", 4), ("on_policy_distill", 400), ("baseline", 400),
    ]  # fmt: skip
    for r in rows:
        assert r["env_steps"] >= 2 * 20 and r["ns_per_step"] > 0 and r["rows_per_episode"] >= 1
        assert 1 <= r["entries_per_row"] <= r["n_actions"]
        assert r["setup_seconds_per_mdp"] > 0 and r["train_seconds"] > 0
    # On-policy distillation from a greedy teacher keeps its rows sparse at |A| = 400.
    on_policy = {r["n_actions"]: r for r in rows if r["method"] == "on_policy_distill"}
    assert on_policy[400]["entries_per_row"] < 40


@pytest.mark.parametrize(
    ("family", "env_kw"),
    [("grid", {}), ("grid", {"n_actions": 40, "noise": 0.2}), ("grid", {"observation": "partial"}),
     ("chain", {})],
)  # fmt: skip
def test_compiled_evaluation_matches_the_planning_path(family, env_kw):
    teachers = grid_teachers(6, seed=31, **env_kw) if family == "grid" else chain_teachers(3)
    envs = runner_envs.EnvBuilder(teachers, None, False).make(np.arange(teachers.n_mdps))
    evaluator = Evaluator(envs.models, teachers.probs, R.METRICS)
    logits = np.random.default_rng(0).normal(scale=3.0, size=teachers.probs.shape)
    idx = np.array([2, 0, 1, 1] if family == "chain" else [5, 0, 3, 3, 1])
    # Student 0 copies its (optimal, deterministic) teacher with probabilities exp(-1000) = 0
    # elsewhere: its reached states are computed afresh, not taken from full support.
    logits[idx[0]] = 1000.0 * teachers.probs[idx[0]]
    fast = evaluator.students(idx, dense_table(logits[idx]))
    slow = evaluator.students_planning(idx, logits[idx])
    for name in R.METRICS:
        assert np.all(np.isfinite(fast[name]))
        np.testing.assert_allclose(fast[name], slow[name], rtol=1e-12, atol=1e-12)


def test_compiled_evaluation_hands_students_that_never_end_to_planning():
    # absorb_prob=0 and a student that only ever walks into the wall: its episodes never end,
    # so neither path has a value; the compiled one defers to planning's error.
    kw = {"layout": ["S.G", "...", "..."], "absorb_prob": 0.0, "noise": 0.0}
    envs = gym.make_vec(
        "DistillGrid-v0", num_envs=2, vectorization_mode="vector_entry_point",
        observation="index", **kw,
    )  # fmt: skip
    teachers = planned_teachers(envs.models, env_id="DistillGrid-v0", env_kwargs=kw)
    envs = runner_envs.EnvBuilder(teachers, None, False).make(np.arange(2))
    evaluator = Evaluator(envs.models, teachers.probs, ("return",))
    logits = np.zeros(teachers.probs.shape)
    np.testing.assert_allclose(
        evaluator.students(np.arange(2), dense_table(logits))["return"],
        evaluator.students_planning(np.arange(2), logits)["return"],
        rtol=1e-12,
    )
    mdp = envs.models.mdp(0)
    start = int(np.flatnonzero(mdp.initial)[0])
    stay = [a for a in range(4) if mdp.next_states[start, mdp.action_rows[a], 0] == start]
    assert stay, "the start cell is in the top-left corner: some move bumps into the edge"
    # Other actions at probability exp(-1000) = 0: no path to the goal at all.
    logits[1, :, stay[0]] = 1000.0
    with pytest.raises(ValueError, match="never ends the episode"):
        evaluator.students(np.arange(2), dense_table(logits))
    # At exp(-200) the goal is reachable, but 1 - P rounds to a zero pivot: singular.
    logits[1, :, stay[0]] = 200.0
    with pytest.raises(ValueError, match="singular"):
        evaluator.students(np.arange(2), dense_table(logits))


def test_monte_carlo_evaluation_estimates_the_exact_metrics(grids):
    part = subset(grids, 0, 4)
    kw = {"iterations": 30, "eval_every": 15, "seed": 1, "metrics": R.METRICS}
    exact = R.run_distillation(part, "on_policy_distill", **kw)
    mc = R.run_distillation(part, "on_policy_distill", mc_episodes=3000, **kw)
    assert mc.settings["evaluation"] == "monte_carlo:3000"
    for name in R.METRICS:
        # Per-episode sums have a spread of about their size: 3000 episodes give ~2% error.
        np.testing.assert_allclose(mc.metrics[name], exact.metrics[name], rtol=0.1, atol=0.1)
    np.testing.assert_allclose(
        mc.teacher_metrics["return"], exact.teacher_metrics["return"], rtol=0.05, atol=0.05
    )
    assert not np.array_equal(mc.metrics["return"], exact.metrics["return"])
    # Streams per (MDP, evaluation point): chunking and the loop change no estimate.
    again = R.run_distillation(
        part, "on_policy_distill", mc_episodes=3000, chunk_size=1, loop="vector", **kw
    )
    for name in R.METRICS:
        np.testing.assert_array_equal(again.metrics[name], mc.metrics[name])
    with pytest.raises(ValueError, match="mc_episodes must be an integer >= 1"):
        R.run_distillation(part, "on_policy_distill", mc_episodes=0, **kw)


def test_bench_prints_the_student_runners_lines():
    from distill_agents import bench

    out = bench_students(n_mdps=3, iterations=20, action_mdps=0)
    text = bench.format_students(out)
    assert "vector-env loop" in text and "compiled loop" in text
    assert f"{out['compiled_ratio']:.2f}x" in text and "same students in both loops: True" in text
    assert "plain compiled Q-learning" in text and "(e)" not in text
    fig3 = {"env_steps": 2e9, "wall_seconds": 100.0, "settings": {"mdps": 1000, "iterations": 9}}
    ratio = 2e7 / out["q_learning"]["steps_per_s"]
    assert f"2e+07 env-steps/s, {ratio:.2f}x of it" in bench.format_students(out, fig3)


def test_the_action_count_table_has_a_column_per_count():
    from distill_agents import bench

    rows = [
        {"method": m, "n_actions": a, "ns_per_step": ns, "entries_per_row": e}
        for m, a, ns, e in [
            ("on_policy_distill", 4, 100.0, 2.0), ("on_policy_distill", 4000, 250.0, 3.0),
            ("baseline", 4, 90.0, 4.0), ("baseline", 4000, 9000.0, 3500.0),
        ]
    ]  # fmt: skip
    lines = bench.format_actions(rows, 20, 2000).splitlines()
    assert "20 random 20x20 MDPs x 2000 episodes" in lines[0]
    assert lines[1].split() == ["method", "|A|=4", "|A|=4000", "4000/4"]
    assert lines[2].split() == ["on_policy_distill", "100", "(2)", "250", "(3)", "2.5x"]
    assert lines[3].split() == ["baseline", "90", "(4)", "9000", "(3500)", "100.0x"]


def test_compiled_runs_on_the_same_mdps_reuse_the_last_builds(grids, monkeypatch):
    monkeypatch.setattr(runner_envs, "BUILT_CACHE_ENTRIES", 2)
    runner_envs.BUILT_CHUNKS.clear()
    part, other = subset(grids, 0, 4), subset(grids, 4, 8)
    kw = {"iterations": 20, "eval_every": 10, "keep_students": True}
    first = R.run_distillation(part, "on_policy_distill", metrics=R.METRICS, **kw)
    assert first.env_builds == 1
    again = R.run_distillation(part, "on_policy_distill", metrics=R.METRICS, **kw)
    assert again.env_builds == 0  # kept
    _assert_same(first, again)
    assert R.run_distillation(other, "on_policy_distill", first_mdp=4, **kw).env_builds == 1
    assert len(runner_envs.BUILT_CHUNKS) == 2
    # Three other sets of MDPs: the oldest is dropped.
    R.run_distillation(subset(grids, 8, 10), "on_policy_distill", first_mdp=8, **kw)
    assert len(runner_envs.BUILT_CHUNKS) == 2
    assert R.run_distillation(part, "on_policy_distill", **kw).env_builds == 1
    # Builds larger than the budget are not kept.
    monkeypatch.setattr(runner_envs, "BUILT_CACHE_BYTES", 0)
    runner_envs.BUILT_CHUNKS.clear()
    R.run_distillation(part, "on_policy_distill", **kw)
    assert not runner_envs.BUILT_CHUNKS
    # The vector-env loop steps its own envs (a build each time).
    vector = {"iterations": 5, "eval_every": 5, "loop": "vector"}
    assert R.run_distillation(part, "on_policy_distill", **vector).env_builds == 1
