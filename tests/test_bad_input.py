"""Bad input, one test per row of the errors table in docs/errors.md (SPEC 7).

Each :class:`Case` is one row: the entry point, the bad input, the error (an exception class
name, ``exit 2`` for the command line, or ``note, recomputed``) and an excerpt of the message.
``test_bad_input`` runs the case and checks the error type, that the excerpt is in the message
and that the message is one line; for the command line also that stderr is exactly one line,
with no traceback. ``test_readme_table_matches_the_cases`` checks that docs/errors.md's table and
:data:`CASES` are the same rows, in the same order, so that they cannot drift apart.

Print the table with ``python tests/test_bad_input.py``; ``python scripts/errors_table.py --write``
puts it into the page.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import gridworld_env  # noqa: F401  (registers the ids)
from distill_agents import planning, reproduce
from distill_agents.cli import main as cli_main
from distill_agents.policy import TabularPolicy
from distill_agents.results import curve_rows, read_csv, write_csv
from distill_agents.storage import save_arrays
from distill_agents.teachers import Teachers, planned_teachers
from gridworld_env import TableIndexWrapper, chain_mdp
from gridworld_env.layout import generate_cells, parse_layout
from gridworld_env.vector import DistillChainVectorEnv, DistillGridVectorEnv

pytestmark = pytest.mark.filterwarnings("ignore:.*render_mode.*:UserWarning")

README = Path(__file__).resolve().parents[1] / "docs" / "errors.md"  # the errors table page
SECTION = "# Bad input: the errors table"
HEADER = "| Entry point | Bad input | Error | Message (excerpt) |"

Outcome = tuple[str, str]  # (error label, message)


@dataclass(frozen=True)
class Case:
    """One row of the README table and how to provoke it."""

    entry: str
    bad: str
    error: str
    excerpt: str
    run: Callable[[Any], Outcome]

    def row(self) -> str:
        return f"| {self.entry} | {self.bad} | {self.error} | `{self.excerpt}` |"


def _raises(fn: Callable[[Any], object]) -> Callable[[Any], Outcome]:
    def run(files: Any) -> Outcome:
        try:
            fn(files)
        except Exception as err:  # the type is what the case checks
            return type(err).__name__, str(err)
        return "no error", ""

    return run


def _cli(*argv: str | Callable[[Any], str]) -> Callable[[Any], Outcome]:
    def run(files: Any) -> Outcome:
        args = [a(files) if callable(a) else a for a in argv]
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                status = cli_main(args)
            except SystemExit as exc:  # argparse's own errors
                status = exc.code
        text = err.getvalue()
        assert "Traceback" not in text, text
        lines = text.splitlines()
        assert len(lines) == 1, f"stderr must be one line, got {text!r}"
        assert lines[0].startswith("distill-grid"), lines[0]
        return f"exit {status}", lines[0]

    return run


def _make(env_id: str, **kwargs: Any) -> Callable[[Any], Outcome]:
    return _raises(lambda _: gym.make(env_id, **kwargs))


def _step(env_id: str, action: Any, reset: bool = True, unwrapped: bool = False) -> Any:
    def fn(_: Any) -> None:
        env = gym.make(env_id)
        target = env.unwrapped if unwrapped else env
        if reset:
            env.reset(seed=0)
        target.step(action)

    return _raises(fn)


def _vec(cls: type = DistillGridVectorEnv, **kwargs: Any) -> Callable[[Any], Outcome]:
    return _raises(lambda _: cls(**kwargs))


def _vec_step(actions: Any, reset: bool = True) -> Callable[[Any], Outcome]:
    def fn(_: Any) -> None:
        envs = DistillGridVectorEnv(num_envs=2)
        if reset:
            envs.reset(seed=0)
        envs.step(np.asarray(actions))

    return _raises(fn)


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _piece_recomputed(files: Any) -> Outcome:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = reproduce.main([*files.repro_argv, "--out", str(files.repro)])
    assert status == 0, err.getvalue()
    notes = [line for line in err.getvalue().splitlines() if "recomputing" in line]
    return ("note, recomputed" if len(notes) == 1 else f"status {status}"), " ".join(notes)


GRID = '`gym.make("DistillGrid-v0", ...)`'
CHAIN = '`gym.make("DistillChain-v0", ...)`'
OSC = '`gym.make("DistillOscillation-v0", ...)`'
VEC = "`DistillGridVectorEnv(...)`"
MAP3 = ["#####", "#S.G#", "#####"]
CHAIN_MDP = chain_mdp()

CASES: list[Case] = [
    # ------------------------------------------------------------------ env kwargs
    Case(GRID, '`observation="rgb"`', "ValueError",
         "observation must be one of ('full', 'partial'), got 'rgb'",
         _make("DistillGrid-v0", observation="rgb")),
    Case(GRID, '`observation="partial", view_size=4`', "ValueError",
         "view_size must be odd (the agent sits in the centre), got 4",
         _make("DistillGrid-v0", observation="partial", view_size=4)),
    Case(GRID, "`n_actions=3`", "ValueError", "n_actions must be an integer >= 4, got 3",
         _make("DistillGrid-v0", n_actions=3)),
    Case(GRID, "`noise=1.5`", "ValueError", "noise must be in [0, 1], got 1.5",
         _make("DistillGrid-v0", noise=1.5)),
    Case(GRID, '`absorb_prob="high"`', "ValueError",
         "absorb_prob must be a number in [0, 1], got 'high'",
         _make("DistillGrid-v0", absorb_prob="high")),
    Case(GRID, "`width=2`", "ValueError", "width must be an integer >= 3, got 2",
         _make("DistillGrid-v0", width=2)),
    Case(GRID, "`layout_seed=-1`", "ValueError", "layout_seed must be an integer >= 0, got -1",
         _make("DistillGrid-v0", layout_seed=-1)),
    Case(GRID, "`width=7` with a 5-wide `layout`", "ValueError",
         "width=7 disagrees with the hand-written layout, which has width 5",
         _make("DistillGrid-v0", layout=MAP3, width=7)),
    Case(GRID, '`render_mode="rgb"`', "ValueError",
         "render_mode must be None or one of ['ansi', 'rgb_array'], got 'rgb'",
         _make("DistillGrid-v0", render_mode="rgb")),
    Case(GRID, "`colour=1` (unknown)", "TypeError",
         "DistillGridEnv got unknown keyword argument(s) 'colour'; accepted keyword arguments: "
         "width, height, observation",
         _make("DistillGrid-v0", colour=1)),
    Case(CHAIN, "`length=4`", "ValueError", "length must be an odd integer >= 3",
         _make("DistillChain-v0", length=4)),
    Case(CHAIN, "`n_actions=1`", "ValueError", "n_actions must be an integer >= 2",
         _make("DistillChain-v0", n_actions=1)),
    Case(CHAIN, "`noise=2`", "ValueError", "noise must be a number in [0, 1], got 2",
         _make("DistillChain-v0", noise=2)),
    Case(CHAIN, "`colour=1` (unknown)", "TypeError",
         "accepted keyword arguments: length, n_actions, noise, absorb_prob, render_mode",
         _make("DistillChain-v0", colour=1)),
    Case(OSC, '`render_mode="rgb_array"`', "ValueError",
         "render_mode must be None or one of ['ansi'], got 'rgb_array'",
         _make("DistillOscillation-v0", render_mode="rgb_array")),
    Case(OSC, "`length=3` (unknown)", "TypeError",
         "DistillOscillationEnv got unknown keyword argument(s) 'length'; accepted keyword "
         "arguments: render_mode",
         _make("DistillOscillation-v0", length=3)),
    # ------------------------------------------------------------------ actions
    Case("`env.step(action)`, DistillGrid-v0", "`4`", "ValueError",
         "action must be in [0, 4) (Discrete(4)), got 4", _step("DistillGrid-v0", 4)),
    Case("`env.step(action)`, DistillGrid-v0", '`"up"`', "ValueError",
         "action must be an integer in [0, 4) (Discrete(4)), got 'up'",
         _step("DistillGrid-v0", "up")),
    Case("`env.step(action)`, DistillGrid-v0", "`1.0`", "ValueError",
         "action must be an integer in [0, 4) (Discrete(4)), got 1.0",
         _step("DistillGrid-v0", 1.0)),
    Case("`env.step(action)`, DistillChain-v0", "`2`", "ValueError",
         "action must be in [0, 2) (Discrete(2)), got 2", _step("DistillChain-v0", 2)),
    Case("`env.step(action)`, DistillOscillation-v0", "`-1`", "ValueError",
         "action must be in [0, 2) (Discrete(2)), got -1", _step("DistillOscillation-v0", -1)),
    Case("`env.unwrapped.step(action)`", "`step` before `reset`", "RuntimeError",
         "step() called before reset(); call env.reset() first",
         _step("DistillGrid-v0", 0, reset=False, unwrapped=True)),
    Case("`env.step(action)` (made by `gym.make`)", "`step` before `reset`", "ResetNeeded",
         "Cannot call env.step() before calling env.reset()",
         _step("DistillGrid-v0", 0, reset=False)),
    # ------------------------------------------------------------------ layouts
    Case("`parse_layout(layout)`, `layout=` kwarg", "ragged rows", "LayoutError",
         "layout is ragged: row 0 has 5 characters but row 1 has 3",
         _raises(lambda _: parse_layout(["#####", "#S#", "#####"]))),
    Case("`parse_layout(layout)`, `layout=` kwarg", "unknown character", "LayoutError",
         "layout has unknown character '?' at row 1, column 2; accepted characters are "
         "'#.S-GgxX'",
         _make("DistillGrid-v0", layout=["#####", "#S?G#", "#####"])),
    Case("`parse_layout(layout)`, `layout=` kwarg", "no start `S`", "LayoutError",
         "layout must contain exactly one start 'S', found 0",
         _raises(lambda _: parse_layout(["#####", "#..G#", "#####"]))),
    Case("`parse_layout(layout)`, `layout=` kwarg", "two starts", "LayoutError",
         "layout must contain exactly one start 'S', found 2",
         _raises(lambda _: parse_layout(["#####", "#SSG#", "#####"]))),
    Case("`parse_layout(layout)`, `layout=` kwarg", "smaller than 3x3", "LayoutError",
         "layout must be at least 3x3, got 2x2", _raises(lambda _: parse_layout(["S.", "G."]))),
    Case("`parse_layout(layout)`, `layout=` kwarg", "one string, not a list", "LayoutError",
         "layout must be a non-empty list of equal-length strings, got '#S#'",
         _raises(lambda _: parse_layout("#S#"))),
    # ------------------------------------------------------------------ generator settings
    Case(GRID, "`wall_prob=0.99` (no path to +10)", "LayoutError",
         "no layout with a path from the start to a +10 cell after 100 draws",
         _make("DistillGrid-v0", wall_prob=0.99)),
    Case(GRID, '`reward_probs={"+10": 0}`', "LayoutError",
         "reward_probs['+10'] is 0, so no layout can have a path to a +10 cell",
         _make("DistillGrid-v0", reward_probs={"+10": 0})),
    Case(GRID, '`reward_probs={"+7": 0.1}`', "ValueError",
         "reward_probs has unknown key '+7'; accepted keys are ['+10', '+5', '-1', '-5', '-10']",
         _make("DistillGrid-v0", reward_probs={"+7": 0.1})),
    Case(GRID, '`reward_probs={"+10": 1.5}`', "ValueError",
         "reward_probs['+10'] must be in [0, 1], got 1.5",
         _make("DistillGrid-v0", reward_probs={"+10": 1.5})),
    Case(GRID, '`reward_probs={"-1": 0.99}`', "ValueError",
         "reward_probs must sum to at most 1 (one categorical draw per non-wall cell)",
         _make("DistillGrid-v0", reward_probs={"-1": 0.99})),
    Case(GRID, "`wall_prob=-0.1`", "ValueError", "wall_prob must be in [0, 1], got -0.1",
         _make("DistillGrid-v0", wall_prob=-0.1)),
    Case("`generate_cells(rng, width, height, ...)`", "`width=0`", "ValueError",
         "width must be an integer >= 1, got 0",
         _raises(lambda _: generate_cells(_rng(), 0, 5, 0.1, {}))),
    # ------------------------------------------------------------------ vector env
    Case(VEC, "`num_envs=0`", "ValueError", "num_envs must be an integer >= 1, got 0",
         _vec(num_envs=0)),
    Case(VEC, "both `layout` and `layouts`", "ValueError",
         "pass either layout (one shared map) or layouts (one per sub-env)",
         _vec(num_envs=2, layout=MAP3, layouts=[MAP3, MAP3])),
    Case(VEC, "`layouts` of the wrong length", "ValueError",
         "layouts must hold one map per sub-env: num_envs=3, got 2 maps",
         _vec(num_envs=3, layouts=[MAP3, MAP3])),
    Case(VEC, "a bad map in `layouts`", "LayoutError",
         "layouts[1]: layout has unknown character '?'",
         _vec(num_envs=2, layouts=[MAP3, ["#####", "#S?G#", "#####"]])),
    Case(VEC, '`observation="rgb"`', "ValueError",
         "observation must be one of ('full', 'partial', 'index', 'partial_index'), got 'rgb'",
         _vec(num_envs=2, observation="rgb")),
    Case(VEC, '`parallel="yes"`', "ValueError",
         "parallel must be None (automatic), True or False, got 'yes'",
         _vec(num_envs=2, parallel="yes")),
    Case(VEC, "`colour=1` (unknown)", "TypeError",
         "DistillGridVectorEnv got unknown keyword argument(s) 'colour'; accepted keyword "
         "arguments: num_envs, width",
         _vec(num_envs=2, colour=1)),
    Case("`DistillChainVectorEnv(...)`", "`length=4`", "ValueError",
         "length must be an odd integer >= 3", _vec(DistillChainVectorEnv, num_envs=2, length=4)),
    Case("`envs.reset(seed=...)`", "`seed=-1`", "ValueError",
         "seed must be None or a non-negative integer, got -1",
         _raises(lambda _: DistillGridVectorEnv(num_envs=2).reset(seed=-1))),
    Case("`envs.step(actions)`", "`step` before `reset`", "RuntimeError",
         "step() called before reset(); call envs.reset() first", _vec_step([0, 0], reset=False)),
    Case("`envs.step(actions)`", "3 actions for 2 sub-envs", "ValueError",
         "actions must be an integer array of shape (2,) with values in [0, 4), got shape (3,)",
         _vec_step([0, 0, 0])),
    Case("`envs.step(actions)`", "an action out of range", "ValueError",
         "actions must lie in [0, 4) (Discrete(4)), got actions[1] = 9", _vec_step([0, 9])),
    Case("`envs.step(actions)`", "float actions", "ValueError",
         "actions must be an integer array of shape (2,) with values in [0, 4), got dtype "
         "float64",
         _vec_step([0.5, 1.0])),
    # ------------------------------------------------------------------ wrappers
    Case("`TableIndexWrapper(env)`", "a grid drawn at `reset` (`layout_seed=None`)",
         "ValueError", "TableIndexWrapper needs a fixed layout to enumerate the observations",
         _raises(lambda _: TableIndexWrapper(gym.make("DistillGrid-v0", layout_seed=None)))),
    Case("`wrapper.obs_to_index(obs)`", "an observation the env cannot emit", "ValueError",
         "obs 999 is not an observation this environment can emit",
         _raises(lambda _: TableIndexWrapper(gym.make("DistillGrid-v0")).obs_to_index(999))),
    # ------------------------------------------------------------------ planning
    Case("`value_iteration(mdp, gamma)`", "`gamma=1.5`", "ValueError",
         "gamma must be in [0, 1], got 1.5",
         _raises(lambda _: planning.value_iteration(CHAIN_MDP, gamma=1.5))),
    Case("`policy_evaluation(mdp, policy)`", "policy of the wrong shape", "ValueError",
         "policy must have shape [S, A] = (12, 2), got (3, 2)",
         _raises(lambda _: planning.policy_evaluation(CHAIN_MDP, np.full((3, 2), 0.5)))),
    Case("`expected_return(mdp, policy)`", "rows that do not sum to 1", "ValueError",
         "policy rows must sum to 1 (probabilities over actions); the row at (0,) sums to 2.0",
         _raises(lambda _: planning.expected_return(CHAIN_MDP, np.ones((12, 2))))),
    Case("`softmax_policy(q_values, temperature)`", "`temperature=-1`", "ValueError",
         "temperature must be >= 0, got -1",
         _raises(lambda _: planning.softmax_policy(np.zeros((3, 2)), -1))),
    Case("`policy_kl(teacher_policy, student_policy)`", "shapes that differ", "ValueError",
         "teacher_policy and student_policy must have the same shape, got (3, 2) and (3, 3)",
         _raises(lambda _: planning.policy_kl(np.full((3, 2), 0.5), np.full((3, 3), 1 / 3)))),
    # ------------------------------------------------------------------ teacher files
    Case("`Teachers.load(path)`", "missing file", "FileFormatError", "missing.npz: no such file",
         _raises(lambda f: Teachers.load(f.dir / "missing.npz"))),
    Case("`Teachers.load(path)`", "truncated file", "FileFormatError",
         "truncated.npz: unreadable or truncated .npz file",
         _raises(lambda f: Teachers.load(f.truncated))),
    Case("`Teachers.load(path)`", "a pickled (object) array", "FileFormatError",
         "pickled.npz: refused (Object arrays cannot be loaded when allow_pickle=False)",
         _raises(lambda f: Teachers.load(f.pickled))),
    Case("`Teachers.load(path)`", "a plain `.npz` (not ours)", "FileFormatError",
         "plain.npz: not a DistillGrid file (no __meta__ entry); expected a 'teachers' file",
         _raises(lambda f: Teachers.load(f.plain))),
    Case("`Teachers.load(path)`", "a student's file", "FileFormatError",
         "policy.npz: holds 'tabular_policy', expected 'teachers'",
         _raises(lambda f: Teachers.load(f.policy))),
    Case("`Teachers.load(path)`", "another format version", "FileFormatError",
         "version99.npz: format_version 99, this version of the package reads 1",
         _raises(lambda f: Teachers.load(f.version99))),
    Case("`Teachers.load(path)`", "probabilities off the simplex", "FileFormatError",
         "invalid teachers (probs rows must sum to 1 (probabilities over actions); the row at "
         "(0, 0) sums to 2.0)",
         _raises(lambda f: Teachers.load(f.doubled))),
    Case("`Teachers.load(path)`", "a NaN in `probs`", "FileFormatError",
         "nan.npz: array 'probs' has non-finite values", _raises(lambda f: Teachers.load(f.nan))),
    Case("`Teachers.load(path)`", "arrays of mismatched shapes", "FileFormatError",
         "invalid teachers (n_indices must have shape [B] = (2,), got (1,))",
         _raises(lambda f: Teachers.load(f.mismatch))),
    Case("`Teachers.load(path)`", "`probs` of the wrong dtype", "FileFormatError",
         "array 'probs' has dtype int64, expected kind 'f'",
         _raises(lambda f: Teachers.load(f.int_probs))),
    # ------------------------------------------------------------------ student files
    Case("`TabularPolicy.load(path)`", "a teachers file", "FileFormatError",
         "teachers.npz: holds 'teachers', expected 'tabular_policy'",
         _raises(lambda f: TabularPolicy.load(f.teachers))),
    Case("`TabularPolicy.load(path)`", "truncated file", "FileFormatError",
         "unreadable or truncated .npz file",
         _raises(lambda f: TabularPolicy.load(f.policy_truncated))),
    Case("`TabularPolicy.load(path)`", "logits that disagree with the recorded sizes",
         "FileFormatError", "logits shape (3, 2) disagrees with the recorded sizes (4, 2)",
         _raises(lambda f: TabularPolicy.load(f.policy_mismatch))),
    # ------------------------------------------------------------------ results files
    Case("`read_csv(path)`", "missing file", "ResultsFormatError",
         "cannot read results file (No such file or directory)",
         _raises(lambda f: read_csv(f.dir / "missing.csv"))),
    Case("`read_csv(path)`", "another header", "ResultsFormatError",
         "line 1: header must be exactly figure,panel,method,iteration,metric,mean,ci_low,"
         "ci_high,n_mdps",
         _raises(lambda f: read_csv(f.csv_header))),
    Case("`read_csv(path)`", "cut mid-line", "ResultsFormatError",
         "the last line has no line end: the file is truncated (cut mid-line)",
         _raises(lambda f: read_csv(f.csv_cut))),
    Case("`read_csv(path)`", "cut at a line end (ragged grid)", "ResultsFormatError",
         "have different iterations (e.g. [10]); a truncated or edited file?",
         _raises(lambda f: read_csv(f.csv_ragged))),
    Case("`read_csv(path)`", "a mean outside its interval", "ResultsFormatError",
         "line 2: need ci_low <= mean <= ci_high", _raises(lambda f: read_csv(f.csv_mean))),
    Case("`read_csv(path)`", "a non-numeric field", "ResultsFormatError",
         "line 2: mean must be a number, got 'abc'", _raises(lambda f: read_csv(f.csv_text))),
    Case("`read_csv(path, sha256=...)`", "an edit that keeps the format", "ResultsFormatError",
         "SHA-256 digest does not match the recorded one",
         _raises(lambda f: read_csv(f.csv, sha256="0" * 64))),
    # ------------------------------------------------------------------ run state
    Case("`distill-grid reproduce` (same command again)", "a truncated piece in `DIR/.state`",
         "note, recomputed", "distill-grid reproduce: note: recomputing a damaged piece",
         _piece_recomputed),
    # ------------------------------------------------------------------ command line
    Case("`distill-grid`", "an unknown command", "exit 2",
         "argument command: invalid choice: 'frobnicate' (choose from", _cli("frobnicate")),
    Case("`distill-grid show`", "`--env Nope-v0`", "exit 2",
         "distill-grid show: error: --env Nope-v0 with --env-kwargs {}: Environment",
         _cli("show", "--env", "Nope-v0")),
    Case("`distill-grid show`", "`--env-kwargs '{bad'`", "exit 2",
         "--env-kwargs must be a JSON object: Expecting property name enclosed in double quotes",
         _cli("show", "--env-kwargs", "{bad")),
    Case("`distill-grid show`", "`--env-kwargs '[1]'`", "exit 2",
         "--env-kwargs must be a JSON object, got '[1]'", _cli("show", "--env-kwargs", "[1]")),
    Case("`distill-grid show`", "`--env-kwargs '{\"noise\": 2}'`", "exit 2",
         "noise must be in [0, 1], got 2.0", _cli("show", "--env-kwargs", '{"noise": 2}')),
    Case("`distill-grid show`", "`--seed x`", "exit 2", "argument --seed: invalid int value: 'x'",
         _cli("show", "--seed", "x")),
    Case("`distill-grid bench`", "`--bogus`", "exit 2", "unrecognized arguments: --bogus",
         _cli("bench", "--bogus")),
    Case("`distill-grid teach`", "`teleport`", "exit 2",
         "kind must be one of q_learning, a2c, optimal, adversarial; got 'teleport'",
         _cli("teach", "teleport")),
    Case("`distill-grid teach`", "`--mdps 0`", "exit 2", "--mdps must be an integer >= 1, got 0",
         _cli("teach", "optimal", "--mdps", "0")),
    Case("`distill-grid teach`", "`--noise 1`", "exit 2",
         "--noise must be a number in [0, 1), got 1.0", _cli("teach", "optimal", "--noise", "1")),
    Case("`distill-grid teach`", "`a2c --temperature 0.1`", "exit 2",
         "--temperature applies to q_learning, optimal and adversarial teachers",
         _cli("teach", "a2c", "--temperature", "0.1")),
    Case("`distill-grid teach`", "`--env-kwargs '{\"colour\": 1}'`", "exit 2",
         "got unknown keyword argument(s) 'colour'; accepted keyword arguments: width",
         _cli("teach", "optimal", "--env-kwargs", '{"colour": 1}')),
    Case("`distill-grid distill`", "no `--method`", "exit 2",
         "the following arguments are required: --method", _cli("distill", "--teacher", "x.npz")),
    Case("`distill-grid distill`", "`--method nope`", "exit 2",
         "method must be one of teacher_distill, teacher_distill+R",
         _cli("distill", "--method", "nope", "--teacher", lambda f: str(f.teachers))),
    Case("`distill-grid distill`", "`--teacher` missing file", "exit 2",
         "no such file (write one with distill-grid teach)",
         _cli("distill", "--method", "baseline", "--teacher", lambda f: str(f.dir / "no.npz"))),
    Case("`distill-grid distill`", "`--teacher` truncated file", "exit 2",
         "unreadable or truncated .npz file",
         _cli("distill", "--method", "baseline", "--teacher", lambda f: str(f.truncated))),
    Case("`distill-grid distill`", "`--teacher` a student's file", "exit 2",
         "holds 'tabular_policy', expected 'teachers'",
         _cli("distill", "--method", "baseline", "--teacher", lambda f: str(f.policy))),
    Case("`distill-grid distill`", "`--control bogus`", "exit 2",
         "control must be one of ['teacher', 'student', 'uniform', 'mixture', 'epsilon_teacher'], "
         "got 'bogus'",
         _cli("distill", "--method", "baseline", "--teacher", lambda f: str(f.teachers),
              "--control", "bogus")),
    Case("`distill-grid distill`", "`--iterations -1`", "exit 2",
         "--iterations must be an integer >= 0, got -1",
         _cli("distill", "--method", "baseline", "--teacher", lambda f: str(f.teachers),
              "--iterations", "-1")),
    Case("`distill-grid reproduce`", "`fig11`", "exit 2",
         "figure must be one of fig2, fig3, fig4, fig5, fig6, fig7, fig8, fig9, fig10, all; got "
         "'fig11'",
         _cli("reproduce", "fig11")),
    Case("`distill-grid reproduce`", "`--mdps 0`", "exit 2",
         "--mdps must be an integer >= 1, got 0", _cli("reproduce", "fig3", "--mdps", "0")),
    Case("`distill-grid reproduce`", "`--panels T=7`", "exit 2",
         "--panels: fig3 has no panel 'T=7'; its panels: T=0, T=0.01, T=0.1",
         _cli("reproduce", "fig3", "--panels", "T=7")),
    Case("`distill-grid reproduce`", "`--backend dask`", "exit 2",
         "--backend must be local or ray, got 'dask'",
         _cli("reproduce", "fig3", "--backend", "dask")),
    Case("`distill-grid reproduce`", "`--workers 0`", "exit 2",
         "--workers must be an integer >= 1, got 0", _cli("reproduce", "fig3", "--workers", "0")),
    Case("`distill-grid reproduce`", "`--out` an existing file", "exit 2",
         "exists and is not a directory",
         _cli("reproduce", "fig6", "--out", lambda f: str(f.csv))),
]  # fmt: skip


# ------------------------------------------------------------------------------ files
def _resave(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Copy an npz archive entry by entry, editing the dict of arrays (``__meta__`` too)."""
    with np.load(src, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    edit(arrays)
    np.savez(dst, **arrays)
    return dst


def _set_version(arrays: dict[str, Any]) -> None:
    header = json.loads(arrays["__meta__"].tobytes())
    header["format_version"] = 99
    arrays["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)


def _set(name: str, value: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    def edit(arrays: dict[str, Any]) -> None:
        arrays[name] = value(arrays[name])

    return edit


def _with_nan(probs: np.ndarray) -> np.ndarray:
    out = probs.copy()
    out[0, 0, 0] = np.nan
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Valid and damaged teacher, student, results and run-state files."""
    d = tmp_path_factory.mktemp("files")
    f = SimpleNamespace(dir=d)
    envs = gym.make_vec("DistillChain-v0", num_envs=2, vectorization_mode="vector_entry_point")
    teachers = planned_teachers(envs.models, env_id="DistillChain-v0", env_kwargs={})
    f.teachers = teachers.save(d / "teachers.npz")
    data = f.teachers.read_bytes()
    f.truncated = d / "truncated.npz"
    f.truncated.write_bytes(data[: len(data) // 2])
    f.pickled = _resave(f.teachers, d / "pickled.npz", _set("probs", lambda p: p.astype(object)))
    f.plain = d / "plain.npz"
    np.savez(f.plain, probs=np.asarray(teachers.probs))
    f.version99 = _resave(f.teachers, d / "version99.npz", _set_version)
    f.doubled = _resave(f.teachers, d / "doubled.npz", _set("probs", lambda p: 2 * p))
    f.nan = _resave(f.teachers, d / "nan.npz", _set("probs", _with_nan))
    f.mismatch = _resave(f.teachers, d / "mismatch.npz", _set("n_indices", lambda n: n[:1]))
    f.int_probs = _resave(f.teachers, d / "int_probs.npz", _set("probs", lambda p: p.astype(int)))

    f.policy = TabularPolicy(np.zeros((3, 2))).save(d / "policy.npz")
    policy_data = f.policy.read_bytes()
    f.policy_truncated = d / "policy_truncated.npz"
    f.policy_truncated.write_bytes(policy_data[:-40])
    f.policy_mismatch = save_arrays(
        d / "policy_mismatch.npz",
        "tabular_policy",
        {"logits": np.zeros((3, 2))},
        meta={"n_obs": 4, "n_actions": 2},
    )

    values = np.array([[1.0, 2.0], [1.5, 2.5], [0.5, 3.0]])
    rows = curve_rows("fig3", "T=0", "a", "return", np.array([0, 10]), values)
    rows += curve_rows("fig3", "T=0", "b", "return", np.array([0, 10]), values)
    f.csv = d / "results.csv"
    write_csv(f.csv, rows)
    text = f.csv.read_text()
    lines = text.splitlines(keepends=True)
    f.csv_header = d / "header.csv"
    f.csv_header.write_text(text.replace("figure,", "fig,", 1))
    f.csv_cut = d / "cut.csv"
    f.csv_cut.write_text(text[:-3])
    f.csv_ragged = d / "ragged.csv"
    f.csv_ragged.write_text("".join(lines[:-1]))
    fields = lines[1].rstrip("\n").split(",")
    high = float(fields[7])
    f.csv_mean = d / "mean.csv"
    f.csv_mean.write_text(lines[0] + ",".join([*fields[:5], repr(high + 1.0), *fields[6:]]) + "\n")
    f.csv_text = d / "text.csv"
    f.csv_text.write_text(lines[0] + ",".join([*fields[:5], "abc", *fields[6:]]) + "\n")

    # A tiny reproduce run whose first piece is then cut in half.
    f.repro = d / "repro"
    f.repro_argv = [
        *("fig6", "--mdps", "2", "--iterations", "10", "--eval-points", "1"),
        *("--panels", "length=11/optimal", "--no-progress", "--workers", "1"),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        assert reproduce.main([*f.repro_argv, "--out", str(f.repro)]) == 0
    piece = sorted(f.repro.joinpath(".state", "pieces").glob("*.npz"))[0]
    piece_data = piece.read_bytes()
    piece.write_bytes(piece_data[: len(piece_data) // 2])
    return f


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("case", CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_bad_input(case: Case, files: SimpleNamespace) -> None:
    label, message = case.run(files)
    assert label == case.error, f"{case.entry} {case.bad}: got {label}: {message}"
    assert case.excerpt in message, message
    assert "\n" not in message, message


def _readme_rows() -> list[str]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(SECTION)
    header = next(i for i in range(start, len(lines)) if lines[i] == HEADER)
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_readme_table_matches_the_cases() -> None:
    rows = _readme_rows()
    expected = [case.row() for case in CASES]
    assert len(set(expected)) == len(expected), "two cases give the same row"
    for case in CASES:
        assert "`" not in case.excerpt
        assert all("|" not in cell for cell in (case.entry, case.bad, case.error, case.excerpt))
    missing = [row for row in expected if row not in rows]
    extra = [row for row in rows if row not in expected]
    assert not missing and not extra, f"README rows missing: {missing}; not tested: {extra}"
    assert rows == expected  # same order too


def test_every_exception_row_names_a_real_error_type() -> None:
    """The error column is a class name the package or Gymnasium raises (or a CLI outcome)."""
    from distill_agents.results import ResultsFormatError
    from distill_agents.storage import FileFormatError
    from gridworld_env.layout import LayoutError

    known = {
        "ValueError": ValueError,
        "TypeError": TypeError,
        "RuntimeError": RuntimeError,
        "LayoutError": LayoutError,
        "FileFormatError": FileFormatError,
        "ResultsFormatError": ResultsFormatError,
        "ResetNeeded": gym.error.ResetNeeded,
    }
    for case in CASES:
        assert case.error in known or case.error in ("exit 2", "note, recomputed"), case.error
    # Every file and layout error is also a ValueError (one except clause catches bad input).
    for name in ("LayoutError", "FileFormatError", "ResultsFormatError"):
        assert issubclass(known[name], ValueError)


if __name__ == "__main__":
    sys.stdout.write(HEADER + "\n| --- | --- | --- | --- |\n")
    sys.stdout.write("".join(case.row() + "\n" for case in CASES))
