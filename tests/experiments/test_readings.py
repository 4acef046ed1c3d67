"""Readings (distill_agents.readings): parsing, the experiment they give, and what each changes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill_agents import reproduce
from distill_agents.experiments import get_experiment
from distill_agents.experiments.keys import Piece, piece_key
from distill_agents.experiments.piece_teachers import make_piece_teachers
from distill_agents.readings import READING_NAMES, Readings, apply_readings
from distill_agents.results import read_csv

TINY = ["--mdps", "3", "--iterations", "20", "--eval-points", "2", "--no-progress"]


def _rows(path):
    return {(r.panel, r.method, r.metric, r.iteration): r for r in read_csv(path)}


def test_defaults_change_nothing():
    readings = Readings()
    assert readings.changed() == {} and readings.describe() == "defaults"
    assert Readings.parse([]) == readings
    assert READING_NAMES[0] == "teacher_prob_floor" and "adversarial_value" in READING_NAMES
    # The default values, set explicitly, are the defaults.
    assert Readings.parse(["teacher_prob_floor=1e-8", "adversarial_value=own"]) == readings


def test_parse_applies_items_in_order_and_records_the_changes():
    readings = Readings.parse(["lr=0.5", "critic=mc", "lr=0.01", "temperature=0.1"])
    assert readings.changed() == {"lr": 0.01, "critic": "mc", "temperature": 0.1}
    assert readings.describe() == "temperature=0.1, critic=mc, lr=0.01"
    assert Readings.parse(["critic=none"], base=readings).critic is None
    assert Readings.from_mapping(readings.changed()) == readings


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["floor=1e-2"], "--set: unknown reading 'floor'; readings: teacher_prob_floor, "),
        (["teacher_prob_floor"], "--set: expected KEY=VALUE, got 'teacher_prob_floor'"),
        (["teacher_prob_floor=2"], "--set teacher_prob_floor: must be a number in (0, 1), got '2'"),
        (["fig4_teacher=random"], "--set fig4_teacher: must be optimal, q_learning, got 'random'"),
        (["adversarial_value=x"], "--set adversarial_value: must be own, true, got 'x'"),
        (["critic=tdd"], "--set critic: must be mc, td, none, got 'tdd'"),
        (["lr=-1"], "--set lr: must be a number > 0, or none, got '-1'"),
        (["temperature=nan"], "--set temperature: must be a number >= 0, or none, got 'nan'"),
    ],
)
def test_bad_items_give_one_line_naming_what_is_accepted(items, message):
    with pytest.raises(ValueError) as info:
        Readings.parse(items)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_the_record_refuses_bad_values():
    with pytest.raises(ValueError, match="reading lr must be a number > 0, or none, got -1"):
        Readings(lr=-1)
    with pytest.raises(ValueError, match="unknown reading 'x'"):
        Readings.from_mapping({"x": 1})


def test_apply_readings_changes_the_experiment_as_documented():
    fig3, fig4, fig5 = (get_experiment(f) for f in ("fig3", "fig4", "fig5"))
    assert apply_readings(fig4, Readings()) == fig4
    q = apply_readings(fig4, Readings(fig4_teacher="q_learning"))
    assert {p.teacher.kind for p in q.panels} == {"q_learning"}
    assert [p.name for p in q.panels] == [p.name for p in fig4.panels]
    assert apply_readings(fig5, Readings(fig4_teacher="q_learning")) == fig5
    soft = apply_readings(fig4, Readings(temperature=0.1))
    assert {p.teacher.temperature for p in soft.panels} == {0.1}
    # Fig. 3's panels are its temperatures: left alone.
    assert apply_readings(fig3, Readings(temperature=0.1)) == fig3
    other = apply_readings(fig5, Readings(critic="mc", lr=0.01))
    assert {p.critic for p in other.panels} == {"mc"} and other.lr == 0.01


def test_default_readings_keep_the_piece_keys():
    settings = reproduce.figure_settings("fig6", mdps=2, iterations=10)
    assert "readings" not in settings.manifest()
    changed = reproduce.figure_settings(
        "fig6", mdps=2, iterations=10, readings=Readings(adversarial_value="true")
    )
    assert changed.manifest()["readings"] == {"adversarial_value": "true"}
    exp = get_experiment("fig6")
    panel = exp.panels[0]
    key = piece_key(exp, panel, panel.curves[0], settings, 0, 2)
    other = piece_key(exp, panel, panel.curves[0], changed, 0, 2)
    assert "readings" not in key and other == {**key, "readings": {"adversarial_value": "true"}}


def test_true_adversarial_value_changes_the_methods_that_read_the_value_table(tmp_path, capsys):
    own = tmp_path / "own"
    true = tmp_path / "true"
    panel = ["--panels", "length=11/adversarial"]
    assert reproduce.main(["fig6", *TINY, *panel, "--out", str(own)]) == 0
    argv = ["fig6", *TINY, *panel, "--out", str(true), "--set", "adversarial_value=true"]
    assert reproduce.main(argv) == 0
    summary = json.loads(true.joinpath("fig6.json").read_text())
    assert summary["settings"]["readings"] == {"adversarial_value": "true"}
    a, b = _rows(own / "fig6.csv"), _rows(true / "fig6.csv")
    assert a.keys() == b.keys()
    methods = {k[1] for k in a}
    same = {m for m in methods if all(a[k] == b[k] for k in a if k[1] == m)}
    # Methods that read V_pi learn otherwise; the teacher's own rows do not change.
    assert "teacher" in same and "teacher_v_reward" not in same
    assert {"baseline", "on_policy_distill"} <= same
    capsys.readouterr()


def test_own_adversarial_value_in_the_piece_teachers():
    exp = get_experiment("fig6")
    panel = next(p for p in exp.panels if p.teacher.kind == "adversarial")
    optimal = next(p for p in exp.panels if p.teacher.kind == "optimal")
    pieces = {}
    for name, readings in (("own", Readings()), ("true", Readings(adversarial_value="true"))):
        settings = reproduce.figure_settings("fig6", mdps=2, iterations=10, readings=readings)
        for p in (panel, optimal):
            pieces[name, p.teacher.kind] = make_piece_teachers(
                Piece(
                    key={}, path="", spec=p.teacher, method="teacher_v_reward", control=None,
                    critic=None, lr=0.1, gamma=0.99, metrics=("return",), settings=settings,
                    lo=0, hi=2, teacher_file=None,
                )
            )  # fmt: skip
    true, own = pieces["true", "adversarial"], pieces["own", "adversarial"]
    np.testing.assert_array_equal(own.values, -true.values)
    np.testing.assert_array_equal(own.probs, true.probs)
    # The optimal teacher is not adversarial: unchanged.
    np.testing.assert_array_equal(pieces["own", "optimal"].values, pieces["true", "optimal"].values)


def test_teacher_prob_floor_changes_the_methods_that_read_log_pi(tmp_path, capsys):
    base = tmp_path / "default"
    floor = tmp_path / "floor"
    panel = ["--panels", "A=4"]
    assert reproduce.main(["fig4", *TINY, *panel, "--out", str(base)]) == 0
    argv = ["fig4", *TINY, *panel, "--out", str(floor), "--set", "teacher_prob_floor=1e-2"]
    assert reproduce.main(argv) == 0
    a, b = _rows(base / "fig4.csv"), _rows(floor / "fig4.csv")

    def same(method):
        return all(a[k] == b[k] for k in a if k[1] == method)

    assert same("baseline") and same("teacher") and same("on_policy_distill")
    assert not same("entropy_regularised") and not same("expected_entropy_regularised")
    capsys.readouterr()


def test_set_with_a_bad_key_gives_status_2(tmp_path, capsys):
    status = reproduce.main(["fig6", *TINY, "--out", str(tmp_path), "--set", "floor=1"])
    err = capsys.readouterr().err
    assert status == 2 and "unknown reading 'floor'" in err and len(err.strip().splitlines()) == 1


def test_stay_reward_none_sets_the_grid_environments_argument():
    fig4, fig6 = get_experiment("fig4"), get_experiment("fig6")
    none = apply_readings(fig4, Readings(stay_reward="none"))
    assert all(p.teacher.env_kwargs["stay_reward"] is False for p in none.panels)
    assert all("stay_reward" not in p.teacher.env_kwargs for p in fig4.panels)
    assert apply_readings(fig6, Readings(stay_reward="none")) == fig6  # corridors: no grid


def test_stay_reward_none_lifts_the_start_return_at_many_actions(tmp_path, capsys):
    runs = {}
    for name, extra in (("repeat", []), ("none", ["--set", "stay_reward=none"])):
        out = tmp_path / name
        argv = ["fig4", *TINY, "--panels", "A=40", "--out", str(out), *extra]
        assert reproduce.main(argv) == 0
        runs[name] = _rows(out / "fig4.csv")
    key = ("A=40", "baseline", "return", 0)
    # A near-uniform student over 40 actions mostly stays: on a -1 cell that costs under repeat.
    assert runs["none"][key].mean > runs["repeat"][key].mean
    capsys.readouterr()


def test_exact_noisy_value_changes_only_the_methods_that_read_v(tmp_path, capsys):
    runs = {}
    for name, extra in (("clean_q", []), ("exact", ["--set", "noisy_value=exact"])):
        out = tmp_path / name
        argv = ["fig5", *TINY, "--teacher-episodes", "50", "--panels", "q_learning/td_noise=0.25"]
        assert reproduce.main([*argv, "--out", str(out), *extra]) == 0
        runs[name] = _rows(out / "fig5.csv")
    a, b = runs["clean_q"], runs["exact"]
    assert a.keys() == b.keys()

    def same(method):
        return all(a[k] == b[k] for k in a if k[1] == method)

    assert same("teacher") and same("on_policy_distill")  # they never read V_pi
    assert not same("teacher_v_reward")
    capsys.readouterr()


def test_kl_step_mean_is_the_episode_sum_over_the_expected_length(grids_for_kl):
    from distill_agents import runner

    teachers, models = grids_for_kl
    kw = {"iterations": 20, "eval_every": 10, "seed": 0, "metrics": runner.METRICS}
    total = runner.run_distillation(teachers, "on_policy_distill", **kw)
    mean = runner.run_distillation(teachers, "on_policy_distill", kl_metric="step_mean", **kw)
    assert mean.settings["kl_metric"] == "step_mean" and "kl_metric" not in total.settings
    # (Evaluated through planning: the compiled evaluator's values to rounding.)
    np.testing.assert_allclose(mean.metrics["return"], total.metrics["return"], rtol=1e-9)
    # Teacher-driven KL: the teacher's expected episode length is fixed, so the ratio is too.
    from distill_agents import planning

    mdps = [models.mdp(i) for i in range(teachers.n_mdps)]
    policy = teachers.state_policies(models.state_to_index)
    length = planning.expected_visits(mdps, policy).sum(axis=-1)
    np.testing.assert_allclose(
        mean.metrics["kl_teacher"] * length[:, None], total.metrics["kl_teacher"], rtol=1e-8
    )
    for name in ("kl_student", "kl_uniform"):
        assert np.all(mean.metrics[name] <= total.metrics[name] + 1e-12)
    with pytest.raises(ValueError, match="kl_metric must be one of"):
        runner.run_distillation(teachers, "on_policy_distill", kl_metric="mean", **kw)
    with pytest.raises(ValueError, match="needs exact metrics"):
        runner.run_distillation(
            teachers, "on_policy_distill", kl_metric="step_mean", mc_episodes=5, **kw
        )


@pytest.fixture(scope="module")
def grids_for_kl():
    import gymnasium as gym

    from distill_agents.teachers import planned_teachers

    envs = gym.make_vec(
        "DistillGrid-v0", num_envs=3, vectorization_mode="vector_entry_point",
        observation="index", layout_seed=0,
    )  # fmt: skip
    models = envs.models
    teachers = planned_teachers(
        models, env_id="DistillGrid-v0", env_kwargs={}, layout_seeds=np.arange(3)
    )
    return teachers, models


@pytest.mark.parametrize("noise", ["path", "q_values"])
def test_noise_procedures_change_the_noisy_panels_only(tmp_path, capsys, noise):
    runs = {}
    panels = "q_learning/td,q_learning/td_noise=0.25"
    for name, extra in (("fixed", []), (noise, ["--set", f"noise={noise}"])):
        out = tmp_path / name
        argv = ["fig5", *TINY, "--teacher-episodes", "50", "--panels", panels]
        assert reproduce.main([*argv, "--out", str(out), *extra]) == 0
        runs[name] = _rows(out / "fig5.csv")
    a, b = runs["fixed"], runs[noise]
    clean = [k for k in a if k[0] == "q_learning/td"]
    noisy = [k for k in a if k[0] == "q_learning/td_noise=0.25"]
    assert all(a[k] == b[k] for k in clean)
    assert any(a[k] != b[k] for k in noisy if k[1] == "teacher")  # another teacher
    capsys.readouterr()


def test_epsilon_teacher_control_drives_the_teacher_driven_curves():
    fig3, fig10 = get_experiment("fig3"), get_experiment("fig10")
    eps = apply_readings(fig3, Readings(teacher_control="epsilon"))
    for old, new in zip(fig3.panels, eps.panels, strict=True):
        for a, b in zip(old.curves, new.curves, strict=True):
            assert b.control == ("epsilon_teacher" if a.control == "teacher" else a.control)
            assert b.label == a.label
    # Teacher distill drives with the teacher by default: it gets the epsilon teacher too.
    distill = [c for p in apply_readings(fig10, Readings(teacher_control="epsilon")).panels
               for c in p.curves if c.method == "teacher_distill"]  # fmt: skip
    assert distill and {c.control for c in distill} == {"epsilon_teacher"}
