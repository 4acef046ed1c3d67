"""``distill-grid ablate`` (distill_agents.ablate): readings side by side on the same MDPs."""

from __future__ import annotations

import json

import pytest

from distill_agents import ablate, cli, reproduce
from distill_agents.readings import Readings
from distill_agents.results import read_csv

TINY = [
    "--mdps",
    "3",
    "--iterations",
    "20",
    "--eval-points",
    "2",
    "--no-progress",
    "--workers",
    "1",
]


def test_ablation_readings_are_the_base_then_one_change_each():
    out = ablate.ablation_readings(["teacher_prob_floor=1e-2,1e-4", "critic=mc"], ["lr=0.05"])
    assert [name for name, _ in out] == [
        "base", "teacher_prob_floor=1e-2", "teacher_prob_floor=1e-4", "critic=mc",
    ]  # fmt: skip
    base = Readings(lr=0.05)
    assert out[0][1] == base
    assert out[1][1] == Readings(lr=0.05, teacher_prob_floor=1e-2)
    assert out[3][1] == Readings(lr=0.05, critic="mc")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "--set: give at least one KEY=V1,V2"),
        (["critic"], "--set: expected KEY=V1,V2,..., got 'critic'"),
        (["critic=mc,xx"], "--set critic: must be mc, td, none, got 'xx'"),
        (["adversarial_value=own"], "--set adversarial_value=own: that is the base reading"),
    ],
)
def test_bad_ablations_give_one_line(items, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        ablate.ablation_readings(items)


def test_ablate_writes_a_panel_per_reading_and_resumes(tmp_path, capsys):
    argv = ["ablate", "fig4", *TINY, "--panels", "A=4", "--out", str(tmp_path)]
    assert cli.main([*argv, "--set", "teacher_prob_floor=1e-2"]) == 0
    rows = read_csv(tmp_path / "ablate_fig4.csv")
    assert {r.panel for r in rows} == {"base | A=4", "teacher_prob_floor=1e-2 | A=4"}
    assert tmp_path.joinpath("ablate_fig4.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads(tmp_path.joinpath("ablate_fig4.json").read_text())
    assert summary["readings"] == {
        "base": {},
        "teacher_prob_floor=1e-2": {"teacher_prob_floor": 0.01},
    }
    # The base is the plain reproduce run, byte for byte.
    plain = tmp_path / "plain"
    assert reproduce.main(["fig4", *TINY, "--panels", "A=4", "--out", str(plain)]) == 0
    assert (
        plain.joinpath("fig4.csv").read_bytes()
        == tmp_path.joinpath("base", "fig4.csv").read_bytes()
    )
    # Baseline reads no teacher: the same under both floors; the entropy methods change.
    by = {(r.panel.split(" | ")[0], r.method, r.iteration): r.mean for r in rows}
    assert all(
        by["base", m, i] == by["teacher_prob_floor=1e-2", m, i]
        for (_, m, i) in by
        if m == "baseline"
    )
    assert any(
        by["base", m, i] != by["teacher_prob_floor=1e-2", m, i]
        for (_, m, i) in by
        if m == "entropy_regularised"
    )
    # Run again: every piece is reused (one state for all readings), same bytes.
    before = tmp_path.joinpath("ablate_fig4.csv").read_bytes()
    assert cli.main([*argv, "--set", "teacher_prob_floor=1e-2"]) == 0
    for name in ("base", "teacher_prob_floor=1e-2"):
        assert json.loads(tmp_path.joinpath(name, "fig4.json").read_text())["pieces"]["reused"] > 0
    assert tmp_path.joinpath("ablate_fig4.csv").read_bytes() == before
    assert "other settings" not in capsys.readouterr().err


def test_ablate_refuses_figures_without_curves(tmp_path, capsys):
    assert cli.main(["ablate", "fig2", "--set", "lr=1", "--out", str(tmp_path)]) == 2
    assert "figure must be one of fig3, fig4" in capsys.readouterr().err
