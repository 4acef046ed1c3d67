"""``distill-grid distill`` logic: files written, their contents, and one-line errors."""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import pytest

import gridworld_env  # noqa: F401 -- registers the environments
from distill_agents import distill_command
from distill_agents.results import read_csv
from distill_agents.teachers import Teachers, planned_teachers

KW = {"width": 6, "height": 6}


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    envs = gym.make_vec(
        "DistillGrid-v0", num_envs=4, vectorization_mode="vector_entry_point",
        observation="index", layout_seed=0, **KW,
    )  # fmt: skip
    teachers = planned_teachers(
        envs.models, env_id="DistillGrid-v0", env_kwargs=KW, layout_seeds=np.arange(4)
    )
    path = tmp_path_factory.mktemp("teach") / "teachers.npz"
    teachers.save(path)
    return path


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    distill_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_writes_csv_png_and_json(teacher_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = parse(
        "--method", "on_policy_distill", "--teacher", str(teacher_file), "--iterations", "40",
        "--eval-every", "20", "--out", str(out), "--metrics", "return,kl_student",
        "--no-progress",
    )  # fmt: skip
    assert distill_command.run(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "on_policy_distill.csv",
        "on_policy_distill.json",
        "on_policy_distill.png",
    ]
    summary = json.loads((out / "on_policy_distill.json").read_text())
    rows = read_csv(out / "on_policy_distill.csv", sha256=summary["csv_sha256"])
    assert {r.method for r in rows} == {"on_policy_distill", "teacher"}
    assert {r.metric for r in rows} == {"return", "kl_student"}
    assert {r.iteration for r in rows} == {0, 20, 40}
    assert {r.figure for r in rows} == {"distill"} and {r.panel for r in rows} == {"optimal"}
    assert all(r.n_mdps == 4 for r in rows)
    assert summary["n_mdps"] == 4 and summary["env_steps"] > 40 * 4
    assert summary["wall_seconds"] > 0 and summary["version"]
    assert summary["settings"]["method"] == "on_policy_distill"
    final = [r for r in rows if r.metric == "return" and r.iteration == 40]
    student = next(r for r in final if r.method == "on_policy_distill")
    teacher = next(r for r in final if r.method == "teacher")
    assert summary["final"]["return"]["student_mean"] == pytest.approx(student.mean)
    assert student.mean > 0.8 * teacher.mean
    assert "wrote" in capsys.readouterr().out


def test_control_name_label_and_subset(teacher_file, tmp_path):
    out = tmp_path / "r"
    args = parse(
        "--method", "on_policy_distill", "--teacher", str(teacher_file), "--control", "uniform",
        "--iterations", "10", "--out", str(out), "--mdps", "2", "--label", "uniform_driven",
        "--panel", "T=0", "--figure", "fig3", "--no-progress",
    )  # fmt: skip
    assert distill_command.run(args) == 0
    rows = read_csv(out / "on_policy_distill-uniform.csv")
    assert {r.method for r in rows} == {"uniform_driven", "teacher"}
    assert {r.panel for r in rows} == {"T=0"} and {r.n_mdps for r in rows} == {2}
    # default --eval-every: iterations / 30, at least 1 -> every iteration
    assert sorted({r.iteration for r in rows}) == list(range(11))
    assert distill_command.output_name("n_distill+R", None, "a b/c") == "a_b_c"


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--method", "nope"], "method must be one of"),
        (["--control", "greedy"], "control must be one of"),
        (["--critic", "q"], "--critic must be mc, td or none"),
        (["--iterations", "-3"], "--iterations must be an integer >= 0"),
        (["--eval-every", "0"], "--eval-every must be an integer >= 1"),
        (["--metrics", "return,loss"], "--metrics must be distinct names"),
        (["--seed", "-1"], "--seed must be a non-negative integer"),
        (["--lr", "0"], "--lr must be a positive number"),
        (["--beta", "2"], "--beta must be a number in"),
        (["--mdps", "0"], "--mdps must be an integer >= 1"),
        (["--label", " "], "--label must be a non-empty"),
        (["--method", "td_v_zero", "--critic", "mc"], "always bootstraps"),
    ],
)
def test_bad_arguments_raise_one_line_value_errors(teacher_file, tmp_path, argv, match):
    base = ["--method", "on_policy_distill", "--teacher", str(teacher_file), "--out", str(tmp_path)]
    args = parse(*base, "--iterations", "2", "--no-progress", *argv)
    with pytest.raises(ValueError, match=match) as info:
        distill_command.run(args)
    assert "\n" not in str(info.value)


def test_bad_teacher_files(teacher_file, tmp_path):
    def run(path, method="on_policy_distill"):
        args = parse("--method", method, "--teacher", str(path), "--iterations", "2",
                     "--out", str(tmp_path / "o"), "--no-progress")  # fmt: skip
        with pytest.raises(ValueError) as info:
            distill_command.run(args)
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "no such file" in run(tmp_path / "missing.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(teacher_file.read_bytes()[:200])
    assert run(broken).startswith("--teacher:")
    no_values = tmp_path / "no_values.npz"
    Teachers.load(teacher_file).replace(values=None, q_values=None).save(no_values)
    assert "needs teacher values" in run(no_values, "teacher_v_reward")
    assert not (tmp_path / "o").exists()
