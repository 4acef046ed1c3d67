"""Property and fuzz tests (SPEC 7): parsers and loaders given random and mutated input.

Each either accepts the input and returns valid data, or raises its documented error
(``LayoutError``/``ValueError`` for layouts, ``FileFormatError`` for ``.npz`` files,
``ResultsFormatError`` for results CSV); a damaged piece or state file of ``reproduce`` is
recomputed, never an exception. Files damaged by bit flips, truncation or inserted bytes load
the original data or are refused: the ``.npz`` archives carry a CRC per member, so a flip never
gives different numbers; CSV carries none, so a flipped file is either refused or holds rows
that pass the full validation, and with the SHA-256 of the JSON summary it is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridworld_env  # noqa: F401  (registers the ids)
from distill_agents import reproduce
from distill_agents.experiments import TeacherSpec
from distill_agents.experiments.piece_teachers import ensure_trained
from distill_agents.experiments.state import State, check_manifest, load_piece, recorded_steps
from distill_agents.policy import TabularPolicy
from distill_agents.results import (
    COLUMNS,
    ResultsFormatError,
    check_rows,
    curve_rows,
    read_csv,
    write_csv,
)
from distill_agents.storage import FileFormatError, load_arrays, save_arrays
from distill_agents.teachers import Teachers, planned_teachers
from gridworld_env import TableIndexWrapper, reachable_states
from gridworld_env.layout import (
    LayoutError,
    cells_to_strings,
    generate_cells,
    has_path_to_goal,
    normalize_reward_probs,
    parse_layout,
)

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply edits ``(kind, position, value)``: 0 flips bit ``value % 8``, 1 inserts a byte,
    2 deletes a byte, 3 overwrites a byte."""
    out = bytearray(data)
    for kind, position, value in edits:
        i = position % max(1, len(out))
        if kind == 0 and out:
            out[i] ^= 1 << (value % 8)
        elif kind == 1:
            out.insert(i, value)
        elif kind == 2 and out:
            del out[i]
        elif out:
            out[i] = value
    return bytes(out)


EDITS = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 2**31), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


# ------------------------------------------------------------------------------ layouts
LAYOUT_CHARS = "#.S-GgxX"
ROWS = st.lists(st.text(alphabet=LAYOUT_CHARS + "?a \t", max_size=7), max_size=7)
ANYTHING = st.one_of(
    ROWS,
    st.lists(st.text(max_size=6), max_size=4),  # any unicode
    st.text(max_size=20),
    st.binary(max_size=12),
    st.integers(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.tuples(st.text(alphabet=LAYOUT_CHARS, min_size=3, max_size=3)),
    st.lists(st.lists(st.text(max_size=2), max_size=3), max_size=3),
)


def _check_parsed(layout: object, cells: np.ndarray, start: tuple[int, int]) -> None:
    rows = [str(row) for row in layout]  # type: ignore[attr-defined]
    assert cells.shape == (len(rows), len(rows[0])) and min(cells.shape) >= 3
    assert sum(row.count("S") for row in rows) == 1
    assert rows[start[0]][start[1]] == "S"
    assert list(cells_to_strings(cells, start)) == rows  # exact round trip


@FUZZ
@given(layout=ANYTHING)
def test_layout_parser_parses_or_raises_layout_error(layout):
    try:
        cells, start = parse_layout(layout)
    except LayoutError:
        return
    _check_parsed(layout, cells, start)


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    width=st.integers(3, 8),
    height=st.integers(3, 8),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["set", "drop_row", "dup_row", "cut_row", "extend_row"]),
            st.integers(0, 63),
            st.integers(0, 63),
            st.sampled_from(list(LAYOUT_CHARS + "?0 ")),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_layouts_build_a_valid_env_or_raise_value_error(seed, width, height, edits):
    cells = generate_cells(np.random.default_rng(seed), width, height, 0.1, {"+10": 0.2})
    rows = list(cells_to_strings(cells, (height // 2, width // 2)))
    for kind, r, c, char in edits:
        r %= len(rows) if rows else 1
        if not rows:
            break
        if kind == "set" and rows[r]:
            c %= len(rows[r])
            rows[r] = rows[r][:c] + char + rows[r][c + 1 :]
        elif kind == "drop_row":
            del rows[r]
        elif kind == "dup_row":
            rows.insert(r, rows[r])
        elif kind == "cut_row":
            rows[r] = rows[r][:-1]
        else:
            rows[r] = rows[r] + char
    try:
        env = gym.make("DistillGrid-v0", layout=rows)
    except ValueError as err:  # LayoutError is a ValueError
        assert str(err) and "\n" not in str(err)
        return
    base = env.unwrapped
    _check_parsed(rows, base.cells, base.config.start)
    np.testing.assert_allclose(base.mdp.transitions.sum(-1), 1.0, atol=1e-12)
    obs, _ = env.reset(seed=seed)
    for _ in range(20):
        assert env.observation_space.contains(obs)
        obs, _, terminated, truncated, _ = env.step(int(env.action_space.sample()))
        if terminated or truncated:
            obs, _ = env.reset()


@FUZZ
@given(
    seed=st.integers(0, 2**31 - 1),
    width=st.integers(3, 9),
    height=st.integers(3, 9),
    wall_prob=st.floats(0.0, 0.35),
    goal_prob=st.floats(0.01, 0.2),
    n_actions=st.integers(4, 6),
    observation=st.sampled_from(["full", "partial"]),
    view_size=st.sampled_from([3, 5]),
)
def test_generated_envs_and_the_table_index_wrapper(
    seed, width, height, wall_prob, goal_prob, n_actions, observation, view_size
):
    """Rows sum to one, a path to +10 exists, observations stay in the space, and the table
    index wrapper is a bijection between reachable windows and ``0 .. n - 1``."""
    kwargs = dict(
        width=width, height=height, wall_prob=wall_prob, reward_probs={"+10": goal_prob},
        n_actions=n_actions, observation=observation, view_size=view_size, layout_seed=seed,
    )  # fmt: skip
    try:
        env = gym.make("DistillGrid-v0", **kwargs)
    except LayoutError:
        return  # only after the bounded number of redraws
    base = env.unwrapped
    mdp = base.mdp
    np.testing.assert_allclose(mdp.transitions.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(mdp.initial.sum(), 1.0)
    assert has_path_to_goal(base.cells, base.config.start)

    wrapped = TableIndexWrapper(gym.make("DistillGrid-v0", **kwargs))
    table = base.observation_of_state
    reachable = np.flatnonzero(reachable_states(mdp))
    seen = [s for s in reachable if np.all(table[s] >= 0)]
    keys = {table[s].tobytes() for s in seen}
    n = wrapped.observation_space.n
    assert n == len(keys)  # one index per distinct reachable observation
    assert sorted(wrapped.state_to_index[s] for s in seen) == sorted(
        wrapped.obs_to_index(table[s]) for s in seen
    )
    assert {int(wrapped.state_to_index[s]) for s in seen} == set(range(n))  # onto
    for i in range(n):  # one-to-one
        assert wrapped.obs_to_index(wrapped.index_to_obs(i)) == i
    unseen = np.setdiff1d(np.arange(mdp.n_states), seen)
    assert np.all(wrapped.state_to_index[unseen] == -1)

    obs, info = env.reset(seed=seed)
    index, winfo = wrapped.reset(seed=seed)
    for _ in range(30):
        assert env.observation_space.contains(obs)
        assert wrapped.observation_space.contains(index)
        assert info["state"] == winfo["state"]
        if np.all(table[info["state"]] >= 0):
            assert index == wrapped.state_to_index[info["state"]]
        action = int(env.action_space.sample())
        obs, _, terminated, truncated, info = env.step(action)
        index, _, _, _, winfo = wrapped.step(action)
        if terminated or truncated:
            obs, info = env.reset(seed=seed)
            index, winfo = wrapped.reset(seed=seed)


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(-2, 6),
    wall_prob=st.one_of(st.floats(allow_nan=True), st.text(max_size=3), st.none()),
    reward_probs=st.one_of(
        st.none(),
        st.dictionaries(
            st.one_of(st.sampled_from(["+10", "10", "-1", "+5", "-5", "-10", "+7"]), st.integers()),
            st.one_of(st.floats(allow_nan=True), st.integers(-2, 2), st.text(max_size=2)),
            max_size=3,
        ),
        st.lists(st.integers(), max_size=2),
    ),
)
def test_generator_settings_give_a_layout_or_value_error(width, wall_prob, reward_probs):
    try:
        cells = generate_cells(np.random.default_rng(0), width, 5, wall_prob, reward_probs)
    except ValueError as err:  # LayoutError included
        assert str(err) and "\n" not in str(err)
        return
    probs = normalize_reward_probs(reward_probs)
    assert probs["+10"] > 0 and 0.0 <= float(wall_prob) <= 1.0
    assert cells.shape == (5, width) and has_path_to_goal(cells, (2, width // 2))


# ------------------------------------------------------------------------------ npz files
def _teachers() -> Teachers:
    envs = gym.make_vec("DistillChain-v0", num_envs=2, vectorization_mode="vector_entry_point")
    return planned_teachers(envs.models, env_id="DistillChain-v0", env_kwargs={})


with _scratch() as _dir:
    TEACHERS = _teachers()
    TEACHER_BYTES = TEACHERS.save(_dir / "t.npz").read_bytes()
    POLICY = TabularPolicy(np.arange(12.0).reshape(6, 2), values=np.arange(6.0))
    POLICY_BYTES = POLICY.save(_dir / "p.npz").read_bytes()


def _same_teachers(a: Teachers, b: Teachers) -> bool:
    return (
        np.array_equal(a.probs, b.probs)
        and np.array_equal(a.values, b.values)
        and np.array_equal(a.q_values, b.q_values)
        and np.array_equal(a.acting, b.acting)
        and np.array_equal(a.n_indices, b.n_indices)
        and np.array_equal(a.layout_seeds, b.layout_seeds)
        and (a.kind, a.env_id, a.env_kwargs) == (b.kind, b.env_id, b.env_kwargs)
    )


def _load_teachers(data: bytes) -> Teachers | None:
    with _scratch() as d:
        path = d / "x.npz"
        path.write_bytes(data)
        try:
            return Teachers.load(path)
        except FileFormatError as err:
            assert str(err).startswith(str(path)) and "\n" not in str(err)
            return None


def _load_policy(data: bytes) -> TabularPolicy | None:
    with _scratch() as d:
        path = d / "x.npz"
        path.write_bytes(data)
        try:
            return TabularPolicy.load(path)
        except FileFormatError:
            return None


@FUZZ
@given(data=st.binary(max_size=3000))
def test_random_bytes_are_refused_by_the_npz_loaders(data):
    assert _load_teachers(data) is None
    assert _load_policy(data) is None
    with _scratch() as d:
        d.joinpath("x.npz").write_bytes(data)
        with pytest.raises(FileFormatError):
            load_arrays(d / "x.npz", "teachers", {})


@FUZZ
@given(cut=st.integers(0, len(TEACHER_BYTES) - 1))
def test_truncated_teachers_are_refused(cut):
    assert _load_teachers(TEACHER_BYTES[:cut]) is None


@FUZZ
@given(edits=EDITS)
def test_damaged_teachers_load_identical_data_or_are_refused(edits):
    got = _load_teachers(_mutate(TEACHER_BYTES, edits))
    assert got is None or _same_teachers(got, TEACHERS)


@FUZZ
@given(edits=EDITS)
def test_damaged_students_load_identical_data_or_are_refused(edits):
    got = _load_policy(_mutate(POLICY_BYTES, edits))
    if got is not None:
        np.testing.assert_array_equal(got.logits, POLICY.logits)
        np.testing.assert_array_equal(got.values, POLICY.values)


def test_every_single_bit_flip_of_a_teachers_file_is_caught_or_harmless():
    """Every third byte position (one bit each): complements the random edits."""
    for i in range(0, len(TEACHER_BYTES), 3):
        got = _load_teachers(_mutate(TEACHER_BYTES, [(0, i, i % 8)]))
        assert got is None or _same_teachers(got, TEACHERS), i


# ------------------------------------------------------------------------------ results CSV
_VALUES = np.array([[1.0, 2.0, 0.25], [1.5, 2.5, -1.0], [0.5, 3.0, 0.0]])
ROWS_OK = curve_rows("fig3", "T=0", "a", "return", np.array([0, 10, 20]), _VALUES)
ROWS_OK += curve_rows("fig3", "T=0", "b", "kl", np.array([0, 10, 20]), _VALUES[:1])
with _scratch() as _dir:
    CSV_DIGEST = write_csv(_dir / "r.csv", ROWS_OK)
    CSV_BYTES = (_dir / "r.csv").read_bytes()


def _same_rows(a: list, b: list) -> bool:
    """Equal rows, NaN equal to NaN (the intervals of one MDP are NaN)."""
    return [repr(dataclasses.astuple(r)) for r in a] == [repr(dataclasses.astuple(r)) for r in b]


def _read(data: bytes, sha256: str | None = None) -> list | None:
    with _scratch() as d:
        path = d / "r.csv"
        path.write_bytes(data)
        try:
            rows = read_csv(path, sha256=sha256)
        except ResultsFormatError as err:
            assert "\n" not in str(err)
            return None
    check_rows(rows)  # whatever loads is valid
    return rows


@FUZZ
@given(data=st.one_of(st.binary(max_size=600), st.text(max_size=300).map(str.encode)))
def test_random_bytes_are_refused_or_valid_rows(data):
    _read(data)


@FUZZ
@given(
    lines=st.lists(
        st.lists(st.sampled_from(["x", "", "1", "nan", "-1", "0.5", "1e999", '"', "a\nb"]),
                 min_size=8, max_size=10),
        max_size=4,
    )
)  # fmt: skip
def test_csv_like_files_are_refused_or_valid_rows(lines):
    text = ",".join(COLUMNS) + "\n" + "".join(",".join(fields) + "\n" for fields in lines)
    _read(text.encode())


@FUZZ
@given(edits=EDITS)
def test_damaged_results_are_refused_or_valid_and_the_digest_catches_them(edits):
    data = _mutate(CSV_BYTES, edits)
    _read(data)
    got = _read(data, sha256=CSV_DIGEST)
    if data == CSV_BYTES:  # edits that undo each other
        assert got is not None and _same_rows(got, ROWS_OK)
    else:
        assert got is None


def test_truncated_results_are_refused_at_every_length():
    for cut in range(len(CSV_BYTES)):
        assert _read(CSV_BYTES[:cut], sha256=CSV_DIGEST) is None
        rows = _read(CSV_BYTES[:cut])
        # Without the digest a cut is caught unless it falls exactly between two series.
        assert rows is None or _same_rows(rows, ROWS_OK[: len(rows)])


def test_a_field_over_the_csv_size_limit_is_refused():
    assert _read((",".join(COLUMNS) + "\n" + "x" * 200_000 + "\n").encode()) is None


# ------------------------------------------------------------------------------ reproduce state
PIECE_KEY = {"state_version": 1, "metrics": ["return"], "lo": 0, "hi": 2, "seed": 0}
PIECE_ARRAYS = {
    "env_steps": np.array([10, 12]),
    "eval_iterations": np.array([0, 5]),
    "student_return": np.array([[0.5, 1.0], [np.nan, 2.0]]),
    "teacher_return": np.array([3.0, 4.0]),
}
with _scratch() as _dir:
    PIECE_BYTES = save_arrays(
        _dir / "p.npz", "reproduce_piece", PIECE_ARRAYS, {"key": PIECE_KEY}
    ).read_bytes()


def _load_piece(data: bytes, key: dict = PIECE_KEY) -> dict | None:
    with _scratch() as d:
        path = d / "piece.npz"
        path.write_bytes(data)
        with contextlib.redirect_stderr(io.StringIO()):
            return load_piece(path, key)


def test_a_valid_piece_loads_and_another_key_is_refused():
    got = _load_piece(PIECE_BYTES)
    assert got is not None
    for name, value in PIECE_ARRAYS.items():
        np.testing.assert_array_equal(got["arrays"][name], value)
    assert _load_piece(PIECE_BYTES, {**PIECE_KEY, "seed": 1}) is None
    assert _load_piece(PIECE_BYTES, {**PIECE_KEY, "hi": 3}) is None


@FUZZ
@given(edits=EDITS)
def test_damaged_pieces_load_identical_data_or_are_recomputed(edits):
    got = _load_piece(_mutate(PIECE_BYTES, edits))
    if got is not None:
        for name, value in PIECE_ARRAYS.items():
            np.testing.assert_array_equal(got["arrays"][name], value)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), st.from_type(type(None)).map(lambda _: b"")))
def test_damaged_manifests_are_replaced_not_raised(data):
    settings_ = reproduce.figure_settings("fig6", mdps=2, iterations=5)
    with _scratch() as d:
        state = State(d)
        state.manifests.mkdir(parents=True)
        state.manifests.joinpath("fig6.json").write_bytes(data)
        with contextlib.redirect_stderr(io.StringIO()):
            check_manifest(state, settings_)
        saved = json.loads(state.manifests.joinpath("fig6.json").read_text())
        assert saved == settings_.manifest()


class _Bar:
    def update(self, n: int) -> None:
        pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run state holding trained Q-learning teachers (2 MDPs, 5 episodes)."""
    settings_ = reproduce.figure_settings("fig5", mdps=2, iterations=5, teacher_episodes=5)
    state = State(tmp_path_factory.mktemp("state"))
    spec = TeacherSpec("q_learning")
    path, steps = ensure_trained(spec, settings_, state, lambda **kw: nullcontext(_Bar()))
    return settings_, state, spec, Path(path), steps


@pytest.mark.parametrize(
    "sidecar",
    [b"", b"{", b"[]", b'"text"', b"null", b"\xff\xfe", b'{"key": 1}', b'{"env_steps": 5}'],
)
def test_damaged_teacher_records_retrain_instead_of_raising(trained, sidecar):
    settings_, state, spec, npz, steps = trained
    record = npz.with_suffix(".json")
    good = record.read_bytes()
    try:
        record.write_bytes(sidecar)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            path, again = ensure_trained(spec, settings_, state, lambda **kw: nullcontext(_Bar()))
        assert Path(path) == npz and again == steps  # retrained: the same tables and count
        new, old = json.loads(record.read_text()), json.loads(good)
        assert new["key"] == old["key"] and new["env_steps"] == old["env_steps"]
        assert recorded_steps(state, spec, settings_) == steps
    finally:
        record.write_bytes(good)


@pytest.mark.parametrize("steps", ["null", "[1]", "1e400", '"x"'])
def test_bad_step_counts_in_teacher_records(trained, steps):
    settings_, state, spec, npz, count = trained
    record = npz.with_suffix(".json")
    good = record.read_bytes()
    info = json.loads(good)
    try:
        record.write_text(json.dumps({"key": info["key"]})[:-1] + f', "env_steps": {steps}}}')
        assert recorded_steps(state, spec, settings_) == 0
        with contextlib.redirect_stderr(io.StringIO()):
            _, again = ensure_trained(spec, settings_, state, lambda **kw: nullcontext(_Bar()))
        assert again == count
    finally:
        record.write_bytes(good)
