"""The compiled Eq. 1 update of one episode, row by row (see :mod:`distill_agents.updates.rows`)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

from distill_agents import methods as M
from distill_agents.numerics import loop_kernel
from distill_agents.updates.rows import (
    ST_ADV,
    ST_BULK_EXP,
    ST_C_CE,
    ST_C_IP,
    ST_C_RCE,
    ST_CE,
    ST_IP,
    ST_LSE,
    ST_MAX,
    ST_RCE,
    ST_TOTAL,
    RowWork,
    StudentTable,
    TeacherTable,
    has_policy_gradient,
    prepare_row,
    search_row,
    split_taken,
)

__all__ = [
    "episode_update_tables",
    "prepare_episode_rows",
    "update_student",
]


# Rows of ``RowWork.steps``: the per-step quantities of an episode.
_V_STUDENT = 0  # V_theta(s_t); 0 after a terminal transition
_V_TEACHER = 1  # V_pi(s_t); 0 after a terminal transition
_GATE = 2  # [V_pi(s_t) > V_theta(s_t)] when vcond, else 1
_CE = 3  # H_x(pi || pi_theta)
_IP = 4  # -sum pi pi_theta
_RCE = 5  # H_x(pi_theta || pi)
_LOSS = 6  # w * gate * (c_ce ce + c_ip ip)
_RHAT = 7  # the reward term rhat_t
_BOOT = 8  # the value bootstrapped at s_t (t >= 1); 0 after terminal
_ADV = 9  # the advantage
_TARGET = 10  # the critic's target


@njit(cache=True, inline="always")
def _row_quantities(
    s: StudentTable,
    t: TeacherTable,
    o: int,
    k: int,
    w: RowWork,
    u: int,
    need: bool,
    need_ce: bool,
) -> None:  # pragma: no cover - compiled
    """Row ``u``'s lse, and (``need``) its cross-entropies and information potential at key ``k``.

    ``H_x(pi || pi_theta)`` only where ``need_ce``; ``-sum pi pi_theta`` and ``H_x(pi_theta ||
    pi)`` (floored ``log pi``) with every ``need``.
    """
    logits, exps, probs, logp, st = s.logits, w.exps, t.probs, t.logp, w.stats
    n_actions = logits.shape[1]
    n = s.n_explicit[o]
    total = st[u, ST_TOTAL]
    lse = st[u, ST_MAX] + math.log(total)
    st[u, ST_LSE] = lse
    ce = 0.0
    ip = 0.0
    rce = 0.0
    if need:
        inv = 1.0 / total
        if n == n_actions:
            for a in range(n_actions):
                pa = probs[k, a]
                p = exps[u, a] * inv
                if need_ce and pa != 0.0:
                    ce -= pa * (logits[o, a] - lse)
                ip -= pa * p
                rce -= p * logp[k, a]
        else:
            ex = s.explicit
            for j in range(n):
                a = ex[o, j]
                pa = probs[k, a]
                p = exps[u, j] * inv
                if need_ce and pa != 0.0:
                    ce -= pa * (logits[o, j] - lse)
                ip -= pa * p
                rce -= p * logp[k, a]
            n_bulk = n_actions - n
            pb = t.bulk_probs[k]
            p = st[u, ST_BULK_EXP] * inv
            if need_ce and pb != 0.0:
                ce -= n_bulk * (pb * (s.bulk[o] - lse))
            ip -= n_bulk * (pb * p)
            rce -= n_bulk * (p * t.bulk_logp[k])
    st[u, ST_CE] = ce
    st[u, ST_IP] = ip
    st[u, ST_RCE] = rce


@njit(cache=True, inline="always")
def _foreign_key_step(
    s: StudentTable, t: TeacherTable, o: int, k: int, w: RowWork, u: int
) -> tuple[float, float, float]:  # pragma: no cover - compiled
    """The row quantities of dense row ``o`` at a key other than its own (per step)."""
    n_actions = s.logits.shape[1]
    inv = 1.0 / w.stats[u, ST_TOTAL]
    lse = w.stats[u, ST_LSE]
    ce = 0.0
    ip = 0.0
    rce = 0.0
    for a in range(n_actions):
        pa = t.probs[k, a]
        p = w.exps[u, a] * inv
        if pa != 0.0:
            ce -= pa * (s.logits[o, a] - lse)
        ip -= pa * p
        rce -= p * t.logp[k, a]
    return ce, ip, rce


@njit(cache=True, inline="always")
def _student_logit(s: StudentTable, o: int, a: int) -> float:  # pragma: no cover - compiled
    """The logit of action ``a`` in row ``o`` (the bulk's if ``a`` is a bulk action)."""
    if s.n_explicit[o] == s.logits.shape[1]:
        return s.logits[o, a]
    pos = search_row(s, o, a)
    return s.logits[o, pos] if pos >= 0 else s.bulk[o]


@njit(cache=True, inline="always")
def _gradient_step(
    s: StudentTable, t: TeacherTable, o: int, k: int, w: RowWork, u: int, lr: float
) -> None:  # pragma: no cover - compiled
    """``theta_o -= lr * (summed Eq. 1 gradient of the row's steps)``, bulk included.

    Per action: ``p_a * (G + C_ce + C_ip * dot - C_rce * rce - C_ip * pi_a - C_rce * log pi_a)
    - C_ce * pi_a + extra_a``, with ``G`` the summed advantages, ``C_*`` the summed loss
    coefficients, ``dot = sum pi p`` and ``rce`` the row's reverse cross-entropy.
    """
    logits, exps, extra, probs, logp, st = s.logits, w.exps, w.extra, t.probs, t.logp, w.stats
    n_actions = logits.shape[1]
    n = s.n_explicit[o]
    inv = 1.0 / st[u, ST_TOTAL]
    c_ce = st[u, ST_C_CE]
    c_ip = st[u, ST_C_IP]
    c_rce = st[u, ST_C_RCE]
    scale = st[u, ST_ADV] + c_ce + c_ip * (-st[u, ST_IP]) - c_rce * st[u, ST_RCE]
    if c_ce == 0.0 and c_ip == 0.0 and c_rce == 0.0:  # no loss term: the teacher is not read
        for j in range(n):
            logits[o, j] -= lr * (exps[u, j] * inv * scale + extra[u, j])
    elif n == n_actions:
        if c_ip == 0.0 and c_rce == 0.0:
            for a in range(n_actions):
                logits[o, a] -= lr * (exps[u, a] * inv * scale - c_ce * probs[k, a] + extra[u, a])
        else:
            for a in range(n_actions):
                p = exps[u, a] * inv
                g = p * (scale - c_ip * probs[k, a] - c_rce * logp[k, a])
                logits[o, a] -= lr * (g - c_ce * probs[k, a] + extra[u, a])
    else:
        ex = s.explicit
        for j in range(n):
            a = ex[o, j]
            p = exps[u, j] * inv
            g = p * (scale - c_ip * probs[k, a] - c_rce * logp[k, a])
            logits[o, j] -= lr * (g - c_ce * probs[k, a] + extra[u, j])
    if n == n_actions:
        return
    pb = t.bulk_probs[k]
    p = st[u, ST_BULK_EXP] * inv
    g = p * (scale - c_ip * pb - c_rce * t.bulk_logp[k])
    s.bulk[o] -= lr * (g - c_ce * pb)


@njit(cache=True, inline="always")
def update_student(
    obs: NDArray[np.int64],
    keys: NDArray[np.int64],
    actions: NDArray[np.int64],
    rewards: NDArray[np.float64],
    n_steps: int,
    terminated: bool,
    t: TeacherTable,
    s: StudentTable,
    critic: NDArray[np.float64],
    coef: NDArray[np.float64],
    codes: NDArray[np.int64],
    lr: float,
    gamma: float,
    w: RowWork,
    n_rows: int,
) -> None:  # pragma: no cover - compiled; checked against the NumPy reference in tests
    """Apply Eq. 1 for one episode to the student, in place (the episode's rows prepared).

    Every distinct observation ``o`` of ``obs[:n_idx]`` (``n_idx = T`` if ``terminated``, else
    ``T + 1``) has its row ``w.slot[o]`` (numbered ``0 .. n_rows - 1`` in order of first
    appearance, ``w.row_obs``/``w.row_key`` set) prepared by :func:`prepare_row`. On return
    ``w.slot`` is back at -1.

    Args:
        obs: ``[>= T + 1]`` student table index at steps ``0..T`` (the last is the observation
            after the final step; unused when ``terminated``).
        keys: ``[>= T + 1]`` teacher key at the same steps (``obs`` itself when the teacher is
            indexed like the student; other keys need dense rows).
        actions: ``[>= T]`` actions taken (explicit in their rows when the method has a
            policy-gradient term: :func:`draw_action` splits them).
        rewards: ``[>= T]`` environment rewards ``r_t``.
        n_steps: the episode's length ``T >= 1``.
        terminated: the last transition entered a terminal state (values and losses after it
            are 0); ``False`` for a truncated episode (bootstrapped from step ``T``).
        t: the teacher.
        s: the student, updated in place.
        critic: ``[N]`` the student's critic ``V_theta``, updated in place (ignored with no
            critic).
        coef: ``[N_COEF]`` method coefficients (:meth:`MethodSpec.params`).
        codes: ``[N_CODES]`` method codes.
        lr: learning rate.
        gamma: discount.
        w: the workspace.
        n_rows: rows of the episode in ``w``.
    """
    n_actions = s.logits.shape[1]
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
    pg = has_policy_gradient(coef, codes)
    # H_x(pi || pi_theta) itself only enters through the next step's loss (N-distill); its
    # gradient does not need it.
    need_ce = c_ce != 0.0 and c_next_loss != 0.0
    need = need_ce or c_ip != 0.0 or c_rce != 0.0 or (c_next_logp != 0.0 and not terminated)
    slot, st, values, weights = w.slot, w.stats, t.values, t.weights

    # --- 1. per row: lse and the row quantities at its own key; zero the accumulators.
    for u in range(n_rows):
        o = w.row_obs[u]
        _row_quantities(s, t, o, w.row_key[u], w, u, need, need_ce)
        st[u, ST_ADV] = 0.0
        st[u, ST_C_CE] = 0.0
        st[u, ST_C_IP] = 0.0
        st[u, ST_C_RCE] = 0.0
        for j in range(s.n_explicit[o]):
            w.extra[u, j] = 0.0

    # --- 2. per-step state quantities (before the update).
    n1 = n_steps + 1
    buf = w.steps
    if buf.shape[1] < n1:
        raise ValueError("the workspace is too short for this episode (make_row_work)")
    for i in range(n1):
        buf[_V_STUDENT, i] = 0.0
        buf[_V_TEACHER, i] = 0.0
        buf[_GATE, i] = 1.0
        buf[_CE, i] = 0.0
        buf[_IP, i] = 0.0
        buf[_RCE, i] = 0.0
        buf[_LOSS, i] = 0.0
        buf[_BOOT, i] = 0.0
    for i in range(n_idx):
        o = obs[i]
        k = keys[i]
        u = slot[o]
        buf[_V_STUDENT, i] = critic[o]
        buf[_V_TEACHER, i] = values[k]
        if vcond:
            buf[_GATE, i] = 1.0 if values[k] > critic[o] else 0.0
        if k == w.row_key[u]:
            ce, ip, rce = st[u, ST_CE], st[u, ST_IP], st[u, ST_RCE]
        else:
            ce, ip, rce = _foreign_key_step(s, t, o, k, w, u)
        buf[_CE, i] = ce
        buf[_IP, i] = ip
        buf[_RCE, i] = rce
        buf[_LOSS, i] = weights[k] * buf[_GATE, i] * (c_ce * ce + c_ip * ip)

    # --- 3. reward term rhat_t.
    for i in range(n_steps):
        o = obs[i]
        k = keys[i]
        a_t = actions[i]
        r = c_env * rewards[i]
        if c_tlogp != 0.0:
            r += c_tlogp * weights[k] * t.logp[k, a_t]
        if c_slogp != 0.0:
            r += c_slogp * (_student_logit(s, o, a_t) - st[slot[o], ST_LSE])
        if c_tv_next != 0.0:
            r += c_tv_next * gamma * buf[_V_TEACHER, i + 1]
        if c_tv != 0.0:
            r += c_tv * buf[_V_TEACHER, i]
        if c_sv != 0.0:
            r += c_sv * buf[_V_STUDENT, i]
        if i + 1 < n_steps:
            k1 = keys[i + 1]
            if c_next_loss != 0.0:
                r -= c_next_loss * gamma * buf[_LOSS, i + 1]
            if c_next_logp != 0.0:
                r += c_next_logp * gamma * weights[k1] * t.logp[k1, actions[i + 1]]
        elif not terminated:
            # Truncated: the step after the last is still part of the task.
            k1 = keys[n_steps]
            if c_next_loss != 0.0:
                r -= c_next_loss * gamma * buf[_LOSS, n_steps]
            if c_next_logp != 0.0:
                r -= c_next_logp * gamma * weights[k1] * buf[_RCE, n_steps]
        buf[_RHAT, i] = r

    # --- 4. advantages and critic targets.
    for i in range(1, n_idx):
        if boot_source == M.BOOT_STUDENT:
            buf[_BOOT, i] = buf[_V_STUDENT, i]
        elif boot_source == M.BOOT_TEACHER:
            buf[_BOOT, i] = buf[_V_TEACHER, i]
    if critic_mode == M.CRITIC_TD:
        for i in range(n_steps):
            target = buf[_RHAT, i] + gamma * buf[_BOOT, i + 1]
            buf[_TARGET, i] = target
            buf[_ADV, i] = target - buf[_V_STUDENT, i]
    elif pg:
        ret = buf[_BOOT, n_steps] if critic_mode == M.CRITIC_MC else 0.0
        for i in range(n_steps - 1, -1, -1):
            ret = buf[_RHAT, i] + gamma * ret
            buf[_TARGET, i] = ret
            buf[_ADV, i] = ret - buf[_V_STUDENT, i] if critic_mode == M.CRITIC_MC else ret

    # --- 5. accumulate each step's terms on its row (O(1) per step at the row's own key).
    for i in range(n_steps):
        o = obs[i]
        k = keys[i]
        u = slot[o]
        if pg:
            g = buf[_ADV, i]
            if g != 0.0:
                st[u, ST_ADV] += g
                a_t = actions[i]
                pos = a_t if s.n_explicit[o] == n_actions else search_row(s, o, a_t)
                if pos < 0:
                    raise ValueError("a taken action with an advantage must be explicit in its row")
                w.extra[u, pos] -= g
        wk = weights[k]
        gate = buf[_GATE, i]
        if k == w.row_key[u]:
            st[u, ST_C_CE] += wk * gate * c_ce
            st[u, ST_C_IP] += wk * gate * c_ip
            st[u, ST_C_RCE] += wk * c_rce
            continue
        if s.n_explicit[o] != n_actions:
            raise ValueError("a row visited with several teacher keys must be dense")
        inv = 1.0 / st[u, ST_TOTAL]
        cc = wk * gate * c_ce
        ci = wk * gate * c_ip
        cr = wk * c_rce
        dot = -buf[_IP, i]
        rce = buf[_RCE, i]
        for a in range(n_actions):
            p = w.exps[u, a] * inv
            pa = t.probs[k, a]
            w.extra[u, a] += cc * (p - pa) - ci * p * (pa - dot) - cr * p * (t.logp[k, a] + rce)

    # --- 6. one step on the logits and the critic; reset the workspace.
    for u in range(n_rows):
        o = w.row_obs[u]
        _gradient_step(s, t, o, w.row_key[u], w, u, lr)
        slot[o] = -1
    if use_critic:
        if codes[M.K_CRITIC_SEQUENTIAL] != 0:
            for i in range(n_steps):
                critic[obs[i]] += lr * (buf[_TARGET, i] - critic[obs[i]])
        else:
            for i in range(n_steps):
                critic[obs[i]] += lr * (buf[_TARGET, i] - buf[_V_STUDENT, i])


@njit(cache=True, inline="always")
def prepare_episode_rows(
    s: StudentTable, obs: NDArray[np.int64], keys: NDArray[np.int64], n_idx: int, w: RowWork
) -> int:  # pragma: no cover - compiled
    """Number the distinct rows of ``obs[:n_idx]`` in order of first appearance and prepare them.

    Returns:
        The number of rows (``w.slot``, ``w.row_obs``, ``w.row_key`` and the rows set).
    """
    n_rows = 0
    for i in range(n_idx):
        o = obs[i]
        if w.slot[o] < 0:
            w.slot[o] = n_rows
            w.row_obs[n_rows] = o
            w.row_key[n_rows] = keys[i]
            prepare_row(s, o, w, n_rows)
            n_rows += 1
    return n_rows


@loop_kernel
def episode_update_tables(
    obs: NDArray[np.int64],
    keys: NDArray[np.int64],
    actions: NDArray[np.int64],
    rewards: NDArray[np.float64],
    terminated: bool,
    t: TeacherTable,
    s: StudentTable,
    critic: NDArray[np.float64],
    coef: NDArray[np.float64],
    codes: NDArray[np.int64],
    lr: float,
    gamma: float,
    w: RowWork,
) -> None:  # pragma: no cover - compiled
    """One episode's update: split, prepare the rows, then :func:`update_student`.

    :func:`split_taken` for methods with a policy-gradient term, :func:`prepare_episode_rows`;
    arguments as in :func:`update_student`.

    Compiled without reference counting (:func:`~distill_agents.numerics.loop_kernel`), as
    are the runner's loops.
    """
    n_steps = actions.shape[0]
    if n_steps == 0:
        return
    n_idx = n_steps if terminated else n_steps + 1
    if has_policy_gradient(coef, codes) and s.explicit.shape[1] > 0:
        split_taken(s, obs, actions, n_steps, w, False)
    n_rows = prepare_episode_rows(s, obs, keys, n_idx, w)
    update_student(
        obs, keys, actions, rewards, n_steps, terminated, t, s, critic, coef, codes, lr, gamma, w,
        n_rows,
    )  # fmt: skip
