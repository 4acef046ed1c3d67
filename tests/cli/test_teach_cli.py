"""The ``distill-grid teach`` command: files, columns, sensible numbers, one-line errors."""

from __future__ import annotations

import csv
import math
import subprocess
import sys

import numpy as np
import pytest

from distill_agents.cli import main
from distill_agents.teachers import Teachers

COLUMNS = ["mdp", "layout_seed", "teacher_return", "optimal_return", "uniform_return"]


def read_rows(path):
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def teach(tmp_path, *argv):
    out = tmp_path / "out"
    code = main(["teach", *argv, "--out", str(out), "--no-progress"])
    assert code == 0
    header, rows = read_rows(out / "teachers.csv")
    assert header == COLUMNS
    return out, rows, Teachers.load(out / "teachers.npz")


def test_teach_q_learning_writes_both_files_with_sensible_numbers(tmp_path, capsys):
    _, rows, teachers = teach(tmp_path, "q_learning", "--mdps", "3", "--episodes", "300",
                                "--seed", "5")  # fmt: skip
    assert [int(r[0]) for r in rows] == [0, 1, 2]
    assert [int(r[1]) for r in rows] == [5, 6, 7]  # layout_seed = seed + i
    for _, _, teacher, optimal, uniform in rows:
        teacher, optimal, uniform = float(teacher), float(optimal), float(uniform)
        assert teacher <= optimal + 1e-9
        assert uniform <= optimal + 1e-9
        assert math.isfinite(teacher)
    # 300 episodes already beat the uniform policy on average.
    assert np.mean([float(r[2]) for r in rows]) > np.mean([float(r[4]) for r in rows])
    assert teachers.kind == "q_learning" and teachers.n_mdps == 3
    assert teachers.temperature == 0.0 and teachers.q_values is not None
    assert list(teachers.layout_seeds) == [5, 6, 7]
    assert teachers.settings["episodes"] == 300
    assert "wrote" in capsys.readouterr().out


def test_teach_optimal_matches_the_optimal_return(tmp_path):
    _, rows, teachers = teach(tmp_path, "optimal", "--mdps", "4")
    for _, _, teacher, optimal, uniform in rows:
        # gamma = 0.99 optimal teacher vs the gamma = 1 optimum: equal up to tiny differences.
        assert float(teacher) <= float(optimal) + 1e-9
        assert float(teacher) >= float(optimal) - 0.05 * abs(float(optimal)) - 1e-6
        assert float(teacher) > float(uniform)
    assert teachers.kind == "optimal"


def test_teach_adversarial_on_the_corridor(tmp_path):
    _, rows, teachers = teach(tmp_path, "adversarial", "--env", "DistillChain-v0",
                              "--env-kwargs", '{"length": 9}', "--mdps", "2")  # fmt: skip
    assert [r[1] for r in rows] == ["", ""]  # no layout seeds
    for _, _, teacher, optimal, uniform in rows:
        assert float(teacher) < float(uniform) < float(optimal)
    assert teachers.env_id == "DistillChain-v0" and teachers.env_kwargs == {"length": 9}


def test_teach_noisy_teacher_records_its_noise(tmp_path):
    _, rows, teachers = teach(tmp_path, "optimal", "--mdps", "2", "--noise", "0.25")
    assert teachers.noise == 0.25
    clean = teach(tmp_path / "clean", "optimal", "--mdps", "2")[2]
    for i in range(2):
        acting = np.flatnonzero(teachers.acting[i])
        chosen = teachers.probs[i].argmax(-1)[acting]
        source = clean.probs[i][acting]
        wrong = source[np.arange(acting.size), chosen] < source.max(-1)  # not a best action
        assert wrong.sum() == math.floor(0.25 * acting.size + 0.5)
    assert all(float(r[2]) <= float(r[3]) + 1e-9 for r in rows)


def test_teach_a2c_td_with_temperature_free_policy(tmp_path):
    _, rows, teachers = teach(tmp_path, "a2c", "--mdps", "2", "--episodes", "200",
                              "--a2c-variant", "td")  # fmt: skip
    assert teachers.kind == "a2c" and teachers.values is not None and teachers.q_values is None
    assert teachers.settings["variant"] == "td"
    assert all(float(r[2]) <= float(r[3]) + 1e-9 for r in rows)


def test_teach_partial_observations(tmp_path):
    _, rows, teachers = teach(tmp_path, "q_learning", "--mdps", "2", "--episodes", "100",
                              "--env-kwargs", '{"observation": "partial", "view_size": 3}',
                              "--temperature", "0.1")  # fmt: skip
    assert teachers.env_kwargs["observation"] == "partial" and teachers.temperature == 0.1
    assert all(float(r[2]) <= float(r[3]) + 1e-9 for r in rows)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["teach", "bogus"], "kind must be one of q_learning, a2c, optimal, adversarial"),
        (["teach", "optimal", "--mdps", "0"], "--mdps must be an integer >= 1"),
        (["teach", "optimal", "--mdps", "x"], "invalid int value"),
        (["teach", "q_learning", "--episodes", "0"], "--episodes must be an integer >= 1"),
        (["teach", "optimal", "--env-kwargs", "{oops"], "--env-kwargs must be a JSON object"),
        (["teach", "optimal", "--env-kwargs", "[1, 2]"], "--env-kwargs must be a JSON object"),
        (["teach", "optimal", "--temperature", "-1"], "--temperature must be a number >= 0"),
        (["teach", "optimal", "--temperature", "nan"], "--temperature must be a number >= 0"),
        (["teach", "a2c", "--temperature", "0.1"], "--temperature applies to"),
        (["teach", "optimal", "--noise", "1"], "--noise must be a number in [0, 1)"),
        (["teach", "optimal", "--noise", "-0.1"], "--noise must be a number in [0, 1)"),
        (["teach", "optimal", "--seed", "-3"], "--seed must be a non-negative integer"),
        (["teach", "optimal", "--env", "FrozenLake-v1"], "env_id must be one of"),
        (["teach", "optimal", "--env-kwargs", '{"view_size": 4}'], "view_size"),
        (["teach", "optimal", "--env-kwargs", '{"observation": "rgb"}'], "observation"),
        (["teach", "optimal", "--env-kwargs", '{"layout_seed": null}'], "layout_seed"),
        (["teach", "optimal", "--env-kwargs", '{"colour": 1}'], "colour"),
        (["teach", "a2c", "--a2c-variant", "gae"], "invalid choice"),
        (["teach", "optimal", "--max-actors", "0"], "--max-actors must be an integer >= 1"),
        (["teach", "optimal", "--workers", "0"], "--workers must be an integer >= 1"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) if "invalid" in message else _nothing() as caught:
        code = main([*argv, "--out", str(tmp_path / "o"), "--no-progress"])
    if caught is not None and hasattr(caught, "value"):
        code = caught.value.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


class _nothing:  # a context manager that catches nothing
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_console_errors_have_no_traceback():
    for argv in (["teach", "bogus"], ["teach", "optimal", "--mdps", "zero"]):
        proc = subprocess.run(
            [sys.executable, "-m", "distill_agents.cli", *argv],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_progress_bar_goes_to_stderr_when_forced(tmp_path, capsys, monkeypatch):
    out = tmp_path / "p"
    monkeypatch.delenv("DISTILL_GRID_NO_PROGRESS", raising=False)
    assert main(["teach", "optimal", "--mdps", "2", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "teach optimal" not in captured.out  # progress never on stdout
    assert (out / "teachers.npz").exists()
