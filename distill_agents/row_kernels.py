"""Compiled per-row kernels of the Eq. 1 update: the work of a step does not grow with ``|A|``.

Within one episode a student's logits do not change (the update of Eq. 1 is applied once, after
the episode, at the parameters that sampled it), so every quantity of a step that depends only
on its state's row -- the cross-entropies, the loss gradients, ``p * Ahat`` -- is accumulated per
*distinct row* of the episode (visit counts and summed advantages) and the row is touched once:
a step costs O(1) (plus an O(log A) draw of the control policy from the row's cumulative
weights) and a row O(its explicit actions) once per episode.

Exchangeable actions: the bulk
    The update treats two actions of a row alike when their teacher probabilities and their
    logits are equal, unless one of them gets a term of its own: the ``-e_a Ahat`` of the policy
    gradient when it is *taken*. So actions whose teacher probability is the row's common value
    (with Fig. 4's optimal teacher: every action but the greedy ones, e.g. 3999 of 4000) keep
    equal logits until a method with a policy-gradient term takes one of them. A student row
    keeps the logits of its *explicit* actions (where the teacher differs from its common
    value, and every action taken so far by such a method) and one shared logit, ``bulk``, for
    all the others. Nothing is approximated: every bulk action's logit is exactly ``bulk[o]``
    (:func:`dense_logits` writes them out); only sums over the row add ``n_bulk`` equal terms as
    one product, so results differ from a row of independent entries by floating-point
    summation order. A row with no bulk (``n_explicit == A``) is *dense*: its explicit actions
    are ``0 .. A - 1`` and the list is not read. Tables with fewer than
    :data:`BULK_MIN_ACTIONS` actions, and rows whose teacher differs from its common value on
    more than half the actions, are dense from the start.

The tables (typed records, :class:`StudentTable`, :class:`TeacherTable`, :class:`RowWork`)
    ``StudentTable(logits [N, A], bulk [N], n_explicit [N], explicit [N, L])``: ``explicit[o,
    :n_explicit[o]]`` is the sorted list of row ``o``'s explicit actions (``L = A`` when some row
    may have a bulk, else 0); ``logits[o, a]`` is valid for explicit ``a``. The teacher's
    ``bulk_probs [Nt]`` / ``bulk_logp [Nt]`` are its value on a row's bulk actions, and ``cum``
    its cumulative probabilities for the teacher's draws.

Draws
    A draw takes the first action, in index order, whose cumulative weight exceeds ``u *
    total`` (inverse CDF), with the row's cumulative sums built once per row and episode
    (:func:`prepare_row`) and a binary search; the bulk's members fill the gaps between
    explicit actions, so the same action comes out as from a dense row of the same weights. On
    dense rows the draws and the sums are those of a linear scan, operation for operation.

Splitting
    When a method with a policy-gradient term draws a bulk action, the action becomes explicit
    (:func:`split_action`) before the update gives it its own term. A split changes no value
    (its logit is the bulk's), only how later sums of the row are grouped; every loop splits at
    the step that draws the action, so the vector-env loop, the compiled loop and the single-env
    :func:`~distill_agents.distill` train the same students.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from distill_agents import methods as M

__all__ = [
    "BULK_MIN_ACTIONS",
    "N_ROW_STATS",
    "N_STEP_ROWS",
    "RowWork",
    "StudentTable",
    "TeacherTable",
    "common_values",
    "dense_logits",
    "dense_table",
    "draw_action",
    "draw_student",
    "draw_teacher",
    "episode_update_tables",
    "has_bulk",
    "has_policy_gradient",
    "initial_explicit",
    "make_row_work",
    "prepare_episode_rows",
    "prepare_row",
    "split_action",
    "split_after_episode",
    "split_prepared",
    "student_table",
    "teacher_cumulative",
    "teacher_table",
    "update_student",
]

#: Tables with at least this many actions may have rows with a bulk (below, every row is dense).
BULK_MIN_ACTIONS = 8
#: Rows of the per-step workspace ``RowWork.steps``.
N_STEP_ROWS = 11
# Columns of ``RowWork.stats`` (one row per distinct student row of the episode).
ST_MAX = 0  #: the row's largest logit
ST_TOTAL = 1  #: sum of the exponentials ``exp(logit - max)`` (bulk included)
ST_BULK_EXP = 2  #: ``exp(bulk - max)`` (0 without a bulk)
ST_LSE = 3  #: log-sum-exp of the logits
ST_CE = 4  #: ``H_x(pi || pi_theta)`` at the row's key
ST_IP = 5  #: ``-sum_a pi(a) pi_theta(a)``
ST_RCE = 6  #: ``H_x(pi_theta || pi)`` (floored ``log pi``)
ST_ADV = 7  #: summed advantages of the row's steps
ST_C_CE = 8  #: summed coefficients of the cross-entropy loss gradient
ST_C_IP = 9  #: ... of the information-potential loss gradient
ST_C_RCE = 10  #: ... of the reverse cross-entropy loss gradient
N_ROW_STATS = 11


class StudentTable(NamedTuple):
    """One tabular student (module docstring).

    Attributes:
        logits: ``[N, A]`` float64; valid at the explicit actions of each row.
        bulk: ``[N]`` float64: the logit shared by the row's bulk actions.
        n_explicit: ``[N]`` int64: explicit actions per row (``A``: a dense row).
        explicit: ``[N, L]`` int32: ``explicit[o, :n_explicit[o]]`` sorted (``L`` is 0 when no
            row has a bulk).
    """

    logits: NDArray[np.float64]
    bulk: NDArray[np.float64]
    n_explicit: NDArray[np.int64]
    explicit: NDArray[np.int32]


class TeacherTable(NamedTuple):
    """One teacher, indexed by key (the teacher's table index).

    Attributes:
        probs: ``[Nt, A]`` action probabilities ``pi``.
        logp: ``[Nt, A]`` floored ``log pi``.
        values: ``[Nt]`` ``V_pi`` (zeros if unused).
        weights: ``[Nt]`` weight of the teacher's signal per key.
        bulk_probs: ``[Nt]`` ``pi`` on a student row's bulk actions.
        bulk_logp: ``[Nt]`` floored ``log pi`` on them.
        cum: ``[Nt, A]`` cumulative ``pi`` (:func:`teacher_cumulative`) for the teacher's
            draws, or ``[0, 0]`` when the control policy never follows the teacher.
        last: ``[Nt]`` the last action with ``pi > 0`` (the draw when rounding leaves ``u`` above
            the row's total), or ``[0]``.
    """

    probs: NDArray[np.float64]
    logp: NDArray[np.float64]
    values: NDArray[np.float64]
    weights: NDArray[np.float64]
    bulk_probs: NDArray[np.float64]
    bulk_logp: NDArray[np.float64]
    cum: NDArray[np.float64]
    last: NDArray[np.int64]


class RowWork(NamedTuple):
    """Scratch arrays of one episode's update, reusable across episodes (:func:`make_row_work`).

    Attributes:
        slot: ``[N]`` row of each student table index in the arrays below, -1 if none (left at
            -1 between episodes).
        row_obs: ``[U]`` table index of each row.
        row_key: ``[U]`` teacher key of each row (the key at its first visit).
        exps: ``[U, A]`` exponentials of the explicit logits, in list order.
        cum: ``[U, A]`` their running sums.
        extra: ``[U, A]`` per-explicit-action terms of the gradient (policy gradient of the
            taken actions; losses at foreign keys).
        stats: ``[U, N_ROW_STATS]`` per-row scalars (``ST_*``).
        steps: ``[N_STEP_ROWS, W]`` per-step quantities of episodes up to ``W - 1`` steps.
    """

    slot: NDArray[np.int64]
    row_obs: NDArray[np.int64]
    row_key: NDArray[np.int64]
    exps: NDArray[np.float64]
    cum: NDArray[np.float64]
    extra: NDArray[np.float64]
    stats: NDArray[np.float64]
    steps: NDArray[np.float64]


# ====================================================================== building the tables
def make_row_work(n_obs: int, n_actions: int, max_steps: int) -> RowWork:
    """Scratch arrays for episodes of up to ``max_steps`` steps on ``[n_obs, n_actions]`` tables.

    A longer episode still works (the per-step arrays are then allocated for it).
    """
    rows = max(1, min(int(n_obs), int(max_steps) + 1))
    a = int(n_actions)
    return RowWork(
        np.full(int(n_obs), -1, dtype=np.int64),
        np.zeros(rows, dtype=np.int64),
        np.zeros(rows, dtype=np.int64),
        np.zeros((rows, a)),
        np.zeros((rows, a)),
        np.zeros((rows, a)),
        np.zeros((rows, N_ROW_STATS)),
        np.zeros((N_STEP_ROWS, int(max_steps) + 1)),
    )


def has_bulk(n_actions: int) -> bool:
    """Whether rows of tables with ``n_actions`` actions may have a bulk."""
    return int(n_actions) >= BULK_MIN_ACTIONS


def _bulk_choice(probs: NDArray[np.float64]) -> NDArray[np.bool_]:
    """``[..., 1]``: a row's common value is ``probs[..., 0]`` (else ``probs[..., -1]``).

    Of the two candidates, the one more of the row's entries are equal to.
    """
    first, last = probs[..., :1], probs[..., -1:]
    out: NDArray[np.bool_] = (probs == first).sum(-1, keepdims=True) >= (probs == last).sum(
        -1, keepdims=True
    )
    return out


def _at_choice(values: NDArray[np.float64], choice: NDArray[np.bool_]) -> NDArray:
    out: NDArray = np.where(choice, values[..., :1], values[..., -1:])[..., 0]
    return out


def initial_explicit(
    teacher_probs: NDArray[np.float64],
) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """The explicit actions of fresh (all-zero) students of these teachers.

    Args:
        teacher_probs: ``[..., N, A]`` the teacher of each row (the key is the row).

    Returns:
        ``(n_explicit [..., N], explicit [..., N, L])``: the actions where the teacher's row
        differs from its common value (:attr:`TeacherTable.bulk_probs`) are explicit; a row
        where more than half of them are is dense, and so is every row when ``A`` is below
        :data:`BULK_MIN_ACTIONS`. ``L = A`` if some row has a bulk, else 0.
    """
    probs = np.asarray(teacher_probs, dtype=np.float64)
    n_actions = probs.shape[-1]
    lead = probs.shape[:-1]
    dense_rows = (np.full(lead, n_actions, dtype=np.int64), np.zeros((*lead, 0), dtype=np.int32))
    if not has_bulk(n_actions):
        return dense_rows
    differs = probs != _at_choice(probs, _bulk_choice(probs))[..., None]
    n_explicit = differs.sum(-1).astype(np.int64)
    dense = n_explicit * 2 > n_actions
    if dense.all():
        return dense_rows
    differs[dense] = True
    n_explicit[dense] = n_actions
    # The explicit actions first, in index order: a stable sort of "not explicit".
    order = np.argsort(~differs, axis=-1, kind="stable").astype(np.int32)
    return n_explicit, order


def student_table(n_obs: int, teacher_probs: NDArray[np.float64]) -> StudentTable:
    """A fresh (all-zero) student of a teacher indexed like it (``teacher_probs [N, A]``)."""
    n_explicit, explicit = initial_explicit(teacher_probs)
    n_actions = np.shape(teacher_probs)[-1]
    return StudentTable(np.zeros((n_obs, n_actions)), np.zeros(n_obs), n_explicit, explicit)


def dense_table(logits: NDArray[np.float64]) -> StudentTable:
    """A view of dense logits ``[..., N, A]`` as a table whose rows are all dense (no copy)."""
    lead, n_actions = logits.shape[:-1], logits.shape[-1]
    return StudentTable(
        logits,
        np.zeros(lead),
        np.full(lead, n_actions, dtype=np.int64),
        np.zeros((*lead, 0), dtype=np.int32),
    )


def common_values(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """``[...]``: each row's common value (the value of a student row's bulk actions).

    The more frequent of the row's first and last entries (:func:`initial_explicit` makes the
    actions with other values explicit); 0 for tables below :data:`BULK_MIN_ACTIONS` actions.
    """
    values = np.asarray(values, dtype=np.float64)
    if not has_bulk(values.shape[-1]):
        return np.zeros(values.shape[:-1])
    return _at_choice(values, _bulk_choice(values))


def teacher_cumulative(
    probs: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``(cum [..., A], last [...])`` for :func:`draw_teacher`: running sums and last ``pi > 0``.

    The running sums are sequential (``np.cumsum``), so a draw is the linear scan's.
    """
    probs = np.asarray(probs, dtype=np.float64)
    cum = np.cumsum(probs, axis=-1)
    positive = probs > 0.0
    n_actions = probs.shape[-1]
    last = n_actions - 1 - np.argmax(positive[..., ::-1], axis=-1)
    last = np.where(positive.any(-1), last, 0)
    return cum, last.astype(np.int64)


def teacher_table(
    probs: NDArray[np.float64],
    logp: NDArray[np.float64],
    values: NDArray[np.float64],
    weights: NDArray[np.float64],
    with_draws: bool,
) -> TeacherTable:
    """The :class:`TeacherTable` of ``[..., Nt, A]`` tables (``with_draws``: the draw tables)."""
    if has_bulk(probs.shape[-1]):
        choice = _bulk_choice(probs)
        bulk_probs = _at_choice(probs, choice)
        bulk_logp = _at_choice(logp, choice)
    else:
        bulk_probs = np.zeros(probs.shape[:-1])
        bulk_logp = np.zeros(probs.shape[:-1])
    if with_draws:
        cum, last = teacher_cumulative(probs)
    else:
        cum, last = np.zeros((*probs.shape[:-2], 0, 0)), np.zeros((*probs.shape[:-2], 0), np.int64)
    return TeacherTable(probs, logp, values, weights, bulk_probs, bulk_logp, cum, last)


@njit(cache=True)
def _fill_dense(
    logits: NDArray[np.float64],
    bulk: NDArray[np.float64],
    n_explicit: NDArray[np.int64],
    explicit: NDArray[np.int32],
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    n_obs, n_actions = logits.shape
    for o in range(n_obs):
        n = n_explicit[o]
        if n == n_actions:
            for a in range(n_actions):
                out[o, a] = logits[o, a]
            continue
        for a in range(n_actions):
            out[o, a] = bulk[o]
        for j in range(n):
            a = explicit[o, j]
            out[o, a] = logits[o, a]


def dense_logits(table: StudentTable, out: NDArray[np.float64] | None = None) -> NDArray:
    """The table's logits ``[..., N, A]`` with every bulk action's entry written out.

    ``out`` (optional) must not be the table's own ``logits``.
    """
    logits = np.asarray(table.logits)
    result = np.empty(logits.shape) if out is None else out
    if logits.ndim == 2:
        _fill_dense(logits, table.bulk, table.n_explicit, table.explicit, result)
        return result
    for i in np.ndindex(logits.shape[:-2]):
        _fill_dense(logits[i], table.bulk[i], table.n_explicit[i], table.explicit[i], result[i])
    return result


# ============================================================================ rows and draws
@njit(cache=True, inline="always")
def has_policy_gradient(
    coef: NDArray[np.float64], codes: NDArray[np.int64]
) -> bool:  # pragma: no cover
    """The method's advantages can be non-zero (a reward channel or a critic).

    Only such methods give the taken action a term of its own, so only they split a drawn
    bulk action.
    """
    return (
        coef[M.C_ENV] != 0.0
        or coef[M.C_TEACHER_LOGP] != 0.0
        or coef[M.C_STUDENT_LOGP] != 0.0
        or coef[M.C_TEACHER_V_NEXT] != 0.0
        or coef[M.C_TEACHER_V] != 0.0
        or coef[M.C_STUDENT_V] != 0.0
        or coef[M.C_NEXT_LOSS] != 0.0
        or coef[M.C_NEXT_LOGP] != 0.0
        or codes[M.K_CRITIC] != M.CRITIC_NONE
    )


@njit(cache=True, inline="always")
def prepare_row(s: StudentTable, o: int, w: RowWork, u: int) -> None:  # pragma: no cover
    """Row ``o``'s exponentials and running sums into row ``u`` of the workspace.

    ``exps[u, j] = exp(logit of the j-th explicit action - max)``, ``cum[u, j]`` their running
    sum; ``stats[u]``: the max, the total (``n_bulk * exp(bulk - max)`` added last) and the
    bulk's exponential. A pure function of the row's state, so a loop may compute it once per
    episode or at every step.
    """
    n_actions = s.logits.shape[1]
    n = s.n_explicit[o]
    lg = s.logits[o]
    exps = w.exps[u]
    cum = w.cum[u]
    if n == n_actions:
        top = lg[0]
        for a in range(1, n_actions):
            if lg[a] > top:
                top = lg[a]
        total = 0.0
        for a in range(n_actions):
            e = math.exp(lg[a] - top)
            exps[a] = e
            total += e
            cum[a] = total
        w.stats[u, ST_MAX] = top
        w.stats[u, ST_TOTAL] = total
        w.stats[u, ST_BULK_EXP] = 0.0
        return
    ex = s.explicit[o]
    top = s.bulk[o]
    for j in range(n):
        v = lg[ex[j]]
        if v > top:
            top = v
    total = 0.0
    for j in range(n):
        e = math.exp(lg[ex[j]] - top)
        exps[j] = e
        total += e
        cum[j] = total
    eb = math.exp(s.bulk[o] - top)
    w.stats[u, ST_MAX] = top
    w.stats[u, ST_TOTAL] = total + (n_actions - n) * eb
    w.stats[u, ST_BULK_EXP] = eb


@njit(inline="always")
def _first_above(cum: NDArray[np.float64], n: int, target: float) -> int:  # pragma: no cover
    """Smallest ``j < n`` with ``cum[j] > target`` (``cum`` non-decreasing), else ``n``."""
    if n <= 16:
        for j in range(n):
            if cum[j] > target:
                return j
        return n
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if cum[mid] > target:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(inline="always")
def _bulk_ordinal(
    base: float, eb: float, lo: int, hi: int, target: float
) -> int:  # pragma: no cover
    """Smallest bulk ordinal ``q`` in ``[lo, hi)`` with ``base + (q + 1) * eb > target``.

    ``hi - 1`` if there is none (rounding, or bulk weights that underflowed to 0).
    """
    if eb <= 0.0:
        return hi - 1
    qf = (target - base) / eb
    if qf <= lo:
        q = lo
    elif qf >= hi - 1:
        q = hi - 1
    else:
        q = int(qf)
    while q > lo and base + q * eb > target:
        q -= 1
    while q < hi - 1 and base + (q + 1) * eb <= target:
        q += 1
    return q


@njit(cache=True, inline="always")
def draw_student(
    s: StudentTable, o: int, w: RowWork, u: int, x: float
) -> tuple[int, int, bool]:  # pragma: no cover - compiled
    """Draw from ``softmax(logits[o])`` (row ``u`` prepared) with the uniform ``x`` in [0, 1).

    Returns:
        ``(action, position, bulk)``: ``position`` is the action's index in the row's explicit
        list, or where it would be inserted when ``bulk`` (it is one of the bulk's members).
    """
    n_actions = s.logits.shape[1]
    n = s.n_explicit[o]
    cum = w.cum[u]
    target = x * w.stats[u, ST_TOTAL]
    if n == n_actions:
        j = _first_above(cum, n_actions, target)
        a = j if j < n_actions else n_actions - 1
        return a, a, False
    ex = s.explicit[o]
    eb = w.stats[u, ST_BULK_EXP]
    # Smallest j whose explicit action ends above the target (bulk members below it included).
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if cum[mid] + (ex[mid] - mid) * eb > target:
            hi = mid
        else:
            lo = mid + 1
    j = lo
    if j > 0:
        base = cum[j - 1]
        q_lo = ex[j - 1] - (j - 1)
        start = ex[j - 1] + 1
    else:
        base = 0.0
        q_lo = 0
        start = 0
    q_hi = ex[j] - j if j < n else n_actions - n
    if q_hi > q_lo and (j == n or base + q_hi * eb > target):
        q = _bulk_ordinal(base, eb, q_lo, q_hi, target)
        return start + (q - q_lo), j, True
    if j == n:
        return n_actions - 1, n - 1, False
    return ex[j], j, False


@njit(cache=True, inline="always")
def draw_teacher(t: TeacherTable, k: int, x: float) -> int:  # pragma: no cover - compiled
    """Draw from the teacher's row ``k`` (the first action whose running sum exceeds ``x``)."""
    n_actions = t.cum.shape[1]
    j = _first_above(t.cum[k], n_actions, x)
    return j if j < n_actions else t.last[k]


@njit(cache=True, inline="always")
def _search(ex: NDArray[np.int32], n: int, a: int) -> int:  # pragma: no cover - compiled
    """Position of ``a`` in the sorted ``ex[:n]``, or ``-(insertion point) - 1``."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if ex[mid] < a:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and ex[lo] == a:
        return lo
    return -lo - 1


@njit(cache=True, inline="always")
def split_action(s: StudentTable, o: int, a: int, pos: int) -> None:  # pragma: no cover
    """Make the bulk action ``a`` of row ``o`` explicit at list position ``pos``."""
    n = s.n_explicit[o]
    ex = s.explicit[o]
    for j in range(n, pos, -1):
        ex[j] = ex[j - 1]
    ex[pos] = a
    s.logits[o, a] = s.bulk[o]
    s.n_explicit[o] = n + 1


@njit(cache=True, inline="always")
def split_prepared(
    s: StudentTable, o: int, a: int, pos: int, w: RowWork, u: int
) -> None:  # pragma: no cover - compiled
    """:func:`split_action`, and row ``u`` of the workspace updated as :func:`prepare_row` would.

    The new explicit entry's exponential is the bulk's; the running sums from ``pos`` on are
    summed again in order, so the row is exactly what preparing it from scratch gives.
    """
    n = s.n_explicit[o]
    exps = w.exps[u]
    cum = w.cum[u]
    for j in range(n, pos, -1):
        exps[j] = exps[j - 1]
    eb = w.stats[u, ST_BULK_EXP]
    exps[pos] = eb
    total = cum[pos - 1] if pos > 0 else 0.0
    for j in range(pos, n + 1):
        total += exps[j]
        cum[j] = total
    split_action(s, o, a, pos)
    w.stats[u, ST_TOTAL] = total + (s.logits.shape[1] - (n + 1)) * eb


@njit(cache=True, inline="always")
def draw_action(
    control: int,
    beta: float,
    t: TeacherTable,
    s: StudentTable,
    o: int,
    w: RowWork,
    u: int,
    x: float,
    split: bool,
    prepared: bool,
) -> int:  # pragma: no cover - compiled
    """One action of the control policy at row ``o`` (key ``o``) from one uniform ``x``.

    Args:
        control: ``CONTROL_*`` code (:mod:`distill_agents.methods`).
        beta: the mixture's teacher weight (``CONTROL_MIXTURE``: the teacher's draw with
            ``x / beta`` when ``x < beta``, else the student's with ``(x - beta) / (1 - beta)``).
        t: the teacher (its draw tables when it can be followed).
        s: the student.
        o: the row.
        w: workspace; row ``u`` holds row ``o`` prepared when ``prepared``, else it is used as
            scratch (the row is prepared there first).
        u: workspace row.
        x: the uniform.
        split: make a drawn bulk action explicit (methods with a policy-gradient term).
        prepared: see ``w``.
    """
    n_actions = s.logits.shape[1]
    if control == M.CONTROL_UNIFORM or control == M.CONTROL_TEACHER:
        if control == M.CONTROL_TEACHER:
            a = draw_teacher(t, o, x)
        else:
            a = min(int(x * n_actions), n_actions - 1)
        if split and s.n_explicit[o] < n_actions:
            pos = _search(s.explicit[o], s.n_explicit[o], a)
            if pos < 0:
                split_action(s, o, a, -pos - 1)
        return a
    if control == M.CONTROL_MIXTURE and x < beta:
        a = draw_teacher(t, o, x / beta)
        if split and s.n_explicit[o] < n_actions:
            pos = _search(s.explicit[o], s.n_explicit[o], a)
            if pos < 0:
                if prepared:
                    split_prepared(s, o, a, -pos - 1, w, u)
                else:
                    split_action(s, o, a, -pos - 1)
        return a
    if control == M.CONTROL_MIXTURE:
        x = (x - beta) / (1.0 - beta)
    if not prepared:
        prepare_row(s, o, w, u)
    a, pos, bulk = draw_student(s, o, w, u, x)
    if split and bulk:
        if prepared:
            split_prepared(s, o, a, pos, w, u)
        else:
            split_action(s, o, a, pos)
    return a


@njit(cache=True, inline="always")
def split_after_episode(
    s: StudentTable, obs: NDArray[np.int64], actions: NDArray[np.int64]
) -> None:  # pragma: no cover - compiled
    """Make every action the episode took explicit in its row.

    What :func:`draw_action` with ``split`` does at each step, for control policies whose draws
    do not read the student's row.
    """
    n_actions = s.logits.shape[1]
    for t in range(actions.shape[0]):
        o = obs[t]
        n = s.n_explicit[o]
        if n < n_actions:
            pos = _search(s.explicit[o], n, actions[t])
            if pos < 0:
                split_action(s, o, actions[t], -pos - 1)


# ============================================================================= the update
@njit(cache=True, inline="always")
def _row_quantities(
    s: StudentTable,
    t: TeacherTable,
    o: int,
    k: int,
    w: RowWork,
    u: int,
    need_ce: bool,
    need_ip: bool,
    need_rce: bool,
) -> None:  # pragma: no cover - compiled
    """Row ``u``'s lse and its cross-entropies and information potential at key ``k``."""
    n_actions = s.logits.shape[1]
    n = s.n_explicit[o]
    st = w.stats[u]
    total = st[ST_TOTAL]
    lse = st[ST_MAX] + math.log(total)
    st[ST_LSE] = lse
    if not (need_ce or need_ip or need_rce):
        st[ST_CE] = 0.0
        st[ST_IP] = 0.0
        st[ST_RCE] = 0.0
        return
    inv = 1.0 / total
    lg = s.logits[o]
    exps = w.exps[u]
    pk = t.probs[k]
    lk = t.logp[k]
    ce = 0.0
    ip = 0.0
    rce = 0.0
    if n == n_actions:
        for a in range(n_actions):
            pa = pk[a]
            p = exps[a] * inv
            if need_ce and pa != 0.0:
                ce -= pa * (lg[a] - lse)
            ip -= pa * p
            rce -= p * lk[a]
    else:
        ex = s.explicit[o]
        for j in range(n):
            a = ex[j]
            pa = pk[a]
            p = exps[j] * inv
            if need_ce and pa != 0.0:
                ce -= pa * (lg[a] - lse)
            ip -= pa * p
            rce -= p * lk[a]
        n_bulk = n_actions - n
        pb = t.bulk_probs[k]
        p = st[ST_BULK_EXP] * inv
        if need_ce and pb != 0.0:
            ce -= n_bulk * (pb * (s.bulk[o] - lse))
        ip -= n_bulk * (pb * p)
        rce -= n_bulk * (p * t.bulk_logp[k])
    st[ST_CE] = ce
    st[ST_IP] = ip
    st[ST_RCE] = rce


@njit(cache=True, inline="always")
def _foreign_key_step(
    s: StudentTable,
    t: TeacherTable,
    o: int,
    k: int,
    w: RowWork,
    u: int,
) -> tuple[float, float, float]:  # pragma: no cover - compiled
    """The row quantities of dense row ``o`` at a key other than its own (per step)."""
    n_actions = s.logits.shape[1]
    st = w.stats[u]
    inv = 1.0 / st[ST_TOTAL]
    lse = st[ST_LSE]
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
    n = s.n_explicit[o]
    if n == s.logits.shape[1] or _search(s.explicit[o], n, a) >= 0:
        return s.logits[o, a]
    return s.bulk[o]


@njit(cache=True, inline="always")
def _gradient_step(
    s: StudentTable,
    t: TeacherTable,
    o: int,
    k: int,
    w: RowWork,
    u: int,
    lr: float,
) -> None:  # pragma: no cover - compiled
    """``theta_o -= lr * (summed Eq. 1 gradient of the row's steps)``, bulk included.

    Per action: ``p_a * (G + C_ce + C_ip * dot - C_rce * rce - C_ip * pi_a - C_rce * log pi_a)
    - C_ce * pi_a + extra_a``, with ``G`` the summed advantages, ``C_*`` the summed loss
    coefficients, ``dot = sum pi p`` and ``rce`` the row's reverse cross-entropy.
    """
    n_actions = s.logits.shape[1]
    n = s.n_explicit[o]
    st = w.stats[u]
    inv = 1.0 / st[ST_TOTAL]
    c_ce = st[ST_C_CE]
    c_ip = st[ST_C_IP]
    c_rce = st[ST_C_RCE]
    scale = st[ST_ADV] + c_ce + c_ip * (-st[ST_IP]) - c_rce * st[ST_RCE]
    simple = c_ip == 0.0 and c_rce == 0.0
    lg = s.logits[o]
    exps = w.exps[u]
    extra = w.extra[u]
    pk = t.probs[k]
    lk = t.logp[k]
    if n == n_actions:
        if simple:
            for a in range(n_actions):
                lg[a] -= lr * (exps[a] * inv * scale - c_ce * pk[a] + extra[a])
        else:
            for a in range(n_actions):
                p = exps[a] * inv
                g = p * (scale - c_ip * pk[a] - c_rce * lk[a]) - c_ce * pk[a] + extra[a]
                lg[a] -= lr * g
        return
    ex = s.explicit[o]
    for j in range(n):
        a = ex[j]
        p = exps[j] * inv
        g = p * (scale - c_ip * pk[a] - c_rce * lk[a]) - c_ce * pk[a] + extra[j]
        lg[a] -= lr * g
    pb = t.bulk_probs[k]
    p = st[ST_BULK_EXP] * inv
    g = p * (scale - c_ip * pb - c_rce * t.bulk_logp[k]) - c_ce * pb
    s.bulk[o] -= lr * g


@njit(cache=True, inline="always")
def update_student(
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
    n_rows: int,
) -> None:  # pragma: no cover - compiled; checked against the NumPy reference in tests
    """Apply Eq. 1 for one episode to the student, in place (the episode's rows prepared).

    Every distinct observation ``o`` of ``obs[:n_idx]`` (``n_idx = T`` if ``terminated``, else
    ``T + 1``) has its row ``w.slot[o]`` (numbered ``0 .. n_rows - 1`` in order of first
    appearance, ``w.row_obs``/``w.row_key`` set) prepared by :func:`prepare_row`. On return
    ``w.slot`` is back at -1.

    Args:
        obs: ``[T + 1]`` student table index at steps ``0..T`` (the last is the observation
            after the final step; unused when ``terminated``).
        keys: ``[T + 1]`` teacher key at the same steps (``obs`` itself when the teacher is
            indexed like the student; other keys need dense rows).
        actions: ``[T]`` actions taken (explicit in their rows when the method has a
            policy-gradient term: :func:`draw_action` splits them).
        rewards: ``[T]`` environment rewards ``r_t``.
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
    n_steps = actions.shape[0]
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
    # H_x(pi || pi_theta) itself only enters through the next step's loss (N-distill); its
    # gradient does not need it.
    need_ce = c_ce != 0.0 and c_next_loss != 0.0
    need_ip = c_ip != 0.0
    need_rce = c_rce != 0.0 or (c_next_logp != 0.0 and not terminated)

    # --- 1. per row: lse and the row quantities at its own key; zero the accumulators.
    for u in range(n_rows):
        o = w.row_obs[u]
        _row_quantities(s, t, o, w.row_key[u], w, u, need_ce, need_ip, need_rce)
        st = w.stats[u]
        st[ST_ADV] = 0.0
        st[ST_C_CE] = 0.0
        st[ST_C_IP] = 0.0
        st[ST_C_RCE] = 0.0
        n = s.n_explicit[o]
        for j in range(n):
            w.extra[u, j] = 0.0

    # --- 2. per-step state quantities (before the update).
    n1 = n_steps + 1
    buf = w.steps if w.steps.shape[1] >= n1 else np.empty((N_STEP_ROWS, n1))
    buf[:, :n1] = 0.0
    v_student = buf[0, :n1]  # V_theta(s_t); 0 after a terminal transition
    v_teacher = buf[1, :n1]  # V_pi(s_t); 0 after a terminal transition
    gate = buf[2, :n1]  # [V_pi(s_t) > V_theta(s_t)] when vcond
    gate[:] = 1.0
    ce = buf[3, :n1]  # H_x(pi || pi_theta)
    ip = buf[4, :n1]  # -sum pi pi_theta
    rce = buf[5, :n1]  # H_x(pi_theta || pi)
    loss_state = buf[6, :n1]  # w * gate * (c_ce ce + c_ip ip)
    for i in range(n_idx):
        o = obs[i]
        k = keys[i]
        u = w.slot[o]
        v_student[i] = critic[o]
        v_teacher[i] = t.values[k]
        if vcond:
            gate[i] = 1.0 if t.values[k] > critic[o] else 0.0
        if k == w.row_key[u]:
            ce[i] = w.stats[u, ST_CE]
            ip[i] = w.stats[u, ST_IP]
            rce[i] = w.stats[u, ST_RCE]
        else:
            ce[i], ip[i], rce[i] = _foreign_key_step(s, t, o, k, w, u)
        loss_state[i] = t.weights[k] * gate[i] * (c_ce * ce[i] + c_ip * ip[i])

    # --- 3. reward term rhat_t.
    rhat = buf[7, :n_steps]
    for i in range(n_steps):
        o = obs[i]
        k = keys[i]
        a_t = actions[i]
        r = c_env * rewards[i]
        if c_tlogp != 0.0:
            r += c_tlogp * t.weights[k] * t.logp[k, a_t]
        if c_slogp != 0.0:
            r += c_slogp * (_student_logit(s, o, a_t) - w.stats[w.slot[o], ST_LSE])
        if c_tv_next != 0.0:
            r += c_tv_next * gamma * v_teacher[i + 1]
        if c_tv != 0.0:
            r += c_tv * v_teacher[i]
        if c_sv != 0.0:
            r += c_sv * v_student[i]
        if i + 1 < n_steps:
            k1 = keys[i + 1]
            if c_next_loss != 0.0:
                r -= c_next_loss * gamma * loss_state[i + 1]
            if c_next_logp != 0.0:
                r += c_next_logp * gamma * t.weights[k1] * t.logp[k1, actions[i + 1]]
        elif not terminated:
            # Truncated: the step after the last is still part of the task.
            k1 = keys[n_steps]
            if c_next_loss != 0.0:
                r -= c_next_loss * gamma * loss_state[n_steps]
            if c_next_logp != 0.0:
                r -= c_next_logp * gamma * t.weights[k1] * rce[n_steps]
        rhat[i] = r

    # --- 4. advantages and critic targets.
    boot = buf[8, :n1]  # value bootstrapped at s_t (t >= 1); 0 after terminal
    for i in range(1, n_idx):
        if boot_source == M.BOOT_STUDENT:
            boot[i] = v_student[i]
        elif boot_source == M.BOOT_TEACHER:
            boot[i] = v_teacher[i]
    adv = buf[9, :n_steps]
    target = buf[10, :n_steps]
    if critic_mode == M.CRITIC_TD:
        for i in range(n_steps):
            target[i] = rhat[i] + gamma * boot[i + 1]
            adv[i] = target[i] - v_student[i]
    elif critic_mode == M.CRITIC_MC or has_policy_gradient(coef, codes):
        ret = boot[n_steps] if critic_mode == M.CRITIC_MC else 0.0
        for i in range(n_steps - 1, -1, -1):
            ret = rhat[i] + gamma * ret
            target[i] = ret
            adv[i] = ret - v_student[i] if critic_mode == M.CRITIC_MC else ret

    # --- 5. accumulate each step's terms on its row (O(1) per step at the row's own key).
    for i in range(n_steps):
        o = obs[i]
        k = keys[i]
        u = w.slot[o]
        st = w.stats[u]
        g = adv[i]
        if g != 0.0:
            st[ST_ADV] += g
            a_t = actions[i]
            pos = (
                a_t
                if s.n_explicit[o] == n_actions
                else _search(s.explicit[o], s.n_explicit[o], a_t)
            )
            if pos < 0:
                raise ValueError("a taken action with an advantage must be explicit in its row")
            w.extra[u, pos] -= g
        wk = t.weights[k]
        if k == w.row_key[u]:
            st[ST_C_CE] += wk * gate[i] * c_ce
            st[ST_C_IP] += wk * gate[i] * c_ip
            st[ST_C_RCE] += wk * c_rce
            continue
        if s.n_explicit[o] != n_actions:
            raise ValueError("a row visited with several teacher keys must be dense")
        inv = 1.0 / st[ST_TOTAL]
        cc = wk * gate[i] * c_ce
        ci = wk * gate[i] * c_ip
        cr = wk * c_rce
        dot = -ip[i]
        for a in range(n_actions):
            p = w.exps[u, a] * inv
            pa = t.probs[k, a]
            w.extra[u, a] += cc * (p - pa) - ci * p * (pa - dot) - cr * p * (t.logp[k, a] + rce[i])

    # --- 6. one step on the logits and the critic; reset the workspace.
    for u in range(n_rows):
        o = w.row_obs[u]
        _gradient_step(s, t, o, w.row_key[u], w, u, lr)
        w.slot[o] = -1
    if use_critic:
        if codes[M.K_CRITIC_SEQUENTIAL] != 0:
            for i in range(n_steps):
                critic[obs[i]] += lr * (target[i] - critic[obs[i]])
        else:
            for i in range(n_steps):
                critic[obs[i]] += lr * (target[i] - v_student[i])


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


@njit(cache=True)
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
    """:func:`prepare_episode_rows`, then :func:`update_student` (arguments as there)."""
    n_steps = actions.shape[0]
    if n_steps == 0:
        return
    n_idx = n_steps if terminated else n_steps + 1
    n_rows = prepare_episode_rows(s, obs, keys, n_idx, w)
    update_student(
        obs, keys, actions, rewards, terminated, t, s, critic, coef, codes, lr, gamma, w, n_rows
    )
