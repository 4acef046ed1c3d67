"""``distill-grid reproduce`` (distill_agents.reproduce): files, names, resumption, errors."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
import pytest

from distill_agents import reproduce, runner
from distill_agents import teacher_training as training
from distill_agents.experiments import get_experiment, keys, piece_teachers
from distill_agents.experiments import jobs as experiment_jobs
from distill_agents.experiments.jobs import expected_cost
from distill_agents.experiments.keys import Piece
from distill_agents.experiments.piece_teachers import ensure_trained, make_piece_teachers
from distill_agents.experiments.state import State
from distill_agents.parallel import pool
from distill_agents.results import read_csv

# Tiny settings: every figure's whole pipeline in a few seconds.
TINY = ["--mdps", "3", "--iterations", "20", "--teacher-episodes", "20", "--eval-points", "2"]
AC = ("mc", "td", "td_noise=0.15", "td_noise=0.25")
SPEC_PANELS = {  # SPEC 4.1
    "fig3": {"T=0", "T=0.01", "T=0.1"},
    "fig4": {"A=4", "A=40", "A=400", "A=4000"},
    "fig5": {f"q_learning/{c}" for c in AC},
    "fig6": {"length=11/optimal", "length=11/adversarial"},
    "fig8": {f"{t}/{c}" for t in ("q_learning", "a2c") for c in AC},
}
SPEC_PANELS["fig10"] = SPEC_PANELS["fig4"]


def _run(capsys, *argv):
    status = reproduce.main(
        [*argv, "--no-progress", "--workers", "1"]
        if "--workers" not in argv
        else [*argv, "--no-progress"]
    )
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _check_outputs(out, figure):
    rows = read_csv(out / f"{figure}.csv")  # schema validated on read
    assert out.joinpath(f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(out.joinpath(f"{figure}.json").read_text())
    assert summary["figure"] == figure and summary["version"]
    assert summary["wall_seconds"] > 0 and "arguments" in summary
    return rows, summary


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``tiny(figure)``: the output directory of a TINY run of the figure (run once)."""
    done = {}

    def get(figure):
        if figure not in done:
            out = tmp_path_factory.mktemp(figure)
            argv = [figure, *TINY, "--out", str(out), "--no-progress", "--workers", "1"]
            assert reproduce.main(argv) == 0
            done[figure] = out
        return done[figure]

    return get


@pytest.mark.parametrize("figure", ["fig3", "fig4", "fig5", "fig6", "fig8", "fig9", "fig10"])
def test_tiny_run_of_every_curve_figure(tiny, figure):
    tmp_path = tiny(figure)
    rows, summary = _check_outputs(tmp_path, figure)
    exp = get_experiment(figure)
    panels = {r.panel for r in rows}
    assert panels == SPEC_PANELS.get(figure, set(exp.panel_names))
    assert {r.metric for r in rows} == set(exp.metrics)
    for panel in exp.panels:
        methods = {r.method for r in rows if r.panel == panel.name}
        assert methods == {c.label for c in panel.curves} | {"teacher"}
    for r in rows:
        assert r.figure == figure and r.n_mdps == 3
        assert r.iteration in (0, 10, 20)
        assert r.ci_low <= r.mean <= r.ci_high
    # Every (panel, method, metric) curve has the evaluation points 0, 10, 20.
    series = {(r.panel, r.method, r.metric) for r in rows}
    assert len(rows) == 3 * len(series)
    assert summary["env_steps"] > 0
    assert summary["env_steps"] == summary["student_env_steps"] + summary["teacher_env_steps"]
    if figure in ("fig3", "fig5", "fig8"):  # trained teachers
        assert summary["teacher_env_steps"] > 0
    assert summary["settings"]["mdps"] == 3 and summary["settings"]["iterations"] == 20
    assert {a["method"] for a in summary["analysis"]} == set(exp.methods())


def test_fig3_rows_make_sense(tiny):
    rows = [r for r in read_csv(tiny("fig3") / "fig3.csv") if r.panel == "T=0"]
    value = {(r.method, r.metric, r.iteration): r.mean for r in rows}
    for control in ("student_driven", "teacher_driven", "uniform_driven"):
        # Every student starts uniform: same KLs and return at iteration 0, whatever the control.
        for metric in ("kl_student", "kl_teacher", "kl_uniform", "return"):
            assert value[control, metric, 0] == value["student_driven", metric, 0]
        assert value[control, "kl_teacher", 20] < value[control, "kl_teacher", 0]
    assert value["teacher", "kl_student", 0] == 0.0
    assert value["teacher", "return", 0] == value["teacher", "return", 20]


def test_fig2_exact_dynamics(tmp_path, capsys):
    status, _, err = _run(
        capsys, "fig2", "--iterations", "3000", "--eval-points", "300", "--out", str(tmp_path)
    )
    assert status == 0, err
    rows, summary = _check_outputs(tmp_path, "fig2")
    assert {r.panel for r in rows} == {"on_policy_distill+R", "n_distill+R"}
    assert {r.metric for r in rows} == {"prob_R_s0", "prob_R_sR", "loss"}
    curve = {}
    for r in rows:
        curve.setdefault((r.panel, r.method, r.metric), []).append(r.mean)
        assert r.n_mdps == 1 and math.isnan(r.ci_low)
    osc = "on_policy_distill+R"
    p = np.array(curve[osc, osc, "prob_R_s0"])
    assert p[0] == pytest.approx(0.1) and curve[osc, osc, "prob_R_sR"][0] == pytest.approx(0.1)
    assert curve[osc, osc, "loss"][0] == pytest.approx(-4 * 0.1 * 0.1)  # -4 p(R|s0) p(R|sR)
    up = int(np.argmax(p > 0.8))
    assert p[up] > 0.8 and p[up:].min() < 0.2 and p[-1] > 0.8  # up, down, up again: it cycles
    nd = "n_distill+R"
    assert curve[nd, nd, "prob_R_s0"][-1] > 0.95 and curve[nd, nd, "prob_R_sR"][-1] > 0.95
    assert curve[nd, nd, "loss"][-1] < -3.8
    assert curve[nd, "teacher", "prob_R_sR"] == [1.0] * 301
    assert summary["settings"]["exact"] is True


def test_fig7_writes_the_example_mdp(tmp_path, capsys):
    status, _out, err = _run(capsys, "fig7", "--out", str(tmp_path), "--seed", "3")
    assert status == 0, err
    assert tmp_path.joinpath("fig7.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not tmp_path.joinpath("fig7.csv").exists()
    lines = tmp_path.joinpath("fig7.txt").read_text().splitlines()
    layout = lines
    assert len(layout) == 20 and all(len(line) == 20 for line in layout)
    assert sum(line.count("S") for line in layout) == 1 and layout[10][10] == "S"
    import gymnasium as gym

    env = gym.make("DistillGrid-v0", layout_seed=3)
    assert tuple(layout) == tuple(env.unwrapped.layout)
    summary = json.loads(tmp_path.joinpath("fig7.json").read_text())
    assert summary["counts"]["walls"] == sum(line.count("#") for line in layout)


# ------------------------------------------------------------------------------ resuming
SMALL = ["fig6", "--mdps", "4", "--iterations", "30", "--eval-points", "3"]


def _pieces(out):
    return sorted(out.joinpath(".state", "pieces").glob("*.npz"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of SMALL: its CSV bytes and number of pieces."""
    out = tmp_path_factory.mktemp("reference")
    assert reproduce.main([*SMALL, "--out", str(out), "--no-progress"]) == 0
    return out.joinpath("fig6.csv").read_bytes(), len(_pieces(out))


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path, capsys, reference):
    status, _, _ = _run(capsys, *SMALL, "--out", str(tmp_path / "a"))
    assert status == 0
    assert tmp_path.joinpath("a", "fig6.csv").read_bytes() == reference[0]
    status, _, _ = _run(capsys, *SMALL, "--out", str(tmp_path / "b"), "--seed", "1")
    assert status == 0
    assert tmp_path.joinpath("b", "fig6.csv").read_bytes() != reference[0]


def test_interrupted_run_resumes_with_identical_results(tmp_path, capsys, monkeypatch, reference):
    real = runner.run_distillation
    calls = []

    def interrupted(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_distillation", interrupted)
    status, _, err = _run(capsys, *SMALL, "--out", str(tmp_path))
    assert status == 130 and "interrupted" in err and "resume" in err
    assert len(_pieces(tmp_path)) == 1  # the finished piece was kept
    assert not tmp_path.joinpath("fig6.csv").exists()

    counted = []

    def counting(*args, **kwargs):
        counted.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_distillation", counting)
    status, _, err = _run(capsys, *SMALL, "--out", str(tmp_path))
    assert status == 0, err
    assert len(counted) == reference[1] - 1  # only the unfinished pieces ran
    assert tmp_path.joinpath("fig6.csv").read_bytes() == reference[0]
    summary = json.loads(tmp_path.joinpath("fig6.json").read_text())
    assert summary["pieces"] == {"total": reference[1], "reused": 1}
    # A third run computes nothing and still writes the same bytes.
    counted.clear()
    assert _run(capsys, *SMALL, "--out", str(tmp_path))[0] == 0
    assert not counted and tmp_path.joinpath("fig6.csv").read_bytes() == reference[0]


def test_deleted_and_tampered_pieces_are_recomputed(tmp_path, capsys, reference):
    assert _run(capsys, *SMALL, "--out", str(tmp_path))[0] == 0
    pieces = _pieces(tmp_path)
    pieces[0].unlink()
    data = pieces[1].read_bytes()
    pieces[1].write_bytes(data[: len(data) // 2])  # truncated
    status, _, err = _run(capsys, *SMALL, "--out", str(tmp_path))
    assert status == 0 and "recomputing a damaged piece" in err
    assert tmp_path.joinpath("fig6.csv").read_bytes() == reference[0]
    assert json.loads(tmp_path.joinpath("fig6.json").read_text())["pieces"]["reused"] == (
        reference[1] - 2
    )


def test_changed_argument_is_detected_and_never_mixed(tmp_path, capsys):
    changed = ["fig6", "--mdps", "4", "--iterations", "40", "--eval-points", "3"]
    assert _run(capsys, *SMALL, "--out", str(tmp_path / "d"))[0] == 0
    status, _, err = _run(capsys, *changed, "--out", str(tmp_path / "d"))
    assert status == 0
    assert "other settings (iterations 30 -> 40; " in err and "kept but not used" in err
    assert _run(capsys, *changed, "--out", str(tmp_path / "fresh"))[0] == 0
    assert (
        tmp_path.joinpath("d", "fig6.csv").read_bytes()
        == tmp_path.joinpath("fresh", "fig6.csv").read_bytes()
    )


def test_results_do_not_depend_on_the_cutting_into_pieces(tmp_path, capsys, monkeypatch, reference):
    monkeypatch.setattr(keys, "PIECE_MDPS", 1)
    assert _run(capsys, *SMALL, "--out", str(tmp_path))[0] == 0
    assert len(_pieces(tmp_path)) == 4 * reference[1]
    assert tmp_path.joinpath("fig6.csv").read_bytes() == reference[0]


def test_figures_share_pieces_and_teachers(tmp_path, capsys):
    assert (
        _run(capsys, "fig9", *TINY, "--out", str(tmp_path), "--panels", "length=11/optimal")[0] == 0
    )
    status, _, _ = _run(capsys, "fig6", *TINY, "--out", str(tmp_path))
    assert status == 0
    summary = json.loads(tmp_path.joinpath("fig6.json").read_text())
    assert summary["pieces"] == {"total": 14, "reused": 8}  # 16 curves, 2 teacher-free shared
    fig9 = [r for r in read_csv(tmp_path / "fig9.csv") if r.panel == "length=11/optimal"]
    fig6 = [r for r in read_csv(tmp_path / "fig6.csv") if r.panel == "length=11/optimal"]
    assert [r.mean for r in fig9] == [r.mean for r in fig6]


def test_derived_teachers_equal_make_teachers(tmp_path):
    """Temperature and noise applied to the cached tables == make_teachers(temperature, noise)."""
    from distill_agents.experiments import TeacherSpec

    settings = reproduce.figure_settings("fig5", mdps=3, iterations=5, teacher_episodes=10)
    state = State(tmp_path)
    from contextlib import nullcontext

    class Bar:
        def update(self, n):
            pass

    for spec in (
        TeacherSpec("q_learning", temperature=0.1),
        TeacherSpec("q_learning", noise=0.25),
        TeacherSpec("a2c", temperature=None, noise=0.15),
    ):
        path, steps = ensure_trained(spec, settings, state, lambda **kw: nullcontext(Bar()))
        assert steps > 0
        expected = training.make_teachers(
            spec.kind, n_mdps=3, seed=0, episodes=10, temperature=spec.temperature,
            noise=spec.noise,
        ).teachers  # fmt: skip
        piece = Piece(
            key={}, path="", spec=spec, method="on_policy_distill", control=None, critic=None,
            lr=0.1, gamma=0.99, metrics=("return",), settings=settings, lo=1, hi=3,
            teacher_file=path,
        )  # fmt: skip
        got = make_piece_teachers(piece)
        np.testing.assert_array_equal(got.probs, expected.probs[1:3])
        np.testing.assert_array_equal(got.values, expected.values[1:3])
        np.testing.assert_array_equal(got.layout_seeds, [1, 2])


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fig11"], "figure must be one of fig2, fig3"),
        (["fig3", "--panels", "T=7"], "--panels: fig3 has no panel 'T=7'; its panels: T=0"),
        (["fig3", "--mdps", "0"], "--mdps must be an integer >= 1, got 0"),
        (["fig3", "--iterations", "-5"], "--iterations must be an integer >= 1, got -5"),
        (["fig3", "--seed", "-1"], "--seed must be an integer >= 0, got -1"),
        (
            ["fig3", "--backend", "ray", "--ray-address", "auto", "--workers", "2"],
            "--workers sets the CPUs of a local Ray instance",
        ),
        (["fig3", "--backend", "dask"], "--backend must be local or ray, got 'dask'"),
        (["fig3", "--ray-address", "x:1"], "--ray-address needs --backend ray"),
        (["fig3", "--workers", "0"], "--workers must be an integer >= 1, got 0"),
        (["all", "--panels", "T=0"], "--panels selects panels of one figure"),
        (["fig4", "--max-actions", "2"], "--max-actions 2 leaves no panel of fig4"),
        (["fig3", "--panels", ","], "--panels must name at least one panel"),
    ],
)
def test_bad_arguments_give_one_line(tmp_path, capsys, argv, message):
    status, _out, err = _run(capsys, *argv, "--out", str(tmp_path / "o"))
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("distill-grid reproduce: error: ") and message in err
    assert not tmp_path.joinpath("o").exists()


def test_out_must_be_a_directory(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    status, _, err = _run(capsys, "fig6", "--out", str(target))
    assert status == 2 and "is not a directory" in err


def test_workers_give_the_same_bytes(tmp_path, capsys, reference):
    status, _, err = _run(capsys, *SMALL, "--out", str(tmp_path), "--workers", "2")
    assert pool.active_pool() is None  # the worker processes end with the command
    assert status == 0, err
    assert tmp_path.joinpath("fig6.csv").read_bytes() == reference[0]


@pytest.mark.slow
def test_quick_all(tmp_path, capsys):
    status, _out, err = _run(capsys, "all", "--quick", "--out", str(tmp_path))
    assert status == 0, err
    for figure in ("fig2", "fig3", "fig4", "fig5", "fig6", "fig8", "fig9", "fig10"):
        _check_outputs(tmp_path, figure)
    assert tmp_path.joinpath("fig7.png").is_file() and tmp_path.joinpath("all.json").is_file()


def _load_script():
    import importlib.util

    from helpers import ROOT

    path = ROOT / "scripts" / "reproduce_figures.py"
    spec = importlib.util.spec_from_file_location("reproduce_figures", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("figure", ["fig6", "fig3"])
def test_script_gives_the_numbers_of_the_command(tmp_path, tiny, figure):
    """scripts/reproduce_figures.py, assembled by hand, agrees with the data-driven command."""
    script = _load_script()
    argv = [figure, "--mdps", "3", "--iterations", "20", "--teacher-episodes", "20"]
    assert script.main([*argv, "--eval-points", "2", "--out", str(tmp_path)]) == 0
    mine = {r.key: r for r in read_csv(tmp_path / f"{figure}.csv")}
    command = {r.key: r for r in read_csv(tiny(figure) / f"{figure}.csv")}
    assert mine == command


def test_a_diverging_student_is_left_out_and_reported(tmp_path, capsys, monkeypatch, reference):
    real = runner.run_distillation

    def diverging(teachers, method, **kwargs):
        first = kwargs["first_mdp"]
        if (
            method == "teacher_v_reward"
            and kwargs["iterations"]
            and first <= 2 < first + len(teachers)
        ):
            raise FloatingPointError("a student's logits diverged (non-finite); lower lr")
        return real(teachers, method, **kwargs)

    monkeypatch.setattr(runner, "run_distillation", diverging)
    status, _, err = _run(capsys, *SMALL, "--out", str(tmp_path))
    assert status == 0, err
    rows = read_csv(tmp_path / "fig6.csv")
    expected = {r.key: r for r in read_csv_bytes(reference[0], tmp_path)}
    for r in rows:
        if r.method == "teacher_v_reward":
            assert r.n_mdps == 3  # MDP 2 left out
        else:
            assert r == expected[r.key]  # nothing else changes
    summary = json.loads(tmp_path.joinpath("fig6.json").read_text())
    assert summary["diverged"] == {
        "length=11/optimal: teacher_v_reward": [2],
        "length=11/adversarial: teacher_v_reward": [2],
    }


def read_csv_bytes(data, tmp_path):
    path = tmp_path / "reference.csv"
    path.write_bytes(data)
    return read_csv(path)


def test_pieces_of_other_code_are_never_reused(tmp_path, capsys, monkeypatch, reference):
    digest = reproduce.code_digest()
    assert len(digest) == 16 and digest == reproduce.code_digest()
    assert _run(capsys, *SMALL, "--out", str(tmp_path))[0] == 0
    # The same arguments with other source code: every piece is computed again.
    monkeypatch.setattr(keys, "code_digest", lambda: "0" * 16)
    status, _, _ = _run(capsys, *SMALL, "--out", str(tmp_path))
    assert status == 0
    assert json.loads(tmp_path.joinpath("fig6.json").read_text())["pieces"]["reused"] == 0
    assert tmp_path.joinpath("fig6.csv").read_bytes() == reference[0]


def test_mc_gives_monte_carlo_estimates_of_the_exact_curves(tmp_path, capsys, reference):
    from distill_agents.results import read_csv

    status, _, err = _run(capsys, *SMALL, "--mc", "400", "--out", str(tmp_path))
    assert status == 0, err
    mc_rows = read_csv(tmp_path / "fig6.csv")
    exact_path = tmp_path / "exact.csv"
    exact_path.write_bytes(reference[0])
    exact = {(r.panel, r.method, r.iteration, r.metric): r for r in read_csv(exact_path)}
    assert {(r.panel, r.method, r.iteration, r.metric) for r in mc_rows} == set(exact)
    assert tmp_path.joinpath("fig6.csv").read_bytes() != reference[0]
    for r in mc_rows:
        assert r.mean == pytest.approx(
            exact[r.panel, r.method, r.iteration, r.metric].mean, abs=1.5
        )
    summary = json.loads(tmp_path.joinpath("fig6.json").read_text())
    assert summary["arguments"]["mc"] == 400
    # --mc without a count uses the default; exact and Monte Carlo pieces never mix.
    assert reproduce.main([*SMALL, "--mc", "--out", str(tmp_path), "--no-progress"]) == 0
    assert json.loads(tmp_path.joinpath("fig6.json").read_text())["pieces"]["reused"] == 0
    status, _, err = _run(capsys, *SMALL, "--mc", "0", "--out", str(tmp_path))
    assert status == 2 and "--mc must be an integer >= 1" in err


def test_stale_temporary_files_of_a_killed_writer_are_removed(tmp_path, capsys):
    pieces = tmp_path / ".state" / "pieces"
    pieces.mkdir(parents=True)
    old = pieces / ".abc.npz.x1.tmp"
    young = pieces / ".def.npz.x2.tmp"
    for path in (old, young):
        path.write_bytes(b"half a file")
    stale = time.time() - 2 * reproduce.STALE_TEMP_SECONDS
    os.utime(old, (stale, stale))
    assert _run(capsys, *SMALL, "--out", str(tmp_path))[0] == 0
    assert not old.exists() and young.exists()  # a young one may be another run's write
    summary = json.loads(tmp_path.joinpath("fig6.json").read_text())
    assert summary["format_version"] == reproduce.SUMMARY_VERSION


def _piece(exp, panel, curve, settings, lo, hi):
    """A piece of ``exp``'s curve as the figure runs it (no file, no key)."""
    return Piece(
        key={}, path=f"{panel.name}/{curve.label}/{lo}", spec=panel.teacher, method=curve.method,
        control=curve.control, critic=None, lr=exp.lr, gamma=exp.gamma, metrics=exp.metrics,
        settings=settings, lo=lo, hi=hi, teacher_file=None,
    )  # fmt: skip


def test_longest_pieces_are_expected_to_cost_most():
    # The parallel runs start the pieces with the highest expected cost first: Fig. 9's longest
    # corridor, Fig. 4's 40-action panel and Fig. 3's uniform-driven curve before the others.
    def cost(figure, panel_name, label):
        exp = get_experiment(figure)
        panel = exp.panel(panel_name)
        curve = next(c for c in panel.curves if c.label == label)
        settings = reproduce.figure_settings(figure, quick=True)
        return expected_cost(_piece(exp, panel, curve, settings, 0, 10))

    assert cost("fig9", "length=41/optimal", "baseline") > cost(
        "fig9", "length=5/optimal", "baseline"
    )
    assert cost("fig4", "A=40", "baseline") > cost("fig4", "A=4", "baseline")
    assert cost("fig3", "T=0", "uniform_driven") > cost("fig3", "T=0", "student_driven")


FIG3_SMALL = ["fig3", "--mdps", "4", "--iterations", "30", "--teacher-episodes", "30",
              "--eval-points", "3"]  # fmt: skip


def test_grouped_pieces_give_the_numbers_of_pieces_run_alone(tmp_path, capsys, monkeypatch):
    # Fig. 3's uniform-driven curves of the three temperatures train from shared episodes
    # (one job); run alone, each piece gives the same bytes.
    settings = reproduce.figure_settings("fig3", mdps=4, iterations=30, eval_points=3)
    exp = get_experiment("fig3")
    pieces = [
        _piece(exp, panel, curve, settings, lo, lo + 2)
        for panel in exp.panels
        for curve in panel.curves
        for lo in (0, 2)
    ]
    jobs = reproduce.jobs_of(pieces)
    grouped = [job for job in jobs if len(job) > 1]
    assert len(jobs) == 2 * 2 * 3 + 2 and len(grouped) == 2  # one group per MDP range
    for job in grouped:
        assert {p.control for p in job} == {"uniform"} and len({p.lo for p in job}) == 1
        assert [p.spec.temperature for p in job] == [0.0, 0.01, 0.1]

    together, alone = tmp_path / "together", tmp_path / "alone"
    assert _run(capsys, *FIG3_SMALL, "--out", str(together))[0] == 0
    monkeypatch.setattr(experiment_jobs, "group_key", lambda piece: None)
    assert _run(capsys, *FIG3_SMALL, "--out", str(alone))[0] == 0
    assert together.joinpath("fig3.csv").read_bytes() == alone.joinpath("fig3.csv").read_bytes()


def test_a_group_with_a_diverging_student_runs_its_pieces_alone(tmp_path, capsys, monkeypatch):
    reference = tmp_path / "reference"
    assert _run(capsys, *FIG3_SMALL, "--out", str(reference))[0] == 0
    calls = []

    def diverging(group, method, **kwargs):
        calls.append(len(group))
        raise FloatingPointError("a student's logits diverged (non-finite); lower lr")

    monkeypatch.setattr(runner, "run_distillation_group", diverging)
    out = tmp_path / "out"
    assert _run(capsys, *FIG3_SMALL, "--out", str(out))[0] == 0
    assert calls == [3]  # the group (4 MDPs: one range) tried, then its pieces one by one
    assert out.joinpath("fig3.csv").read_bytes() == reference.joinpath("fig3.csv").read_bytes()


def test_planned_teachers_are_made_once_per_panel_and_range(tmp_path, capsys, monkeypatch):
    from distill_agents import teachers as T

    real = T.planned_teachers
    planned = []

    def counting(models, **kwargs):
        planned.append(models.n_envs)
        return real(models, **kwargs)

    monkeypatch.setattr(T, "planned_teachers", counting)
    small = ["--mdps", "4", "--iterations", "20", "--eval-points", "2", "--max-actions", "4"]
    assert _run(capsys, "fig4", *small, "--out", str(tmp_path))[0] == 0
    assert planned == [4]  # the panel's four curves, one range: planned once
    fig4 = tmp_path.joinpath("fig4.csv").read_bytes()
    # Fig. 10's A=4 panel has the same teachers: none planned again.
    assert _run(capsys, "fig10", *small, "--out", str(tmp_path))[0] == 0
    assert planned == [4]
    # Without the kept teachers (or with a damaged file): planned again, the same numbers.
    kept = [p for p in (tmp_path / ".state" / "teachers").glob("*.npz")]
    assert len(kept) == 1
    kept[0].write_bytes(b"damaged")
    for piece in (tmp_path / ".state" / "pieces").glob("*.npz"):
        piece.unlink()
    piece_teachers.clear_cache()  # this process's last teachers (a new run starts without)
    assert _run(capsys, "fig4", *small, "--out", str(tmp_path))[0] == 0
    assert planned == [4, 4]
    assert tmp_path.joinpath("fig4.csv").read_bytes() == fig4


def test_figures_of_one_invocation_share_their_worker_processes():
    try:
        first = pool.worker_pool(2)
        assert pool.worker_pool(2) is first and pool.worker_pool(1) is first
        assert first.executor.submit(os.getpid).result(timeout=120) != os.getpid()
        bigger = pool.worker_pool(3)  # more workers wanted: a new pool, the old one shut down
        assert bigger is not first and bigger.workers == 3
        with pytest.raises(RuntimeError):
            first.executor.submit(os.getpid)
    finally:
        reproduce.close_pool()
    assert pool.active_pool() is None


def _in_spans(monkeypatch, checkpoint=True):
    """Every job in spans of one MDP, a partial file after each (``checkpoint``)."""
    monkeypatch.setattr(experiment_jobs, "SPAN_COST", 0.0)
    monkeypatch.setattr(experiment_jobs, "SPAN_SECONDS", 0.0)
    monkeypatch.setattr(experiment_jobs, "CHECKPOINT_SECONDS", 0.0 if checkpoint else math.inf)


def _partials(out):
    return sorted(
        p.name.split(".", 1)[1] for p in out.joinpath(".state", "pieces").glob("*.part-*")
    )


def test_jobs_run_in_spans_give_the_same_bytes(tmp_path, capsys, monkeypatch, reference):
    calls = []
    real = runner.run_distillation

    def counting(teachers, method, **kwargs):
        calls.append((kwargs["first_mdp"], len(teachers)))
        return real(teachers, method, **kwargs)

    monkeypatch.setattr(runner, "run_distillation", counting)
    _in_spans(monkeypatch)
    assert _run(capsys, *SMALL, "--out", str(tmp_path))[0] == 0
    assert tmp_path.joinpath("fig6.csv").read_bytes() == reference[0]
    assert len(calls) == 4 * reference[1] and {n for _, n in calls} == {1}  # one MDP per span
    assert _partials(tmp_path) == []  # removed once their pieces were written
    summary = json.loads(tmp_path.joinpath("fig6.json").read_text())
    assert summary["pieces"] == {"total": reference[1], "reused": 0}


def test_a_job_interrupted_between_spans_resumes_from_its_partial_files(
    tmp_path, capsys, monkeypatch, reference
):
    real = runner.run_distillation
    calls = []

    def interrupted(teachers, method, **kwargs):
        if len(calls) == 6:  # the first piece (4 MDPs), then 2 MDPs of the second
            raise KeyboardInterrupt
        calls.append(kwargs["first_mdp"])
        return real(teachers, method, **kwargs)

    monkeypatch.setattr(runner, "run_distillation", interrupted)
    _in_spans(monkeypatch)
    status, _, err = _run(capsys, *SMALL, "--out", str(tmp_path))
    assert status == 130 and "resume" in err
    # One partial file per finished span of the unfinished piece.
    assert _partials(tmp_path) == ["part-0-1.npz", "part-1-2.npz"]

    resumed = []

    def counting(teachers, method, **kwargs):
        resumed.append(kwargs["first_mdp"])
        return real(teachers, method, **kwargs)

    monkeypatch.setattr(runner, "run_distillation", counting)
    status, _, err = _run(capsys, *SMALL, "--out", str(tmp_path))
    assert status == 0, err
    assert resumed[:2] == [2, 3]  # the second piece goes on from MDP 2
    assert len(resumed) == 4 * reference[1] - 6
    assert tmp_path.joinpath("fig6.csv").read_bytes() == reference[0]
    assert _partials(tmp_path) == []


def test_damaged_or_foreign_partial_files_are_not_used(tmp_path, capsys, monkeypatch, reference):
    real = runner.run_distillation
    calls = []

    def interrupted(teachers, method, **kwargs):
        if len(calls) == 3:  # 3 of the first piece's 4 MDPs
            raise KeyboardInterrupt
        calls.append(kwargs["first_mdp"])
        return real(teachers, method, **kwargs)

    monkeypatch.setattr(runner, "run_distillation", interrupted)
    _in_spans(monkeypatch)
    assert _run(capsys, *SMALL, "--out", str(tmp_path))[0] == 130
    parts = sorted(tmp_path.joinpath(".state", "pieces").glob("*.part-*"))
    assert [p.name.split(".", 1)[1] for p in parts] == [f"part-{i}-{i + 1}.npz" for i in range(3)]
    data = parts[1].read_bytes()
    parts[1].write_bytes(data[: len(data) // 2])  # truncated: MDPs 1 and 2 run again
    parts[0].rename(parts[0].with_name("0" * 64 + ".part-0-1.npz"))  # another piece's name

    resumed = []

    def counting(teachers, method, **kwargs):
        resumed.append(kwargs["first_mdp"])
        return real(teachers, method, **kwargs)

    monkeypatch.setattr(runner, "run_distillation", counting)
    assert _run(capsys, *SMALL, "--out", str(tmp_path))[0] == 0
    assert resumed[:4] == [0, 1, 2, 3]  # nothing of the first piece was usable
    assert tmp_path.joinpath("fig6.csv").read_bytes() == reference[0]


def test_grouped_jobs_in_spans_give_the_same_bytes(tmp_path, capsys, monkeypatch):
    whole, spans = tmp_path / "whole", tmp_path / "spans"
    assert _run(capsys, *FIG3_SMALL, "--out", str(whole))[0] == 0
    sizes = []
    real = runner.run_distillation_group

    def counting(group, method, **kwargs):
        sizes.append(len(group[0]))
        return real(group, method, **kwargs)

    monkeypatch.setattr(runner, "run_distillation_group", counting)
    _in_spans(monkeypatch)
    assert _run(capsys, *FIG3_SMALL, "--out", str(spans))[0] == 0
    assert sizes == [1, 1, 1, 1]  # the group's 4 MDPs one at a time, together
    assert whole.joinpath("fig3.csv").read_bytes() == spans.joinpath("fig3.csv").read_bytes()


def test_spans_grow_towards_their_target_time(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(experiment_jobs, "SPAN_COST", 0.0)
    monkeypatch.setattr(experiment_jobs, "SPAN_SECONDS", 1e9)  # every span 4x the last
    sizes = []
    real = runner.run_distillation

    def counting(teachers, method, **kwargs):
        sizes.append(len(teachers))
        return real(teachers, method, **kwargs)

    monkeypatch.setattr(runner, "run_distillation", counting)
    argv = ["fig6", "--mdps", "30", "--iterations", "5", "--eval-points", "1", "--panels"]
    assert _run(capsys, *argv, "length=11/optimal", "--out", str(tmp_path))[0] == 0
    assert sizes[:4] == [1, 4, 16, 9]  # per piece: 1, 4, 16, the rest


def test_the_old_module_paths_keep_their_public_names():
    """distill_agents.reproduce, .ray_backend, .readings and .ablate re-export the moved names."""
    import importlib

    from distill_agents import ablate, readings
    from distill_agents import ray_backend as old_ray
    from distill_agents.experiments import ablate as new_ablate
    from distill_agents.experiments import readings as new_readings
    from distill_agents.parallel import ray_backend as new_ray

    for old, new in ((old_ray, new_ray), (readings, new_readings), (ablate, new_ablate)):
        assert old.__all__ and all(getattr(old, n) is getattr(new, n) for n in old.__all__)
    expected = {
        "main", "run", "add_arguments", "figure_settings", "FigureSettings", "reproduce_figure",
        "piece_ranges", "jobs_of", "group_key", "code_digest", "close_pool", "oscillation_rows",
        "PIECE_MDPS", "PIECE_BYTES", "CHECKPOINT_SECONDS", "SPAN_SECONDS", "SPAN_COST",
        "DEFAULT_OUT", "NO_PROGRESS_ENV", "STATE_VERSION", "RAY_RETRIES",
    }  # fmt: skip
    assert expected <= set(reproduce.__all__)
    homes = [
        importlib.import_module(f"distill_agents.{m}")
        for m in (
            "experiments.settings", "experiments.keys", "experiments.jobs", "experiments.state",
            "experiments.curves", "experiments.oscillation", "experiments.reproduce",
            "parallel.pool", "parallel.ray_backend",
        )
    ]  # fmt: skip
    for name in reproduce.__all__:
        value = getattr(reproduce, name)
        assert any(getattr(home, name, None) is value for home in homes), name
