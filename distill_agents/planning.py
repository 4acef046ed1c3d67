"""Exact planning and evaluation on the known model (:class:`~gridworld_env.TabularMDP`).

Everything the paper's figures are judged on is computed here exactly: optimal and adversarial
teachers (value iteration), the expected undiscounted return of a policy, expected state visits
per episode, and the expected per-episode sum of KL(teacher || student) along the trajectories of
a control policy (Czarnecki et al., 2019, Fig. 3).

Conventions:

* A *state policy* is an array ``[S, A]`` whose rows lie on the probability simplex.
* Every function accepts one ``TabularMDP`` or a *batch*: a sequence of ``B`` models with
  identical shapes and identical ``action_rows`` (for example many random grids of one size).
  Batched inputs and outputs carry a leading MDP axis (policies ``[B, S, A]``, values ``[B, S]``,
  scalars ``[B]``). A single model is processed as a batch of one by the same code, so batched
  results equal per-MDP results bit for bit.
* The models are used in their compact form (successor lists per action *row*); the dense
  ``[S, A, S]`` array is never built, so ``n_actions = 4000`` costs what 5 actions cost until the
  final ``[S, A]`` outputs.
* Terminal states have value 0 and are never counted as visited: an episode "visits" a state when
  it takes an action there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from gridworld_env.mdp import TabularMDP

__all__ = [
    "expected_kl",
    "expected_return",
    "expected_sum",
    "expected_visits",
    "greedy_policy",
    "observation_policy_to_state_policy",
    "policy_evaluation",
    "policy_kl",
    "softmax_policy",
    "value_iteration",
]

MDPs = TabularMDP | Sequence[TabularMDP]

#: Tolerance on the row sums of a policy.
_SIMPLEX_ATOL = 1e-6


# ----------------------------------------------------------------------------- batching
@dataclass(frozen=True)
class _Batch:
    """Stacked compact models: ``[B, S, K, M]`` successor lists and ``[B, S]`` vectors."""

    next_states: NDArray[np.int64]
    next_probs: NDArray[np.float64]
    next_rewards: NDArray[np.float64]
    action_rows: NDArray[np.int64]
    initial: NDArray[np.float64]
    terminal: NDArray[np.bool_]
    single: bool

    @property
    def shape(self) -> tuple[int, int, int, int]:
        b, s, k, m = self.next_states.shape
        return b, s, k, m

    @property
    def n_actions(self) -> int:
        return int(self.action_rows.shape[0])

    def unbatch(self, array: NDArray) -> NDArray:
        """Drop the leading MDP axis of a result when the input was a single model."""
        return array[0] if self.single else array


def _as_batch(mdp: MDPs) -> _Batch:
    if isinstance(mdp, TabularMDP):
        mdps: list[TabularMDP] = [mdp]
        single = True
    else:
        mdps = list(mdp)
        single = False
        if not mdps or not all(isinstance(m, TabularMDP) for m in mdps):
            raise ValueError(
                "mdp must be a TabularMDP or a non-empty sequence of TabularMDPs, "
                f"got {type(mdp).__name__}"
            )
        first = mdps[0]
        for i, m in enumerate(mdps[1:], start=1):
            if m.next_states.shape != first.next_states.shape:
                raise ValueError(
                    "mdp: a batch needs models of identical shapes [S, K, M]; model 0 has "
                    f"{first.next_states.shape} and model {i} has {m.next_states.shape}"
                )
            if not np.array_equal(m.action_rows, first.action_rows):
                raise ValueError(
                    f"mdp: a batch needs identical action_rows; models 0 and {i} differ"
                )
    return _Batch(
        next_states=np.stack([m.next_states for m in mdps]),
        next_probs=np.stack([m.next_probs for m in mdps]),
        next_rewards=np.stack([m.next_rewards for m in mdps]),
        action_rows=np.array(mdps[0].action_rows),
        initial=np.stack([m.initial for m in mdps]),
        terminal=np.stack([m.terminal for m in mdps]),
        single=single,
    )


def _check_policy(policy: ArrayLike, batch: _Batch, name: str) -> NDArray[np.float64]:
    """Validate a state policy and return it as ``[B, S, A]`` float64."""
    b, s, _, _ = batch.shape
    expected = (s, batch.n_actions) if batch.single else (b, s, batch.n_actions)
    array = np.asarray(policy, dtype=np.float64)
    if array.shape != expected:
        axes = "[S, A]" if batch.single else "[B, S, A]"
        raise ValueError(f"{name} must have shape {axes} = {expected}, got {array.shape}")
    if not (np.all(np.isfinite(array)) and np.all(array >= 0.0)):
        raise ValueError(f"{name} must hold finite, non-negative probabilities")
    sums = array.sum(axis=-1)
    if not np.allclose(sums, 1.0, rtol=0.0, atol=_SIMPLEX_ATOL):
        worst = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(sums - 1.0)), sums.shape))
        raise ValueError(
            f"{name} rows must sum to 1 (probabilities over actions); the row at {worst} "
            f"sums to {float(sums[worst])!r}"
        )
    return array[None] if batch.single else array


def _check_state_vector(values: ArrayLike, batch: _Batch, name: str) -> NDArray[np.float64]:
    """Validate a per-state array and return it as ``[B, S]`` float64."""
    b, s, _, _ = batch.shape
    expected = (s,) if batch.single else (b, s)
    array = np.asarray(values, dtype=np.float64)
    if array.shape != expected:
        axes = "[S]" if batch.single else "[B, S]"
        raise ValueError(f"{name} must have shape {axes} = {expected}, got {array.shape}")
    return array[None] if batch.single else array


def _check_gamma(gamma: float) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)):
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    return float(gamma)


def _flat_successors(next_states: NDArray[np.int64]) -> NDArray[np.int64]:
    """Successor indices into a flattened ``[B * S]`` vector."""
    b, s = next_states.shape[:2]
    return next_states + (np.arange(b, dtype=np.int64) * s)[:, None, None, None]


def _row_rewards(batch: _Batch) -> NDArray[np.float64]:
    """Expected immediate reward per row ``[B, S, K]``."""
    return (batch.next_probs * batch.next_rewards).sum(axis=-1)


def _row_weights(batch: _Batch, policy: NDArray[np.float64]) -> NDArray[np.float64]:
    """Probability the policy gives each action row ``[B, S, K]``; zero in terminal states."""
    b, s, k, _ = batch.shape
    rows = batch.action_rows
    if k == rows.size and np.array_equal(rows, np.arange(k)):
        weights = policy.copy()
    else:
        weights = np.zeros((b, s, k))
        for row in range(k):
            weights[..., row] = policy[..., rows == row].sum(axis=-1)
    weights[batch.terminal] = 0.0
    return weights


# --------------------------------------------------------------------- reachability
def _pull(
    next_states: NDArray[np.int64],
    edge: NDArray[np.bool_],
    targets: NDArray[np.bool_],
    stop: NDArray[np.bool_],
) -> NDArray[np.bool_]:
    """States ``[B, S]`` from which a target is reachable along ``edge``.

    Paths never pass through a ``stop`` state (terminal states end the episode).
    """
    flat = _flat_successors(next_states)
    reach = targets.copy()
    while True:
        hit = (reach.ravel()[flat] & edge).any(axis=(-2, -1)) & ~stop
        new = reach | hit
        if np.array_equal(new, reach):
            return reach
        reach = new


def _forward(
    next_states: NDArray[np.int64],
    edge: NDArray[np.bool_],
    seeds: NDArray[np.bool_],
    stop: NDArray[np.bool_],
) -> NDArray[np.bool_]:
    """States ``[B, S]`` reachable from ``seeds`` along ``edge``, not expanding ``stop`` states."""
    flat = _flat_successors(next_states)
    reach = seeds.copy()
    frontier = seeds.copy()
    while frontier.any():
        expand = (edge & (frontier & ~stop)[:, :, None, None]).ravel()
        new = np.zeros(reach.size, dtype=bool)
        new[flat.ravel()[expand]] = True
        frontier = new.reshape(reach.shape) & ~reach
        reach |= frontier
    return reach


def _improper_states(
    batch: _Batch, weights: NDArray[np.float64]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Non-terminal states from which the policy fails to terminate with probability 1.

    Returns:
        ``(improper, edge)``: ``[B, S]`` bool, and the ``[B, S, K, M]`` support of the policy's
        transitions.
    """
    edge = (weights[..., None] * batch.next_probs) > 0.0
    term = batch.terminal
    can_end = _pull(batch.next_states, edge, term, term)
    improper = _pull(batch.next_states, edge, ~can_end, term) & ~term
    return improper, edge


def _describe_states(mask: NDArray[np.bool_], single: bool) -> str:
    where = np.argwhere(mask)[:5]
    if single:
        listed = ", ".join(str(int(s)) for _, s in where)
        return f"states {listed}" + (" ..." if mask.sum() > 5 else "")
    listed = ", ".join(f"(mdp {int(b)}, state {int(s)})" for b, s in where)
    return listed + (" ..." if mask.sum() > 5 else "")


@njit(cache=True)
def _banded_solve_kernel(
    next_states: NDArray[np.int64],
    next_probs: NDArray[np.float64],
    weights: NDArray[np.float64],
    rhs: NDArray[np.float64],
    keep: NDArray[np.bool_],
    gamma: float,
    transpose: bool,
    out: NDArray[np.float64],
) -> int:  # pragma: no cover - compiled; exercised through _solve
    """Banded LU (no pivoting) of ``I - gamma P_keep`` (or its transpose), one MDP at a time.

    Returns -1, or the index of the first MDP whose elimination met a non-positive pivot.
    """
    n_mdps, n_states, n_rows, n_out = next_states.shape
    for b in range(n_mdps):
        # Half-bandwidth of the kept block (20 for a 20-wide grid: moves reach s +- W).
        bw = 0
        for s in range(n_states):
            if keep[b, s]:
                for k in range(n_rows):
                    if weights[b, s, k] != 0.0:
                        for m in range(n_out):
                            t = next_states[b, s, k, m]
                            if keep[b, t] and next_probs[b, s, k, m] > 0.0:
                                bw = max(bw, abs(t - s))
        band = np.zeros((n_states, 2 * bw + 1))
        band[:, bw] = 1.0
        for s in range(n_states):
            if keep[b, s]:
                for k in range(n_rows):
                    for m in range(n_out):
                        t = next_states[b, s, k, m]
                        coef = gamma * (weights[b, s, k] * next_probs[b, s, k, m])
                        if coef != 0.0 and keep[b, t]:
                            if transpose:
                                band[t, s - t + bw] -= coef
                            else:
                                band[s, t - s + bw] -= coef
        x = rhs[b].copy()
        if not banded_lu_solve(band, x, bw):
            return b
        out[b] = x
    return -1


@njit(cache=True)
def banded_lu_solve(band: NDArray[np.float64], x: NDArray[np.float64], bw: int) -> bool:
    """Solve ``A y = x`` in place (``x`` becomes ``y``; ``band`` is overwritten by the LU).

    ``band [n, 2 bw + 1]`` (C-contiguous) holds ``A``'s band, ``band[i, j - i + bw] = A[i, j]``.
    Gaussian elimination without pivoting, then back-substitution. The update of each row is a
    contiguous axpy with a copy of the pivot row (allocated here, so the compiler knows it
    aliases nothing and vectorises it; ~3x faster than indexing the band in place, with the
    same operations in the same order).

    Returns:
        ``False`` (``x`` then unfinished) if a pivot is not positive (a singular M-matrix).
    """
    n = band.shape[0]
    width = 2 * bw + 1
    flat = band.reshape(-1)
    upper = np.empty(width)
    for k in range(n):
        pivot = flat[k * width + bw]
        if not pivot > 0.0:
            return False
        last = min(n - 1, k + bw)
        n_c = last - k
        base = k * width + bw + 1
        for c in range(n_c):
            upper[c] = flat[base + c]
        for i in range(k + 1, last + 1):
            at = i * width + (k - i + bw)
            factor = flat[at] / pivot
            if factor != 0.0:
                row = flat[at + 1 : at + 1 + n_c]
                for c in range(n_c):
                    row[c] = row[c] - factor * upper[c]
                x[i] -= factor * x[k]
    for k in range(n - 1, -1, -1):
        acc = x[k]
        for c in range(k + 1, min(n - 1, k + bw) + 1):
            acc -= band[k, c - k + bw] * x[c]
        x[k] = acc / band[k, bw]
    return True


def _solve(
    batch: _Batch,
    weights: NDArray[np.float64],
    rhs: NDArray[np.float64],
    keep: NDArray[np.bool_],
    gamma: float,
    transpose: bool,
) -> NDArray[np.float64]:
    """Solve ``(I - gamma P_keep) x = rhs`` (or with ``P_keep`` transposed) per MDP ``[B, S]``.

    ``P_keep`` is the policy's state-to-state matrix with the rows and columns of states outside
    ``keep`` dropped, so ``x = rhs`` there. ``I - gamma P_keep`` is a nonsingular M-matrix (the
    policy ends with probability 1 from the kept states, or ``gamma < 1``), so Gaussian
    elimination without pivoting is stable and keeps the band of the state ordering: a compiled
    banded LU straight from the successor lists, about ``S * W**2`` operations for a ``W``-wide
    grid instead of ``S**3 / 3`` for a dense solve (and no BLAS threads).
    """
    out = np.empty(rhs.shape)
    failed = _banded_solve_kernel(
        np.ascontiguousarray(batch.next_states),
        np.ascontiguousarray(batch.next_probs),
        np.ascontiguousarray(weights),
        np.ascontiguousarray(rhs, dtype=np.float64),
        np.ascontiguousarray(keep),
        float(gamma),
        bool(transpose),
        out,
    )
    if failed >= 0 or not np.all(np.isfinite(out)):
        where = "" if batch.single else f" (MDP {failed})"
        raise ValueError(
            f"the linear system of the policy is singular{where}: the policy does not end the "
            "episode with probability 1; use gamma < 1 or absorb_prob > 0"
        )
    return out


# --------------------------------------------------------------------- value iteration
def value_iteration(
    mdp: MDPs,
    gamma: float = 0.99,
    minimise: bool = False,
    tol: float = 1e-10,
    max_iter: int = 100_000,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Optimal (or worst) state and action values by value iteration on the compact model.

    Iterates ``V <- max_a [r(s, a) + gamma * sum_s' P(s' | s, a) V(s')]`` (``min`` with
    ``minimise=True``) with ``V = 0`` in terminal states, over the ``K`` distinct action rows
    only, until ``max_s |V_new - V_old| <= tol`` (per MDP: in a batch each MDP stops at its own
    iteration, so batched and single results are identical). The greedy policy of the result
    (``greedy_policy(q_values)``) is the optimal teacher; with ``minimise=True`` the adversarial,
    reward-minimising teacher of the paper's Figs. 6 and 9 is ``greedy_policy(-q_values)``.

    ``gamma = 1`` converges when every policy ends with probability 1 (e.g. ``absorb_prob > 0``,
    or a value that stays bounded); otherwise the values drift and a ``ValueError`` is raised after
    ``max_iter`` sweeps.

    Args:
        mdp: a model, or a sequence of ``B`` models with identical shapes.
        gamma: discount in [0, 1].
        minimise: minimise the return instead of maximising it.
        tol: stopping threshold on the largest change of a value in one sweep.
        max_iter: maximum number of sweeps.

    Returns:
        ``(values, q_values)``: ``[S]`` and ``[S, A]`` (``[B, S]`` and ``[B, S, A]`` for a batch),
        with ``values == q_values.max(-1)`` (``min`` when minimising) exactly and zeros in
        terminal states.

    Raises:
        ValueError: bad arguments, or no convergence within ``max_iter`` sweeps.
    """
    gamma = _check_gamma(gamma)
    if not (isinstance(tol, (int, float, np.floating)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    batch = _as_batch(mdp)
    b, s, k, _ = batch.shape
    used = np.unique(batch.action_rows)
    all_rows = used.size == k
    extremum = np.min if minimise else np.max
    row_rewards = _row_rewards(batch)

    def backup(
        values: NDArray[np.float64],
        flat: NDArray[np.int64],
        probs: NDArray[np.float64],
        rewards: NDArray[np.float64],
        terminal: NDArray[np.bool_],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        q_rows = rewards + gamma * (probs * values.ravel()[flat]).sum(axis=-1)
        q_rows = np.where(terminal[..., None], 0.0, q_rows)
        best = extremum(q_rows if all_rows else q_rows[..., used], axis=-1)
        return q_rows, best

    values = np.zeros((b, s))
    # The working set: MDPs that have not converged yet (compacted when half have).
    ids = np.arange(b)
    cur = (
        _flat_successors(batch.next_states),
        batch.next_probs,
        row_rewards,
        batch.terminal,
    )
    v_cur = values.copy()
    active = np.ones(b, dtype=bool)
    for _ in range(max_iter):
        _, v_new = backup(v_cur, *cur)
        delta = np.abs(v_new - v_cur).max(axis=-1)
        v_cur = np.where(active[:, None], v_new, v_cur)
        active &= ~(delta <= tol)
        if not active.any():
            break
        if 2 * active.sum() <= active.size:
            values[ids] = v_cur
            ids, v_cur = ids[active], v_cur[active]
            cur = (
                _flat_successors(batch.next_states[ids]),
                batch.next_probs[ids],
                row_rewards[ids],
                batch.terminal[ids],
            )
            active = np.ones(ids.size, dtype=bool)
    else:
        failed = ids[active]
        which = "" if batch.single else f" (MDPs {failed[:10].tolist()})"
        raise ValueError(
            f"value_iteration did not converge within max_iter={max_iter} sweeps{which}: with "
            f"gamma={gamma} some policy never ends and its values drift; use gamma < 1, "
            "absorb_prob > 0, or a larger max_iter"
        )
    values[ids] = v_cur
    q_rows, values = backup(
        values, _flat_successors(batch.next_states), batch.next_probs, row_rewards, batch.terminal
    )
    q_values = q_rows[..., batch.action_rows]
    return batch.unbatch(values), batch.unbatch(q_values)


# ------------------------------------------------------------------ policy evaluation
def policy_evaluation(mdp: MDPs, policy: ArrayLike, gamma: float = 1.0) -> NDArray[np.float64]:
    """Exact state values of a state policy by a linear solve.

    Solves ``(I - gamma P_pi) V = r_pi`` with ``V = 0`` in terminal states, where
    ``P_pi[s, s'] = sum_a pi(a|s) P(s'|s, a)`` and ``r_pi[s] = sum_a pi(a|s) r(s, a)``
    (expected undiscounted return for ``gamma = 1``, the quantity the paper's figures report).
    The solve is a compiled banded LU on the compact model (exact up to rounding; see
    ``_solve``), about 0.2 ms for a 20x20 grid.

    With ``gamma = 1`` the values exist only if the policy ends the episode with probability 1
    from every non-terminal state (always true when ``absorb_prob > 0``); otherwise (e.g.
    ``absorb_prob = 0`` and a policy that bumps into a wall forever) a ``ValueError`` names the
    states. :func:`expected_return` needs this only for the states reachable from the start.

    Args:
        mdp: a model, or a sequence of ``B`` models with identical shapes.
        policy: ``[S, A]`` (``[B, S, A]``) action probabilities per state.
        gamma: discount in [0, 1].

    Returns:
        ``[S]`` (``[B, S]``) values.

    Raises:
        ValueError: a bad ``policy`` or ``gamma``, or a policy that never ends with ``gamma = 1``.
    """
    gamma = _check_gamma(gamma)
    batch = _as_batch(mdp)
    pol = _check_policy(policy, batch, "policy")
    weights = _row_weights(batch, pol)
    reward = (weights * _row_rewards(batch)).sum(axis=-1)
    if gamma == 1.0:
        improper, _ = _improper_states(batch, weights)
        if improper.any():
            raise ValueError(
                "policy_evaluation with gamma=1: the policy never ends the episode with "
                f"probability 1 from {_describe_states(improper, batch.single)}, so the "
                "undiscounted values do not exist; use gamma < 1 or absorb_prob > 0"
            )
    values = _solve(batch, weights, reward, ~batch.terminal, gamma, transpose=False)
    values[batch.terminal] = 0.0
    return batch.unbatch(values)


def _visits(batch: _Batch, policy: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
    """Expected visits ``[B, S]`` and the policy's expected reward per state ``[B, S]``."""
    weights = _row_weights(batch, policy)
    improper, edge = _improper_states(batch, weights)
    reached = _forward(batch.next_states, edge, batch.initial > 0.0, batch.terminal)
    stuck = improper & reached
    if stuck.any():
        raise ValueError(
            "the policy never ends the episode with probability 1 from "
            f"{_describe_states(stuck, batch.single)}, which the episode can reach from the "
            "start: expected visits and returns are infinite or undefined (use absorb_prob > 0)"
        )
    live = reached & ~batch.terminal
    start = np.where(live, batch.initial, 0.0)
    visits = _solve(batch, weights, start, live, 1.0, transpose=True)
    visits[~live] = 0.0
    reward = (weights * _row_rewards(batch)).sum(axis=-1)
    return visits, reward


def expected_visits(mdp: MDPs, policy: ArrayLike) -> NDArray[np.float64]:
    """Expected number of visits to each state in one episode from the initial distribution.

    A visit is a time step at which the agent takes an action in that state, so terminal states
    get 0 and ``visits.sum()`` is the expected episode length in steps. Solves
    ``(I - P_pi^T) x = mu_0`` restricted to the non-terminal states the policy can reach from the
    start.

    Args:
        mdp: a model, or a sequence of ``B`` models with identical shapes.
        policy: ``[S, A]`` (``[B, S, A]``) action probabilities per state.

    Returns:
        ``[S]`` (``[B, S]``) expected visit counts.

    Raises:
        ValueError: a bad ``policy``, or one that can get stuck forever in a reachable region.
    """
    batch = _as_batch(mdp)
    visits, _ = _visits(batch, _check_policy(policy, batch, "policy"))
    return batch.unbatch(visits)


def _weighted_sum(visits: NDArray[np.float64], cost: NDArray[np.float64]) -> NDArray[np.float64]:
    # States never visited contribute 0 even where the cost is infinite.
    with np.errstate(invalid="ignore"):
        return np.where(visits > 0.0, visits * cost, 0.0).sum(axis=-1)


@overload
def expected_sum(mdp: TabularMDP, policy: ArrayLike, per_state_cost: ArrayLike) -> float: ...
@overload
def expected_sum(
    mdp: Sequence[TabularMDP], policy: ArrayLike, per_state_cost: ArrayLike
) -> NDArray[np.float64]: ...
def expected_sum(mdp: MDPs, policy: ArrayLike, per_state_cost: ArrayLike) -> Any:
    """Expected per-episode sum of a per-state quantity along trajectories of ``policy``.

    ``E[sum_t c(s_t)] = sum_s visits(s) c(s)`` over the steps at which an action is taken (see
    :func:`expected_visits`). Unvisited states contribute 0 whatever their cost.

    Args:
        mdp: a model, or a sequence of ``B`` models with identical shapes.
        policy: ``[S, A]`` (``[B, S, A]``) the policy generating the trajectories.
        per_state_cost: ``[S]`` (``[B, S]``) the quantity ``c(s)``.

    Returns:
        A float (``[B]`` for a batch).
    """
    batch = _as_batch(mdp)
    cost = _check_state_vector(per_state_cost, batch, "per_state_cost")
    visits, _ = _visits(batch, _check_policy(policy, batch, "policy"))
    total = _weighted_sum(visits, cost)
    return float(total[0]) if batch.single else total


@overload
def expected_return(mdp: TabularMDP, policy: ArrayLike) -> float: ...
@overload
def expected_return(mdp: Sequence[TabularMDP], policy: ArrayLike) -> NDArray[np.float64]: ...
def expected_return(mdp: MDPs, policy: ArrayLike) -> Any:
    """Expected undiscounted return of a state policy from the initial distribution.

    Equals ``mdp.initial @ policy_evaluation(mdp, policy, gamma=1)``, computed as
    ``sum_s visits(s) r_pi(s)`` so that only the states reachable from the start need to
    terminate. This is the ``return`` metric of every figure (SPEC 4).

    Args:
        mdp: a model, or a sequence of ``B`` models with identical shapes.
        policy: ``[S, A]`` (``[B, S, A]``) action probabilities per state.

    Returns:
        A float (``[B]`` for a batch).
    """
    batch = _as_batch(mdp)
    visits, reward = _visits(batch, _check_policy(policy, batch, "policy"))
    total = _weighted_sum(visits, reward)
    return float(total[0]) if batch.single else total


def policy_kl(teacher_policy: ArrayLike, student_policy: ArrayLike) -> NDArray[np.float64]:
    """Per-state ``KL(teacher || student) = sum_a pi(a|s) log(pi(a|s) / pi_theta(a|s))``.

    ``0 log 0 = 0``; an action the teacher takes and the student never does gives ``inf`` (a
    softmax student never has probability exactly 0, so this does not arise in practice).
    Values are clipped at 0 from below (rounding).

    Args:
        teacher_policy: ``[..., A]`` teacher probabilities pi.
        student_policy: ``[..., A]`` student probabilities pi_theta, same shape.

    Returns:
        ``[...]`` the divergence per state.
    """
    teacher = np.asarray(teacher_policy, dtype=np.float64)
    student = np.asarray(student_policy, dtype=np.float64)
    if teacher.shape != student.shape:
        raise ValueError(
            f"teacher_policy and student_policy must have the same shape, got {teacher.shape} "
            f"and {student.shape}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(teacher > 0.0, teacher * (np.log(teacher) - np.log(student)), 0.0)
    return np.maximum(terms.sum(axis=-1), 0.0)


@overload
def expected_kl(
    mdp: TabularMDP,
    control_policy: ArrayLike,
    teacher_policy: ArrayLike,
    student_policy: ArrayLike,
) -> float: ...
@overload
def expected_kl(
    mdp: Sequence[TabularMDP],
    control_policy: ArrayLike,
    teacher_policy: ArrayLike,
    student_policy: ArrayLike,
) -> NDArray[np.float64]: ...
def expected_kl(
    mdp: MDPs,
    control_policy: ArrayLike,
    teacher_policy: ArrayLike,
    student_policy: ArrayLike,
) -> Any:
    """Expected per-episode sum of KL(teacher || student) along trajectories of a control policy.

    ``E_{tau ~ control}[sum_t KL(pi(.|s_t) || pi_theta(.|s_t))] = sum_s visits_control(s)
    KL(pi(.|s) || pi_theta(.|s))``: the three KL columns of the paper's Fig. 3 use the student,
    the teacher and a uniform policy as the control policy. Terminal states are not counted.

    Args:
        mdp: a model, or a sequence of ``B`` models with identical shapes.
        control_policy: ``[S, A]`` (``[B, S, A]``) the policy generating the trajectories.
        teacher_policy: ``[S, A]`` (``[B, S, A]``) pi.
        student_policy: ``[S, A]`` (``[B, S, A]``) pi_theta.

    Returns:
        A float (``[B]`` for a batch); ``inf`` if the student gives probability 0 to an action
        the teacher takes in a visited state.
    """
    batch = _as_batch(mdp)
    control = _check_policy(control_policy, batch, "control_policy")
    teacher = _check_policy(teacher_policy, batch, "teacher_policy")
    student = _check_policy(student_policy, batch, "student_policy")
    visits, _ = _visits(batch, control)
    total = _weighted_sum(visits, policy_kl(teacher, student))
    return float(total[0]) if batch.single else total


# ------------------------------------------------------------------------ policies
def greedy_policy(q_values: ArrayLike, atol: float = 0.0) -> NDArray[np.float64]:
    """The greedy policy of action values, ties split uniformly.

    Args:
        q_values: ``[..., A]`` action values (``[S, A]`` or ``[B, S, A]``). Pass ``-q_values``
            for the minimising (adversarial) policy.
        atol: actions within ``atol`` of the best value count as ties.

    Returns:
        ``[..., A]`` probabilities.
    """
    q = np.asarray(q_values, dtype=np.float64)
    best = (q >= q.max(axis=-1, keepdims=True) - atol).astype(np.float64)
    return best / best.sum(axis=-1, keepdims=True)


def softmax_policy(q_values: ArrayLike, temperature: float) -> NDArray[np.float64]:
    """Boltzmann policy ``pi(a|s) ∝ exp(Q(s, a) / T)``; ``T = 0`` gives :func:`greedy_policy`.

    Args:
        q_values: ``[..., A]`` action values.
        temperature: ``T >= 0``.

    Returns:
        ``[..., A]`` probabilities.
    """
    if isinstance(temperature, bool) or not isinstance(
        temperature, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if not temperature >= 0.0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0.0:
        return greedy_policy(q_values)
    q = np.asarray(q_values, dtype=np.float64)
    z = np.exp((q - q.max(axis=-1, keepdims=True)) / temperature)
    return z / z.sum(axis=-1, keepdims=True)


def observation_policy_to_state_policy(
    policy: ArrayLike, state_to_index: ArrayLike
) -> NDArray[np.float64]:
    """Turn a policy over table indices (or full observations) into a state policy.

    ``state_to_index`` is :attr:`~gridworld_env.TableIndexWrapper.state_to_index` (or the first
    output of :func:`gridworld_env.table_index`), or, for full observations and the corridor and
    oscillation MDPs, ``env.unwrapped.observation_of_state`` itself (an observation is then its
    own index). States with index -1 (walls, ``s_term``, unreachable states) get a uniform row:
    they are never acted in, so the row only keeps the policy on the simplex.

    Args:
        policy: ``[n, A]`` (or ``[B, n, A]``) action probabilities per index.
        state_to_index: ``[S]`` int (or ``[B, S]`` with a batched ``policy``), -1 for states
            without an index.

    Returns:
        ``[S, A]`` (``[B, S, A]``) state policy.
    """
    pol = np.asarray(policy, dtype=np.float64)
    index = np.asarray(state_to_index)
    if not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"state_to_index must hold integers, got dtype {index.dtype}")
    if pol.ndim not in (2, 3):
        raise ValueError(f"policy must have shape [n, A] or [B, n, A], got {pol.shape}")
    if index.ndim == 2 and pol.ndim == 2:
        raise ValueError(
            "state_to_index must be [S] (one index per state); a partial-observation table "
            "[S, D] must first be enumerated with gridworld_env.table_index or TableIndexWrapper"
        )
    if index.ndim not in (1, 2) or (index.ndim == 2 and index.shape[0] != pol.shape[0]):
        raise ValueError(
            f"state_to_index must have shape [S] (or [B, S] matching policy's B), got "
            f"{index.shape} with policy {pol.shape}"
        )
    n_index = pol.shape[-2]
    if index.size and (index.min() < -1 or index.max() >= n_index):
        raise ValueError(
            f"state_to_index must hold -1 or indices in [0, {n_index}) (rows of policy), got "
            f"values in [{index.min()}, {index.max()}]"
        )
    safe = np.where(index < 0, 0, index)
    if index.ndim == 1:
        out = pol[..., safe, :]
    else:
        out = np.take_along_axis(pol, safe[..., None], axis=-2)
    missing = np.broadcast_to(index < 0, out.shape[:-1])
    return np.where(missing[..., None], 1.0 / pol.shape[-1], out)
