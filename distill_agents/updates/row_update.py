"""The compiled Eq. 1 update of one episode, row by row (see :mod:`distill_agents.updates.rows`)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from distill_agents import methods as M
from distill_agents.numerics import loop_kernel
from distill_agents.updates.records import EpisodeSteps, MethodParams
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
    "MethodTerms",
    "episode_update_tables",
    "method_terms",
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


class MethodTerms(NamedTuple):
    """The method's coefficients and codes as scalars, for one episode (:func:`method_terms`).

    Attributes:
        c_env: weight of ``r_i`` in ``rhat_i`` (``methods.C_ENV``).
        c_tlogp: of ``log pi(a_i | s_i)`` (``C_TEACHER_LOGP``).
        c_slogp: of ``log pi_theta(a_i | s_i)`` (``C_STUDENT_LOGP``).
        c_tv_next: of ``gamma V_pi(s_{i+1})`` (``C_TEACHER_V_NEXT``).
        c_tv: of ``V_pi(s_i)`` (``C_TEACHER_V``).
        c_sv: of ``V_theta(s_i)`` (``C_STUDENT_V``).
        c_ce: loss weight of ``H_x(pi || pi_theta)`` (``C_LOSS_CE``).
        c_ip: loss weight of ``-sum pi pi_theta`` (``C_LOSS_IP``).
        c_rce: loss weight of ``H_x(pi_theta || pi)`` (``C_LOSS_RCE``).
        c_next_loss: weight of ``-gamma l_state(s_{i+1})`` (``C_NEXT_LOSS``).
        c_next_logp: weight of ``gamma log pi(a_{i+1} | s_{i+1})`` (``C_NEXT_LOGP``).
        critic_mode: ``CRITIC_NONE``, ``CRITIC_MC`` or ``CRITIC_TD`` (``K_CRITIC``).
        boot_source: ``BOOT_STUDENT``, ``BOOT_TEACHER`` or ``BOOT_ZERO`` (``K_BOOTSTRAP``).
        vcond: the loss is gated by ``[V_pi(s) > V_theta(s)]`` (``K_VCOND``).
        sequential: the critic's step is applied visit by visit (``K_CRITIC_SEQUENTIAL``).
        pg: the method has a policy-gradient term (:func:`has_policy_gradient`).
        need_ce: ``H_x(pi || pi_theta)`` itself is needed (it enters the next step's loss).
        need: some row quantity (cross-entropies, information potential) is needed.
    """

    c_env: float
    c_tlogp: float
    c_slogp: float
    c_tv_next: float
    c_tv: float
    c_sv: float
    c_ce: float
    c_ip: float
    c_rce: float
    c_next_loss: float
    c_next_logp: float
    critic_mode: int
    boot_source: int
    vcond: bool
    sequential: bool
    pg: bool
    need_ce: bool
    need: bool


@njit(cache=True, inline="always")
def method_terms(
    coef: NDArray[np.float64], codes: NDArray[np.int64], terminated: bool
) -> MethodTerms:  # pragma: no cover - compiled
    """The :class:`MethodTerms` of a method's ``coef`` / ``codes`` for an episode."""
    c_ce = coef[M.C_LOSS_CE]
    c_ip = coef[M.C_LOSS_IP]
    c_rce = coef[M.C_LOSS_RCE]
    c_next_loss = coef[M.C_NEXT_LOSS]
    c_next_logp = coef[M.C_NEXT_LOGP]
    # H_x(pi || pi_theta) itself only enters through the next step's loss (N-distill); its
    # gradient does not need it.
    need_ce = c_ce != 0.0 and c_next_loss != 0.0
    need = need_ce or c_ip != 0.0 or c_rce != 0.0 or (c_next_logp != 0.0 and not terminated)
    return MethodTerms(
        coef[M.C_ENV], coef[M.C_TEACHER_LOGP], coef[M.C_STUDENT_LOGP], coef[M.C_TEACHER_V_NEXT],
        coef[M.C_TEACHER_V], coef[M.C_STUDENT_V], c_ce, c_ip, c_rce, c_next_loss, c_next_logp,
        codes[M.K_CRITIC], codes[M.K_BOOTSTRAP], codes[M.K_VCOND] != 0,
        codes[M.K_CRITIC_SEQUENTIAL] != 0, has_policy_gradient(coef, codes), need_ce, need,
    )  # fmt: skip


@njit(cache=True, inline="always")
def _start_rows(
    s: StudentTable, t: TeacherTable, w: RowWork, n_rows: int, m: MethodTerms
) -> None:  # pragma: no cover - compiled
    """Step 1: per row, the lse and the row quantities at its own key; zero the accumulators."""
    st = w.stats
    for u in range(n_rows):
        o = w.row_obs[u]
        _row_quantities(s, t, o, w.row_key[u], w, u, m.need, m.need_ce)
        st[u, ST_ADV] = 0.0
        st[u, ST_C_CE] = 0.0
        st[u, ST_C_IP] = 0.0
        st[u, ST_C_RCE] = 0.0
        for j in range(s.n_explicit[o]):
            w.extra[u, j] = 0.0


@njit(cache=True, inline="always")
def _step_quantities(
    ep: EpisodeSteps,
    t: TeacherTable,
    s: StudentTable,
    critic: NDArray[np.float64],
    w: RowWork,
    m: MethodTerms,
) -> None:  # pragma: no cover - compiled
    """Step 2: the per-step state quantities (before the update) into ``w.steps``."""
    n_steps = ep.n_steps
    n_idx = n_steps if ep.terminated else n_steps + 1
    slot, st, values, weights = w.slot, w.stats, t.values, t.weights
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
        o = ep.obs[i]
        k = ep.keys[i]
        u = slot[o]
        buf[_V_STUDENT, i] = critic[o]
        buf[_V_TEACHER, i] = values[k]
        if m.vcond:
            buf[_GATE, i] = 1.0 if values[k] > critic[o] else 0.0
        if k == w.row_key[u]:
            ce, ip, rce = st[u, ST_CE], st[u, ST_IP], st[u, ST_RCE]
        else:
            ce, ip, rce = _foreign_key_step(s, t, o, k, w, u)
        buf[_CE, i] = ce
        buf[_IP, i] = ip
        buf[_RCE, i] = rce
        buf[_LOSS, i] = weights[k] * buf[_GATE, i] * (m.c_ce * ce + m.c_ip * ip)


@njit(cache=True, inline="always")
def _reward_terms(
    ep: EpisodeSteps, t: TeacherTable, s: StudentTable, w: RowWork, m: MethodTerms, gamma: float
) -> None:  # pragma: no cover - compiled
    """Step 3: the reward term ``rhat_t`` of every step into ``w.steps``."""
    obs, keys, actions, n_steps = ep.obs, ep.keys, ep.actions, ep.n_steps
    slot, st, weights, buf = w.slot, w.stats, t.weights, w.steps
    for i in range(n_steps):
        o = obs[i]
        k = keys[i]
        a_t = actions[i]
        r = m.c_env * ep.rewards[i]
        if m.c_tlogp != 0.0:
            r += m.c_tlogp * weights[k] * t.logp[k, a_t]
        if m.c_slogp != 0.0:
            r += m.c_slogp * (_student_logit(s, o, a_t) - st[slot[o], ST_LSE])
        if m.c_tv_next != 0.0:
            r += m.c_tv_next * gamma * buf[_V_TEACHER, i + 1]
        if m.c_tv != 0.0:
            r += m.c_tv * buf[_V_TEACHER, i]
        if m.c_sv != 0.0:
            r += m.c_sv * buf[_V_STUDENT, i]
        if i + 1 < n_steps:
            k1 = keys[i + 1]
            if m.c_next_loss != 0.0:
                r -= m.c_next_loss * gamma * buf[_LOSS, i + 1]
            if m.c_next_logp != 0.0:
                r += m.c_next_logp * gamma * weights[k1] * t.logp[k1, actions[i + 1]]
        elif not ep.terminated:
            # Truncated: the step after the last is still part of the task.
            k1 = keys[n_steps]
            if m.c_next_loss != 0.0:
                r -= m.c_next_loss * gamma * buf[_LOSS, n_steps]
            if m.c_next_logp != 0.0:
                r -= m.c_next_logp * gamma * weights[k1] * buf[_RCE, n_steps]
        buf[_RHAT, i] = r


@njit(cache=True, inline="always")
def _advantages(
    ep: EpisodeSteps, w: RowWork, m: MethodTerms, gamma: float
) -> None:  # pragma: no cover - compiled
    """Step 4: the bootstrapped values, the advantages and the critic's targets."""
    n_steps = ep.n_steps
    n_idx = n_steps if ep.terminated else n_steps + 1
    buf = w.steps
    for i in range(1, n_idx):
        if m.boot_source == M.BOOT_STUDENT:
            buf[_BOOT, i] = buf[_V_STUDENT, i]
        elif m.boot_source == M.BOOT_TEACHER:
            buf[_BOOT, i] = buf[_V_TEACHER, i]
    if m.critic_mode == M.CRITIC_TD:
        for i in range(n_steps):
            target = buf[_RHAT, i] + gamma * buf[_BOOT, i + 1]
            buf[_TARGET, i] = target
            buf[_ADV, i] = target - buf[_V_STUDENT, i]
    elif m.pg:
        mc = m.critic_mode == M.CRITIC_MC
        ret = buf[_BOOT, n_steps] if mc else 0.0
        for i in range(n_steps - 1, -1, -1):
            ret = buf[_RHAT, i] + gamma * ret
            buf[_TARGET, i] = ret
            buf[_ADV, i] = ret - buf[_V_STUDENT, i] if mc else ret


@njit(cache=True, inline="always")
def _accumulate(
    ep: EpisodeSteps, t: TeacherTable, s: StudentTable, w: RowWork, m: MethodTerms
) -> None:  # pragma: no cover - compiled
    """Step 5: each step's terms on its row (O(1) per step at the row's own key)."""
    n_actions = s.logits.shape[1]
    slot, st, weights, buf = w.slot, w.stats, t.weights, w.steps
    for i in range(ep.n_steps):
        o = ep.obs[i]
        k = ep.keys[i]
        u = slot[o]
        if m.pg:
            g = buf[_ADV, i]
            if g != 0.0:
                st[u, ST_ADV] += g
                a_t = ep.actions[i]
                pos = a_t if s.n_explicit[o] == n_actions else search_row(s, o, a_t)
                if pos < 0:
                    raise ValueError("a taken action with an advantage must be explicit in its row")
                w.extra[u, pos] -= g
        wk = weights[k]
        gate = buf[_GATE, i]
        if k == w.row_key[u]:
            st[u, ST_C_CE] += wk * gate * m.c_ce
            st[u, ST_C_IP] += wk * gate * m.c_ip
            st[u, ST_C_RCE] += wk * m.c_rce
            continue
        if s.n_explicit[o] != n_actions:
            raise ValueError("a row visited with several teacher keys must be dense")
        cc = wk * gate * m.c_ce
        _foreign_key_terms(t, k, w, u, i, n_actions, cc, wk * gate * m.c_ip, wk * m.c_rce)


@njit(cache=True, inline="always")
def _foreign_key_terms(
    t: TeacherTable,
    k: int,
    w: RowWork,
    u: int,
    i: int,
    n_actions: int,
    cc: float,
    ci: float,
    cr: float,
) -> None:  # pragma: no cover - compiled
    """The loss gradients of step ``i`` of dense row ``u`` at a key ``k`` other than its own.

    Added to ``w.extra[u]``, with the summed loss coefficients ``cc`` (cross-entropy), ``ci``
    (information potential) and ``cr`` (reverse cross-entropy) of the step.
    """
    inv = 1.0 / w.stats[u, ST_TOTAL]
    dot = -w.steps[_IP, i]
    rce = w.steps[_RCE, i]
    for a in range(n_actions):
        p = w.exps[u, a] * inv
        pa = t.probs[k, a]
        w.extra[u, a] += cc * (p - pa) - ci * p * (pa - dot) - cr * p * (t.logp[k, a] + rce)


@njit(cache=True, inline="always")
def _apply_steps(
    ep: EpisodeSteps,
    t: TeacherTable,
    s: StudentTable,
    critic: NDArray[np.float64],
    w: RowWork,
    n_rows: int,
    m: MethodTerms,
    lr: float,
) -> None:  # pragma: no cover - compiled
    """Step 6: one step on the logits and the critic; reset the workspace's ``slot``."""
    obs, buf = ep.obs, w.steps
    for u in range(n_rows):
        o = w.row_obs[u]
        _gradient_step(s, t, o, w.row_key[u], w, u, lr)
        w.slot[o] = -1
    if m.critic_mode != M.CRITIC_NONE:
        if m.sequential:
            for i in range(ep.n_steps):
                critic[obs[i]] += lr * (buf[_TARGET, i] - critic[obs[i]])
        else:
            for i in range(ep.n_steps):
                critic[obs[i]] += lr * (buf[_TARGET, i] - buf[_V_STUDENT, i])


@njit(cache=True, inline="always")
def update_student(
    ep: EpisodeSteps,
    t: TeacherTable,
    s: StudentTable,
    critic: NDArray[np.float64],
    method: MethodParams,
    w: RowWork,
    n_rows: int,
) -> None:  # pragma: no cover - compiled; checked against the NumPy reference in tests
    """Apply Eq. 1 for one episode to the student, in place (the episode's rows prepared).

    Every distinct observation ``o`` of ``ep.obs[:n_idx]`` (``n_idx = T`` if
    ``ep.terminated``, else ``T + 1``) has its row ``w.slot[o]`` (numbered ``0 .. n_rows - 1``
    in order of first appearance, ``w.row_obs``/``w.row_key`` set) prepared by
    :func:`prepare_row`. On return ``w.slot`` is back at -1.

    Args:
        ep: the episode (:class:`~distill_agents.updates.records.EpisodeSteps`).
        t: the teacher.
        s: the student, updated in place.
        critic: ``[N]`` the student's critic ``V_theta``, updated in place (ignored with no
            critic).
        method: the method's coefficients, codes, learning rate and discount.
        w: the workspace.
        n_rows: rows of the episode in ``w``.
    """
    m = method_terms(method.coef, method.codes, ep.terminated)
    _start_rows(s, t, w, n_rows, m)
    _step_quantities(ep, t, s, critic, w, m)
    _reward_terms(ep, t, s, w, m, method.gamma)
    _advantages(ep, w, m, method.gamma)
    _accumulate(ep, t, s, w, m)
    _apply_steps(ep, t, s, critic, w, n_rows, m, method.lr)


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
    arguments as the fields of :func:`update_student`'s records
    (:class:`~distill_agents.updates.records.EpisodeSteps`, ``n_steps = T`` from ``actions``;
    :class:`~distill_agents.updates.records.MethodParams`).

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
    ep = EpisodeSteps(obs, keys, actions, rewards, n_steps, terminated)
    update_student(ep, t, s, critic, MethodParams(coef, codes, lr, gamma), w, n_rows)
