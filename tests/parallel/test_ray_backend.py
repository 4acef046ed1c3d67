"""``--backend ray`` (distill_agents.ray_backend): same files as local, retries, missing Ray.

The tests that need Ray share one local Ray instance with two CPUs (module scope) and are
skipped only if Ray is not installed (CI installs ``.[dev,sb3,ray]``, so they run there).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distill_agents import cli, reproduce
from distill_agents.experiments.keys import Piece, piece_key, resolved_critic
from distill_agents.experiments.state import State, load_piece
from distill_agents.parallel import ray_backend as RB
from distill_agents.parallel.ray_backend import ray_piece

# A small fig3 run: a Q-learning teacher (trained, so its file goes to the tasks) and 3 curves.
SMALL = [
    "fig3",
    "--panels",
    "T=0",
    "--mdps",
    "4",
    "--iterations",
    "20",
    "--teacher-episodes",
    "20",
    "--eval-points",
    "2",
    "--no-progress",
]


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance with two CPUs for the module (skip if Ray is not installed)."""
    ray = pytest.importorskip("ray")
    import logging

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_fig3(tmp_path_factory):
    """The local backend's files of SMALL (the reference)."""
    out = tmp_path_factory.mktemp("local")
    assert reproduce.main([*SMALL, "--out", str(out), "--workers", "1"]) == 0
    return out


def _pieces(out: Path) -> list[Path]:
    return sorted(out.joinpath(".state", "pieces").glob("*.npz"))


# ------------------------------------------------------------------------------ reproduce
def test_reproduce_on_ray_gives_the_local_bytes(ray_instance, local_fig3, tmp_path, capsys):
    out = tmp_path / "ray"
    assert reproduce.main([*SMALL, "--out", str(out), "--backend", "ray"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert out.joinpath("fig3.csv").read_bytes() == local_fig3.joinpath("fig3.csv").read_bytes()
    ray_summary = json.loads(out.joinpath("fig3.json").read_text())
    local_summary = json.loads(local_fig3.joinpath("fig3.json").read_text())
    assert ray_summary["csv_sha256"] == local_summary["csv_sha256"]
    assert ray_summary["env_steps"] == local_summary["env_steps"] > 0
    assert ray_summary["arguments"]["backend"] == "ray"
    # The driver wrote every piece and the trained teachers into DIR/.state, same names.
    assert [p.name for p in _pieces(out)] == [p.name for p in _pieces(local_fig3)]
    assert len(_pieces(out)) == ray_summary["pieces"]["total"] == 3
    # The Ray session belongs to the caller (the fixture): it is still up.
    assert ray_instance.is_initialized()
    # A second run reuses every piece.
    assert reproduce.main([*SMALL, "--out", str(out), "--backend", "ray"]) == 0
    assert json.loads(out.joinpath("fig3.json").read_text())["pieces"]["reused"] == 3


@pytest.mark.parametrize("mode", ["raise", "exit"])
def test_a_task_that_fails_once_is_retried(
    ray_instance, local_fig3, tmp_path, capsys, monkeypatch, mode
):
    markers = tmp_path / "markers"
    monkeypatch.setenv(RB.FAIL_ONCE_ENV, str(markers) if mode == "raise" else f"exit:{markers}")
    out = tmp_path / "ray"
    assert reproduce.main([*SMALL, "--out", str(out), "--backend", "ray"]) == 0
    # The failure happened (the first attempt of job 0 of each Ray map left its marker) ...
    assert markers.joinpath("ray-fail-once-job0").is_file()
    # ... and the retry gave the same bytes.
    assert out.joinpath("fig3.csv").read_bytes() == local_fig3.joinpath("fig3.csv").read_bytes()


def test_ray_piece_without_a_shared_file_system(local_fig3, tmp_path):
    """A node without the driver's teacher file gets it from the bytes sent with the tasks."""
    from dataclasses import replace

    from distill_agents.experiments import get_experiment

    settings = reproduce.figure_settings(
        "fig3", mdps=4, iterations=20, teacher_episodes=20, eval_points=2, panels=["T=0"]
    )
    exp = get_experiment("fig3")
    panel = exp.panel("T=0")
    curve = panel.curves[0]
    (teacher_file,) = local_fig3.joinpath(".state", "teachers").glob("*.npz")
    missing = tmp_path / "elsewhere" / teacher_file.name  # not on this "node"
    key = piece_key(exp, panel, curve, settings, 0, 4)
    piece = Piece(
        key=key, path="", spec=panel.teacher, method=curve.method, control=curve.control,
        critic=resolved_critic(curve.method, panel.critic), lr=exp.lr,
        gamma=exp.gamma, metrics=exp.metrics, settings=settings, lo=0, hi=4,
        teacher_file=str(missing),
    )  # fmt: skip
    stored = load_piece(State(local_fig3).piece_path(key), key)
    assert stored is not None  # the same piece, computed by the local run
    units: list[int] = []
    arrays, meta = ray_piece(piece, {str(missing): teacher_file.read_bytes()}, units.append)
    assert sum(units) == 4 * 20 and not missing.exists()
    assert meta["key"] == stored["meta"]["key"]
    assert sorted(arrays) == sorted(stored["arrays"])
    for name, value in arrays.items():
        np.testing.assert_array_equal(value, stored["arrays"][name])
    # With the file present (one machine), the bytes are not needed.
    present = replace(piece, teacher_file=str(teacher_file))
    again, _ = ray_piece(present, {}, lambda n: None)
    np.testing.assert_array_equal(again["student_return"], arrays["student_return"])


def test_ray_piece_refuses_a_worker_with_other_code():
    settings = reproduce.figure_settings("fig6", mdps=2, iterations=5, eval_points=1)
    from distill_agents.experiments import get_experiment

    exp = get_experiment("fig6")
    panel = exp.panels[0]
    curve = panel.curves[0]
    key = piece_key(exp, panel, curve, settings, 0, 2)
    assert key["code"] == reproduce.code_digest()
    piece = Piece(
        key={**key, "code": "0" * 16}, path="", spec=panel.teacher, method=curve.method,
        control=curve.control, critic=resolved_critic(curve.method, panel.critic),
        lr=exp.lr, gamma=exp.gamma, metrics=exp.metrics, settings=settings, lo=0, hi=2,
        teacher_file=None,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"runs other distillgrid code .* same version on every"):
        ray_piece(piece, {}, lambda n: None)


# ------------------------------------------------------------------------------ teach, distill
def _cli(capsys, *argv):
    status = cli.main([*argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_teach_and_distill_on_ray_equal_local(ray_instance, tmp_path, capsys):
    teach = ["teach", "q_learning", "--mdps", "5", "--episodes", "30", "--no-progress"]
    assert _cli(capsys, *teach, "--out", str(tmp_path / "t1"), "--workers", "1")[0] == 0
    assert _cli(capsys, *teach, "--out", str(tmp_path / "t2"), "--backend", "ray")[0] == 0
    for name in ("teachers.npz", "teachers.csv"):
        assert (
            tmp_path.joinpath("t1", name).read_bytes() == tmp_path.joinpath("t2", name).read_bytes()
        )
    teachers = str(tmp_path / "t1" / "teachers.npz")
    distill = ["distill", "--method", "on_policy_distill", "--teacher", teachers, "--no-progress"]
    distill += ["--iterations", "30", "--eval-every", "10", "--metrics", "return,kl_student"]
    assert _cli(capsys, *distill, "--out", str(tmp_path / "d1"))[0] == 0
    # Ranges of 2 MDPs: 3 tasks (5 MDPs), joined.
    status, out, err = _cli(
        capsys, *distill, "--out", str(tmp_path / "d2"), "--backend", "ray", "--chunk-size", "2"
    )
    assert status == 0, err
    assert "5 MDPs" in out
    a = tmp_path.joinpath("d1", "on_policy_distill.csv").read_bytes()
    assert a == tmp_path.joinpath("d2", "on_policy_distill.csv").read_bytes()


# ------------------------------------------------------------------------------ ray_map
def test_ray_map_orders_results_counts_progress_once_and_retries(ray_instance, tmp_path):
    marker = tmp_path / "failed-once"

    def job(x, shared, progress):
        progress(5)
        if x == 2 and not marker.exists():  # fails after reporting progress: counted once
            marker.write_text("x")
            raise RuntimeError("transient")
        return x * shared

    units: list[int] = []
    results = RB.ray_map_ordered(job, [0, 1, 2, 3], shared=10, progress=units.append)
    assert results == [0, 10, 20, 30]
    assert marker.exists() and sum(units) == 4 * 5


def test_ray_map_raises_deterministic_errors_at_once(ray_instance, tmp_path):
    attempts = tmp_path / "attempts"
    attempts.mkdir()

    def job(x, shared, progress):
        attempts.joinpath(f"{x}-{len(list(attempts.iterdir()))}").write_text("")
        if x == 1:
            raise ValueError("--thing must be positive")
        return x

    with pytest.raises(ValueError, match="--thing must be positive"):
        RB.ray_map_ordered(job, [1], retries=3)
    assert len(list(attempts.iterdir())) == 1  # not retried

    def always(x, shared, progress):
        raise RuntimeError("always broken")

    with pytest.raises(RuntimeError, match="always broken"):
        RB.ray_map_ordered(always, [0], retries=1)


def test_ray_map_needs_a_session_and_valid_arguments(ray_instance):
    with pytest.raises(ValueError, match="retries must be an integer >= 0"):
        list(RB.ray_map(lambda j, s, p: j, [1], retries=-1))
    with pytest.raises(ValueError, match="cpus_per_job must be an integer >= 1"):
        list(RB.ray_map(lambda j, s, p: j, [1], cpus_per_job=0))
    assert RB.ray_map_ordered(lambda j, s, p: j, []) == []
    assert 1 <= RB.spread_cpus(1) <= 2 and RB.spread_cpus(100) == 1


# ------------------------------------------------------------------------------ errors
@pytest.fixture
def no_ray(monkeypatch):
    """Simulate a machine without Ray: ``import ray`` fails."""
    monkeypatch.setitem(sys.modules, "ray", None)


def _one_line_error(err: str, prefix: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(prefix)


@pytest.mark.parametrize(
    "argv",
    [
        ["reproduce", "fig3", "--quick"],
        ["teach", "optimal", "--mdps", "2"],
        ["distill", "--method", "on_policy_distill", "--teacher", "x.npz"],
    ],
)
def test_missing_ray_is_one_line(no_ray, tmp_path, capsys, argv):
    status, _out, err = _cli(capsys, *argv, "--backend", "ray", "--out", str(tmp_path / "o"))
    assert status == 2
    _one_line_error(err, f"distill-grid {argv[0]}: error: ")
    assert "--backend ray needs Ray: pip install 'distillgrid[ray]'" in err
    assert not tmp_path.joinpath("o").exists()
    with pytest.raises(RB.RayUnavailableError, match="needs Ray"):
        RB.import_ray()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "dask"], "--backend must be local or ray, got 'dask'"),
        (["--ray-address", "auto"], "--ray-address needs --backend ray"),
        (["--backend", "ray", "--ray-address", ""], "--ray-address must be auto or HOST:PORT"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["reproduce", "fig3"],
        ["teach", "optimal", "--mdps", "2"],
        ["distill", "--method", "on_policy_distill", "--teacher", "x.npz"],
    ],
)
def test_bad_backend_arguments_are_one_line(tmp_path, capsys, command, argv, message):
    status, _, err = _cli(capsys, *command, *argv, "--out", str(tmp_path / "o"))
    assert status == 2
    _one_line_error(err, f"distill-grid {command[0]}: error: ")
    assert message in err


def test_teach_workers_with_an_address_is_refused(tmp_path, capsys):
    argv = ["teach", "optimal", "--backend", "ray", "--ray-address", "auto", "--workers", "2"]
    status, _, err = _cli(capsys, *argv, "--out", str(tmp_path / "o"))
    assert status == 2 and "--workers sets the CPUs of a local Ray instance" in err


# ------------------------------------------------------------------------------ own instance
@pytest.mark.slow
def test_command_starts_and_stops_its_own_ray_instance(tmp_path):
    pytest.importorskip("ray")
    base = [sys.executable, "-m", "distill_agents.cli", "teach", "optimal", "--mdps", "3"]
    base += ["--no-progress"]
    on_ray = [*base, "--backend", "ray", "--workers", "2", "--out", str(tmp_path / "ray")]
    done = subprocess.run(on_ray, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    local = [*base, "--workers", "1", "--out", str(tmp_path / "local")]
    done = subprocess.run(local, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    for name in ("teachers.npz", "teachers.csv"):
        a = tmp_path.joinpath("ray", name).read_bytes()
        assert a == tmp_path.joinpath("local", name).read_bytes()


def test_an_unreachable_address_is_found_before_ray_tries_for_minutes():
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert "refused" in RB.unreachable(f"127.0.0.1:{port}").lower()
    assert "refused" in RB.unreachable(f"ray://127.0.0.1:{port}").lower()
    assert RB.unreachable("127.0.0.1:x") == "the port must be a number, got 'x'"
    assert RB.unreachable("auto") is None  # left to Ray
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert RB.unreachable(f"127.0.0.1:{server.getsockname()[1]}") is None
