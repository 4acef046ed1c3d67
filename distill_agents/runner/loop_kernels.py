"""Compiled (numba) kernels of the batched student runner (:mod:`distill_agents.runner`).

:func:`advance` is called once per vector-env ``step`` (and once after ``reset``): for every
sub-env it records the transition in the sub-env's episode buffer, applies the method's
episode update (:func:`distill_agents.row_kernels.episode_update_tables`, the kernel the
single-env :func:`~distill_agents.distill` uses) to the sub-env's MDP when the episode has
ended, takes an evaluation snapshot of the student at the iterations asked for, and draws the
next action of the control policy (:func:`~distill_agents.row_kernels.draw_action`) from the
MDP's own stream of uniforms.

:func:`fill_env_uniforms` writes each sub-env's column of the vector env's block of uniforms
from its MDP's own stream (see :class:`distill_agents.runner.PerMDPUniforms`).

:func:`run_mdps` is the runner's compiled loop (``run_distillation(..., loop="compiled")``): the
same work as :func:`advance` and the vector env's step kernel, one MDP at a time, with the same
uniforms, so it gives the same students bit for bit without a Python round trip per step. Each
distinct row of an episode is prepared once (at its first visit when the control policy draws
from the student) and serves the draws and the update, so a step costs O(1) plus an
O(log A) draw, and a row O(its explicit actions) per episode (:mod:`distill_agents.row_kernels`).

:func:`reference_loop` is the plain compiled loop the benchmark compares against: one function
that samples every MDP's episodes straight from the vector env's outcome tables (the same
records its step kernel reads) and applies the same update kernel.

The tables travel as typed records: :class:`EnvTables`, :class:`Streams`, :class:`Schedule`,
:class:`Episode`, the update's :class:`~distill_agents.updates.records.MethodParams` and
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
from distill_agents.row_kernels import (
    RowWork,
    StudentTable,
    TeacherTable,
    draw_action,
    episode_update_tables,
    has_policy_gradient,
    prepare_episode_rows,
    prepare_row,
    split_taken,
    update_student,
)
from distill_agents.updates.records import EpisodeSteps, MethodParams
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
    "EnvTables",
    "Episode",
    "MethodParams",
    "Schedule",
    "Streams",
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


@loop_kernel
def advance(
    obs: NDArray[np.int64],
    rewards: NDArray[np.float64],
    terminations: NDArray[np.bool_],
    truncations: NDArray[np.bool_],
    actions: NDArray[np.int64],
    sub: NDArray[np.int64],
    episode: Episode,
    streams: Streams,
    drain: bool,
    schedule: Schedule,
    teachers: TeacherTable,
    students: StudentTable,
    critic: NDArray[np.float64],
    method: MethodParams,
    work: RowWork,
    snapshots: StudentTable,
    pending: NDArray[np.int64],
    n_pending: int,
) -> tuple[int, int, int, int]:  # pragma: no cover - compiled; tested through the runner
    """Process one ``step`` (or ``reset``) result of the vector env and pick the next actions.

    Args:
        obs: ``[Bp]`` table-index observations returned by the env.
        rewards: ``[Bp]``.
        terminations: ``[Bp]``.
        truncations: ``[Bp]``.
        actions: ``[Bp]`` in: the actions the env was stepped with; out: the next actions
            (0 for stopped and resetting sub-envs, whose action the env ignores).
        sub: ``[Bp, N_SUB_FIELDS]`` per-sub-env state (see the module constants).
        episode: ``[Bp, ...]`` episode buffers of the sub-envs.
        streams: the MDPs' counters and action uniforms (``env_buf`` is not read here).
        drain: start no new episodes (sub-envs whose episode ends are stopped).
        schedule: iterations, evaluation points, mixture weights, control.
        teachers: stacked ``[1, b, ...]`` teachers (with their draw tables for teacher and
            mixture control).
        students: stacked ``[1, b, ...]`` students, updated in place.
        critic: ``[1, b, N]`` student critics, updated in place.
        method: the method.
        work: the update workspace.
        snapshots: ``[P, ...]`` snapshot slots of students; entries ``n_pending..`` are free.
        pending: ``[P, 2]`` (MDP, evaluation point) of each taken snapshot.
        n_pending: snapshots taken so far (the caller guarantees ``n_pending + Bp <= P``).

    Returns:
        ``(running, refills, episodes, n_pending)``: sub-envs still in use, MDPs whose action
        uniforms are used up (the caller refills them), episodes completed in this call, and
        the new number of snapshots.
    """
    mdp_state = streams.mdp_state
    act_buf = streams.act_buf
    n_sub = obs.shape[0]
    buf_len = act_buf.shape[1]
    running = 0
    refills = 0
    episodes = 0
    for j in range(n_sub):
        status = sub[j, STATUS]
        if status == STOPPED:
            actions[j] = 0
            continue
        m = sub[j, MDP]
        tm = member_teacher(teachers, 0, m)
        sm = member_student(students, 0, m)
        mdp_state[m, ENV_USED] += 1
        if status == RESETTING:
            sub[j, EP_LEN] = 0
            episode.obs[j, 0] = obs[j]
            sub[j, STATUS] = RUNNING
        else:
            t = sub[j, EP_LEN]
            episode.actions[j, t] = actions[j]
            episode.rewards[j, t] = rewards[j]
            episode.obs[j, t + 1] = obs[j]
            t += 1
            sub[j, EP_LEN] = t
            mdp_state[m, STEPS] += 1
            term = terminations[j]
            if term or truncations[j]:
                ep_obs = episode.obs[j, : t + 1]
                episode_update_tables(
                    ep_obs, ep_obs, episode.actions[j, :t], episode.rewards[j, :t], term, tm, sm,
                    critic[0, m], method.coef, method.codes, method.lr, method.gamma, work,
                )  # fmt: skip
                episodes += 1
                done = mdp_state[m, DONE] + 1
                mdp_state[m, DONE] = done
                e = schedule.eval_index[done]
                if e >= 0:
                    _snapshot(sm, snapshots, n_pending)
                    pending[n_pending, 0] = m
                    pending[n_pending, 1] = e
                    n_pending += 1
                actions[j] = 0
                if done >= schedule.n_iter or drain:
                    sub[j, STATUS] = STOPPED
                else:
                    sub[j, STATUS] = RESETTING
                    running += 1
                continue
        running += 1
        ptr = mdp_state[m, ACT_PTR]
        u = act_buf[m, ptr]
        ptr += 1
        mdp_state[m, ACT_PTR] = ptr
        if ptr == buf_len:
            refills += 1
        beta = schedule.beta_table[mdp_state[m, DONE]]
        actions[j] = draw_action(schedule.control, beta, tm, sm, obs[j], work, 0, u, False)
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
    (:func:`~distill_agents.row_kernels.episode_update_tables`). Uniforms come from a
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
def _has_actions(
    n: int, teachers: TeacherTable, students: StudentTable, work: RowWork
) -> bool:  # pragma: no cover - compiled
    """Every ``[..., A]`` array :func:`run_mdps` loops over has ``A == n``."""
    return (
        teachers.probs.shape[-1] == n
        and teachers.logp.shape[-1] == n
        and students.logits.shape[-1] == n
        and work.exps.shape[-1] == n
        and work.cum.shape[-1] == n
        and work.extra.shape[-1] == n
    )


@njit(inline="always")
def _run_mdps_body(
    env: EnvTables,
    streams: Streams,
    schedule: Schedule,
    teachers: TeacherTable,
    students: StudentTable,
    critic: NDArray[np.float64],
    method: MethodParams,
    work: RowWork,
    episode: Episode,
    events: NDArray[np.int64],
) -> int:  # pragma: no cover - compiled
    """The body of :func:`run_mdps` (see there)."""
    mdp_state, env_buf, env_base, act_buf = streams
    n_iter, eval_index, beta_table, control = schedule
    ep_obs, ep_act, ep_rew = episode
    slot = work.slot
    n_group, n_mdps = students.logits.shape[0], students.logits.shape[1]
    env_len = env_buf.shape[1]
    act_len = act_buf.shape[1]
    limit = env.max_steps
    # Taken actions become explicit (methods with a policy-gradient term, tables with a bulk).
    split = has_policy_gradient(method.coef, method.codes) and students.explicit.shape[-1] > 0
    # Each distinct row is prepared once per episode and serves both the student's draws and
    # the update (the logits do not change within an episode): at its first visit when the
    # control policy draws from the student, after the episode otherwise (preparing rows
    # between the steps then only makes them wait).
    rows_while_stepping = control in (CONTROL_STUDENT, CONTROL_MIXTURE)
    if rows_while_stepping and n_group > 1:
        raise ValueError("a group of students needs a control policy that ignores the student")
    episodes = 0
    for m in range(n_mdps):
        done = mdp_state[m, DONE]
        if done >= n_iter:
            events[m] = EVENT_NONE
            continue
        t0 = member_teacher(teachers, 0, m)  # the teacher that draws actions (teacher control)
        s0 = member_student(students, 0, m)  # the student that draws them (student, mixture)
        event = EVENT_REFILL
        while True:
            e = mdp_state[m, ENV_USED] - env_base[m]
            p = mdp_state[m, ACT_PTR]
            if env_len - e < limit + 1 or act_len - p < limit:
                break
            s = start_state(env.initial_cum[m], env_buf[m, e])
            e += 1
            ep_obs[0] = env.key_of_state[m, s]
            beta = beta_table[done]
            t = 0
            n_rows = 0
            term = False
            while True:
                o = ep_obs[t]
                row = 0
                if rows_while_stepping:
                    row = slot[o]
                    if row < 0:
                        row = n_rows
                        slot[o] = row
                        work.row_obs[row] = o
                        work.row_key[row] = o
                        prepare_row(s0, o, work, row)
                        n_rows += 1
                if t == limit:  # truncated: the row of the last observation is needed too
                    break
                a = draw_action(
                    control, beta, t0, s0, o, work, row, act_buf[m, p], rows_while_stepping
                )
                p += 1
                s, reward, key = sample_outcome(
                    env.outcomes, m, s, env.action_rows[a], env_buf[m, e]
                )
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
            n_idx = t if term else t + 1
            for g in range(n_group):  # the same episode updates each student of the group
                sg = s0 if g == 0 else member_student(students, g, m)
                tg = t0 if g == 0 else member_teacher(teachers, g, m)
                if split:
                    split_taken(sg, ep_obs, ep_act, t, work, rows_while_stepping)
                if not rows_while_stepping:
                    n_rows = prepare_episode_rows(sg, ep_obs, ep_obs, n_idx, work)
                steps = EpisodeSteps(ep_obs, ep_obs, ep_act, ep_rew, t, term)
                update_student(steps, tg, sg, critic[g, m], method, work, n_rows)
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
    teachers: TeacherTable,
    students: StudentTable,
    critic: NDArray[np.float64],
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
    (:func:`~distill_agents.row_kernels.draw_action`) and the outcome from the next
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
        teachers: stacked ``[G, B, ...]`` teachers: those of ``G`` students per MDP (a
            *group*: students trained from the same episodes; ``G > 1`` only for a control
            policy that does not depend on the student, ``teacher`` control reading group
            member 0's draw tables).
        students: stacked ``[G, B, ...]`` students, updated in place.
        critic: ``[G, B, N]`` critics, updated in place.
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
    if _has_actions(2, teachers, students, work):
        return _run_mdps_body(
            env, streams, schedule, teachers, students, critic, method, work, episode, events
        )
    if _has_actions(4, teachers, students, work):
        return _run_mdps_body(
            env, streams, schedule, teachers, students, critic, method, work, episode, events
        )
    return _run_mdps_body(
        env, streams, schedule, teachers, students, critic, method, work, episode, events
    )
