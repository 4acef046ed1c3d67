"""``distill-grid bench --markdown``: the tables as Markdown, with what produced them."""

from __future__ import annotations

import subprocess

import pytest

from distill_agents import bench
from distill_agents.bench import report
from distill_agents.bench.envs import Measurement


def _rows():
    return [
        {"method": m, "n_actions": a, "ns_per_step": ns, "entries_per_row": e}
        for m, a, ns, e in [
            ("on_policy_distill", 4, 100.0, 2.0), ("on_policy_distill", 4000, 250.0, 3.0),
            ("baseline", 4, 90.0, 4.0), ("baseline", 4000, 9000.0, 3500.0),
        ]
    ]  # fmt: skip


def test_markdown_table_has_a_header_a_rule_and_a_line_per_row():
    text = report.markdown_table(["a", "b"], [["1", "2"], ["3", "4"]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |", "| 3 | 4 |"]


def test_the_action_count_table_in_markdown_keeps_the_text_tables_cells():
    lines = bench.format_actions(_rows(), 20, 2000, markdown=True).splitlines()
    assert "20 random 20x20 MDPs x 2000 episodes" in lines[0]
    assert lines[2] == "| method | \\|A\\|=4 | \\|A\\|=4000 | 4000/4 |"
    assert lines[4].split("|")[1:-1] == [
        " on_policy_distill ",
        " 100    (2) ",
        " 250    (3) ",
        " 2.5x ",
    ]
    assert lines[5].split("|")[-2] == " 100.0x "


def test_the_env_table_in_markdown_gives_each_rows_ratio_to_the_reference():
    ref = Measurement("FrozenLake", 2.0e5, 10)
    text = bench.format_table([Measurement("DistillGrid", 1.0e6, 10), ref], ref, markdown=True)
    assert text.splitlines()[2:] == [
        "| `DistillGrid` | 1.000e+06 | 5.0x |",
        "| `FrozenLake` | 2.000e+05 | 1.0x |",
    ]


def test_provenance_names_the_command_the_version_and_the_machine(monkeypatch):
    line = report.provenance(["--quick", "--markdown"])
    assert line.startswith("`distill-grid bench --quick --markdown`; distillgrid ")
    assert "CPUs" in line and "numba " in line

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert "commit" not in report.provenance([])


def _teacher_out():
    return {
        "n_mdps": 20, "episodes": 500, "workers": 2, "reference_threads": 2,
        "trainer_updates_per_s": 2.0e7, "trainer_seconds": 12.5, "trainer_cpu_seconds": 24.0,
        "reference_steps_per_s": 5.0e7, "reference_seconds": 5.0, "reference_cpu_seconds": 9.6,
        "ratio": 0.4, "ratio_cpu": 0.5,
    }  # fmt: skip


def test_the_teacher_table_sets_the_trainer_against_the_plain_loop():
    text = bench.format_teachers(_teacher_out())
    assert "20 random 20x20 MDPs x 500 episodes" in text.splitlines()[0]
    trainer, reference = text.splitlines()[1:]
    assert "teacher trainer, 2 worker processes" in trainer
    assert "2e+07 updates/s" in trainer and "12.5 s" in trainer and "0.40x  (CPU 0.50x)" in trainer
    assert "plain compiled loop, 2 threads" in reference and "1.00x" in reference
    lines = bench.format_teachers(_teacher_out(), markdown=True).splitlines()
    assert lines[2] == "| loop | updates/s | wall s | CPU s | ratio | ratio (CPU) |"
    assert (
        lines[4] == "| teacher trainer, 2 worker processes | 2e+07 | 12.5 | 24.0 | 0.40x | 0.50x |"
    )


def test_bench_teachers_runs_the_teacher_benchmark_at_its_quick_size(monkeypatch, capsys):
    import distill_agents.teachers.bench as teacher_bench
    from distill_agents.bench import command

    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        return _teacher_out()

    monkeypatch.setattr(teacher_bench, "bench_q_learning", fake)
    env_rows = [Measurement("DistillGrid", 1.0, 1)]
    monkeypatch.setattr(command, "run", lambda config: {"single": env_rows, "vector": env_rows})
    monkeypatch.setattr(command, "format_table", lambda rows, ref, md: "")
    assert command.main(["--quick", "--teachers", "--markdown"]) == 0
    assert calls == [{"n_mdps": 20, "episodes": 500}]
    assert "| teacher trainer, 2 worker processes |" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--quick", "--markdown", "--vector-envs", "0"]])
def test_bench_checks_its_arguments_before_measuring(argv, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert "--vector-envs must be >= 1" in capsys.readouterr().err
