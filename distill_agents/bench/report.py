"""Tables of the student benchmarks (:mod:`distill_agents.bench.students`, ``.actions``).

Each table prints as aligned text or, with ``markdown=True`` (``distill-grid bench
--markdown``), as a Markdown table to paste into the docs; :func:`provenance` is the line that
names what produced it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["format_actions", "format_students", "format_teachers", "markdown_table", "provenance"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (``|``-separated) of ``header`` and ``rows`` of cell texts."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def provenance(argv: Sequence[str]) -> str:
    """What produced a benchmark: the command, the code version and the machine."""
    import numba
    import numpy

    version = metadata.version("distillgrid")
    commit = _git_commit()
    code = f"distillgrid {version}" + (f" (commit {commit})" if commit else "")
    command = " ".join(["distill-grid bench", *argv])
    machine = f"{_cpu_name()}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}"
    software = (
        f"Python {platform.python_version()}, numpy {numpy.__version__}, numba {numba.__version__}"
    )
    return f"`{command}`; {code}; {machine}; {software}"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return (commit + (", modified" if dirty else "")) if commit else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or sys.platform


def format_students(
    out: dict[str, Any], fig3: dict[str, Any] | None = None, markdown: bool = False
) -> str:
    """The student runner's lines, as ``distill-grid bench --students`` prints them.

    Both loops against the reference loop, the Q-learning yardstick (and ``fig3``'s effective
    rate against it: a ``reproduce fig3`` JSON summary), and the cost per env-step for every
    action count; ``markdown``: the tables as Markdown.
    """
    ref = out["reference_steps_per_s"]
    title = (
        f"(c) students: {out['method']} on {out['n_mdps']} random 20x20 MDPs x "
        f"{out['iterations']} episodes (optimal teachers); ratios against a plain compiled loop "
        "doing the same updates, measured in the same run"
    )
    loops = [
        ("runner, vector-env loop", out["runner_steps_per_s"], out["ratio"], out["train_ratio"]),
        (
            "runner, compiled loop",
            out["compiled_steps_per_s"],
            out["compiled_ratio"],
            out["compiled_train_ratio"],
        ),
    ]
    same = f"same students in both loops: {out['compiled_same_students']}"
    if markdown:
        table = markdown_table(
            ["loop", "env-steps/s", "ratio", "training only"],
            [[n, f"{r:.3g}", f"{x:.2f}x", f"{t:.2f}x"] for n, r, x, t in loops]
            + [["plain compiled loop", f"{ref:.3g}", "1.00x", ""]],
        )
        lines = [title, "", table, "", same]
    else:
        lines = [title]
        lines += [
            f"  {n:<25}  {r:10.3g} env-steps/s   {x:.2f}x  (training only {t:.2f}x)"
            for n, r, x, t in loops
        ]
        lines += [f"  {'plain compiled loop':<25}  {ref:10.3g} env-steps/s   1.00x", f"  {same}"]
    q = out.get("q_learning")
    if q is not None:
        lines += [
            "",
            f"(d) plain compiled Q-learning (epsilon 0.1, lr 0.01) on the same MDPs, "
            f"{q['threads']} threads: {q['steps_per_s']:.3g} env-steps/s",
        ]
        if fig3 is not None:
            rate = fig3["env_steps"] / fig3["wall_seconds"]
            lines.append(
                f"  reproduce fig3 ({fig3['settings']['mdps']} MDPs x "
                f"{fig3['settings']['iterations']} iterations): {rate:.3g} env-steps/s, "
                f"{rate / q['steps_per_s']:.2f}x of it"
            )
    rows = out.get("actions", {}).get("rows", [])
    if rows:
        n, iters = out["actions"]["n_mdps"], out["actions"]["iterations"]
        lines += ["", format_actions(rows, n, iters, markdown)]
    return "\n".join(lines)


def format_actions(
    rows: Sequence[dict[str, Any]], n_mdps: int, iterations: int, markdown: bool = False
) -> str:
    """:func:`distill_agents.bench.actions.bench_actions` as a table.

    Nanoseconds per env-step, one column per action count, and the ratio of the largest count's
    to the smallest's; ``markdown``: as a Markdown table.
    """
    counts = sorted({r["n_actions"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], r["n_actions"]): r for r in rows}
    width = max(len(m) for m in methods)
    head = "".join(f"  {'|A|=' + str(a):>13}" for a in counts)
    title = (
        f"(e) training ns per env-step by action count ({n_mdps} random 20x20 MDPs x "
        f"{iterations} episodes, optimal teachers, compiled loop; in brackets: explicit "
        "actions per student row prepared)"
    )

    def ratio(m: str) -> float:
        return float(cell[m, counts[-1]]["ns_per_step"] / cell[m, counts[0]]["ns_per_step"])

    if markdown:
        table = markdown_table(
            ["method", *(f"\\|A\\|={a}" for a in counts), f"{counts[-1]}/{counts[0]}"],
            [
                [m, *(_action_cell(cell.get((m, a))).strip() for a in counts), f"{ratio(m):.1f}x"]
                for m in methods
            ],
        )
        lines = [title, "", table, ""]
    else:
        lines = [title, f"  {'method':<{width}}{head}  {counts[-1]}/{counts[0]}"]
        for m in methods:
            cells = "".join(_action_cell(cell.get((m, a))) for a in counts)
            lines.append(f"  {m:<{width}}{cells}  {ratio(m):.1f}x")
    setup = {
        a: max(r.get("setup_seconds_per_mdp", 0.0) for r in rows if r["n_actions"] == a)
        for a in counts
    }
    lines.append(
        "  table setup per MDP (not in the above; O(S A)): "
        + ", ".join(f"|A|={a} {1e3 * setup[a]:.2g} ms" for a in counts)
    )
    return "\n".join(lines)


def _action_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return f"  {'-':>13}"
    entries = f"({row['entries_per_row']:.0f})"
    return f"  {row['ns_per_step']:>6.0f} {entries:>6}"


def format_teachers(out: dict[str, Any], markdown: bool = False) -> str:
    """:func:`distill_agents.teachers.bench.bench_q_learning` as ``bench --teachers`` prints it.

    The teacher trainer (Q-learning through the vector env, in worker processes) against the
    plain compiled loop doing the same updates for the same episodes, by wall and by CPU time;
    ``markdown``: as a Markdown table.
    """
    title = (
        f"(f) Q-learning teachers on {out['n_mdps']} random 20x20 MDPs x {out['episodes']} "
        f"episodes; ratios against a plain compiled loop doing the same updates "
        f"(distill_agents.teachers.kernels.q_learning_reference), measured in the same run"
    )
    rows = [
        (
            f"teacher trainer, {_count(out['workers'], 'worker process', 'es')}",
            out["trainer_updates_per_s"],
            out["trainer_seconds"],
            out["trainer_cpu_seconds"],
            out["ratio"],
            out["ratio_cpu"],
        ),
        (
            f"plain compiled loop, {_count(out['reference_threads'], 'thread', 's')}",
            out["reference_steps_per_s"],
            out["reference_seconds"],
            out["reference_cpu_seconds"],
            1.0,
            1.0,
        ),
    ]
    if markdown:
        table = markdown_table(
            ["loop", "updates/s", "wall s", "CPU s", "ratio", "ratio (CPU)"],
            [
                [n, f"{r:.3g}", f"{w:.1f}", f"{c:.1f}", f"{x:.2f}x", f"{y:.2f}x"]
                for n, r, w, c, x, y in rows
            ],
        )
        return "\n".join([title, "", table])
    lines = [title]
    lines += [
        f"  {n:<34} {r:10.3g} updates/s  {w:7.1f} s  (CPU {c:.1f} s)  {x:.2f}x  (CPU {y:.2f}x)"
        for n, r, w, c, x, y in rows
    ]
    return "\n".join(lines)


def _count(n: int, noun: str, plural: str) -> str:
    return f"{n} {noun}{'' if n == 1 else plural}"
