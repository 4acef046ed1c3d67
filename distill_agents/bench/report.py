"""Text tables of the student benchmarks (:mod:`distill_agents.bench.students`, ``.actions``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_actions", "format_students"]


def format_students(out: dict[str, Any], fig3: dict[str, Any] | None = None) -> str:
    """The student runner's lines, as ``distill-grid bench --students`` prints them.

    Both loops against the reference loop, the Q-learning yardstick (and ``fig3``'s effective
    rate against it: a ``reproduce fig3`` JSON summary), and the cost per env-step for every
    action count.
    """
    ref = out["reference_steps_per_s"]
    lines = [
        f"(c) students: {out['method']} on {out['n_mdps']} random 20x20 MDPs x "
        f"{out['iterations']} episodes (optimal teachers); ratios against a plain compiled loop "
        "doing the same updates, measured in the same run",
        f"  runner, vector-env loop    {out['runner_steps_per_s']:10.3g} env-steps/s   "
        f"{out['ratio']:.2f}x  (training only {out['train_ratio']:.2f}x)",
        f"  runner, compiled loop      {out['compiled_steps_per_s']:10.3g} env-steps/s   "
        f"{out['compiled_ratio']:.2f}x  (training only {out['compiled_train_ratio']:.2f}x)",
        f"  plain compiled loop        {ref:10.3g} env-steps/s   1.00x",
        f"  same students in both loops: {out['compiled_same_students']}",
    ]
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
        lines += ["", format_actions(rows, out["actions"]["n_mdps"], out["actions"]["iterations"])]
    return "\n".join(lines)


def format_actions(rows: Sequence[dict[str, Any]], n_mdps: int, iterations: int) -> str:
    """:func:`distill_agents.bench.actions.bench_actions` as a table.

    Nanoseconds per env-step, one column per action count, and the ratio of the largest count's
    to the smallest's.
    """
    counts = sorted({r["n_actions"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], r["n_actions"]): r for r in rows}
    width = max(len(m) for m in methods)
    head = "".join(f"  {'|A|=' + str(a):>13}" for a in counts)
    lines = [
        f"(e) training ns per env-step by action count ({n_mdps} random 20x20 MDPs x "
        f"{iterations} episodes, optimal teachers, compiled loop; in brackets: explicit "
        "actions per student row prepared)",
        f"  {'method':<{width}}{head}  {counts[-1]}/{counts[0]}",
    ]
    for m in methods:
        cells = "".join(_action_cell(cell.get((m, a))) for a in counts)
        ratio = cell[m, counts[-1]]["ns_per_step"] / cell[m, counts[0]]["ns_per_step"]
        lines.append(f"  {m:<{width}}{cells}  {ratio:.1f}x")
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
