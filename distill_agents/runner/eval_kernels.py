"""Compiled (numba) exact evaluation of many tabular students at once (the runner's metrics).

:func:`evaluate_students` computes, for each student given by its logits over table indices,
what :class:`distill_agents.runner.evaluation.Evaluator` otherwise computes through
:mod:`distill_agents.planning` (row weights, reachability, the improper-policy check and the
banded solve of the expected visits): the expected undiscounted return from the start and the
expected per-episode sums of ``KL(pi || pi_theta)`` along the student's, the teacher's and the
uniform policy's trajectories. It does the same arithmetic in the same order as planning's
banded LU, one MDP at a time and without temporary ``[B, S, K, M]`` arrays, so the values agree
with planning's to rounding (the softmax and the sums are taken sequentially here, pairwise in
NumPy: ~1e-15 relative). A student whose policy may not end its episodes is reported in
``status`` instead; the caller then takes the planning path, which raises the documented error.

:func:`monte_carlo_students` estimates the same metrics from sampled episodes instead (the
``--mc`` option of ``distill-grid reproduce``; SPEC 4).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from distill_agents.methods import CONTROL_STUDENT, CONTROL_TEACHER, CONTROL_UNIFORM
from distill_agents.numerics import exp
from distill_agents.planning import banded_lu_solve
from distill_agents.runner.loop_kernels import EnvTables
from distill_agents.updates import sample_control_action
from distill_agents.updates.rows import StudentTable
from gridworld_env.outcomes import next_uniform, sample_outcome, start_state

__all__ = [
    "FULL_SUPPORT",
    "KL_STUDENT",
    "KL_TEACHER",
    "KL_UNIFORM",
    "RETURN",
    "Edges",
    "EvalModels",
    "EvalTeachers",
    "FullSupport",
    "ReachWork",
    "compact_edges",
    "evaluate_students",
    "full_support_structure",
    "monte_carlo_students",
]

#: Columns of :func:`evaluate_students`' output.
RETURN, KL_STUDENT, KL_TEACHER, KL_UNIFORM = 0, 1, 2, 3
#: A row weight ``w`` with ``w * p >= FULL_SUPPORT`` for the smallest outcome probability ``p``
#: keeps every edge of the model (no product underflows to 0): when all of a student's weights
#: are that large, the reached states, the termination check and the band are those of the
#: model under full support (:func:`full_support_structure`, computed once).
FULL_SUPPORT = 1e-280


@njit(inline="always")
def _policy_and_kl(
    logits: NDArray[np.float64],
    teacher_probs: NDArray[np.float64],
    need_kl: bool,
    probs: NDArray[np.float64],
    kl: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    """``probs [N, A] = softmax(logits)`` and (``need_kl``) ``kl [N] = KL(pi || pi_theta)``.

    The KL as :func:`distill_agents.planning.policy_kl`: ``0 log 0 = 0``, clipped at 0.
    """
    n_actions = logits.shape[1]
    for i in range(logits.shape[0]):
        row = logits[i]
        top = row[0]
        for a in range(1, n_actions):
            if row[a] > top:
                top = row[a]
        total = 0.0
        for a in range(n_actions):
            e = math.exp(row[a] - top)
            probs[i, a] = e
            total += e
        for a in range(n_actions):
            probs[i, a] /= total
        if need_kl:
            acc = 0.0
            for a in range(n_actions):
                p = teacher_probs[i, a]
                if p > 0.0:
                    acc += p * (math.log(p) - math.log(probs[i, a]))
            kl[i] = max(acc, 0.0)


@njit(inline="always")
def _index_rows_and_kl(
    s: StudentTable,
    teacher_probs: NDArray[np.float64],
    teacher_bulk: NDArray[np.float64],
    action_rows: NDArray[np.int64],
    row_counts: NDArray[np.int64],
    need_kl: bool,
    index_rows: NDArray[np.float64],
    kl: NDArray[np.float64],
    explicit_in_row: NDArray[np.int64],
    exps: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    """Per table index ``i``: the student's probability of each action row, and its KL.

    ``index_rows[i, k] = sum of softmax(logits[i])[a] over the actions a of row k`` and
    ``kl[i] = KL(pi || pi_theta)`` (as :func:`distill_agents.planning.policy_kl`: ``0 log 0 =
    0``, clipped at 0), from the student table's explicit actions and its bulk
    (:mod:`distill_agents.updates.rows`), with the kernels' exponential
    (:func:`distill_agents.numerics.exp`).
    """
    logits, ex = s.logits, s.explicit
    n_index, n_actions = logits.shape
    n_rows = index_rows.shape[1]
    identity_rows = n_rows == n_actions
    for a in range(n_actions):
        if action_rows[a] != a:
            identity_rows = False
    for i in range(n_index):
        n = s.n_explicit[i]
        dense = n == n_actions
        top = logits[i, 0] if dense else s.bulk[i]
        for j in range(n):
            if logits[i, j] > top:
                top = logits[i, j]
        for j in range(n):  # apart from the sum, so that the exponentials vectorise
            exps[j] = exp(logits[i, j] - top)
        total = 0.0
        for j in range(n):
            total += exps[j]
        eb = 0.0 if dense else exp(s.bulk[i] - top)
        total += (n_actions - n) * eb
        for k in range(n_rows):
            index_rows[i, k] = 0.0
            explicit_in_row[k] = 0
        acc = 0.0
        for j in range(n):
            a = j if dense else ex[i, j]
            p = exps[j] / total
            if identity_rows:
                index_rows[i, a] = p
            else:
                index_rows[i, action_rows[a]] += p
                explicit_in_row[action_rows[a]] += 1
            pa = teacher_probs[i, a]
            if need_kl and pa > 0.0:
                acc += pa * (math.log(pa) - math.log(p))
        if not dense:
            pb = eb / total
            for k in range(n_rows):
                index_rows[i, k] += (row_counts[k] - explicit_in_row[k]) * pb
            pd = teacher_bulk[i]
            if need_kl and pd > 0.0:
                acc += (n_actions - n) * (pd * (math.log(pd) - math.log(pb)))
        kl[i] = max(acc, 0.0)


@njit(cache=True)
def _fixed_sum(fixed: NDArray[np.float64], cost: NDArray[np.float64]) -> float:
    """``sum(where(fixed > 0, fixed * cost, 0))``, NaN if ``fixed`` has a NaN (undefined)."""
    acc = 0.0
    for s in range(fixed.shape[0]):
        v = fixed[s]
        if math.isnan(v):
            return math.nan
        if v > 0.0:
            acc += v * cost[s]
    return acc


@njit(cache=True)
def compact_edges(
    next_states: NDArray[np.int64], next_probs: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """The outcomes with positive probability of ``[B, S, K, M]`` successor lists, per state.

    Returns:
        ``(ptr [B, S + 1], row [B, E], to [B, E], prob [B, E])``: the outcomes of state ``s``
        of MDP ``b`` are entries ``ptr[b, s] .. ptr[b, s + 1] - 1``, in ``(k, m)`` order (the
        order planning's banded solve adds them in); ``E`` is the largest count of any MDP.
    """
    n_mdps, n_states, n_rows, n_out = next_states.shape
    size = 0
    for b in range(n_mdps):
        count = 0
        for s in range(n_states):
            for k in range(n_rows):
                for m in range(n_out):
                    if next_probs[b, s, k, m] > 0.0:
                        count += 1
        size = max(size, count)
    ptr = np.zeros((n_mdps, n_states + 1), dtype=np.int64)
    row = np.zeros((n_mdps, max(size, 1)), dtype=np.int64)
    to = np.zeros((n_mdps, max(size, 1)), dtype=np.int64)
    prob = np.zeros((n_mdps, max(size, 1)))
    for b in range(n_mdps):
        e = 0
        for s in range(n_states):
            ptr[b, s] = e
            for k in range(n_rows):
                for m in range(n_out):
                    if next_probs[b, s, k, m] > 0.0:
                        row[b, e] = k
                        to[b, e] = next_states[b, s, k, m]
                        prob[b, e] = next_probs[b, s, k, m]
                        e += 1
        ptr[b, n_states] = e
    return ptr, row, to, prob


class Edges(NamedTuple):
    """The outcomes with positive probability of a chunk's models (:func:`compact_edges`).

    Attributes:
        ptr: ``[B, S + 1]`` int64: the outcomes of state ``s`` of MDP ``b`` are entries
            ``ptr[b, s] .. ptr[b, s + 1] - 1``, in ``(k, m)`` order (the order planning's
            banded solve adds them in).
        row: ``[B, E]`` int64 action row of each outcome.
        to: ``[B, E]`` int64 its next state.
        prob: ``[B, E]`` float64 its probability.
    """

    ptr: NDArray[np.int64]
    row: NDArray[np.int64]
    to: NDArray[np.int64]
    prob: NDArray[np.float64]


class EvalModels(NamedTuple):
    """The models of one chunk of MDPs, as :func:`evaluate_students` reads them.

    Attributes:
        edges: the models' outcomes (:class:`Edges`).
        row_rewards: ``[B, S, K]`` float64 expected immediate reward of each action row.
        initial: ``[B, S]`` float64 start distribution.
        terminal: ``[B, S]`` bool.
        state_to_index: ``[B, S]`` int64 table index of each state (-1: none; such states use
            the uniform policy and count no KL, as the evaluator does).
        action_rows: ``[A]`` int64 action row of each action.
        uniform_rows: ``[K]`` float64 the uniform policy's row weights.
    """

    edges: Edges
    row_rewards: NDArray[np.float64]
    initial: NDArray[np.float64]
    terminal: NDArray[np.bool_]
    state_to_index: NDArray[np.int64]
    action_rows: NDArray[np.int64]
    uniform_rows: NDArray[np.float64]


class FullSupport(NamedTuple):
    """:func:`full_support_structure`'s results: the structure under a full-support policy.

    Attributes:
        reached: ``[B, S]`` bool states an episode reaches from the start.
        stuck: ``[B]`` bool some reached non-terminal state cannot end the episode.
        bw: ``[B]`` int64 half-width of planning's band.
        min_weight: the smallest row weight that keeps every edge of the models
            (``FULL_SUPPORT / smallest outcome probability``).
    """

    reached: NDArray[np.bool_]
    stuck: NDArray[np.bool_]
    bw: NDArray[np.int64]
    min_weight: float


class EvalTeachers(NamedTuple):
    """The teachers of a chunk, as :func:`evaluate_students` reads them.

    Attributes:
        probs: ``[B, N, A]`` float64 teacher probabilities.
        bulk: ``[B, N]`` float64 the teacher's probability of a student row's bulk actions.
        fixed_teacher: ``[B, S]`` float64 the teacher's expected visits (NaN rows: undefined),
            or ``[0, 0]`` when ``kl_teacher`` is not needed.
        fixed_uniform: ``[B, S]`` the uniform policy's, likewise.
    """

    probs: NDArray[np.float64]
    bulk: NDArray[np.float64]
    fixed_teacher: NDArray[np.float64]
    fixed_uniform: NDArray[np.float64]


class ReachWork(NamedTuple):
    """Scratch arrays of :func:`_reach` for models of ``S`` states and ``E`` edges.

    Attributes:
        can_end: ``[S]`` bool.
        queue: ``[S]`` int64.
        in_count: ``[S + 1]`` int64.
        sources: ``[E]`` int64.
    """

    can_end: NDArray[np.bool_]
    queue: NDArray[np.int64]
    in_count: NDArray[np.int64]
    sources: NDArray[np.int64]


class _EvalWork(NamedTuple):
    """Scratch arrays of :func:`evaluate_students` (one student at a time)."""

    row_counts: NDArray[np.int64]  # [K] actions per action row
    explicit_in_row: NDArray[np.int64]  # [K]
    exps: NDArray[np.float64]  # [A]
    index_rows: NDArray[np.float64]  # [N, K] the student's action-row probabilities
    kl_index: NDArray[np.float64]  # [N] KL(pi || pi_theta) per table index
    kl_state: NDArray[np.float64]  # [S] ... per state
    weights: NDArray[np.float64]  # [S, K] row weights (0 in terminal states)
    reached: NDArray[np.bool_]  # [S]
    visits: NDArray[np.float64]  # [S] expected visits
    reach: ReachWork


@njit(inline="always")
def _reach_work(n_states: int, n_edges: int) -> ReachWork:  # pragma: no cover - compiled
    """Fresh :class:`ReachWork` for models of ``n_states`` states and ``n_edges`` edges."""
    return ReachWork(
        np.empty(n_states, dtype=np.bool_),
        np.empty(n_states, dtype=np.int64),
        np.empty(n_states + 1, dtype=np.int64),
        np.empty(n_edges, dtype=np.int64),
    )


@njit(cache=True)
def _reach(
    b: int,
    weights: NDArray[np.float64],
    edges: Edges,
    initial: NDArray[np.float64],
    terminal: NDArray[np.bool_],
    reached: NDArray[np.bool_],
    work: ReachWork,
) -> tuple[bool, int]:  # pragma: no cover - compiled
    """Reached states (into ``reached``), whether one cannot end, and the band half-width.

    For MDP ``b`` under the row weights ``weights [S, K]``: the states an episode reaches from
    the start (terminal states not expanded), whether some reached non-terminal state cannot
    reach a terminal one (``stuck``: no finite visits), and the largest ``|t - s|`` between
    live states joined by an edge (planning's band).
    """
    n_states = weights.shape[0]
    edge_ptr, edge_row, edge_to, edge_prob = edges
    can_end, queue, in_count, sources = work
    # --- states the episode reaches from the start (terminal states are not expanded).
    head, tail = 0, 0
    for s in range(n_states):
        reached[s] = initial[b, s] > 0.0
        if reached[s]:
            queue[tail] = s
            tail += 1
    while head < tail:
        s = queue[head]
        head += 1
        if terminal[b, s]:
            continue
        for e in range(edge_ptr[b, s], edge_ptr[b, s + 1]):
            t = edge_to[b, e]
            if weights[s, edge_row[b, e]] * edge_prob[b, e] > 0.0 and not reached[t]:
                reached[t] = True
                queue[tail] = t
                tail += 1
    # --- every reached state must be able to end the episode: reverse search from the
    # reached terminal states along the edges out of reached non-terminal states.
    for s in range(n_states + 1):
        in_count[s] = 0
    for s in range(n_states):
        if reached[s] and not terminal[b, s]:
            for e in range(edge_ptr[b, s], edge_ptr[b, s + 1]):
                if weights[s, edge_row[b, e]] * edge_prob[b, e] > 0.0:
                    in_count[edge_to[b, e] + 1] += 1
    for s in range(n_states):
        in_count[s + 1] += in_count[s]
    for s in range(n_states):
        if reached[s] and not terminal[b, s]:
            for e in range(edge_ptr[b, s], edge_ptr[b, s + 1]):
                if weights[s, edge_row[b, e]] * edge_prob[b, e] > 0.0:
                    t = edge_to[b, e]
                    sources[in_count[t]] = s
                    in_count[t] += 1
    # in_count[t] is now the end of t's sources; its start is in_count[t - 1] (0 for t=0).
    head, tail = 0, 0
    for s in range(n_states):
        can_end[s] = reached[s] and terminal[b, s]
        if can_end[s]:
            queue[tail] = s
            tail += 1
    while head < tail:
        t = queue[head]
        head += 1
        lo = in_count[t - 1] if t > 0 else 0
        for e in range(lo, in_count[t]):
            s = sources[e]
            if not can_end[s]:
                can_end[s] = True
                queue[tail] = s
                tail += 1
    stuck = False
    for s in range(n_states):
        if reached[s] and not terminal[b, s] and not can_end[s]:
            stuck = True
    return stuck, _band_width(b, weights, edges, terminal, reached)


@njit(inline="always")
def _band_width(
    b: int,
    weights: NDArray[np.float64],
    edges: Edges,
    terminal: NDArray[np.bool_],
    reached: NDArray[np.bool_],
) -> int:  # pragma: no cover - compiled
    """The band's half-width: planning._banded_solve_kernel's (live states only)."""
    edge_ptr, edge_row, edge_to = edges.ptr, edges.row, edges.to
    bw = 0
    for s in range(weights.shape[0]):
        if reached[s] and not terminal[b, s]:
            for e in range(edge_ptr[b, s], edge_ptr[b, s + 1]):
                t = edge_to[b, e]
                if weights[s, edge_row[b, e]] != 0.0 and reached[t] and not terminal[b, t]:
                    bw = max(bw, abs(t - s))
    return bw


@njit(cache=True)
def full_support_structure(
    edges: Edges, initial: NDArray[np.float64], terminal: NDArray[np.bool_], n_rows: int
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.int64]]:
    """:func:`_reach` of every MDP under a policy with full support, computed once.

    Returns:
        ``(reached [B, S], stuck [B], bw [B])`` (with the smallest weight: a
        :class:`FullSupport`).
    """
    n_mdps, n_states = initial.shape
    weights = np.ones((n_states, n_rows))
    reached = np.zeros((n_mdps, n_states), dtype=np.bool_)
    stuck = np.zeros(n_mdps, dtype=np.bool_)
    bw = np.zeros(n_mdps, dtype=np.int64)
    work = _reach_work(n_states, edges.to.shape[1])
    for b in range(n_mdps):
        stuck[b], bw[b] = _reach(b, weights, edges, initial, terminal, reached[b], work)
    return reached, stuck, bw


@njit(inline="always")
def _eval_work(models: EvalModels, students: StudentTable) -> _EvalWork:  # pragma: no cover
    """The scratch arrays of :func:`evaluate_students` (``row_counts`` filled)."""
    n_states, n_rows = models.row_rewards.shape[1], models.row_rewards.shape[2]
    n_index = students.logits.shape[1]
    row_counts = np.zeros(n_rows, dtype=np.int64)
    for a in range(models.action_rows.shape[0]):
        row_counts[models.action_rows[a]] += 1
    reach = _reach_work(n_states, models.edges.to.shape[1])
    return _EvalWork(
        row_counts, np.zeros(n_rows, dtype=np.int64), np.empty(students.logits.shape[2]),
        np.empty((n_index, n_rows)), np.zeros(n_index), np.zeros(n_states),
        np.empty((n_states, n_rows)), np.empty(n_states, dtype=np.bool_), np.empty(n_states),
        reach,
    )  # fmt: skip


@njit(inline="always")
def _student_kl(
    models: EvalModels,
    teachers: EvalTeachers,
    b: int,
    student: StudentTable,
    need: NDArray[np.bool_],
    work: _EvalWork,
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    """The student's row probabilities and its KL per state; ``kl_teacher`` and ``kl_uniform``.

    ``out`` is the student's ``[4]`` row of the metrics.
    """
    need_kl = need[KL_STUDENT] or need[KL_TEACHER] or need[KL_UNIFORM]
    _index_rows_and_kl(
        student, teachers.probs[b], teachers.bulk[b], models.action_rows, work.row_counts,
        need_kl, work.index_rows, work.kl_index, work.explicit_in_row, work.exps,
    )  # fmt: skip
    kl_state = work.kl_state
    for s in range(kl_state.shape[0]):
        i = models.state_to_index[b, s]
        kl_state[s] = work.kl_index[i] if (need_kl and i >= 0) else 0.0
    if need[KL_TEACHER]:
        out[KL_TEACHER] = _fixed_sum(teachers.fixed_teacher[b], kl_state)
    if need[KL_UNIFORM]:
        out[KL_UNIFORM] = _fixed_sum(teachers.fixed_uniform[b], kl_state)


@njit(inline="always")
def _state_weights(models: EvalModels, b: int, work: _EvalWork) -> float:  # pragma: no cover
    """The student's row weights per state into ``work.weights`` (0 in terminal states).

    Returns:
        The smallest weight.
    """
    weights, index_rows, uniform_rows = work.weights, work.index_rows, models.uniform_rows
    n_states, n_rows = weights.shape
    min_weight = math.inf
    for s in range(n_states):
        i = models.state_to_index[b, s]
        for k in range(n_rows):
            weights[s, k] = 0.0
        if models.terminal[b, s]:
            continue
        if i < 0:
            for k in range(n_rows):
                weights[s, k] = uniform_rows[k]
        else:
            for k in range(n_rows):
                weights[s, k] = index_rows[i, k]
        for k in range(n_rows):
            min_weight = min(min_weight, weights[s, k])
    return min_weight


@njit(inline="always")
def _solve_visits(
    models: EvalModels, b: int, bw: int, work: _EvalWork
) -> bool:  # pragma: no cover - compiled
    """Expected visits into ``work.visits``: ``(I - P^T) x = mu_0`` on the live states.

    With planning's banded solver (the band built as planning._banded_solve_kernel builds it:
    transpose, gamma = 1). Returns False where the solve fails.
    """
    edge_ptr, edge_row, edge_to, edge_prob = models.edges
    weights, reached, visits = work.weights, work.reached, work.visits
    terminal = models.terminal
    n_states = weights.shape[0]
    band = np.zeros((n_states, 2 * bw + 1))
    band[:, bw] = 1.0
    for s in range(n_states):
        visits[s] = 0.0
        if reached[s] and not terminal[b, s]:
            visits[s] = models.initial[b, s]
            for e in range(edge_ptr[b, s], edge_ptr[b, s + 1]):
                t = edge_to[b, e]
                coef = 1.0 * (weights[s, edge_row[b, e]] * edge_prob[b, e])
                if coef != 0.0 and reached[t] and not terminal[b, t]:
                    band[t, s - t + bw] -= coef
    return banded_lu_solve(band, visits, bw)


@njit(inline="always")
def _visit_sums(
    models: EvalModels, b: int, work: _EvalWork
) -> tuple[bool, float, float]:  # pragma: no cover - compiled
    """``(finite, return, kl_student)``: the visit-weighted sums of the reward and the KL."""
    weights, reached, visits, kl_state = work.weights, work.reached, work.visits, work.kl_state
    n_states, n_rows = weights.shape
    finite = True
    ret = 0.0
    kl_sum = 0.0
    for s in range(n_states):
        v = visits[s]
        if not math.isfinite(v):
            finite = False
        if not (reached[s] and not models.terminal[b, s]):
            continue
        if v > 0.0:
            reward = 0.0
            for k in range(n_rows):
                reward += weights[s, k] * models.row_rewards[b, s, k]
            ret += v * reward
            kl_sum += v * kl_state[s]
    return finite, ret, kl_sum


@njit(inline="always")
def _exact_values(
    models: EvalModels, full: FullSupport, b: int, work: _EvalWork, out: NDArray[np.float64]
) -> bool:  # pragma: no cover - compiled
    """The student's return and ``kl_student`` into ``out`` (its ``[4]`` row) on MDP ``b``.

    Returns:
        False where the student's episodes may not end (no value).
    """
    min_weight = _state_weights(models, b, work)
    # Reached states, the termination check and the band width: precomputed for a policy
    # with full support (every edge of the model has positive probability).
    reached = work.reached
    if min_weight >= full.min_weight:
        for s in range(reached.shape[0]):
            reached[s] = full.reached[b, s]
        stuck = full.stuck[b]
        bw = full.bw[b]
    else:
        stuck, bw = _reach(
            b, work.weights, models.edges, models.initial, models.terminal, reached, work.reach
        )
    if stuck or not _solve_visits(models, b, bw, work):
        return False
    finite, ret, kl_sum = _visit_sums(models, b, work)
    if not finite:
        return False
    out[RETURN] = ret
    out[KL_STUDENT] = kl_sum
    return True


@njit(cache=True)
def evaluate_students(
    models: EvalModels,
    full: FullSupport,
    teachers: EvalTeachers,
    idx: NDArray[np.int64],
    students: StudentTable,
    sel: NDArray[np.int64],
    need: NDArray[np.bool_],
    out: NDArray[np.float64],
    status: NDArray[np.int64],
) -> None:  # pragma: no cover - compiled; tested against planning through the runner
    """Exact metrics of the students ``sel[j]`` of ``students`` on the MDPs ``idx[j]``.

    Args:
        models: the chunk's models (:class:`EvalModels`).
        full: their structure under full support (:class:`FullSupport`).
        teachers: the chunk's teachers and their fixed visits (:class:`EvalTeachers`).
        idx: ``[n]`` MDP of each student.
        students: stacked ``[M, ...]`` student tables (:mod:`distill_agents.updates.rows`).
        sel: ``[n]`` which of them student ``j`` is.
        need: ``[4]`` which of ``RETURN, KL_STUDENT, KL_TEACHER, KL_UNIFORM`` to compute.
        out: ``[n, 4]`` the metrics (columns not needed are left as they are).
        status: ``[n]`` out: 0, or 1 where the student's episodes may not end (no value).
    """
    need_visits = need[RETURN] or need[KL_STUDENT]
    work = _eval_work(models, students)
    scratch = np.empty(4)
    for j in range(idx.shape[0]):
        b = idx[j]
        q = sel[j]
        status[j] = 0
        # --- the student's action-row probabilities and KL(pi || pi_theta) per table index.
        student = StudentTable(
            students.logits[q], students.bulk[q], students.n_explicit[q], students.explicit[q]
        )
        _student_kl(models, teachers, b, student, need, work, out[j])
        if not need_visits:
            continue
        if not _exact_values(models, full, b, work, scratch):
            status[j] = 1
            continue
        if need[RETURN]:
            out[j, RETURN] = scratch[RETURN]
        if need[KL_STUDENT]:
            out[j, KL_STUDENT] = scratch[KL_STUDENT]


@njit(cache=True)
def monte_carlo_students(
    env: EnvTables,
    idx: NDArray[np.int64],
    logits: NDArray[np.float64],
    teacher_probs: NDArray[np.float64],
    seeds: NDArray[np.uint64],
    n_episodes: int,
    need: NDArray[np.bool_],
    return_control: int,
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; tested against the exact values
    """Monte Carlo estimates of the metrics of :func:`evaluate_students`.

    For student ``j`` on MDP ``idx[j]``: ``n_episodes`` episodes of each control policy the
    metrics need, sampled from the vector env's outcome tables (``VectorEnv.outcome_tables``)
    with a SplitMix64 stream seeded by ``seeds[j]`` and cut after ``env.max_steps`` steps. The
    return is the mean undiscounted return of ``return_control``'s episodes (the student's
    own, or the teacher's for the teacher's level); ``kl_student``, ``kl_teacher`` and
    ``kl_uniform`` are the mean per-episode sums of ``KL(pi || pi_theta)`` at the visited
    table indices along episodes of the student, the teacher and the uniform policy.

    Args:
        env: the vector env's outcome tables and time limit
            (:class:`~distill_agents.runner.loop_kernels.EnvTables`).
        idx: ``[n]`` MDP of each student.
        logits: ``[n, N, A]`` the students (dense).
        teacher_probs: ``[B, N, A]``.
        seeds: ``[n]`` stream seeds.
        n_episodes: episodes per control policy.
        need: ``[4]`` which of ``RETURN, KL_STUDENT, KL_TEACHER, KL_UNIFORM`` to estimate.
        return_control: control code whose episodes give ``RETURN``.
        out: ``[n, 4]`` the estimates.
    """
    outcomes, action_rows, terminal, initial_cum, key_of_state, max_steps = env
    n_index, n_actions = logits.shape[1], logits.shape[2]
    kl_index = np.zeros(n_index)
    probs = np.empty((n_index, n_actions))
    state = np.empty(1, dtype=np.uint64)
    need_kl = need[KL_STUDENT] or need[KL_TEACHER] or need[KL_UNIFORM]
    for j in range(idx.shape[0]):
        b = idx[j]
        state[0] = seeds[j]
        if need_kl:
            _policy_and_kl(logits[j], teacher_probs[b], True, probs, kl_index)
        for column in range(4):
            if not need[column]:
                continue
            if column == RETURN:
                control = return_control
            elif column == KL_TEACHER:
                control = CONTROL_TEACHER
            elif column == KL_UNIFORM:
                control = CONTROL_UNIFORM
            else:
                control = CONTROL_STUDENT
            total_return = 0.0
            total_kl = 0.0
            for _ in range(n_episodes):
                s = start_state(initial_cum[b], next_uniform(state))
                o = key_of_state[b, s]
                for _t in range(max_steps):
                    if column != RETURN:
                        total_kl += kl_index[o]
                    a = sample_control_action(
                        control, 0.0, teacher_probs[b, o], logits[j, o], next_uniform(state)
                    )
                    s, reward, key = sample_outcome(
                        outcomes, b, s, action_rows[a], next_uniform(state)
                    )
                    total_return += reward
                    if key >= 0:
                        o = key
                    if terminal[b, s]:
                        break
            out[j, column] = (total_return if column == RETURN else total_kl) / n_episodes
