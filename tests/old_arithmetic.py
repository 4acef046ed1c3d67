"""The per-step update kernel the row kernels replaced, kept as the old arithmetic for tests.

Every per-step quantity is summed action by action at every step (O(A) per step); the row
kernels (:mod:`distill_agents.row_kernels`) sum them per row. The two agree to rounding, which
``tests/test_row_kernels.py`` checks over whole training runs.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

from distill_agents import methods as M

N_STEP_ROWS = 11


def make_workspace(
    n_obs: int, n_actions: int, max_steps: int
) -> tuple[
    NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray
]:
    """Scratch arrays for :func:`episode_update_kernel`, reusable across calls.

    Args:
        n_obs: rows ``N`` of the student table.
        n_actions: ``A``.
        max_steps: the longest episode ``T`` the workspace must serve without allocating (a
            longer episode still works: the kernel then allocates its per-step arrays).

    Returns:
        ``(slot [N] int64 filled with -1, prob_buf [U, A], grad_buf [U, A], lse_buf [U],
        step_buf [N_STEP_ROWS, T + 1])`` with ``U = min(N, max_steps + 1)``. The kernel leaves
        ``slot`` at -1 on return.
    """
    rows = max(1, min(int(n_obs), int(max_steps) + 1))
    return (
        np.full(int(n_obs), -1, dtype=np.int64),
        np.empty((rows, int(n_actions))),
        np.empty((rows, int(n_actions))),
        np.empty(rows),
        np.empty((N_STEP_ROWS, int(max_steps) + 1)),
    )


@njit(inline="always")
def _step_logits(
    obs: NDArray[np.int64],
    slot: NDArray[np.int64],
    logits: NDArray[np.float64],
    grad_buf: NDArray[np.float64],
    lr: float,
) -> None:  # pragma: no cover - compiled
    """``logits[o] -= lr * grad`` once per distinct ``o`` of ``obs``; ``slot`` back to -1."""
    for t in range(obs.shape[0]):
        o = obs[t]
        u = slot[o]
        if u >= 0:
            for a in range(logits.shape[1]):
                logits[o, a] -= lr * grad_buf[u, a]
            slot[o] = -1


@njit(inline="always")
def is_pure_ce(coef: NDArray[np.float64], codes: NDArray[np.int64]) -> bool:  # pragma: no cover
    """Only the cross-entropy loss (teacher_distill, on_policy_distill): no reward channel.

    Then the reward term, the advantages and the per-step losses are all zero or unused, and
    :func:`episode_update_kernel` only computes the loss's gradient (with the general path's
    operations in the same order).
    """
    return (
        coef[M.C_LOSS_CE] != 0.0
        and coef[M.C_ENV] == 0.0
        and coef[M.C_TEACHER_LOGP] == 0.0
        and coef[M.C_STUDENT_LOGP] == 0.0
        and coef[M.C_TEACHER_V_NEXT] == 0.0
        and coef[M.C_TEACHER_V] == 0.0
        and coef[M.C_STUDENT_V] == 0.0
        and coef[M.C_LOSS_IP] == 0.0
        and coef[M.C_LOSS_RCE] == 0.0
        and coef[M.C_NEXT_LOSS] == 0.0
        and coef[M.C_NEXT_LOGP] == 0.0
        and codes[M.K_CRITIC] == M.CRITIC_NONE
        and codes[M.K_VCOND] == 0
    )


@njit(inline="always")
def student_row_exps(
    logits: NDArray[np.float64], o: int, prob_buf: NDArray[np.float64], u: int
) -> tuple[float, float]:  # pragma: no cover - compiled
    """``prob_buf[u] = exp(logits[o] - max)``; returns ``(max, sum of the exponentials)``.

    The first half of the softmax of a student row. :func:`sample_student_row` draws from
    such a row and :func:`normalise_student_row` finishes it: together they do what
    :func:`sample_control_action` and :func:`episode_update_kernel` do with the row, operation
    for operation, so a caller may compute each row once per episode and use it for both.
    """
    n_actions = logits.shape[1]
    m = logits[o, 0]
    for a in range(1, n_actions):
        if logits[o, a] > m:
            m = logits[o, a]
    total = 0.0
    for a in range(n_actions):
        e = math.exp(logits[o, a] - m)
        prob_buf[u, a] = e
        total += e
    return m, total


@njit(inline="always")
def normalise_student_row(
    prob_buf: NDArray[np.float64],
    grad_buf: NDArray[np.float64],
    lse_buf: NDArray[np.float64],
    u: int,
    m: float,
    total: float,
    with_lse: bool,
) -> None:  # pragma: no cover - compiled
    """Finish row ``u`` of :func:`student_row_exps`: probabilities, a zero gradient, the lse."""
    inv = 1.0 / total
    for a in range(prob_buf.shape[1]):
        prob_buf[u, a] *= inv
        grad_buf[u, a] = 0.0
    if with_lse:
        lse_buf[u] = m + math.log(total)


@njit(inline="always")
def sample_student_row(
    exps: NDArray[np.float64], u_row: int, total: float, u: float
) -> int:  # pragma: no cover - compiled
    """:func:`sample_control_action`'s draw from ``softmax(logits)``, from the row's exponentials.

    ``exps[u_row]`` and ``total`` as :func:`student_row_exps` left them: the same comparisons
    as the draw from the logits, so the same action.
    """
    n = exps.shape[1]
    target = u * total
    cum = 0.0
    for a in range(n):
        cum += exps[u_row, a]
        if target < cum:
            return a
    return n - 1


@njit(inline="always")
def episode_update_kernel(
    obs: NDArray[np.int64],
    keys: NDArray[np.int64],
    actions: NDArray[np.int64],
    rewards: NDArray[np.float64],
    terminated: bool,
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
) -> None:  # pragma: no cover - compiled; checked against episode_update_reference
    """Apply Eq. 1 for one episode, in place, with no validation (see :func:`episode_update`).

    Args:
        obs: ``[T + 1]`` student table index at steps ``0..T`` (the last is the observation
            after the final step; unused when ``terminated``).
        keys: ``[T + 1]`` teacher table index at the same steps (``obs`` itself when the
            teacher is indexed like the student).
        actions: ``[T]`` actions taken.
        rewards: ``[T]`` environment rewards ``r_t``.
        terminated: the last transition entered a terminal state (values and losses after it
            are 0); ``False`` for a truncated episode (bootstrapped from step ``T``).
        teacher_probs: ``[Nt, A]`` teacher probabilities ``pi``.
        teacher_logp: ``[Nt, A]`` floored ``log pi`` (:func:`floored_log`).
        teacher_values: ``[Nt]`` ``V_pi`` (zeros if unused).
        teacher_weights: ``[Nt]`` weight of the teacher's signal at each key (multiplies the
            loss, its corrections and the ``log pi`` rewards; ones by default).
        logits: ``[N, A]`` student logits, updated in place.
        critic: ``[N]`` student critic ``V_theta``, updated in place (ignored with no critic).
        coef: ``[N_COEF]`` method coefficients (:meth:`MethodSpec.params`).
        codes: ``[N_CODES]`` method codes (:meth:`MethodSpec.params`).
        lr: learning rate.
        gamma: discount.
        slot: ``[N]`` workspace, all -1 (:func:`make_workspace`); left at -1.
        prob_buf: ``[U, A]`` workspace.
        grad_buf: ``[U, A]`` workspace.
        lse_buf: ``[U]`` workspace.
        step_buf: ``[N_STEP_ROWS, W]`` workspace for the per-step quantities (used when
            ``W > T``; otherwise the kernel allocates them).
    """
    n_steps = actions.shape[0]
    if n_steps == 0:
        return
    # Time indices whose state quantities are needed: 0..T-1, and T unless terminated.
    n_idx = n_steps if terminated else n_steps + 1
    pure_ce = is_pure_ce(coef, codes)
    # --- 1. student probabilities at the parameters before the update, one row per distinct
    # observation of the episode.
    n_slots = 0
    for t in range(n_idx):
        o = obs[t]
        if slot[o] < 0:
            slot[o] = n_slots
            m, total = student_row_exps(logits, o, prob_buf, n_slots)
            normalise_student_row(prob_buf, grad_buf, lse_buf, n_slots, m, total, not pure_ce)
            n_slots += 1
    episode_update_rows(
        obs, keys, actions, rewards, terminated, teacher_probs, teacher_logp, teacher_values,
        teacher_weights, logits, critic, coef, codes, lr, gamma, slot, prob_buf, grad_buf,
        lse_buf, step_buf, pure_ce,
    )  # fmt: skip


@njit(inline="always")
def episode_update_rows(
    obs: NDArray[np.int64],
    keys: NDArray[np.int64],
    actions: NDArray[np.int64],
    rewards: NDArray[np.float64],
    terminated: bool,
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
    pure_ce: bool,
) -> None:  # pragma: no cover - compiled; checked against episode_update_reference
    """Phases 2-6 of :func:`episode_update_kernel`, its student rows already computed.

    Every distinct observation ``o`` of ``obs[:n_idx]`` has its row ``slot[o]`` (numbered in
    order of first appearance) in ``prob_buf`` (probabilities), ``grad_buf`` (zeros) and, unless
    ``pure_ce`` (:func:`is_pure_ce`), ``lse_buf`` (log-sum-exp of the logits); see
    :func:`student_row_exps`. The arguments are the kernel's.
    """
    n_steps = actions.shape[0]
    n_actions = logits.shape[1]
    n_idx = n_steps if terminated else n_steps + 1

    c_env = coef[M.C_ENV]
    c_tlogp = coef[M.C_TEACHER_LOGP]
    c_slogp = coef[M.C_STUDENT_LOGP]
    c_tv_next = coef[M.C_TEACHER_V_NEXT]
    c_tv = coef[M.C_TEACHER_V]
    c_sv = coef[M.C_STUDENT_V]
    c_ce = coef[M.C_LOSS_CE]
    c_ip = coef[M.C_LOSS_IP]
    c_rce = coef[M.C_LOSS_RCE]
    c_next_loss = coef[M.C_NEXT_LOSS]
    c_next_logp = coef[M.C_NEXT_LOGP]
    critic_mode = codes[M.K_CRITIC]
    boot_source = codes[M.K_BOOTSTRAP]
    vcond = codes[M.K_VCOND] != 0
    use_critic = critic_mode != M.CRITIC_NONE

    if pure_ce:
        for t in range(n_steps):
            o = obs[t]
            k = keys[t]
            u = slot[o]
            c = teacher_weights[k] * 1.0 * c_ce
            if c != 0.0:
                for a in range(n_actions):
                    grad_buf[u, a] += c * (prob_buf[u, a] - teacher_probs[k, a])
        _step_logits(obs[:n_idx], slot, logits, grad_buf, lr)
        return

    # --- 2. per-step state quantities (before the update).
    # H_x(pi || pi_theta) itself only enters through the next step's loss (N-distill); the
    # cross-entropy's gradient (phase 5) does not need it.
    need_ce = c_ce != 0.0 and c_next_loss != 0.0
    need_ip = c_ip != 0.0
    need_rce = c_rce != 0.0 or (c_next_logp != 0.0 and not terminated)
    # Per-step arrays live in the workspace (allocating them per episode cost ~40% of the
    # kernel's time on 10-step episodes).
    n1 = n_steps + 1
    buf = step_buf if step_buf.shape[1] >= n1 else np.empty((N_STEP_ROWS, n1))
    buf[:, :n1] = 0.0
    v_student = buf[0, :n1]  # V_theta(s_t); 0 after a terminal transition
    v_teacher = buf[1, :n1]  # V_pi(s_t); 0 after a terminal transition
    gate = buf[2, :n1]  # [V_pi(s_t) > V_theta(s_t)] when vcond
    gate[:] = 1.0
    ce = buf[3, :n1]  # H_x(pi || pi_theta)
    ip = buf[4, :n1]  # -sum pi pi_theta
    rce = buf[5, :n1]  # H_x(pi_theta || pi)
    loss_state = buf[6, :n1]  # w * gate * (c_ce ce + c_ip ip)
    for t in range(n_idx):
        o = obs[t]
        k = keys[t]
        u = slot[o]
        v_student[t] = critic[o]
        v_teacher[t] = teacher_values[k]
        if vcond:
            gate[t] = 1.0 if teacher_values[k] > critic[o] else 0.0
        if need_ce:
            acc = 0.0
            for a in range(n_actions):
                pa = teacher_probs[k, a]
                if pa != 0.0:
                    acc -= pa * (logits[o, a] - lse_buf[u])
            ce[t] = acc
        if need_ip:
            acc = 0.0
            for a in range(n_actions):
                acc -= teacher_probs[k, a] * prob_buf[u, a]
            ip[t] = acc
        if need_rce:
            acc = 0.0
            for a in range(n_actions):
                acc -= prob_buf[u, a] * teacher_logp[k, a]
            rce[t] = acc
        loss_state[t] = teacher_weights[k] * gate[t] * (c_ce * ce[t] + c_ip * ip[t])

    # --- 3. reward term rhat_t.
    rhat = buf[7, :n_steps]
    for t in range(n_steps):
        o = obs[t]
        k = keys[t]
        a_t = actions[t]
        r = c_env * rewards[t]
        if c_tlogp != 0.0:
            r += c_tlogp * teacher_weights[k] * teacher_logp[k, a_t]
        if c_slogp != 0.0:
            r += c_slogp * (logits[o, a_t] - lse_buf[slot[o]])
        if c_tv_next != 0.0:
            r += c_tv_next * gamma * v_teacher[t + 1]
        if c_tv != 0.0:
            r += c_tv * v_teacher[t]
        if c_sv != 0.0:
            r += c_sv * v_student[t]
        if t + 1 < n_steps:
            k1 = keys[t + 1]
            if c_next_loss != 0.0:
                r -= c_next_loss * gamma * loss_state[t + 1]
            if c_next_logp != 0.0:
                r += c_next_logp * gamma * teacher_weights[k1] * teacher_logp[k1, actions[t + 1]]
        elif not terminated:
            # Truncated: the step after the last is still part of the task.
            k1 = keys[n_steps]
            if c_next_loss != 0.0:
                r -= c_next_loss * gamma * loss_state[n_steps]
            if c_next_logp != 0.0:
                r -= c_next_logp * gamma * teacher_weights[k1] * rce[n_steps]
        rhat[t] = r

    # --- 4. advantages and critic targets.
    boot = buf[8, :n1]  # value bootstrapped at s_t (t >= 1); 0 after terminal
    for t in range(1, n_idx):
        if boot_source == M.BOOT_STUDENT:
            boot[t] = v_student[t]
        elif boot_source == M.BOOT_TEACHER:
            boot[t] = v_teacher[t]
    adv = buf[9, :n_steps]
    target = buf[10, :n_steps]
    if critic_mode == M.CRITIC_TD:
        for t in range(n_steps):
            target[t] = rhat[t] + gamma * boot[t + 1]
            adv[t] = target[t] - v_student[t]
    else:
        ret = boot[n_steps] if critic_mode == M.CRITIC_MC else 0.0
        for t in range(n_steps - 1, -1, -1):
            ret = rhat[t] + gamma * ret
            target[t] = ret
            adv[t] = ret - v_student[t] if critic_mode == M.CRITIC_MC else ret

    # --- 5. gradient of Eq. 1 at the current parameters, accumulated per distinct row.
    for t in range(n_steps):
        o = obs[t]
        k = keys[t]
        u = slot[o]
        w = teacher_weights[k]
        a_t = actions[t]
        # Policy-gradient term: -(e_a - p) * Ahat.
        g = adv[t]
        if g != 0.0:
            for a in range(n_actions):
                grad_buf[u, a] += prob_buf[u, a] * g
            grad_buf[u, a_t] -= g
        # Loss term l_t.
        c = w * gate[t] * c_ce
        if c != 0.0:
            for a in range(n_actions):
                grad_buf[u, a] += c * (prob_buf[u, a] - teacher_probs[k, a])
        c = w * gate[t] * c_ip
        if c != 0.0:
            dot = -ip[t]
            for a in range(n_actions):
                grad_buf[u, a] -= c * prob_buf[u, a] * (teacher_probs[k, a] - dot)
        c = w * c_rce
        if c != 0.0:
            for a in range(n_actions):
                grad_buf[u, a] -= c * prob_buf[u, a] * (teacher_logp[k, a] + rce[t])

    # --- 6. one step on the logits and the critic; reset the workspace.
    _step_logits(obs[:n_idx], slot, logits, grad_buf, lr)
    if use_critic:
        if codes[M.K_CRITIC_SEQUENTIAL] != 0:
            for t in range(n_steps):
                critic[obs[t]] += lr * (target[t] - critic[obs[t]])
        else:
            for t in range(n_steps):
                critic[obs[t]] += lr * (target[t] - v_student[t])
