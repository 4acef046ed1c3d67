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
    may have a bulk, else 0) and ``logits[o, j]`` the logit of the ``j``-th of them, packed (on a
    dense row: of action ``j``), so that every pass over a row reads contiguous memory. The
    teacher's
    ``bulk_probs [Nt]`` / ``bulk_logp [Nt]`` are its value on a row's bulk actions, and ``cum``
    its cumulative probabilities for the teacher's draws.

Draws
    A draw takes the first action, in index order, whose cumulative weight exceeds ``u *
    total`` (inverse CDF), with the row's cumulative sums built once per row and episode
    (:func:`prepare_row`) and a binary search; the bulk's members fill the gaps between
    explicit actions, so the same action comes out as from a dense row of the same weights. On
    dense rows the draws and the sums are those of a linear scan, operation for operation.

Splitting
    For a method with a policy-gradient term, the bulk actions an episode took become explicit
    (:func:`split_taken`) after its steps and before its update gives them terms of their own.
    A split changes no value (its logit is the bulk's), only how later sums of the row are
    grouped; every loop splits at the same point (the draws of an episode see the rows as they
    were at its start), so the vector-env loop, the compiled loop and the single-env
    :func:`~distill_agents.distill` train the same students.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from distill_agents import methods as M
from distill_agents.numerics import exp, loop_kernel

__all__ = [
    "BULK_MIN_ACTIONS",
    "COUNT_ENTRIES",
    "COUNT_ROWS",
    "COUNT_SPLITS",
    "N_COUNTS",
    "N_ROW_STATS",
    "N_STEP_ROWS",
    "ST_ADV",
    "ST_BULK_EXP",
    "ST_CE",
    "ST_C_CE",
    "ST_C_IP",
    "ST_C_RCE",
    "ST_IP",
    "ST_LSE",
    "ST_MAX",
    "ST_RCE",
    "ST_TOTAL",
    "RowWork",
    "StudentTable",
    "TeacherTable",
    "common_values",
    "dense_logits",
    "dense_table",
    "draw_action",
    "draw_student",
    "draw_teacher",
    "has_bulk",
    "has_policy_gradient",
    "initial_explicit",
    "make_row_work",
    "prepare_row",
    "search_row",
    "split_taken",
    "student_table",
    "teacher_cumulative",
    "teacher_table",
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
# Entries of ``RowWork.counts``.
COUNT_ROWS = 0  #: rows prepared (:func:`prepare_row`)
COUNT_ENTRIES = 1  #: explicit actions of the rows prepared
COUNT_SPLITS = 2  #: bulk actions made explicit (:func:`split_taken`)
N_COUNTS = 3


class StudentTable(NamedTuple):
    """One tabular student (module docstring).

    Attributes:
        logits: ``[N, A]`` float64: ``logits[o, j]`` is the logit of the ``j``-th explicit
            action of row ``o`` (of action ``j`` on a dense row); entries from ``n_explicit[o]``
            on are unused.
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
        taken: ``[W]`` scratch of :func:`split_taken`.
        counts: ``[N_COUNTS]`` work done so far (``COUNT_*``: rows prepared, their explicit
            actions, actions split), for the benchmark.
        steps: ``[N_STEP_ROWS, W]`` per-step quantities of episodes up to ``W - 1`` steps.
    """

    slot: NDArray[np.int64]
    row_obs: NDArray[np.int64]
    row_key: NDArray[np.int64]
    exps: NDArray[np.float64]
    cum: NDArray[np.float64]
    extra: NDArray[np.float64]
    stats: NDArray[np.float64]
    taken: NDArray[np.int64]
    counts: NDArray[np.int64]
    steps: NDArray[np.float64]


# ====================================================================== building the tables
def make_row_work(n_obs: int, n_actions: int, max_steps: int) -> RowWork:
    """Scratch arrays for episodes of up to ``max_steps`` steps on ``[n_obs, n_actions]`` tables.

    The kernels refuse a longer episode (they allocate nothing).
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
        np.zeros(int(max_steps) + 1, dtype=np.int64),
        np.zeros(N_COUNTS, dtype=np.int64),
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
            out[o, explicit[o, j]] = logits[o, j]


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
    episode or at every step. (The kernels index the 2-D tables directly: views of rows would
    cost two reference-count updates each.)
    """
    logits, exps, cum = s.logits, w.exps, w.cum
    n_actions = logits.shape[1]
    n = s.n_explicit[o]
    w.counts[COUNT_ROWS] += 1
    w.counts[COUNT_ENTRIES] += n
    top = _row_max(logits, o, n, logits[o, 0] if n == n_actions else s.bulk[o])
    for j in range(n):  # apart from the running sum, so that the exponentials vectorise
        exps[u, j] = exp(logits[o, j] - top)
    total = 0.0
    for j in range(n):
        total += exps[u, j]
        cum[u, j] = total
    w.stats[u, ST_MAX] = top
    if n == n_actions:
        w.stats[u, ST_TOTAL] = total
        w.stats[u, ST_BULK_EXP] = 0.0
    else:
        eb = exp(s.bulk[o] - top)
        w.stats[u, ST_TOTAL] = total + (n_actions - n) * eb
        w.stats[u, ST_BULK_EXP] = eb


@njit(inline="always")
def _row_max(
    values: NDArray[np.float64], o: int, n: int, start: float
) -> float:  # pragma: no cover - compiled
    """``max(start, values[o, :n])``, in four interleaved chains (the maximum is exact)."""
    m0 = m1 = m2 = m3 = start
    j = 0
    while j + 4 <= n:
        m0 = values[o, j] if values[o, j] > m0 else m0
        m1 = values[o, j + 1] if values[o, j + 1] > m1 else m1
        m2 = values[o, j + 2] if values[o, j + 2] > m2 else m2
        m3 = values[o, j + 3] if values[o, j + 3] > m3 else m3
        j += 4
    while j < n:
        m0 = values[o, j] if values[o, j] > m0 else m0
        j += 1
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    return m2 if m2 > m0 else m0


@njit(inline="always")
def _first_above(
    cum: NDArray[np.float64], row: int, n: int, target: float
) -> int:  # pragma: no cover - compiled
    """Smallest ``j < n`` with ``cum[row, j] > target`` (non-decreasing), else ``n``."""
    if n <= 16:
        for j in range(n):
            if cum[row, j] > target:
                return j
        return n
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if cum[row, mid] > target:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(inline="always")
def _bulk_ordinal(
    base: float, eb: float, lo: int, hi: int, target: float
) -> int:  # pragma: no cover - compiled
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
    cum, ex = w.cum, s.explicit
    n_actions = s.logits.shape[1]
    n = s.n_explicit[o]
    target = x * w.stats[u, ST_TOTAL]
    if n == n_actions:
        j = _first_above(cum, u, n_actions, target)
        a = j if j < n_actions else n_actions - 1
        return a, a, False
    eb = w.stats[u, ST_BULK_EXP]
    # Smallest j whose explicit action ends above the target (bulk members below it included).
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if cum[u, mid] + (ex[o, mid] - mid) * eb > target:
            hi = mid
        else:
            lo = mid + 1
    j = lo
    if j > 0:
        base = cum[u, j - 1]
        q_lo = ex[o, j - 1] - (j - 1)
        start = ex[o, j - 1] + 1
    else:
        base = 0.0
        q_lo = 0
        start = 0
    q_hi = ex[o, j] - j if j < n else n_actions - n
    if q_hi > q_lo and (j == n or base + q_hi * eb > target):
        q = _bulk_ordinal(base, eb, q_lo, q_hi, target)
        return start + (q - q_lo), j, True
    if j == n:
        return n_actions - 1, n - 1, False
    return ex[o, j], j, False


@njit(cache=True, inline="always")
def draw_teacher(t: TeacherTable, k: int, x: float) -> int:  # pragma: no cover - compiled
    """Draw from the teacher's row ``k`` (the first action whose running sum exceeds ``x``)."""
    n_actions = t.cum.shape[1]
    j = _first_above(t.cum, k, n_actions, x)
    return j if j < n_actions else t.last[k]


@njit(cache=True, inline="always")
def search_row(s: StudentTable, o: int, a: int) -> int:  # pragma: no cover - compiled
    """Position of ``a`` in row ``o``'s explicit list, or ``-(insertion point) - 1``."""
    ex = s.explicit
    n = s.n_explicit[o]
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if ex[o, mid] < a:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and ex[o, lo] == a:
        return lo
    return -lo - 1


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
            scratch (the row is prepared there first when the student draws).
        u: workspace row.
        x: the uniform.
        prepared: see ``w``.
    """
    if control == M.CONTROL_TEACHER:
        return draw_teacher(t, o, x)
    if control == M.CONTROL_EPSILON_TEACHER:
        eps = M.TEACHER_EPSILON
        if x >= eps:
            return draw_teacher(t, o, (x - eps) / (1.0 - eps))
        n_actions = s.logits.shape[1]
        return min(int(x / eps * n_actions), n_actions - 1)
    if control == M.CONTROL_UNIFORM:
        n_actions = s.logits.shape[1]
        return min(int(x * n_actions), n_actions - 1)
    if control == M.CONTROL_MIXTURE:
        if x < beta:
            return draw_teacher(t, o, x / beta)
        x = (x - beta) / (1.0 - beta)
    if not prepared:
        prepare_row(s, o, w, u)
    return draw_student(s, o, w, u, x)[0]


@njit(inline="always")
def _sort(keys: NDArray[np.int64], n: int) -> None:  # pragma: no cover - compiled
    """Sort ``keys[:n]`` in place (Shell sort with Ciura's gaps; no allocation)."""
    for gap in (701, 301, 132, 57, 23, 10, 4, 1):
        for i in range(gap, n):
            v = keys[i]
            j = i
            while j >= gap and keys[j - gap] > v:
                keys[j] = keys[j - gap]
                j -= gap
            keys[j] = v


@njit(inline="always")
def _merge_into_row(
    s: StudentTable, o: int, keys: NDArray[np.int64], lo: int, m: int, w: RowWork, u: int
) -> None:  # pragma: no cover - compiled
    """Make the sorted, distinct bulk actions ``keys[lo:lo + m] % A`` of row ``o`` explicit.

    With ``u >= 0`` the row is prepared in row ``u`` of the workspace and stays so: the new
    entries' exponentials are the bulk's, and the running sums are summed again, in order, from
    the first new entry on (exactly what :func:`prepare_row` gives).
    """
    ex, logits = s.explicit, s.logits
    exps, cum = w.exps, w.cum
    n_actions = logits.shape[1]
    n = s.n_explicit[o]
    eb = w.stats[u, ST_BULK_EXP] if u >= 0 else 0.0
    i = n - 1  # the next old entry to move, from the end
    left = m  # new entries still to place
    pos = n + m - 1
    while left > 0:
        new = keys[lo + left - 1] % n_actions
        if i >= 0 and ex[o, i] > new:
            ex[o, pos] = ex[o, i]
            logits[o, pos] = logits[o, i]
            if u >= 0:
                exps[u, pos] = exps[u, i]
            i -= 1
        else:
            ex[o, pos] = new
            logits[o, pos] = s.bulk[o]
            if u >= 0:
                exps[u, pos] = eb
            left -= 1
        pos -= 1
    s.n_explicit[o] = n + m
    w.counts[COUNT_SPLITS] += m
    if u >= 0:
        first = pos + 1  # entries below it did not move
        total = cum[u, first - 1] if first > 0 else 0.0
        for j in range(first, n + m):
            total += exps[u, j]
            cum[u, j] = total
        w.stats[u, ST_TOTAL] = total + (n_actions - (n + m)) * eb


@loop_kernel
def split_taken(
    s: StudentTable,
    obs: NDArray[np.int64],
    actions: NDArray[np.int64],
    n_steps: int,
    w: RowWork,
    prepared: bool,
) -> None:  # pragma: no cover - compiled
    """Make every action the episode took explicit in its row (before the episode's update).

    Called once per episode, after the steps, by methods with a policy-gradient term (the
    taken action gets a term of its own); the draws of the episode saw the rows as they were
    at its start. With ``prepared`` every row of the episode is prepared in the workspace
    (``w.slot``) and is kept so. (Not inlined: a call per episode costs less than the room its
    code takes in the loops that call it.)
    """
    n_actions = s.logits.shape[1]
    keys = w.taken
    k = 0
    for t in range(n_steps):
        o = obs[t]
        a = actions[t]
        if s.n_explicit[o] < n_actions and search_row(s, o, a) < 0:
            keys[k] = o * n_actions + a
            k += 1
    if k == 0:
        return
    _sort(keys, k)
    i = 0
    while i < k:
        o = keys[i] // n_actions
        m = 1  # distinct keys of row o, moved to keys[i:i + m]
        j = i + 1
        while j < k and keys[j] // n_actions == o:
            if keys[j] != keys[i + m - 1]:
                keys[i + m] = keys[j]
                m += 1
            j += 1
        _merge_into_row(s, o, keys, i, m, w, w.slot[o] if prepared else -1)
        i = j
