"""Results rows: t-intervals against hand computations, CSV round trip and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distill_agents.results import (
    COLUMNS,
    CurveRow,
    ResultsFormatError,
    check_rows,
    confidence_interval,
    curve_rows,
    read_csv,
    summarize,
    t_quantile,
    write_csv,
)


@pytest.mark.parametrize(
    ("df", "expected"),
    # Two-sided 95% critical values of Student's t (standard tables, 10 significant digits).
    [(1, 12.70620474), (2, 4.302652730), (3, 3.182446305), (9, 2.262157163),
     (29, 2.045229642), (999, 1.962341461)],
)  # fmt: skip
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, rel=1e-9)
    assert t_quantile(0.025, df) == pytest.approx(-expected, rel=1e-9)


def test_t_quantile_tends_to_the_normal_quantile_and_rejects_bad_input():
    assert t_quantile(0.975, 10**7) == pytest.approx(1.959963985, rel=1e-6)
    assert t_quantile(0.5, 4) == 0.0
    with pytest.raises(ValueError, match="p must be in"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df must be an integer"):
        t_quantile(0.9, 0)


def test_confidence_interval_by_hand():
    # 1, 2, 3, 4: mean 2.5, s = sqrt(5/3), se = s / 2, t_{0.975, 3} = 3.182446305.
    mean, low, high, n = confidence_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305 * math.sqrt(5.0 / 3.0) / 2.0
    assert (mean, n) == (2.5, 4)
    assert low == pytest.approx(2.5 - half, rel=1e-9)
    assert high == pytest.approx(2.5 + half, rel=1e-9)
    assert low == pytest.approx(0.4457397432, rel=1e-9)


def test_summarize_leaves_out_non_finite_values_and_handles_tiny_samples():
    values = np.array([[1.0, 5.0, np.nan], [3.0, np.nan, np.nan], [np.inf, np.nan, np.nan]])
    mean, low, high, n = summarize(values)
    np.testing.assert_array_equal(n, [2, 1, 0])
    assert mean[0] == 2.0 and mean[1] == 5.0 and math.isnan(mean[2])
    half = 12.70620474 * math.sqrt(2.0) / math.sqrt(2.0)
    assert low[0] == pytest.approx(2.0 - half) and high[0] == pytest.approx(2.0 + half)
    assert math.isnan(low[1]) and math.isnan(high[1]) and math.isnan(low[2])
    constant = summarize(np.full((5, 1), 3.0))
    assert (constant[0][0], constant[1][0], constant[2][0]) == (3.0, 3.0, 3.0)


def make_rows() -> list[CurveRow]:
    rng = np.random.default_rng(0)
    rows: list[CurveRow] = []
    for panel in ("T=0", "T=0.1"):
        for method in ("student_driven", "teacher"):
            for metric in ("return", "kl_student"):
                values = rng.normal(size=(7, 4)) + np.arange(4)
                rows += curve_rows("fig3", panel, method, metric, [0, 10, 20, 25], values)
    rows += curve_rows("fig3", "single", "m", "return", [0, 5], np.array([[1.0, 2.0]]))
    return rows


def test_csv_round_trip_is_exact(tmp_path):
    rows = make_rows()
    path = tmp_path / "sub" / "fig3.csv"
    digest = write_csv(path, rows)
    back = read_csv(path, sha256=digest)
    assert len(back) == len(rows)
    for a, b in zip(rows, back, strict=True):
        assert a.key == b.key and a.n_mdps == b.n_mdps
        for name in ("mean", "ci_low", "ci_high"):
            x, y = getattr(a, name), getattr(b, name)
            assert (math.isnan(x) and math.isnan(y)) or x == y
    text = path.read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    assert "fig3,single,m,0,return,1.0,nan,nan,1" in text
    assert [p.name for p in path.parent.iterdir()] == ["fig3.csv"]  # no temporary files left


def _tamper(tmp_path, edit):
    path = tmp_path / "r.csv"
    write_csv(path, make_rows())
    text = path.read_text()
    path.write_text(edit(text))
    return path


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.replace("figure,panel", "fig,panel", 1), "header must be exactly"),
        (lambda t: t[:-20], "truncated"),
        (lambda t: "\n".join(t.splitlines()[:-3]) + "\n", "ragged grid"),
        (lambda t: t.replace(",return,", ",return,x", 1), "expected 9 fields|must be a number"),
        (lambda t: t.replace("driven,0,", "driven,zero,", 1), "iteration must be an integer"),
        (lambda t: t + t.splitlines()[1] + "\n", "duplicate"),
        (lambda t: t.replace(",7\n", ",-7\n", 1), "n_mdps must be >= 0"),
        (lambda t: "", "empty file"),
        (lambda t: t.replace("\n", ",extra\n", 2), "header must be exactly|expected 9 fields"),
    ],
)  # fmt: skip
def test_tampered_or_truncated_files_are_refused(tmp_path, edit, match):
    path = _tamper(tmp_path, edit)
    with pytest.raises(ResultsFormatError, match=match):
        read_csv(path)


def test_a_mean_outside_its_interval_is_refused(tmp_path):
    path = tmp_path / "r.csv"
    write_csv(path, make_rows())
    lines = path.read_text().splitlines()
    fields = lines[1].split(",")
    fields[5] = repr(float(fields[7]) + 1.0)  # mean above ci_high
    lines[1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ResultsFormatError, match=r"line 2: need ci_low <= mean <= ci_high"):
        read_csv(path)


def test_digest_detects_edits_that_keep_the_format(tmp_path):
    path = tmp_path / "r.csv"
    digest = write_csv(path, make_rows())
    text = path.read_text()
    lines = text.splitlines()
    fields = lines[1].split(",")
    fields[5] = repr(float(fields[5]) + 1e-9)  # still inside the interval
    path.write_text("\n".join([lines[0], ",".join(fields), *lines[2:]]) + "\n")
    read_csv(path)  # a well-formed file...
    with pytest.raises(ResultsFormatError, match="SHA-256"):
        read_csv(path, sha256=digest)  # ...that is not the one written


def test_missing_file_and_invalid_rows(tmp_path):
    with pytest.raises(ResultsFormatError, match="cannot read"):
        read_csv(tmp_path / "none.csv")
    good = CurveRow("f", "p", "m", 0, "return", 1.0, 0.5, 1.5, 3)
    bad = [
        (CurveRow("f", "p", "m", 1, "return", 2.0, 0.5, 1.5, 3), "ci_low <= mean"),
        (CurveRow("", "p", "m", 0, "return", 1.0, 0.5, 1.5, 3), "figure must not be empty"),
        (CurveRow("f", "p", "m", -1, "return", 1.0, 0.5, 1.5, 3), "iteration must be >= 0"),
        (CurveRow("f", "p", "m", 0, "return", 1.0, 0.5, 1.5, 1), "single MDP"),
        (CurveRow("f", "p", "m", 0, "return", math.inf, 0.5, 1.5, 3), "infinite"),
        (CurveRow("f", "p\nq", "m", 0, "return", 1.0, 0.5, 1.5, 3), "line breaks"),
    ]
    for row, match in bad:
        with pytest.raises(ResultsFormatError, match=match):
            check_rows([row])
        with pytest.raises(ResultsFormatError, match=match):
            write_csv(tmp_path / "bad.csv", [good, row])
        assert not (tmp_path / "bad.csv").exists()
    with pytest.raises(ResultsFormatError, match="duplicate"):
        check_rows([good, good])


def test_curve_rows_checks_shapes():
    with pytest.raises(ValueError, match="same E"):
        curve_rows("f", "p", "m", "return", [0, 1, 2], np.zeros((3, 2)))
