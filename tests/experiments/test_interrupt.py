"""Interrupting ``distill-grid reproduce`` for real, in a subprocess, and resuming it.

SPEC 7: an interrupted run (Ctrl-C, a killed process) resumes from its finished pieces and the
resumed run writes the bytes an uninterrupted run writes; a changed argument is detected and
never mixed with the old pieces; the same seed gives the same bytes in separate processes
(and with ``--workers 1`` or ``2``, i.e. pieces computed in spawned worker processes).

``fig3 --quick`` made smaller (6 MDPs, 150 iterations, 150 teacher episodes) still has 9
pieces (3 panels x 3 control policies), each about 0.15 s, after about 2.5 s of start-up and
teacher training: the test waits until a piece file appears in ``DIR/.state/pieces`` and
interrupts the process at once, while others are unfinished. Each process takes about 5 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill_agents.storage import load_arrays

COMMAND = [
    *(sys.executable, "-m", "distill_agents.cli", "reproduce", "fig3", "--quick"),
    *("--mdps", "6", "--iterations", "150", "--teacher-episodes", "150"),
]
N_PIECES = 9  # fig3: 3 panels x 3 curves, one piece each (6 MDPs)
TIMEOUT = 600.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DISTILL_GRID_NO_PROGRESS", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "--out", str(out), "--no-progress", *extra],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
        check=False,
    )


def _start(out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, "--out", str(out), "--no-progress", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _pieces(out: Path) -> list[Path]:
    # Only finished pieces: atomic_write's temporary files end in .tmp.
    return sorted(out.joinpath(".state", "pieces").glob("*.npz"))


def _wait_for_pieces(proc: subprocess.Popen[str], out: Path, at_least: int) -> None:
    """Poll until ``out`` holds ``at_least`` finished pieces (fail if the process ends first)."""
    deadline = time.monotonic() + TIMEOUT
    while len(_pieces(out)) < at_least:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(
                f"reproduce ended (status {proc.returncode}) before piece {at_least}: {err}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no piece {at_least} after {TIMEOUT} s")
        time.sleep(0.01)


def _summary(out: Path) -> dict:
    return json.loads(out.joinpath("fig3.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run in its own process (do not write into it)."""
    out = tmp_path_factory.mktemp("reference")
    done = _run(out)
    assert done.returncode == 0, done.stderr
    assert _summary(out)["pieces"] == {"total": N_PIECES, "reused": 0}
    return out


def test_sigint_then_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "run"

    # Ctrl-C once a piece is finished: one line on stderr, status 130, finished pieces kept.
    proc = _start(out)
    _wait_for_pieces(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "distill-grid reproduce: interrupted; finished pieces are kept (run the same command "
        "again to resume)"
    ], err
    assert not out.joinpath("fig3.csv").exists()
    after_sigint = _pieces(out)
    assert 1 <= len(after_sigint) < N_PIECES
    for path in after_sigint:  # every kept piece is a whole, valid file
        load_arrays(path, "reproduce_piece", {})

    # SIGKILL (no handler runs) once one more piece is finished.
    proc = _start(out)
    _wait_for_pieces(proc, out, len(after_sigint) + 1)
    proc.kill()
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    after_kill = _pieces(out)
    assert set(after_sigint) < set(after_kill)
    assert len(after_kill) < N_PIECES
    for path in after_kill:
        load_arrays(path, "reproduce_piece", {})

    # The same command again: reuses every finished piece, computes the rest, same bytes.
    done = _run(out)
    assert done.returncode == 0, done.stderr
    summary = _summary(out)
    assert summary["pieces"] == {"total": N_PIECES, "reused": len(after_kill)}
    assert out.joinpath("fig3.csv").read_bytes() == reference.joinpath("fig3.csv").read_bytes()
    assert summary["csv_sha256"] == _summary(reference)["csv_sha256"]
    # The env steps of pieces computed by the interrupted processes are still counted.
    assert summary["env_steps"] == _summary(reference)["env_steps"]


def test_changed_seed_is_detected_and_never_mixed(tmp_path, reference):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    done = _run(out, "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert "other settings (seed 0 -> 1)" in done.stderr and "kept but not used" in done.stderr
    assert _summary(out)["pieces"] == {"total": N_PIECES, "reused": 0}  # nothing of seed 0 used
    seed1 = out.joinpath("fig3.csv").read_bytes()
    assert seed1 != reference.joinpath("fig3.csv").read_bytes()
    # The old pieces were kept: going back to seed 0 reuses all of them, same bytes as before.
    done = _run(out)
    assert done.returncode == 0, done.stderr
    assert "other settings (seed 1 -> 0)" in done.stderr
    assert _summary(out)["pieces"] == {"total": N_PIECES, "reused": N_PIECES}
    assert out.joinpath("fig3.csv").read_bytes() == reference.joinpath("fig3.csv").read_bytes()


@pytest.mark.slow  # spawning the workers costs ~10 s; tests/test_reproduce.py checks it in-process
def test_another_process_with_two_workers_gives_identical_bytes(tmp_path, reference):
    """Determinism across processes: a fresh process whose pieces run in 2 spawned workers."""
    out = tmp_path / "run"
    done = _run(out, "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert _summary(out)["pieces"] == {"total": N_PIECES, "reused": 0}
    assert out.joinpath("fig3.csv").read_bytes() == reference.joinpath("fig3.csv").read_bytes()
    a, b = _summary(out), _summary(reference)
    assert a["csv_sha256"] == b["csv_sha256"] and a["analysis"] == b["analysis"]


_ORPHAN_PARENT = """
import concurrent.futures as cf
import multiprocessing as mp
import os
import time

from distill_agents.parallel.pool import init_worker

if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    pool = cf.ProcessPoolExecutor(
        2, mp_context=ctx, initializer=init_worker, initargs=(ctx.Queue(), 1)
    )
    list(pool.map(time.sleep, [0.5, 0.5]))  # both workers started
    pids = [p.pid for p in pool._processes.values()]
    print(" ".join(str(p) for p in pids), flush=True)
    os._exit(0)  # die without shutting the pools down, as a killed parent would
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has ended
    except FileNotFoundError:
        return True


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to see the workers")
def test_pool_workers_end_when_their_parent_dies(tmp_path):
    # Workers of the local process pool (reproduce's and teach's) wait on a queue they hold
    # open themselves: without a watch on their parent they would outlive a killed run forever.
    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_PARENT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.2)
    assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]
