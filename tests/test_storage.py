"""Safe array files: atomic, versioned, validated, never unpickled."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from distill_agents.storage import ArraySpec, FileFormatError, load_arrays, save_arrays

SPECS = {"q": ArraySpec("f", 3), "seeds": ArraySpec("iu", 1), "v": ArraySpec("f", 2, optional=True)}


def write(tmp_path, **arrays):
    arrays = arrays or {"q": np.arange(24.0).reshape(2, 3, 4), "seeds": np.array([3, 4])}
    return save_arrays(tmp_path / "t.npz", "teachers", arrays, {"temperature": 0.1})


def test_roundtrip(tmp_path):
    path = write(tmp_path)
    arrays, meta = load_arrays(path, "teachers", SPECS)
    np.testing.assert_array_equal(arrays["q"], np.arange(24.0).reshape(2, 3, 4))
    assert meta == {"temperature": 0.1}
    assert [p.name for p in tmp_path.iterdir()] == ["t.npz"]  # no temporary files left


def test_suffix_is_added(tmp_path):
    assert save_arrays(tmp_path / "x", "k", {"a": np.zeros(2)}).name == "x.npz"


@pytest.mark.parametrize("cut", [10, 100, 0.5, 0.9])
def test_truncated_file_is_refused(tmp_path, cut):
    path = write(tmp_path)
    data = path.read_bytes()
    size = int(len(data) * cut) if isinstance(cut, float) else cut
    path.write_bytes(data[:size])
    with pytest.raises(FileFormatError, match=r"t\.npz"):
        load_arrays(path, "teachers", SPECS)


def test_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    header = json.dumps({"kind": "teachers", "format_version": 1, "meta": {}}).encode()
    np.savez(
        path,
        __meta__=np.frombuffer(header, np.uint8),
        q=np.array([{"x": 1}], dtype=object),
        seeds=np.array([1]),
    )
    with pytest.raises(FileFormatError, match="refused"):
        load_arrays(path, "teachers", SPECS)


def test_plain_npz_without_header_is_refused(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, q=np.zeros((1, 1, 1)))
    with pytest.raises(FileFormatError, match="not a DistillGrid file"):
        load_arrays(path, "teachers", SPECS)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"q": np.zeros((2, 3)), "seeds": np.array([1])}, "dimensions"),
        ({"q": np.zeros((2, 3, 4), np.int64), "seeds": np.array([1])}, "dtype"),
        ({"q": np.full((1, 1, 1), np.nan), "seeds": np.array([1])}, "non-finite"),
        ({"seeds": np.array([1])}, "missing array 'q'"),
    ],
)
def test_mismatched_arrays_are_refused(tmp_path, arrays, match):
    path = save_arrays(tmp_path / "m.npz", "teachers", arrays)
    with pytest.raises(FileFormatError, match=match):
        load_arrays(path, "teachers", SPECS)


def test_wrong_kind_and_version_are_refused(tmp_path):
    path = save_arrays(tmp_path / "s.npz", "student", {"q": np.zeros((1, 1, 1))})
    with pytest.raises(FileFormatError, match="expected 'teachers'"):
        load_arrays(path, "teachers", SPECS)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert "__meta__.npy" in names
    header = json.dumps({"kind": "teachers", "format_version": 99, "meta": {}}).encode()
    np.savez(
        path, __meta__=np.frombuffer(header, np.uint8), q=np.zeros((1, 1, 1)), seeds=np.array([1])
    )
    with pytest.raises(FileFormatError, match="format_version"):
        load_arrays(path, "teachers", SPECS)


def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="no such file"):
        load_arrays(tmp_path / "none.npz", "teachers", SPECS)


def test_object_arrays_are_not_saved(tmp_path):
    with pytest.raises(ValueError, match="object"):
        save_arrays(tmp_path / "o.npz", "k", {"a": np.array([None], dtype=object)})


def test_failed_write_leaves_old_file_intact(tmp_path, monkeypatch):
    path = write(tmp_path)
    before = path.read_bytes()

    def crash(handle, **arrays):
        handle.write(b"PK partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["t.npz"]


def test_written_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write(tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
