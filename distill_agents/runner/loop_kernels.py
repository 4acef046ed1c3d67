"""Compiled (numba) kernels of the batched student runner (:mod:`distill_agents.runner`).

:func:`advance` is called once per vector-env ``step`` (and once after ``reset``): for every
sub-env it records the transition in the sub-env's episode buffer, applies the method's
episode update (:func:`distill_agents.updates.row_update.episode_update_tables`, the kernel the
single-env :func:`~distill_agents.distill` uses) to the sub-env's MDP when the episode has
ended, takes an evaluation snapshot of the student at the iterations asked for, and draws the
next action of the control policy (:func:`~distill_agents.updates.rows.draw_action`) from the
MDP's own stream of uniforms.

:func:`fill_env_uniforms` writes each sub-env's column of the vector env's block of uniforms
from its MDP's own stream (see :class:`distill_agents.runner.PerMDPUniforms`).

:func:`run_mdps` is the runner's compiled loop (``run_distillation(..., loop="compiled")``): the
same work as :func:`advance` and the vector env's step kernel, one MDP at a time, with the same
uniforms, so it gives the same students bit for bit without a Python round trip per step. Each
distinct row of an episode is prepared once (at its first visit when the control policy draws
from the student) and serves the draws and the update, so a step costs O(1) plus an
O(log A) draw, and a row O(its explicit actions) per episode (:mod:`distill_agents.updates.rows`).

:func:`reference_loop` is the plain compiled loop the benchmark compares against: one function
that samples every MDP's episodes straight from the vector env's outcome tables (the same
records its step kernel reads) and applies the same update kernel.

The tables travel as typed records: :class:`EnvTables`, :class:`Streams`, :class:`Schedule`,
:class:`Episode`, :class:`ChunkTables`, :class:`VectorStep`, :class:`Snapshots`, the update's
:class:`~distill_agents.updates.records.MethodParams` and
:class:`~distill_agents.updates.records.EpisodeSteps`, and the row kernels' ``TeacherTable`` /
``StudentTable`` / ``RowWork``. The teachers and students of a chunk are *stacked* tables: each
field has two leading axes ``[G, B]`` (group member, MDP), and :func:`member_teacher` /
:func:`member_student` take one student's view.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from distill_agents.methods import CONTROL_MIXTURE, CONTROL_STUDENT
from distill_agents.numerics import loop_kernel
from distill_agents.updates.records import EpisodeSteps, MethodParams
from distill_agents.updates.row_update import (
    episode_update_tables,
    prepare_episode_rows,
    update_student,
)
from distill_agents.updates.rows import (
    RowWork,
    StudentTable,
    TeacherTable,
    draw_action,
    has_policy_gradient,
    prepare_row,
    split_taken,
)
from gridworld_env.outcomes import next_uniform, sample_outcome, start_state

__all__ = [
    "ACT_PTR",
    "DONE",
    "ENV_USED",
    "EP_LEN",
    "EVENT_EVAL",
    "EVENT_FINISHED",
    "EVENT_NONE",
    "EVENT_REFILL",
    "MDP",
    "N_MDP_FIELDS",
    "N_SUB_FIELDS",
    "RESETTING",
    "RUNNING",
    "STATUS",
    "STEPS",
    "STOPPED",
    "ChunkTables",
    "EnvTables",
    "Episode",
    "EpisodeSteps",
    "MethodParams",
    "Schedule",
    "Snapshots",
    "Streams",
    "VectorStep",
    "advance",
    "fill_env_uniforms",
    "member_student",
    "member_teacher",
    "reference_loop",
    "run_mdps",
]

# Columns of the per-sub-env int64 state ``sub [Bp, N_SUB_FIELDS]``.
MDP = 0  #: chunk-local index of the MDP the sub-env runs
STATUS = 1  #: RUNNING, RESETTING or STOPPED
EP_LEN = 2  #: steps of the current episode so far
N_SUB_FIELDS = 3

#: The env stepped the sub-env with ``actions[j]`` in this call.
RUNNING = 0
#: The sub-env's episode ended in the previous call: this call (re)set it (autoreset or reset).
RESETTING = 1
#: The sub-env is not used any more in this vector env (its MDP finished, or waits for the
#: next vector env); the env keeps stepping it and the runner ignores it.
STOPPED = 2

# Columns of the per-MDP int64 state ``mdp_state [b, N_MDP_FIELDS]``.
DONE = 0  #: training episodes (iterations) completed
ENV_USED = 1  #: uniforms of the MDP's environment stream consumed so far
ACT_PTR = 2  #: next unused entry of the MDP's row of action uniforms
STEPS = 3  #: environment steps taken (resets not counted)
N_MDP_FIELDS = 4

_FILL = 0.5  # uniform handed to stopped sub-envs (never read by the runner)


class EnvTables(NamedTuple):
    """The vector env's tables read by the compiled loops (``VectorEnv.outcome_tables``).

    Attributes:
        outcomes: ``[B, S, K, W]`` packed outcome records.
        action_rows: ``[A]`` action -> row.
        terminal: ``[B, S]``.
        initial_cum: ``[B, S]`` cumulative start distributions.
        key_of_state: ``[B, S]`` table index of each state (-1: none, the previous is kept).
        max_steps: the time limit (``max_episode_steps``, ``>= 1``).
    """

    outcomes: NDArray
    action_rows: NDArray[np.int64]
    terminal: NDArray[np.bool_]
    initial_cum: NDArray[np.float64]
    key_of_state: NDArray[np.int64]
    max_steps: int


class Streams(NamedTuple):
    """Each MDP's uniforms and counters.

    Attributes:
        mdp_state: ``[B, N_MDP_FIELDS]`` per-MDP counters (updated).
        env_buf: ``[B, LE]`` environment uniforms.
        env_base: ``[B]`` stream index of ``env_buf[m, 0]``.
        act_buf: ``[B, LA]`` action uniforms (from ``ACT_PTR`` on).
    """

    mdp_state: NDArray[np.int64]
    env_buf: NDArray[np.float64]
    env_base: NDArray[np.int64]
    act_buf: NDArray[np.float64]


class Schedule(NamedTuple):
    """How long each MDP trains, where it is evaluated, and who controls.

    Attributes:
        n_iter: training episodes per MDP.
        eval_index: ``[n_iter + 1]`` evaluation point after that many episodes, or -1.
        beta_table: ``[n_iter]`` teacher weight of the mixture control per iteration.
        control: control policy code (:data:`distill_agents.methods.CONTROLS`).
    """

    n_iter: int
    eval_index: NDArray[np.int64]
    beta_table: NDArray[np.float64]
    control: int


class Episode(NamedTuple):
    """Episode buffers (``[Bp, ...]`` per sub-env in the vector loop, one row in the others).

    Attributes:
        obs: ``[..., T + 1]`` table-index observations.
        actions: ``[..., T]``.
        rewards: ``[..., T]``.
    """

    obs: NDArray[np.int64]
    actions: NDArray[np.int64]
    rewards: NDArray[np.float64]


class ChunkTables(NamedTuple):
    """The stacked tables of a chunk's students (two leading axes ``[G, B]``: member, MDP).

    Attributes:
        teachers: stacked ``[G, B, ...]`` teachers (with their draw tables for the controls
            that follow the teacher).
        students: stacked ``[G, B, ...]`` students, updated in place.
        critic: ``[G, B, N]`` float64 student critics, updated in place.
    """

    teachers: TeacherTable
    students: StudentTable
    critic: NDArray[np.float64]


class VectorStep(NamedTuple):
    """One ``step`` (or ``reset``) result of the vector env and its actions (``[Bp]`` each).

    Attributes:
        obs: int64 table-index observations returned by the env.
        rewards: float64.
        terminations: bool.
        truncations: bool.
        actions: int64 in: the actions the env was stepped with; out: the next actions (0 for
            stopped and resetting sub-envs, whose action the env ignores).
    """

    obs: NDArray[np.int64]
    rewards: NDArray[np.float64]
    terminations: NDArray[np.bool_]
    truncations: NDArray[np.bool_]
    actions: NDArray[np.int64]


class Snapshots(NamedTuple):
    """Copies of students taken at evaluation points, waiting for their evaluation.

    Attributes:
        students: ``[P, ...]`` stacked snapshot slots of students.
        pending: ``[P, 2]`` int64 (MDP, evaluation point) of each taken snapshot.
    """

    students: StudentTable
    pending: NDArray[np.int64]


@njit(inline="always")
def member_teacher(t: TeacherTable, g: int, m: int) -> TeacherTable:  # pragma: no cover
    """Member ``g``'s teacher of MDP ``m`` in a stacked ``[G, B, ...]`` teacher table."""
    return TeacherTable(
        t.probs[g, m], t.logp[g, m], t.values[g, m], t.weights[g, m], t.bulk_probs[g, m],
        t.bulk_logp[g, m], t.cum[g, m], t.last[g, m],
    )  # fmt: skip


@njit(inline="always")
def member_student(s: StudentTable, g: int, m: int) -> StudentTable:  # pragma: no cover
    """Member ``g``'s student of MDP ``m`` in a stacked ``[G, B, ...]`` student table."""
    return StudentTable(s.logits[g, m], s.bulk[g, m], s.n_explicit[g, m], s.explicit[g, m])


@njit(inline="always")
def _snapshot(s: StudentTable, out: StudentTable, i: int) -> None:  # pragma: no cover
    """Copy the student into entry ``i`` of the stacked ``out`` (element by element: no NRT)."""
    n_obs, n_actions = s.logits.shape
    for o in range(n_obs):
        out.bulk[i, o] = s.bulk[o]
        out.n_explicit[i, o] = s.n_explicit[o]
        for j in range(n_actions):
            out.logits[i, o, j] = s.logits[o, j]
        for j in range(s.explicit.shape[1]):
            out.explicit[i, o, j] = s.explicit[o, j]


@njit(inline="always")
def _record_step(
    step: VectorStep, j: int, sub: NDArray[np.int64], episode: Episode, mdp_state: NDArray
) -> int:  # pragma: no cover - compiled
    """Append sub-env ``j``'s transition to its episode buffer; its new length ``t``."""
    t = sub[j, EP_LEN]
    episode.actions[j, t] = step.actions[j]
    episode.rewards[j, t] = step.rewards[j]
    episode.obs[j, t + 1] = step.obs[j]
    t += 1
    sub[j, EP_LEN] = t
    mdp_state[sub[j, MDP], STEPS] += 1
    return t


@njit(inline="always")
def _end_episode(
    j: int,
    sub: NDArray[np.int64],
    drain: bool,
    streams: Streams,
    schedule: Schedule,
    sm: StudentTable,
    snapshots: Snapshots,
    n_pending: int,
) -> int:  # pragma: no cover - compiled
    """Count sub-env ``j``'s finished episode, snapshot at an evaluation point, stop or reset.

    Returns:
        The new number of snapshots.
    """
    m = sub[j, MDP]
    mdp_state = streams.mdp_state
    done = mdp_state[m, DONE] + 1
    mdp_state[m, DONE] = done
    e = schedule.eval_index[done]
    if e >= 0:
        _snapshot(sm, snapshots.students, n_pending)
        snapshots.pending[n_pending, 0] = m
        snapshots.pending[n_pending, 1] = e
        n_pending += 1
    sub[j, STATUS] = STOPPED if done >= schedule.n_iter or drain else RESETTING
    return n_pending


@njit(inline="always")
def _next_action(
    step: VectorStep,
    j: int,
    m: int,
    streams: Streams,
    schedule: Schedule,
    tm: TeacherTable,
    sm: StudentTable,
    work: RowWork,
) -> bool:  # pragma: no cover - compiled
    """Draw sub-env ``j``'s next action from MDP ``m``'s next action uniform.

    Returns:
        True if that used up the MDP's action uniforms (the caller refills them).
    """
    mdp_state = streams.mdp_state
    ptr = mdp_state[m, ACT_PTR]
    u = streams.act_buf[m, ptr]
    ptr += 1
    mdp_state[m, ACT_PTR] = ptr
    beta = schedule.beta_table[mdp_state[m, DONE]]
    step.actions[j] = draw_action(schedule.control, beta, tm, sm, step.obs[j], work, 0, u, False)
    return ptr == streams.act_buf.shape[1]


@loop_kernel
def advance(
    obs: NDArray[np.int64],
    rewards: NDArray[np.float64],
    terminations: NDArray[np.bool_],
    truncations: NDArray[np.bool_],
    actions: NDArray[np.int64],
    sub: NDArray[np.int64],
    drain: bool,
    episode: Episode,
    streams: Streams,
    schedule: Schedule,
    teachers: TeacherTable,
    students: StudentTable,
    critic: NDArray[np.float64],
    method: MethodParams,
    work: RowWork,
    snap_students: StudentTable,
    pending: NDArray[np.int64],
    n_pending: int,
) -> tuple[int, int, int, int]:  # pragma: no cover - compiled; tested through the runner
    """Process one ``step`` (or ``reset``) result of the vector env and pick the next actions.

    Called once per ``step``, so its arguments are the plain arrays and flat records (the
    kernel builds its :class:`VectorStep`, :class:`ChunkTables` and :class:`Snapshots`): numba
    types nested records argument by argument in Python at every call, which measured 10%
    slower per env-step on 50 sub-envs.

    Args:
        obs: ``[Bp]`` table-index observations returned by the env.
        rewards: ``[Bp]``.
        terminations: ``[Bp]``.
        truncations: ``[Bp]``.
        actions: ``[Bp]`` in: the actions the env was stepped with; out: the next actions
            (0 for stopped and resetting sub-envs, whose action the env ignores).
        sub: ``[Bp, N_SUB_FIELDS]`` per-sub-env state (see the module constants).
        drain: start no new episodes (sub-envs whose episode ends are stopped).
        episode: ``[Bp, ...]`` episode buffers of the sub-envs.
        streams: the MDPs' counters and action uniforms (``env_buf`` is not read here).
        schedule: iterations, evaluation points, mixture weights, control.
        teachers: stacked ``[1, b, ...]`` teachers (with their draw tables for teacher and
            mixture control).
        students: stacked ``[1, b, ...]`` students, updated in place.
        critic: ``[1, b, N]`` student critics, updated in place.
        method: the method.
        work: the update workspace.
        snap_students: ``[P, ...]`` snapshot slots of students; entries ``n_pending..`` are
            free.
        pending: ``[P, 2]`` (MDP, evaluation point) of each taken snapshot.
        n_pending: snapshots taken so far (the caller guarantees ``n_pending + Bp <= P``).

    Returns:
        ``(running, refills, episodes, n_pending)``: sub-envs still in use, MDPs whose action
        uniforms are used up (the caller refills them), episodes completed in this call, and
        the new number of snapshots.
    """
    step = VectorStep(obs, rewards, terminations, truncations, actions)
    tables = ChunkTables(teachers, students, critic)
    snapshots = Snapshots(snap_students, pending)
    mdp_state = streams.mdp_state
    running = 0
    refills = 0
    episodes = 0
    for j in range(obs.shape[0]):
        status = sub[j, STATUS]
        if status == STOPPED:
            step.actions[j] = 0
            continue
        m = sub[j, MDP]
        tm = member_teacher(tables.teachers, 0, m)
        sm = member_student(tables.students, 0, m)
        mdp_state[m, ENV_USED] += 1
        if status == RESETTING:
            sub[j, EP_LEN] = 0
            episode.obs[j, 0] = step.obs[j]
            sub[j, STATUS] = RUNNING
        else:
            t = _record_step(step, j, sub, episode, mdp_state)
            term = step.terminations[j]
            if term or step.truncations[j]:
                ep_obs = episode.obs[j, : t + 1]
                episode_update_tables(
                    ep_obs, ep_obs, episode.actions[j, :t], episode.rewards[j, :t], term, tm, sm,
                    tables.critic[0, m], method.coef, method.codes, method.lr, method.gamma, work,
                )  # fmt: skip
                episodes += 1
                n_pending = _end_episode(j, sub, drain, streams, schedule, sm, snapshots, n_pending)
                step.actions[j] = 0
                if sub[j, STATUS] == RESETTING:
                    running += 1
                continue
        running += 1
        if _next_action(step, j, m, streams, schedule, tm, sm, work):
            refills += 1
    return running, refills, episodes, n_pending


@njit(cache=True)
def fill_env_uniforms(
    out: NDArray[np.float64],
    sub: NDArray[np.int64],
    mdp_state: NDArray[np.int64],
    env_buf: NDArray[np.float64],
    env_base: NDArray[np.int64],
) -> None:  # pragma: no cover - compiled
    """Fill the vector env's ``[R, Bp]`` block: column ``j`` from its MDP's own stream.

    Sub-env ``j`` running MDP ``m`` gets the uniforms ``ENV_USED[m], ENV_USED[m] + 1, ...`` of
    ``m``'s stream (``env_buf[m]`` holds the stream from index ``env_base[m]`` on; the caller
    makes sure ``R`` of them are there); stopped sub-envs get a constant.
    """
    n_rows = out.shape[0]
    for j in range(out.shape[1]):
        if sub[j, STATUS] == STOPPED:
            for r in range(n_rows):
                out[r, j] = _FILL
            continue
        m = sub[j, MDP]
        offset = mdp_state[m, ENV_USED] - env_base[m]
        for r in range(n_rows):
            out[r, j] = env_buf[m, offset + r]


@loop_kernel
def reference_loop(
    env: EnvTables,
    seeds: NDArray[np.uint64],
    state: NDArray[np.uint64],
    n_iter: int,
    control: int,
    beta: float,
    teachers: TeacherTable,
    students: StudentTable,
    critic: NDArray[np.float64],
    method: MethodParams,
    work: RowWork,
    episode: Episode,
    steps: NDArray[np.int64],
) -> None:  # pragma: no cover - compiled; the benchmark's yardstick
    """The plain compiled loop: every MDP's episodes straight from the outcome tables.

    Per MDP, ``n_iter`` times: draw a start state from ``initial_cum``, then step the outcome
    records (:mod:`gridworld_env.kernels` layout: outcomes sorted, cumulative ``cum``, the
    first record with ``cum > u`` is taken) with actions of the control policy (each drawn
    from its row prepared afresh) until a terminal state or ``max_steps``, then the update
    (:func:`~distill_agents.updates.row_update.episode_update_tables`). Uniforms come from a
    SplitMix64 stream per MDP seeded by ``seeds`` (``state [1]``: the stream's state);
    ``teachers``/``students``/``critic`` are stacked ``[1, B, ...]``. ``steps[m]`` counts the
    environment steps. (Compiled without reference counting, as :func:`run_mdps`.)
    """
    n_mdps = env.outcomes.shape[0]
    max_steps = env.max_steps
    ep_obs, ep_act, ep_rew = episode.obs, episode.actions, episode.rewards
    for m in range(n_mdps):
        tm = member_teacher(teachers, 0, m)
        sm = member_student(students, 0, m)
        state[0] = seeds[m]
        total = 0
        for _ in range(n_iter):
            s = start_state(env.initial_cum[m], next_uniform(state))
            ep_obs[0] = env.key_of_state[m, s]
            t = 0
            term = False
            while t < max_steps:
                o = ep_obs[t]
                a = draw_action(control, beta, tm, sm, o, work, 0, next_uniform(state), False)
                s, reward, key = sample_outcome(
                    env.outcomes, m, s, env.action_rows[a], next_uniform(state)
                )
                ep_act[t] = a
                ep_rew[t] = reward
                ep_obs[t + 1] = key if key >= 0 else o
                t += 1
                if env.terminal[m, s]:
                    term = True
                    break
            total += t
            episode_update_tables(
                ep_obs[: t + 1], ep_obs[: t + 1], ep_act[:t], ep_rew[:t], term, tm, sm,
                critic[0, m], method.coef, method.codes, method.lr, method.gamma, work,
            )  # fmt: skip
        steps[m] = total


#: :func:`run_mdps` events, per MDP.
EVENT_NONE = 0  #: the MDP had finished before the call
EVENT_EVAL = 1  #: the MDP stopped at an evaluation point (its logits are that point's)
EVENT_REFILL = 2  #: the MDP stopped because one of its uniform buffers runs low
EVENT_FINISHED = 3  #: the MDP completed its last iteration (not an evaluation point)


@njit(inline="always")
def _has_actions(n: int, tables: ChunkTables, work: RowWork) -> bool:  # pragma: no cover
    """Every ``[..., A]`` array :func:`run_mdps` loops over has ``A == n``."""
    return (
        tables.teachers.probs.shape[-1] == n
        and tables.teachers.logp.shape[-1] == n
        and tables.students.logits.shape[-1] == n
        and work.exps.shape[-1] == n
        and work.cum.shape[-1] == n
        and work.extra.shape[-1] == n
    )


@njit(inline="always")
def _has_room(streams: Streams, m: int, limit: int) -> bool:  # pragma: no cover - compiled
    """A whole episode of MDP ``m`` fits in what is left of its uniform buffers."""
    e = streams.mdp_state[m, ENV_USED] - streams.env_base[m]
    p = streams.mdp_state[m, ACT_PTR]
    return streams.env_buf.shape[1] - e >= limit + 1 and streams.act_buf.shape[1] - p >= limit


@njit(inline="always")
def _visit_row(
    s0: StudentTable, o: int, work: RowWork, n_rows: int
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Row ``o``'s workspace row, prepared at its first visit: ``(row, n_rows)``."""
    row = work.slot[o]
    if row < 0:
        row = n_rows
        work.slot[o] = row
        work.row_obs[row] = o
        work.row_key[row] = o
        prepare_row(s0, o, work, row)
        n_rows += 1
    return row, n_rows


@njit(inline="always")
def _sample_episode(
    env: EnvTables,
    streams: Streams,
    m: int,
    beta: float,
    control: int,
    t0: TeacherTable,
    s0: StudentTable,
    work: RowWork,
    episode: Episode,
) -> tuple[int, bool, int]:  # pragma: no cover - compiled
    """One episode of MDP ``m`` from its streams into ``episode``: ``(T, terminated, n_rows)``.

    The rows of the student's draws are prepared while stepping when ``control`` draws from
    the student (``n_rows`` of them), else not at all (``n_rows = 0``). The MDP's counters
    (``ENV_USED``, ``ACT_PTR``, ``STEPS``) advance.
    """
    mdp_state, env_buf, env_base, act_buf = streams
    ep_obs, ep_act, ep_rew = episode
    rows_while_stepping = control in (CONTROL_STUDENT, CONTROL_MIXTURE)
    limit = env.max_steps
    e = mdp_state[m, ENV_USED] - env_base[m]
    p = mdp_state[m, ACT_PTR]
    s = start_state(env.initial_cum[m], env_buf[m, e])
    e += 1
    ep_obs[0] = env.key_of_state[m, s]
    t = 0
    n_rows = 0
    term = False
    while True:
        o = ep_obs[t]
        row = 0
        if rows_while_stepping:
            row, n_rows = _visit_row(s0, o, work, n_rows)
        if t == limit:  # truncated: the row of the last observation is needed too
            break
        a = draw_action(control, beta, t0, s0, o, work, row, act_buf[m, p], rows_while_stepping)
        p += 1
        s, reward, key = sample_outcome(env.outcomes, m, s, env.action_rows[a], env_buf[m, e])
        e += 1
        ep_act[t] = a
        ep_rew[t] = reward
        ep_obs[t + 1] = key if key >= 0 else o
        t += 1
        if env.terminal[m, s]:
            term = True
            break
    mdp_state[m, ENV_USED] = e + env_base[m]
    mdp_state[m, ACT_PTR] = p
    mdp_state[m, STEPS] += t
    return t, term, n_rows


@njit(inline="always")
def _update_group(
    episode: Episode,
    t: int,
    term: bool,
    n_rows: int,
    m: int,
    tables: ChunkTables,
    method: MethodParams,
    work: RowWork,
    rows_while_stepping: bool,
    split: bool,
    t0: TeacherTable,
    s0: StudentTable,
) -> None:  # pragma: no cover - compiled
    """The update of each student of MDP ``m``'s group from the same episode of ``T = t``.

    The rows are those prepared while stepping (``rows_while_stepping``, ``n_rows`` of them;
    a group of one), else prepared here for each student. ``split``: make the taken actions
    explicit first (decided once per call). ``t0`` / ``s0`` are member 0's teacher and student
    of MDP ``m``, the views the episode was drawn with. (Taking fresh views of member 0 and
    deciding ``split`` per episode measured 10-18% slower at 40 actions.)
    """
    students = tables.students
    ep_obs, ep_act, ep_rew = episode
    n_idx = t if term else t + 1
    for g in range(students.logits.shape[0]):
        sg = s0 if g == 0 else member_student(students, g, m)
        tg = t0 if g == 0 else member_teacher(tables.teachers, g, m)
        if split:
            split_taken(sg, ep_obs, ep_act, t, work, rows_while_stepping)
        if not rows_while_stepping:
            n_rows = prepare_episode_rows(sg, ep_obs, ep_obs, n_idx, work)
        steps = EpisodeSteps(ep_obs, ep_obs, ep_act, ep_rew, t, term)
        update_student(steps, tg, sg, tables.critic[g, m], method, work, n_rows)


@njit(inline="always")
def _run_mdps_body(
    env: EnvTables,
    streams: Streams,
    schedule: Schedule,
    tables: ChunkTables,
    method: MethodParams,
    work: RowWork,
    episode: Episode,
    events: NDArray[np.int64],
) -> int:  # pragma: no cover - compiled
    """The body of :func:`run_mdps` (see there)."""
    mdp_state = streams.mdp_state
    n_iter, eval_index, beta_table, control = schedule
    n_group, n_mdps = tables.students.logits.shape[0], tables.students.logits.shape[1]
    # Each distinct row is prepared once per episode and serves both the student's draws and
    # the update (the logits do not change within an episode): at its first visit when the
    # control policy draws from the student, after the episode otherwise (preparing rows
    # between the steps then only makes them wait).
    rows_while_stepping = control in (CONTROL_STUDENT, CONTROL_MIXTURE)
    if rows_while_stepping and n_group > 1:
        raise ValueError("a group of students needs a control policy that ignores the student")
    # Taken actions become explicit (methods with a policy-gradient term, tables with a bulk).
    split = (
        has_policy_gradient(method.coef, method.codes) and tables.students.explicit.shape[-1] > 0
    )
    episodes = 0
    for m in range(n_mdps):
        done = mdp_state[m, DONE]
        if done >= n_iter:
            events[m] = EVENT_NONE
            continue
        t0 = member_teacher(tables.teachers, 0, m)  # draws actions (teacher control)
        s0 = member_student(tables.students, 0, m)  # draws them (student, mixture)
        event = EVENT_REFILL
        while _has_room(streams, m, env.max_steps):
            t, term, n_rows = _sample_episode(
                env, streams, m, beta_table[done], control, t0, s0, work, episode
            )
            _update_group(
                episode, t, term, n_rows, m, tables, method, work, rows_while_stepping, split, t0,
                s0,
            )  # fmt: skip
            episodes += 1
            done += 1
            mdp_state[m, DONE] = done
            if eval_index[done] >= 0:
                event = EVENT_EVAL
                break
            if done >= n_iter:
                event = EVENT_FINISHED
                break
        events[m] = event
    return episodes


@loop_kernel
def run_mdps(
    env: EnvTables,
    streams: Streams,
    schedule: Schedule,
    tables: ChunkTables,
    method: MethodParams,
    work: RowWork,
    episode: Episode,
    events: NDArray[np.int64],
) -> int:  # pragma: no cover - compiled; tested equal to the vector-env loop
    """The runner's compiled loop: each MDP's episodes straight from the vector env's tables.

    Does for every MDP ``m`` what :func:`advance` and the vector env's step kernel do together,
    in the same order and with the same uniforms, so the students are bit for bit those of the
    vector-env loop: an episode starts from ``initial_cum[m]`` with the MDP's next environment
    uniform, each step draws the control action from the next action uniform
    (:func:`~distill_agents.updates.rows.draw_action`) and the outcome from the next
    environment uniform (the first outcome record with ``cum > u``), the episode is truncated
    after ``max_steps`` steps, and the update runs when it ends (once for each student of the
    group: ``G`` students trained from the same episodes). Runs ``m`` until it completes an
    evaluation point, its last iteration, or until a full episode might not fit in what is
    left of its uniform buffers (``ENV_USED - env_base[m]`` and ``ACT_PTR`` are the next unused
    entries of ``env_buf[m]`` and ``act_buf[m]``; the caller refills them and calls again).

    Args:
        env: the vector env's tables (``env_buf`` rows longer than ``max_steps``, ``act_buf``
            rows at least as long).
        streams: the MDPs' uniforms and counters.
        schedule: iterations, evaluation points, mixture weights, control.
        tables: stacked ``[G, B, ...]`` teachers, students (updated in place) and critics
            (updated in place) of ``G`` students per MDP (a *group*: students trained from the
            same episodes; ``G > 1`` only for a control policy that does not depend on the
            student, ``teacher`` control reading group member 0's draw tables).
        method: the method.
        work: the update workspace.
        episode: one episode's buffers (``[max_steps + 1]``, ``[max_steps]``, ``[max_steps]``).
        events: ``[B]`` out: the ``EVENT_*`` each MDP stopped at.

    Returns:
        The number of episodes completed in this call.
    """
    # The same body three times: LLVM then knows A inside the first two (from the branch
    # condition) and unrolls the per-action loops of dense rows (the grids' 4 and the
    # corridors' 2 actions), with the same operations in the same order (the same bits). The
    # price is compile time, once per numba cache.
    if _has_actions(2, tables, work):
        return _run_mdps_body(env, streams, schedule, tables, method, work, episode, events)
    if _has_actions(4, tables, work):
        return _run_mdps_body(env, streams, schedule, tables, method, work, episode, events)
    return _run_mdps_body(env, streams, schedule, tables, method, work, episode, events)
