"""Compiled (numba) kernels of the batched student runner (:mod:`distill_agents.runner`).

:func:`advance` is called once per vector-env ``step`` (and once after ``reset``): for every
sub-env it records the transition in the sub-env's episode buffer, applies the method's
episode update (:func:`distill_agents.updates.episode_update_kernel`, the kernel the single-env
:func:`~distill_agents.distill` uses) to the sub-env's MDP when the episode has ended, takes an
evaluation snapshot of the student's logits at the iterations asked for, and draws the next
action of the control policy (:func:`~distill_agents.updates.sample_control_action`) from the
MDP's own stream of uniforms.

:func:`fill_env_uniforms` writes each sub-env's column of the vector env's block of uniforms
from its MDP's own stream (see :class:`distill_agents.runner.PerMDPUniforms`).

:func:`run_mdps` is the runner's compiled loop (``run_distillation(..., loop="compiled")``): the
same work as :func:`advance` and the vector env's step kernel, one MDP at a time, with the same
uniforms, so it gives the same students bit for bit without a Python round trip per step.

:func:`reference_loop` is the plain compiled loop the benchmark compares against: one function
that samples every MDP's episodes straight from the vector env's outcome tables (the same
records its step kernel reads) and applies the same update kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

from distill_agents.methods import CONTROL_MIXTURE, CONTROL_STUDENT
from distill_agents.updates import (
    N_STEP_ROWS,
    episode_update_kernel,
    episode_update_rows,
    is_pure_ce,
    normalise_student_row,
    sample_control_action,
    sample_control_row,
    student_row_exps,
)

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
    "advance",
    "fill_env_uniforms",
    "next_uniform",
    "reference_loop",
    "run_mdps",
    "sample_outcome",
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


@njit(cache=True)
def advance(
    obs: NDArray[np.int64],
    rewards: NDArray[np.float64],
    terminations: NDArray[np.bool_],
    truncations: NDArray[np.bool_],
    actions: NDArray[np.int64],
    sub: NDArray[np.int64],
    ep_obs: NDArray[np.int64],
    ep_act: NDArray[np.int64],
    ep_rew: NDArray[np.float64],
    mdp_state: NDArray[np.int64],
    act_buf: NDArray[np.float64],
    drain: bool,
    n_iter: int,
    eval_index: NDArray[np.int64],
    beta_table: NDArray[np.float64],
    control: int,
    teacher_probs: NDArray[np.float64],
    teacher_logp: NDArray[np.float64],
    teacher_values: NDArray[np.float64],
    teacher_weights: NDArray[np.float64],
    logits: NDArray[np.float64],
    critic: NDArray[np.float64],
    coef: NDArray[np.float64],
    codes: NDArray[np.int64],
    lr: float,
    gamma: float,
    slot: NDArray[np.int64],
    prob_buf: NDArray[np.float64],
    grad_buf: NDArray[np.float64],
    lse_buf: NDArray[np.float64],
    step_buf: NDArray[np.float64],
    snapshots: NDArray[np.float64],
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
        ep_obs: ``[Bp, T + 1]`` observations of the current episode.
        ep_act: ``[Bp, T]`` actions of the current episode.
        ep_rew: ``[Bp, T]`` rewards of the current episode.
        mdp_state: ``[b, N_MDP_FIELDS]`` per-MDP state.
        act_buf: ``[b, L]`` each MDP's next action uniforms (from ``ACT_PTR`` on).
        drain: start no new episodes (sub-envs whose episode ends are stopped).
        n_iter: training episodes per MDP.
        eval_index: ``[n_iter + 1]`` evaluation point reached after that many episodes, or -1.
        beta_table: ``[n_iter]`` teacher weight of the mixture control per iteration.
        control: control policy code (:data:`distill_agents.methods.CONTROLS`).
        teacher_probs: ``[b, N, A]``.
        teacher_logp: ``[b, N, A]`` floored log-probabilities.
        teacher_values: ``[b, N]``.
        teacher_weights: ``[N]``.
        logits: ``[b, N, A]`` student logits, updated in place.
        critic: ``[b, N]`` student critics, updated in place.
        coef: method coefficients.
        codes: method codes.
        lr: learning rate.
        gamma: discount.
        slot: update workspace (:func:`distill_agents.updates.make_workspace`).
        prob_buf: update workspace.
        grad_buf: update workspace.
        lse_buf: update workspace.
        step_buf: update workspace.
        snapshots: ``[P, N, A]`` snapshot slots; entries ``n_pending..`` are free.
        pending: ``[P, 2]`` (MDP, evaluation point) of each taken snapshot.
        n_pending: snapshots taken so far (the caller guarantees ``n_pending + Bp <= P``).

    Returns:
        ``(running, refills, episodes, n_pending)``: sub-envs still in use, MDPs whose action
        uniforms are used up (the caller refills them), episodes completed in this call, and
        the new number of snapshots.
    """
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
        mdp_state[m, ENV_USED] += 1
        if status == RESETTING:
            sub[j, EP_LEN] = 0
            ep_obs[j, 0] = obs[j]
            sub[j, STATUS] = RUNNING
        else:
            t = sub[j, EP_LEN]
            ep_act[j, t] = actions[j]
            ep_rew[j, t] = rewards[j]
            ep_obs[j, t + 1] = obs[j]
            t += 1
            sub[j, EP_LEN] = t
            mdp_state[m, STEPS] += 1
            term = terminations[j]
            if term or truncations[j]:
                episode_update_kernel(
                    ep_obs[j, : t + 1],
                    ep_obs[j, : t + 1],
                    ep_act[j, :t],
                    ep_rew[j, :t],
                    term,
                    teacher_probs[m],
                    teacher_logp[m],
                    teacher_values[m],
                    teacher_weights,
                    logits[m],
                    critic[m],
                    coef,
                    codes,
                    lr,
                    gamma,
                    slot,
                    prob_buf,
                    grad_buf,
                    lse_buf,
                    step_buf,
                )
                episodes += 1
                done = mdp_state[m, DONE] + 1
                mdp_state[m, DONE] = done
                e = eval_index[done]
                if e >= 0:
                    snapshots[n_pending] = logits[m]
                    pending[n_pending, 0] = m
                    pending[n_pending, 1] = e
                    n_pending += 1
                actions[j] = 0
                if done >= n_iter or drain:
                    sub[j, STATUS] = STOPPED
                else:
                    sub[j, STATUS] = RESETTING
                    running += 1
                continue
        running += 1
        o = obs[j]
        ptr = mdp_state[m, ACT_PTR]
        u = act_buf[m, ptr]
        ptr += 1
        mdp_state[m, ACT_PTR] = ptr
        if ptr == buf_len:
            refills += 1
        beta = beta_table[mdp_state[m, DONE]]
        actions[j] = sample_control_action(control, beta, teacher_probs[m, o], logits[m, o], u)
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


@njit(inline="always")
def next_uniform(state: NDArray[np.uint64]) -> float:  # pragma: no cover - compiled
    """SplitMix64: the next uniform in [0, 1) of the stream ``state[0]`` (advanced)."""
    z = state[0] + np.uint64(0x9E3779B97F4A7C15)
    state[0] = z
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always")
def sample_outcome(
    outcomes: NDArray, m: Any, s: Any, row: Any, u: float
) -> tuple[Any, float, Any]:  # pragma: no cover - compiled
    """The outcome of row ``row`` in state ``s`` of MDP ``m`` for the uniform ``u``.

    As :mod:`gridworld_env._kernels` steps: the first outcome record with ``cum > u``.

    Returns:
        ``(next state, reward, observation key)`` (key -1: the previous observation stays).
    """
    recs = outcomes[m, s, row]
    k = 0
    while u >= recs[k]["cum"]:
        k += 1
    return np.int64(recs[k]["state"]), recs[k]["reward"], np.int64(recs[k]["obs_key"])


@njit(cache=True)
def reference_loop(
    outcomes: NDArray,
    action_rows: NDArray[np.int64],
    terminal: NDArray[np.bool_],
    initial_cum: NDArray[np.float64],
    key_of_state: NDArray[np.int64],
    seeds: NDArray[np.uint64],
    n_iter: int,
    max_steps: int,
    control: int,
    beta: float,
    teacher_probs: NDArray[np.float64],
    teacher_logp: NDArray[np.float64],
    teacher_values: NDArray[np.float64],
    teacher_weights: NDArray[np.float64],
    logits: NDArray[np.float64],
    critic: NDArray[np.float64],
    coef: NDArray[np.float64],
    codes: NDArray[np.int64],
    lr: float,
    gamma: float,
    steps: NDArray[np.int64],
) -> None:  # pragma: no cover - compiled; the benchmark's yardstick
    """The plain compiled loop: every MDP's episodes straight from the outcome tables.

    Per MDP, ``n_iter`` times: draw a start state from ``initial_cum``, then step the outcome
    records (:mod:`gridworld_env._kernels` layout: outcomes sorted, cumulative ``cum``, the
    first record with ``cum > u`` is taken) with actions of the control policy until a terminal
    state or ``max_steps``, then :func:`episode_update_kernel`. Uniforms come from a SplitMix64
    stream per MDP seeded by ``seeds``. ``steps[m]`` counts the environment steps.
    """
    n_mdps = outcomes.shape[0]
    n_obs, n_actions = logits.shape[1], logits.shape[2]
    slot = np.full(n_obs, -1, dtype=np.int64)
    rows = min(n_obs, max_steps + 1)
    prob_buf = np.empty((rows, n_actions))
    grad_buf = np.empty((rows, n_actions))
    lse_buf = np.empty(rows)
    step_buf = np.empty((N_STEP_ROWS, max_steps + 1))
    ep_obs = np.empty(max_steps + 1, dtype=np.int64)
    ep_act = np.empty(max_steps, dtype=np.int64)
    ep_rew = np.empty(max_steps)
    state = np.empty(1, dtype=np.uint64)
    for m in range(n_mdps):
        state[0] = seeds[m]
        total = 0
        for _ in range(n_iter):
            s = np.searchsorted(initial_cum[m], next_uniform(state), side="right")
            ep_obs[0] = key_of_state[m, s]
            t = 0
            term = False
            while t < max_steps:
                o = ep_obs[t]
                a = sample_control_action(
                    control, beta, teacher_probs[m, o], logits[m, o], next_uniform(state)
                )
                s, reward, key = sample_outcome(outcomes, m, s, action_rows[a], next_uniform(state))
                ep_act[t] = a
                ep_rew[t] = reward
                ep_obs[t + 1] = key if key >= 0 else o
                t += 1
                if terminal[m, s]:
                    term = True
                    break
            total += t
            episode_update_kernel(
                ep_obs[: t + 1],
                ep_obs[: t + 1],
                ep_act[:t],
                ep_rew[:t],
                term,
                teacher_probs[m],
                teacher_logp[m],
                teacher_values[m],
                teacher_weights,
                logits[m],
                critic[m],
                coef,
                codes,
                lr,
                gamma,
                slot,
                prob_buf,
                grad_buf,
                lse_buf,
                step_buf,
            )
        steps[m] = total


#: :func:`run_mdps` events, per MDP.
EVENT_NONE = 0  #: the MDP had finished before the call
EVENT_EVAL = 1  #: the MDP stopped at an evaluation point (its logits are that point's)
EVENT_REFILL = 2  #: the MDP stopped because one of its uniform buffers runs low
EVENT_FINISHED = 3  #: the MDP completed its last iteration (not an evaluation point)


@njit(inline="always")
def _has_actions(
    n: int,
    teacher_probs: NDArray[np.float64],
    teacher_logp: NDArray[np.float64],
    logits: NDArray[np.float64],
    prob_buf: NDArray[np.float64],
    grad_buf: NDArray[np.float64],
) -> bool:  # pragma: no cover - compiled
    """Every ``[..., A]`` array :func:`run_mdps` loops over has ``A == n``."""
    return (
        teacher_probs.shape[-1] == n
        and teacher_logp.shape[-1] == n
        and logits.shape[-1] == n
        and prob_buf.shape[-1] == n
        and grad_buf.shape[-1] == n
    )


@njit(inline="always")
def _run_mdps_body(
    env: tuple,
    streams: tuple,
    schedule: tuple,
    teachers: tuple,
    student: tuple,
    method: tuple,
    workspace: tuple,
    episode: tuple,
    events: NDArray[np.int64],
) -> int:  # pragma: no cover - compiled
    """The body of :func:`run_mdps`, its arguments in groups (see there)."""
    outcomes, action_rows, terminal, initial_cum, key_of_state, max_steps = env
    mdp_state, env_buf, env_base, act_buf = streams
    n_iter, eval_index, beta_table, control = schedule
    teacher_probs, teacher_logp, teacher_values, teacher_weights = teachers
    logits, critic = student
    coef, codes, lr, gamma = method
    slot, prob_buf, grad_buf, lse_buf, step_buf = workspace
    ep_obs, ep_act, ep_rew = episode
    n_group, n_mdps = logits.shape[0], logits.shape[1]
    env_len = env_buf.shape[1]
    act_len = act_buf.shape[1]
    limit = max_steps
    pure_ce = is_pure_ce(coef, codes)
    # Each distinct observation's student row is computed once per episode and serves both
    # the student's draws and the update (the logits do not change within an episode): at its
    # first visit when the control policy samples from the student, after the episode
    # otherwise (as the update kernel would; interleaving it with the steps then only makes
    # them wait). lse_buf holds the row's sum of exponentials until the rows are finished,
    # row_max its maximum logit.
    rows_while_stepping = control in (CONTROL_STUDENT, CONTROL_MIXTURE)
    if rows_while_stepping and n_group > 1:
        raise ValueError("a group of students needs a control policy that ignores the student")
    row_max = np.empty(lse_buf.shape[0])
    episodes = 0
    for m in range(n_mdps):
        done = mdp_state[m, DONE]
        if done >= n_iter:
            events[m] = EVENT_NONE
            continue
        lg0 = logits[0, m]  # the student that draws actions (student or mixture control)
        event = EVENT_REFILL
        while True:
            e = mdp_state[m, ENV_USED] - env_base[m]
            p = mdp_state[m, ACT_PTR]
            if env_len - e < limit + 1 or act_len - p < limit:
                break
            s = np.searchsorted(initial_cum[m], env_buf[m, e], side="right")
            e += 1
            ep_obs[0] = key_of_state[m, s]
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
                        row_max[row], lse_buf[row] = student_row_exps(lg0, o, prob_buf, row)
                        n_rows += 1
                if t == limit:  # truncated: the row of the last observation is needed too
                    break
                a = sample_control_row(
                    control, beta, teacher_probs[0, m, o], prob_buf, row, lse_buf[row],
                    act_buf[m, p],
                )  # fmt: skip
                p += 1
                s, reward, key = sample_outcome(outcomes, m, s, action_rows[a], env_buf[m, e])
                e += 1
                ep_act[t] = a
                ep_rew[t] = reward
                ep_obs[t + 1] = key if key >= 0 else o
                t += 1
                if terminal[m, s]:
                    term = True
                    break
            mdp_state[m, ENV_USED] = e + env_base[m]
            mdp_state[m, ACT_PTR] = p
            mdp_state[m, STEPS] += t
            for g in range(n_group):  # the same episode updates each student of the group
                lg = logits[g, m]
                if not rows_while_stepping:
                    n_rows = 0
                    for i in range(t if term else t + 1):
                        o = ep_obs[i]
                        if slot[o] < 0:
                            slot[o] = n_rows
                            row_max[n_rows], lse_buf[n_rows] = student_row_exps(
                                lg, o, prob_buf, n_rows
                            )
                            n_rows += 1
                for row in range(n_rows):
                    normalise_student_row(
                        prob_buf, grad_buf, lse_buf, row, row_max[row], lse_buf[row], not pure_ce
                    )
                episode_update_rows(
                    ep_obs[: t + 1], ep_obs[: t + 1], ep_act[:t], ep_rew[:t], term,
                    teacher_probs[g, m], teacher_logp[g, m], teacher_values[g, m], teacher_weights,
                    lg, critic[g, m], coef, codes, lr, gamma, slot, prob_buf, grad_buf, lse_buf,
                    step_buf, pure_ce,
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


@njit(cache=True)
def run_mdps(
    outcomes: NDArray,
    action_rows: NDArray[np.int64],
    terminal: NDArray[np.bool_],
    initial_cum: NDArray[np.float64],
    key_of_state: NDArray[np.int64],
    max_steps: int,
    mdp_state: NDArray[np.int64],
    env_buf: NDArray[np.float64],
    env_base: NDArray[np.int64],
    act_buf: NDArray[np.float64],
    n_iter: int,
    eval_index: NDArray[np.int64],
    beta_table: NDArray[np.float64],
    control: int,
    teacher_probs: NDArray[np.float64],
    teacher_logp: NDArray[np.float64],
    teacher_values: NDArray[np.float64],
    teacher_weights: NDArray[np.float64],
    logits: NDArray[np.float64],
    critic: NDArray[np.float64],
    coef: NDArray[np.float64],
    codes: NDArray[np.int64],
    lr: float,
    gamma: float,
    slot: NDArray[np.int64],
    prob_buf: NDArray[np.float64],
    grad_buf: NDArray[np.float64],
    lse_buf: NDArray[np.float64],
    step_buf: NDArray[np.float64],
    ep_obs: NDArray[np.int64],
    ep_act: NDArray[np.int64],
    ep_rew: NDArray[np.float64],
    events: NDArray[np.int64],
) -> int:  # pragma: no cover - compiled; tested equal to the vector-env loop
    """The runner's compiled loop: each MDP's episodes straight from the vector env's tables.

    Does for every MDP ``m`` what :func:`advance` and the vector env's step kernel do together,
    in the same order and with the same uniforms, so the students are bit for bit those of the
    vector-env loop: an episode starts from ``initial_cum[m]`` with the MDP's next environment
    uniform, each step draws the control action from the next action uniform
    (:func:`~distill_agents.updates.sample_control_action`) and the outcome from the next
    environment uniform (the first outcome record with ``cum > u``), the episode is truncated
    after ``max_steps`` steps, and the update kernel runs when it ends (once for each student
    of the group: ``G`` students trained from the same episodes). Runs ``m`` until it
    completes an evaluation point, its last iteration, or until a full episode might not fit
    in what is left of its uniform buffers (``ENV_USED - env_base[m]`` and ``ACT_PTR`` are the
    next unused entries of ``env_buf[m]`` and ``act_buf[m]``; the caller refills them and
    calls again).

    Args:
        outcomes: ``[B, S, K, W]`` packed outcome records (``VectorEnv.outcome_tables``).
        action_rows: ``[A]`` action -> row.
        terminal: ``[B, S]``.
        initial_cum: ``[B, S]`` cumulative start distributions.
        key_of_state: ``[B, S]`` table index of each state (-1: none, the previous is kept).
        max_steps: the time limit (``max_episode_steps``, ``>= 1``).
        mdp_state: ``[B, N_MDP_FIELDS]`` per-MDP counters (updated).
        env_buf: ``[B, LE]`` environment uniforms, ``LE > max_steps``.
        env_base: ``[B]`` stream index of ``env_buf[m, 0]``.
        act_buf: ``[B, LA]`` action uniforms, ``LA >= max_steps``.
        n_iter: training episodes per MDP.
        eval_index: ``[n_iter + 1]`` evaluation point after that many episodes, or -1.
        beta_table: ``[n_iter]`` mixture weights.
        control: control policy code.
        teacher_probs: ``[G, B, N, A]`` the teachers of ``G`` students per MDP (a *group*:
            students trained from the same episodes; ``G > 1`` only for a control policy that
            does not depend on the student, ``teacher`` control reading group member 0's).
        teacher_logp: ``[G, B, N, A]``.
        teacher_values: ``[G, B, N]``.
        teacher_weights: ``[N]``.
        logits: ``[G, B, N, A]`` updated in place.
        critic: ``[G, B, N]`` updated in place.
        coef: method coefficients.
        codes: method codes.
        lr: learning rate.
        gamma: discount.
        slot: update workspace.
        prob_buf: update workspace.
        grad_buf: update workspace.
        lse_buf: update workspace.
        step_buf: update workspace.
        ep_obs: ``[max_steps + 1]`` episode buffer.
        ep_act: ``[max_steps]`` episode buffer.
        ep_rew: ``[max_steps]`` episode buffer.
        events: ``[B]`` out: the ``EVENT_*`` each MDP stopped at.

    Returns:
        The number of episodes completed in this call.
    """
    # The same body three times: LLVM then knows A inside the first two (from the branch
    # condition) and unrolls the per-action loops, 6-16% less time per step for the grids'
    # 4 and the corridors' 2 actions, with the same operations in the same order (the same
    # bits). The price is compile time: ~43 s instead of ~16 s, once per numba cache.
    # Grouping the arguments keeps the call inlinable (Python compiles a call with more than
    # 30 arguments as a call with *args, which numba's inliner refuses).
    env = (outcomes, action_rows, terminal, initial_cum, key_of_state, max_steps)
    streams = (mdp_state, env_buf, env_base, act_buf)
    schedule = (n_iter, eval_index, beta_table, control)
    teachers = (teacher_probs, teacher_logp, teacher_values, teacher_weights)
    student = (logits, critic)
    method = (coef, codes, lr, gamma)
    work = (slot, prob_buf, grad_buf, lse_buf, step_buf)
    episode = (ep_obs, ep_act, ep_rew)
    if _has_actions(2, teacher_probs, teacher_logp, logits, prob_buf, grad_buf):
        return _run_mdps_body(
            env, streams, schedule, teachers, student, method, work, episode, events
        )
    if _has_actions(4, teacher_probs, teacher_logp, logits, prob_buf, grad_buf):
        return _run_mdps_body(
            env, streams, schedule, teachers, student, method, work, episode, events
        )
    return _run_mdps_body(env, streams, schedule, teachers, student, method, work, episode, events)
