"""Plotting: PNG files from small fixture rows (layout, colours, teacher line, errors)."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from distill_agents.plotting import plot_rows
from distill_agents.results import CurveRow, ResultsFormatError, curve_rows


def fixture_rows(panels=("A=4", "A=40"), metrics=("return",)) -> list[CurveRow]:
    rng = np.random.default_rng(1)
    its = [0, 100, 200, 300]
    rows: list[CurveRow] = []
    for panel in panels:
        for metric in metrics:
            for k, method in enumerate(("on_policy_distill", "entropy_regularised", "baseline")):
                values = rng.normal(size=(10, 4)) + np.linspace(0, 5 - k, 4)
                rows += curve_rows("fig4", panel, method, metric, its, values)
            rows += curve_rows("fig4", panel, "teacher", metric, its, np.full((10, 4), 6.0))
    return rows


def _load(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image


def test_one_metric_gives_one_subplot_per_panel(tmp_path):
    path = plot_rows(fixture_rows(), tmp_path / "out" / "fig4.png")
    assert path == tmp_path / "out" / "fig4.png"
    image = _load(path)
    height, width = image.shape[:2]
    assert width > 1.6 * height  # two panels side by side
    rgb = image[..., :3]
    # The three method colours of tab10 appear (blue, orange, green), and so does black.
    for colour in ([0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17], [0.0, 0.0, 0.0]):
        close = np.all(np.abs(rgb - np.array(colour)) < 0.06, axis=-1)
        assert close.sum() > 50, colour
    assert sorted(p.name for p in path.parent.iterdir()) == ["fig4.png"]


def test_several_metrics_give_a_panels_by_metrics_grid(tmp_path):
    rows = fixture_rows(panels=("T=0", "T=0.01", "T=0.1"), metrics=("kl_student", "return"))
    image = _load(plot_rows(rows, tmp_path / "fig3.png", title="Fig. 3"))
    one = _load(plot_rows(fixture_rows(panels=("T=0",)), tmp_path / "one.png"))
    assert image.shape[0] > 2 * one.shape[0]  # three rows of subplots
    assert image.shape[1] > 1.5 * one.shape[1]  # two columns


def test_bad_rows_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        plot_rows([], tmp_path / "x.png")
    row = CurveRow("f", "p", "m", 0, "return", 1.0, 2.0, 3.0, 4)  # mean below its interval
    with pytest.raises(ResultsFormatError):
        plot_rows([row], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_a_long_legend_stays_inside_the_figure(tmp_path):
    # Fig. 5-like: nine long method names under two panels. The legend takes fewer columns
    # instead of running past the edges: the outermost pixel columns stay blank.
    methods = [
        "expected_entropy_regularised+R", "on_policy_distill+R+Vcond", "teacher_distill+R+Vcond",
        "entropy_regularised+R", "n_distill+R+Vcond", "teacher_v_reward", "kl_regularised",
        "td_v_teacher", "baseline",
    ]  # fmt: skip
    rows: list[CurveRow] = []
    for panel in ("q_learning/mc", "q_learning/td"):
        for k, method in enumerate(methods):
            rows += curve_rows("fig5", panel, method, "return", [0, 10], np.full((3, 2), k * 1.0))
    rgb = _load(plot_rows(rows, tmp_path / "fig5.png"))[..., :3]
    bottom = rgb[int(0.6 * rgb.shape[0]) :]
    edge = max(2, rgb.shape[1] // 100)
    assert np.all(bottom[:, :edge] > 0.95) and np.all(bottom[:, -edge:] > 0.95)


def test_curves_with_early_points_get_a_symlog_axis(tmp_path):
    from distill_agents.plotting import x_axis_scale
    from distill_agents.runner import early_iterations, eval_iterations

    full = eval_iterations(30_000, 1000, early_iterations(1000, 30_000))
    assert list(full[:8]) == [0, 10, 20, 50, 100, 200, 500, 1000]
    assert x_axis_scale(full) == 10.0
    assert x_axis_scale(eval_iterations(300, 30, early_iterations(30, 300))) is None  # 10..300
    assert x_axis_scale([0, 100, 200]) is None and x_axis_scale([0]) is None
    rows = curve_rows("fig3", "T=0", "m", "return", full.tolist(), np.ones((3, full.size)))
    _load(plot_rows(rows, tmp_path / "early.png"))
