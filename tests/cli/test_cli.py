"""The distill-grid command line: the README's main job and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import matplotlib.image
import pytest

from distill_agents.cli import main


def test_show_prints_the_layout_and_writes_a_png(tmp_path, capsys):
    out = tmp_path / "sub" / "mdp.png"
    assert main(["show", "--out", str(out), "--seed", "3"]) == 0
    text = capsys.readouterr().out
    rows = text.splitlines()[:20]
    assert len(rows) == 20 and all(len(row) == 20 for row in rows)
    assert rows[10][10] == "A"  # the agent on the start cell
    picture = matplotlib.image.imread(out)
    assert picture.ndim == 3 and picture.shape[0] > 100


def test_show_other_envs_as_text(capsys):
    assert main(["show", "--env", "DistillChain-v0", "--env-kwargs", '{"length": 7}']) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "--env-kwargs", "{not json"], "--env-kwargs must be a JSON object"),
        (["show", "--env-kwargs", "[1]"], "--env-kwargs must be a JSON object"),
        (["show", "--env-kwargs", '{"view_size": 4}'], "view_size"),
    ],
)
def test_bad_arguments_give_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_console_script_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "distill_agents.cli", "show", "--env-kwargs", '{"width": 1}'],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "width" in proc.stderr


def test_teach_then_distill_writes_curves(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["teach", "optimal", "--mdps", "3", "--out", str(out), "--no-progress"]) == 0
    assert (
        main(
            [
                "distill",
                "--method",
                "on_policy_distill",
                "--teacher",
                str(out / "teachers.npz"),
                "--iterations",
                "200",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    from distill_agents.results import read_csv

    rows = read_csv(out / "on_policy_distill.csv")
    final = [r for r in rows if r.method == "on_policy_distill" and r.iteration == 200]
    teacher = [r for r in rows if r.method == "teacher" and r.iteration == 200]
    assert final and teacher and final[0].n_mdps == 3
    assert final[0].mean > teacher[0].mean - 1.0  # the students learn their teachers' return
    assert (out / "on_policy_distill.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["distill", "--method", "nope", "--teacher", str(out / "teachers.npz")]) == 2
    assert "method must be one of" in capsys.readouterr().err


def test_readme_main_job_reproduces_fig3_quick(tmp_path):
    out = tmp_path / "results"
    assert (
        main(
            [
                "reproduce",
                "fig3",
                "--quick",
                "--out",
                str(out),
                "--mdps",
                "4",
                "--iterations",
                "60",
                "--no-progress",
            ]
        )
        == 0
    )
    from distill_agents.results import read_csv

    rows = read_csv(out / "fig3.csv")
    assert {r.panel for r in rows} == {"T=0", "T=0.01", "T=0.1"}
    assert {r.method for r in rows} == {
        "student_driven",
        "teacher_driven",
        "uniform_driven",
        "teacher",
    }
    assert (out / "fig3.png").stat().st_size > 0 and (out / "fig3.json").is_file()


def test_reproduce_bad_figure_is_one_line(capsys):
    assert main(["reproduce", "fig99"]) == 2
    err = capsys.readouterr().err
    assert "figure must be one of" in err and len(err.strip().splitlines()) == 1
