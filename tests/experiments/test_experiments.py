"""The figures as data (distill_agents.experiments): names of SPEC 4.1, settings, the analysis."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from distill_agents import experiments as X
from distill_agents import methods as M
from distill_agents.plotting import plot_rows
from distill_agents.reproduce import figure_settings, piece_ranges
from distill_agents.results import curve_rows, read_csv, write_csv

# SPEC 4.1, written out independently of experiments/figures.py.
AC = ("mc", "td", "td_noise=0.15", "td_noise=0.25")
SPEC_PANELS = {
    "fig2": ("on_policy_distill+R", "n_distill+R"),
    "fig3": ("T=0", "T=0.01", "T=0.1"),
    "fig4": ("A=4", "A=40", "A=400", "A=4000"),
    "fig10": ("A=4", "A=40", "A=400", "A=4000"),
    "fig5": tuple(f"q_learning/{c}" for c in AC),
    "fig8": tuple(f"{t}/{c}" for t in ("q_learning", "a2c") for c in AC),
    "fig6": ("length=11/optimal", "length=11/adversarial"),
    "fig7": (),
}
SPEC_METRICS = {
    "fig2": ("prob_R_s0", "prob_R_sR", "loss"),
    "fig3": ("kl_student", "kl_teacher", "kl_uniform", "return"),
    "fig7": (),
}
FIG5_METHODS = {
    "baseline", "on_policy_distill", "on_policy_distill+R", "on_policy_distill+R+Vcond",
    "entropy_regularised", "kl_regularised", "td_v_zero", "td_v_teacher", "teacher_v_reward",
}  # fmt: skip
FIG6_METHODS = FIG5_METHODS - {"kl_regularised"}
FIG4_METHODS = {"on_policy_distill", "entropy_regularised", "expected_entropy_regularised",
                "baseline"}  # fmt: skip
EXPECTED_METHODS = {
    "fig2": {"on_policy_distill+R", "n_distill+R"},
    "fig3": {"student_driven", "teacher_driven", "uniform_driven"},
    "fig4": FIG4_METHODS,
    "fig10": FIG4_METHODS | {"teacher_distill", "n_distill"},
    "fig5": FIG5_METHODS,
    "fig8": FIG5_METHODS,
    "fig6": FIG6_METHODS,
    "fig9": FIG6_METHODS,
    "fig7": set(),
}


def test_every_figure_is_defined_in_order():
    assert tuple(f"fig{i}" for i in range(2, 11)) == X.FIGURES
    with pytest.raises(ValueError, match="fig2, fig3"):
        X.get_experiment("fig11")


@pytest.mark.parametrize("figure", X.FIGURES)
def test_panels_methods_and_metrics_follow_spec_4_1(figure):
    exp = X.get_experiment(figure)
    if figure in SPEC_PANELS:
        assert exp.panel_names == SPEC_PANELS[figure]
    assert set(exp.methods()) == EXPECTED_METHODS[figure]
    assert exp.metrics == SPEC_METRICS.get(figure, ("return",))
    for panel in exp.panels:
        assert len({c.label for c in panel.curves}) == len(panel.curves)
        for curve in panel.curves:
            spec = M.parse_method(curve.method)  # a real method id
            if curve.control is not None:
                M.control_code(curve.control)
            if exp.kind == "curves":
                spec.critic_mode(panel.critic) if spec.forced_critic is None else None


def test_fig9_has_several_corridor_lengths_including_fig6():
    names = X.get_experiment("fig9").panel_names
    lengths = sorted({int(n.split("/")[0].split("=")[1]) for n in names})
    assert len(lengths) >= 3 and 11 in lengths
    assert all(n % 2 == 1 for n in lengths)
    assert set(X.get_experiment("fig6").panel_names) <= set(names)
    for length in lengths:
        assert f"length={length}/optimal" in names and f"length={length}/adversarial" in names


def test_teacher_settings_of_the_figures():
    fig3 = X.get_experiment("fig3")
    assert [p.teacher.temperature for p in fig3.panels] == [0.0, 0.01, 0.1]
    assert {p.teacher.kind for p in fig3.panels} == {"q_learning"}
    assert [c.control for c in fig3.panels[0].curves] == ["student", "teacher", "uniform"]
    assert {c.method for c in fig3.panels[0].curves} == {"on_policy_distill"}
    fig8 = X.get_experiment("fig8")
    noise = {p.name: p.teacher.noise for p in fig8.panels}
    assert noise["a2c/td_noise=0.25"] == 0.25 and noise["q_learning/mc"] == 0.0
    assert fig8.panel("a2c/mc").teacher.temperature is None
    assert fig8.panel("q_learning/mc").critic == "mc"
    assert fig8.panel("q_learning/td_noise=0.15").critic == "td"
    fig4 = X.get_experiment("fig4")
    assert [p.teacher.n_actions for p in fig4.panels] == [4, 40, 400, 4000]
    assert fig4.panel("A=40").teacher.env_kwargs == {"n_actions": 40}
    fig6 = X.get_experiment("fig6")
    assert fig6.panel("length=11/adversarial").teacher.kind == "adversarial"
    assert fig6.panel("length=11/optimal").teacher.env_id == "DistillChain-v0"
    with pytest.raises(ValueError, match=r"no panel .T=1.; its panels are T=0, T=0\.01, T=0\.1"):
        fig3.panel("T=1")


def test_full_scale_is_the_paper_and_quick_is_small():
    for figure in ("fig3", "fig4", "fig5", "fig6", "fig8", "fig9", "fig10"):
        exp = X.get_experiment(figure)
        assert (exp.full.mdps, exp.full.iterations, exp.full.teacher_episodes) == (
            1000, 30_000, 30_000,
        )  # fmt: skip
        assert exp.quick.mdps * exp.quick.iterations <= 12 * 300
    fig2 = X.get_experiment("fig2")
    assert (fig2.full.iterations, fig2.lr, fig2.gamma) == (9000, 0.03, 1.0)


def test_figure_settings_resolution_and_errors():
    s = figure_settings("fig3")
    assert (s.mdps, s.iterations, s.eval_every, s.teacher_episodes) == (1000, 30_000, 1000, 30_000)
    q = figure_settings("fig3", quick=True, mdps=5, eval_points=7)
    assert (q.mdps, q.iterations, q.eval_every) == (5, 300, 300 // 7)
    sub = figure_settings("fig3", panels=["T=0.1", "T=0"])
    assert sub.panels == ("T=0", "T=0.1")  # the figure's order
    cut = figure_settings("fig4", max_actions=40)
    assert cut.panels == ("A=4", "A=40") and cut.skipped == ("A=400", "A=4000")
    assert figure_settings("fig2", mdps=50).mdps == 1  # exact: one "MDP"
    with pytest.raises(ValueError, match=r"--panels: fig3 has no panel 'T=5'; its panels: T=0"):
        figure_settings("fig3", panels=["T=5"])
    with pytest.raises(ValueError, match="--mdps must be an integer >= 1, got 0"):
        figure_settings("fig3", mdps=0)
    with pytest.raises(ValueError, match="--max-actions 3 leaves no panel of fig4"):
        figure_settings("fig4", max_actions=3)


def test_piece_ranges_cover_the_mdps_and_bound_memory():
    for n in (1, 7, 500, 1001):
        ranges = piece_ranges(n, 401, 4)
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert all(0 < hi - lo <= 500 for lo, hi in ranges)
    big = piece_ranges(1000, 401, 4000)
    assert max(hi - lo for lo, hi in big) * 8 * 8 * 401 * 4000 <= 1.5e9
    assert big[-1][1] == 1000


# ------------------------------------------------------------------------------ analysis
def _fixture_rows():
    its = np.array([0, 10, 20, 30])
    student = np.array([[0.0, 5.0, 9.0, 9.5], [0.0, 3.0, 9.0, 10.5]])  # mean 0, 4, 9, 10
    slow = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]])
    teacher = np.full((2, 4), 10.0)
    kl = np.array([[4.0, 2.0, 0.5, 0.2], [4.0, 2.0, 0.1, 0.2]])
    rows = curve_rows("figX", "P", "fast", "return", its, student)
    rows += curve_rows("figX", "P", "slow", "return", its, slow)
    rows += curve_rows("figX", "P", "fast", "kl_student", its, kl)
    rows += curve_rows("figX", "P", "teacher", "return", its, teacher)
    rows += curve_rows("figX", "P", "teacher", "kl_student", its, np.zeros((2, 4)))
    return rows


def test_analyse_on_fixture_rows():
    records = {(r["method"], r["metric"]): r for r in X.analyse(_fixture_rows())}
    assert set(records) == {("fast", "return"), ("slow", "return"), ("fast", "kl_student")}
    fast = records["fast", "return"]
    assert fast["final"] == pytest.approx(10.0) and fast["best"] == pytest.approx(10.0)
    assert fast["teacher"] == pytest.approx(10.0) and fast["start"] == 0.0
    assert fast["reach"] == 20  # 9 >= 0.9 * 10 first at iteration 20
    low, high = fast["final_ci"]
    half = 12.706204736174707 * np.std([9.5, 10.5], ddof=1) / math.sqrt(2)
    assert (low, high) == pytest.approx((10 - half, 10 + half))
    assert records["slow", "return"]["reach"] is None
    kl = records["fast", "kl_student"]
    assert kl["best"] == pytest.approx(0.2)  # lower is better for KLs (means 4, 2, 0.3, 0.2)
    assert kl["reach"] == 20  # 4 -> 0.3 covers 92.5% of the way to 0
    no_teacher = [r for r in _fixture_rows() if r.method != "teacher"]
    assert all(r["reach"] is None and r["teacher"] is None for r in X.analyse(no_teacher))
    table = X.format_analysis(X.analyse(_fixture_rows()), metric="return")
    assert table.count("\n") == 4 and "| P | fast | return | 0 | 10 (" in table


def test_fixture_rows_round_trip_and_plot(tmp_path):
    rows = _fixture_rows()
    write_csv(tmp_path / "x.csv", rows)
    assert read_csv(tmp_path / "x.csv") == rows
    png = plot_rows(rows, tmp_path / "x.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert X.analyse(read_csv(tmp_path / "x.csv")) == X.analyse(rows)
