"""Compiled (numba) kernels of the batched vector environment (:mod:`gridworld_env.vector`).

The kernels read *outcome tables* derived from each sub-environment's :class:`TabularMDP`: for
every ``(env i, state s, row k)`` a short list of ``M`` outcome records

============  =======  ===============================================================
field         dtype    meaning
============  =======  ===============================================================
``cum``       float64  cumulative probability, outcomes sorted by decreasing probability;
                       the last outcome with positive probability (and every padding
                       outcome after it) holds exactly 1.0
``reward``    float64  reward received with the outcome
``state``     int32    next state
``obs_key``   int32    observation key of the next state, -1 if it has none (``s_term``:
                       the previous observation is repeated). The key is the observation
                       itself for discrete observations (cell or table index) and the state
                       whose observation row is shown for partial observations
============  =======  ===============================================================

so one step of one sub-environment usually touches a single cache line of the table (the most
likely outcome comes first). The tables are built by :func:`pack_outcomes` from the model
arrays; nothing here knows the rules of any environment.

The step and reset kernels read the tables from a :class:`StepTables` record and write the
step's outputs into a :class:`StepOutputs` record; :func:`compiled_for` gives the machine code
behind a kernel call, which the vector env calls directly once its argument types are known.

Every kernel takes its uniforms as an argument (drawn by the caller from the vector env's
``np.random.Generator``), and sub-environment ``i`` only ever reads ``uniforms[row, i]``: results
are bit-for-bit identical whatever the number of threads, serial or parallel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import llvmlite.ir as llvm_ir
import numba
import numpy as np
from numba import njit, prange
from numba.core import cgutils, types
from numba.extending import intrinsic
from numpy.typing import NDArray

from gridworld_env.mdp import TabularMDP
from gridworld_env.outcomes import start_state

__all__ = [
    "N_ENV_FIELDS",
    "OUTCOME_DTYPE",
    "StepOutputs",
    "StepTables",
    "compiled_for",
    "first_bad_action",
    "pack_outcomes",
    "prefetch",
    "reset_kernel",
    "step_kernel",
    "step_kernel_parallel",
]

OUTCOME_DTYPE = np.dtype(
    [("cum", np.float64), ("reward", np.float64), ("state", np.int32), ("obs_key", np.int32)]
)


class StepTables(NamedTuple):
    """The vector env's tables the step and reset kernels read (fixed once the env is set up).

    Attributes:
        outcomes: ``[B, S, K, M]`` :data:`OUTCOME_DTYPE` tables.
        action_rows: ``[A]`` int64.
        terminal: ``[B, S]`` bool.
        initial_cum: ``[B, S]`` float64 cumulative initial distributions (last entry 1.0).
        key_of_state: ``[B, S]`` int64 observation key of each state.
        obs_rows: ``[B, S, D]`` int8 observation rows, or ``[1, 1, 0]`` for discrete
            observations (then the observation is the observation key).
        max_steps: time limit (0: none).
    """

    outcomes: NDArray
    action_rows: NDArray[np.int64]
    terminal: NDArray[np.bool_]
    initial_cum: NDArray[np.float64]
    key_of_state: NDArray[np.int64]
    obs_rows: NDArray[np.int8]
    max_steps: int


class StepOutputs(NamedTuple):
    """The arrays one ``step`` of the vector env writes (fresh at every call).

    Attributes:
        obs: ``[B, D]`` (or ``[B, 1]``) int64 observations.
        rewards: ``[B]`` float64.
        terminations: ``[B]`` bool.
        truncations: ``[B]`` bool.
        states: ``[B]`` int64 true states.
    """

    obs: NDArray[np.int64]
    rewards: NDArray[np.float64]
    terminations: NDArray[np.bool_]
    truncations: NDArray[np.bool_]
    states: NDArray[np.int64]


def compiled_for(kernel: Any, args: tuple[Any, ...]) -> Callable[..., Any]:
    """The machine code numba runs for ``kernel(*args)`` (``kernel`` called with such args before).

    Calling it skips numba's dispatch, which types every argument at every call (about 1-2 us
    for a few records of arrays, noticeable next to a step of a few hundred sub-envs). The
    caller must pass arguments of the same numba types (dtypes, dimensions, layouts) as
    ``args``: nothing checks them. If numba ran that call through a conversion to another
    signature (none was compiled for these types), the dispatcher itself is returned.
    """
    try:
        compiled: Callable[..., Any] = kernel.get_overload(tuple(numba.typeof(a) for a in args))
    except KeyError:
        return kernel
    return compiled


def pack_outcomes(mdp: TabularMDP, key_of_state: NDArray[np.int64], out: NDArray) -> int:
    """Write the outcome table of one model into ``out`` ``[S, K, W]`` (:data:`OUTCOME_DTYPE`).

    Per ``(state, row)``: outcomes with zero probability are dropped, outcomes leading to the same
    next state with the same reward are merged (probabilities added), and the rest are sorted by
    decreasing probability (stable), so the kernels' linear search usually stops at the first
    record. ``cum`` is the running sum divided by the total, so the last outcome has exactly 1.0
    (``x / x == 1.0`` in IEEE arithmetic) and a uniform in ``[0, 1)`` always stops on a positive
    outcome. Records past the last outcome repeat it (never selected).

    Args:
        mdp: the model.
        key_of_state: ``[S]`` int, the observation key of each state (-1: none).
        out: ``[S, K, W]`` structured array to fill, ``W >= M`` of the model.

    Returns:
        The number of records of the widest row (``W`` may then be cut down to it).
    """
    n_states, n_rows, n_out = mdp.next_states.shape
    if out.shape != (n_states, n_rows, out.shape[2]) or out.shape[2] < n_out:
        raise ValueError(f"out must have shape [S, K, >= M] = {mdp.next_states.shape}")
    if n_states >= 2**31:
        raise ValueError(f"at most 2**31 - 1 states are supported, got {n_states}")
    return int(
        _pack_rows(
            mdp.next_states,
            mdp.next_probs,
            mdp.next_rewards,
            np.ascontiguousarray(key_of_state, dtype=np.int64),
            out,
        )
    )


@njit(cache=True)
def _pack_rows(next_states, next_probs, next_rewards, key_of_state, out):
    n_states, n_rows, n_out = next_states.shape
    width = out.shape[2]
    probs = np.empty(n_out)
    states = np.empty(n_out, dtype=np.int64)
    rewards = np.empty(n_out)
    widest = 1
    for s in range(n_states):
        for k in range(n_rows):
            n = 0
            for m in range(n_out):
                p = next_probs[s, k, m]
                if p <= 0.0:
                    continue
                target, reward = next_states[s, k, m], next_rewards[s, k, m]
                merged = False
                for j in range(n):
                    if states[j] == target and rewards[j] == reward:
                        probs[j] += p
                        merged = True
                        break
                if not merged:
                    probs[n], states[n], rewards[n] = p, target, reward
                    n += 1
            # Stable insertion sort by decreasing probability.
            for j in range(1, n):
                p, target, reward = probs[j], states[j], rewards[j]
                at = j
                while at > 0 and probs[at - 1] < p:
                    probs[at], states[at], rewards[at] = (
                        probs[at - 1],
                        states[at - 1],
                        rewards[at - 1],
                    )
                    at -= 1
                probs[at], states[at], rewards[at] = p, target, reward
            total = 0.0
            for j in range(n):
                total += probs[j]
            running = 0.0
            for j in range(width):
                src = min(j, n - 1)
                if j < n:
                    running += probs[j]
                record = out[s, k, j]
                record["cum"] = running / total
                record["reward"] = rewards[src]
                record["state"] = states[src]
                record["obs_key"] = key_of_state[states[src]]
            widest = max(widest, n)
    return widest


# --------------------------------------------------------------------------- kernels
# The mutable state of sub-env i is the row env_state[i] (int64), updated in place:
STATE = 0  #: current true state
OBS_STATE = 1  #: the state whose observation is current (differs from STATE after absorption)
OBS_KEY = 2  #: the current observation key (see OUTCOME_DTYPE)
ELAPSED = 3  #: steps since the last reset; -1 once the episode has ended (NEXT_STEP autoreset)
N_ENV_FIELDS = 4
# Observations: out_obs[i, 0] = env_state[i, OBS_KEY] for discrete observations (obs_rows is
# [1, 1, 0]); out_obs[i, :] = obs_rows[i, env_state[i, OBS_KEY], :] otherwise ([B, S, D]).
# Indices are cast to unsigned integers: numba then skips its negative-index wraparound code,
# which is a good part of the hot loop's instructions.

#: How many sub-envs ahead the step loop prefetches outcome records. The loop is bound by the
#: latency of one scattered read per sub-env; prefetching overlaps those reads (measured: about
#: 1.4x faster for 1000 random 20x20 MDPs).
PREFETCH_DISTANCE = 8


@intrinsic
def prefetch(typingctx, array, index):
    """Hint the CPU to load the cache line of ``array.flat[index]`` (C-contiguous ``array``)."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_value, index_value = args
        proxy = context.make_array(signature.args[0])(context, builder, array_value)
        byte_ptr = llvm_ir.IntType(8).as_pointer()
        name = "llvm.prefetch.p0" if getattr(byte_ptr, "is_opaque", False) else "llvm.prefetch.p0i8"
        i32 = llvm_ir.IntType(32)
        fn_type = llvm_ir.FunctionType(llvm_ir.VoidType(), [byte_ptr, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fn_type, name)
        address = builder.bitcast(builder.gep(proxy.data, [index_value]), byte_ptr)
        # read, high temporal locality, data cache
        builder.call(fn, [address, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


# The per-env work lives in one loop over a range of sub-envs (`_step_range`) that both the
# serial and the parallel kernel call, so the body exists once and LLVM optimises the whole
# loop (a per-env helper function with this many array arguments compiled ~5x slower).


@njit(inline="never")
def _reset_one(i, u, env_state, initial_cum, key_of_state):
    s = start_state(initial_cum[i], u)
    env_state[i, STATE] = s
    env_state[i, OBS_STATE] = s
    env_state[i, OBS_KEY] = key_of_state[i, s]
    env_state[i, ELAPSED] = 0
    return s


@njit(inline="always")
def _write_obs(i, env_state, obs_rows, out_obs):
    dim = obs_rows.shape[2]
    if dim == 0:
        out_obs[i, 0] = env_state[i, OBS_KEY]
    else:
        row = obs_rows[i, np.uint64(env_state[i, OBS_KEY])]
        for d in range(dim):
            out_obs[i, d] = row[d]


@njit(cache=True)
def _step_range(lo, hi, actions, uniforms, row_u, env_state, tables, out):
    outcomes, action_rows, terminal, initial_cum, key_of_state, obs_rows, max_steps = tables
    out_obs, out_rewards, out_terminations, out_truncations, out_states = out
    n_states = np.uint64(outcomes.shape[1])
    n_rows = np.uint64(outcomes.shape[2])
    n_out = np.uint64(outcomes.shape[3])
    flat_outcomes = outcomes.reshape(-1)
    flat_terminal = terminal.reshape(-1)
    u_row = uniforms[row_u]
    for j in range(lo, hi):
        i = np.uint64(j)
        ahead = j + PREFETCH_DISTANCE
        if ahead < hi:
            a = np.uint64(ahead)
            k_ahead = np.uint64(action_rows[np.uint64(actions[a])])
            s_ahead = np.uint64(env_state[a, STATE])
            prefetch(flat_outcomes, ((a * n_states + s_ahead) * n_rows + k_ahead) * n_out)  # type: ignore[call-arg]
        u = u_row[i]
        steps = env_state[i, ELAPSED]
        if steps < 0:
            # NEXT_STEP autoreset: this step resets the sub-env and ignores its action.
            s = _reset_one(j, u, env_state, initial_cum, key_of_state)
            out_rewards[i] = 0.0
            out_terminations[i] = False
            out_truncations[i] = False
        else:
            k = np.uint64(action_rows[np.uint64(actions[i])])
            at = ((i * n_states + np.uint64(env_state[i, STATE])) * n_rows + k) * n_out
            # Stops at the latest on the last positive outcome (cumulative probability 1.0 > u).
            while u >= flat_outcomes[at]["cum"]:
                at += np.uint64(1)
            outcome = flat_outcomes[at]
            s = np.int64(outcome["state"])
            key = outcome["obs_key"]
            env_state[i, STATE] = s
            if key >= 0:
                env_state[i, OBS_STATE] = s
                env_state[i, OBS_KEY] = key
            out_rewards[i] = outcome["reward"]
            term = flat_terminal[i * n_states + np.uint64(s)]
            steps += 1
            trunc = max_steps > 0 and steps >= max_steps
            env_state[i, ELAPSED] = -1 if (term or trunc) else steps
            out_terminations[i] = term
            out_truncations[i] = trunc
        out_states[i] = s
        _write_obs(i, env_state, obs_rows, out_obs)


@njit(cache=True)
def first_bad_action(actions, n_actions):
    """Index of the first action outside ``[0, n_actions)``, or -1."""
    for i in range(actions.shape[0]):
        a = actions[i]
        if a < 0 or a >= n_actions:
            return i
    return -1


@njit(cache=True)
def step_kernel(n_chunks, actions, uniforms, row_u, env_state, tables, out):
    """Step every sub-env once, in one serial loop.

    Args:
        n_chunks: unused (same signature as :func:`step_kernel_parallel`).
        actions: ``[B]`` int64.
        uniforms: ``[R, B]`` float64 in ``[0, 1)``, a block of pre-drawn uniforms.
        row_u: the row of ``uniforms`` to use; sub-env ``i`` reads ``uniforms[row_u, i]`` only.
        env_state: ``[B, N_ENV_FIELDS]`` int64 mutable state (see the module constants).
        tables: :class:`StepTables`.
        out: :class:`StepOutputs`, written.

    Returns:
        -1, or the index of the first action outside ``[0, A)`` (then nothing was changed).
    """
    bad = first_bad_action(actions, tables.action_rows.shape[0])
    if bad >= 0:
        return bad
    _step_range(0, env_state.shape[0], actions, uniforms, row_u, env_state, tables, out)
    return -1


@njit(cache=True, parallel=True)
def step_kernel_parallel(n_chunks, actions, uniforms, row_u, env_state, tables, out):
    """:func:`step_kernel` over ``n_chunks`` contiguous ranges of sub-envs run on numba's threads.

    Sub-envs are independent (each reads its own uniform), so the results are the same.
    """
    bad = first_bad_action(actions, tables.action_rows.shape[0])
    if bad >= 0:
        return bad
    n_envs = env_state.shape[0]
    for c in prange(n_chunks):
        lo, hi = c * n_envs // n_chunks, (c + 1) * n_envs // n_chunks
        _step_range(lo, hi, actions, uniforms, row_u, env_state, tables, out)
    return -1


@njit(cache=True)
def reset_kernel(mask, uniforms, row_u, env_state, tables, out_obs, out_states):
    """Reset the sub-envs with ``mask[i]``; write every sub-env's observation and state.

    Arguments as :func:`step_kernel`'s, ``out_obs`` and ``out_states`` as in :class:`StepOutputs`.
    """
    for i in range(env_state.shape[0]):
        if mask[i]:
            _reset_one(i, uniforms[row_u, i], env_state, tables.initial_cum, tables.key_of_state)
        out_states[i] = env_state[i, STATE]
        _write_obs(i, env_state, tables.obs_rows, out_obs)
