"""A native batched vector environment: many tabular MDPs stepped at once by a compiled kernel.

``gym.make_vec("DistillGrid-v0", num_envs=B, vectorization_mode="vector_entry_point", ...)``
builds a :class:`DistillGridVectorEnv` in which sub-env ``i`` is its own random MDP (layout seed
``layout_seed + i``); the same works for ``DistillChain-v0`` and ``DistillOscillation-v0``, whose
sub-envs all share one MDP. The API is Gymnasium's batched ``reset``/``step`` with next-step
autoreset (``metadata["autoreset_mode"] = AutoresetMode.NEXT_STEP``).

One source of truth
    Every sub-env's model is the :class:`~gridworld_env.TabularMDP` built by the same function as
    the single env (``grid_mdp``/``grid_observation_table``, ``chain_mdp``, ...). The kernels
    read an *outcome table* derived from it (:func:`gridworld_env.kernels.pack_outcomes`:
    duplicate outcomes merged, sorted by probability, cumulative); there is no second copy of
    the rules. :attr:`TabularVectorEnv.models` stacks the exact models for runners.

Randomness
    Every draw comes from the vector env's own ``np_random`` (seeded by ``reset(seed=...)``,
    one generator for the whole batch): uniforms are drawn in blocks of ``[R, B]`` by one
    ``random`` call (``R = min(64, 65536 // B)``), each ``step`` and ``reset`` uses the next row,
    and sub-env ``i`` only reads the ``i``-th entry of it. Results are therefore identical, bit
    for bit, for the serial and the parallel kernel and any number of threads; a ``step`` that
    raises (bad actions) changes nothing and leaves its row unused.

Speed
    The step kernel is compiled by numba (``cache=True``); the parallel version spreads
    contiguous ranges of sub-envs over numba's threads and is chosen from
    :data:`PARALLEL_MIN_ENVS` sub-envs on. The loop is bound by one scattered read per sub-env
    (its outcome record), which it prefetches a few sub-envs ahead. On the 2-core reference
    machine, 1000 random 20x20 MDPs with random actions run at about 3-4e7 env-steps/s with
    discrete observations and 2-2.5e7 with 9x9 partial observations (81 int64 per sub-env per
    step), see ``distill-grid bench``.

Memory per MDP
    The kernel tables of one sub-env (:attr:`TabularVectorEnv.nbytes`): the outcome records
    (``24 S K M`` bytes, ``K <= 5`` rows whatever the number of actions, ``M <= 6`` outcomes;
    merged duplicates usually leave ``M = 5``), ``terminal`` (``S``), the cumulative initial
    distribution and the observation keys (``16 S``) and, for partial observations, the
    observation rows (``S D`` int8). For a 20x20 grid that is 0.20 MB (4 actions) or 0.30 MB
    (any number of actions above 4). The stacked exact models (:attr:`TabularVectorEnv.models`,
    built on first access, then cached) take about as much again, plus ``8 S D`` bytes for
    partial observations. Neither grows with the number of actions: 1000 grid MDPs with 4000
    actions need about 0.6 GB. What grows with ``A`` are a runner's own ``[B, S, A]`` tables
    (12.8 MB per MDP and table for 4000 actions in float64): such runners work in chunks of
    consecutive MDPs, one vector env per chunk built with ``layout_seed=base + chunk_start``
    (the same MDPs as one big batch), with the chunk size from :func:`chunk_size_for`.

Modules
    :mod:`~gridworld_env.vector.base` (:class:`TabularVectorEnv`), :mod:`~gridworld_env.vector.grid`
    (:class:`DistillGridVectorEnv`), :mod:`~gridworld_env.vector.shared` (the chain and
    oscillation vector envs) and :mod:`~gridworld_env.vector.models` (:class:`StackedModels`,
    :func:`chunk_size_for`); the compiled step is :mod:`gridworld_env.kernels`.
"""

from gridworld_env.vector.base import PARALLEL_MIN_ENVS, TabularVectorEnv
from gridworld_env.vector.grid import DistillGridVectorEnv
from gridworld_env.vector.models import StackedModels, chunk_size_for, env_bytes_per_mdp
from gridworld_env.vector.shared import DistillChainVectorEnv, DistillOscillationVectorEnv

__all__ = [
    "PARALLEL_MIN_ENVS",
    "DistillChainVectorEnv",
    "DistillGridVectorEnv",
    "DistillOscillationVectorEnv",
    "StackedModels",
    "TabularVectorEnv",
    "chunk_size_for",
    "env_bytes_per_mdp",
]
