"""The compiled (numba) agent kernels of the batched teacher trainers, in one namespace.

The trainers in :mod:`distill_agents.teachers.training` step native vector envs
(:mod:`gridworld_env.vector`) through their public ``reset``/``step`` API. After every ``step``
one call of an *agent kernel* learns from the ``B`` transitions just returned and picks the
``B`` next actions: :func:`~distill_agents.teachers.q_kernels.q_step` (Q-learning) and
:func:`~distill_agents.teachers.a2c_kernels.a2c_step` (A2C), each with a ``_parallel`` twin on
numba's threads; the action choices live in :mod:`distill_agents.teachers.policy_kernels` and
the records the kernels take in :mod:`distill_agents.teachers.records`.

Sub-envs are *actors*: actor ``j`` plays MDP ``group[j]`` and reads and writes that MDP's
tables (``[G, N, A]``). Several actors may share one MDP (the trainer replicates slow MDPs);
they are contiguous, always handled by one thread, in order of ``j``, so results are bit-for-bit
the same whatever the number of threads. Actor ``j`` draws only the uniform ``u_row[j]``.

Bookkeeping (arrays owned by the trainer, updated in place; :class:`~.records.Actors` and
:class:`~.records.Tallies`):

- ``status[j]``: :data:`IDLE` (the actor's sub-env is stepped but ignored), :data:`ACTING`
  (in an episode that is learned from) or :data:`ENDED` (its episode ended at the previous
  step, so the next ``step`` is Gymnasium's next-step autoreset, whose action is ignored and
  whose observation starts the next episode);
- ``obs[j]``/``actions[j]``: the observation the action was chosen at, and the action sent
  with the next ``step``;
- per MDP ``g``: ``started[g]``/``completed[g]`` episodes and ``steps[g]`` transitions learned.

An actor starts an episode (``ENDED`` -> ``ACTING``) only while ``allow`` is true and its MDP
has started fewer than ``n_episodes`` episodes, so every MDP learns from exactly
``n_episodes`` complete episodes. Each kernel returns, per thread range, the number of *busy*
actors (acting, or about to start an episode) and the number of transitions learned from.

:func:`~distill_agents.teachers.q_kernels.q_learning_reference` is a plain compiled Q-learning
loop with the dynamics inlined (the performance reference of
:func:`~distill_agents.teachers.bench.bench_q_learning`).
"""

from __future__ import annotations

from distill_agents.teachers.a2c_kernels import a2c_step, a2c_step_parallel
from distill_agents.teachers.q_kernels import q_learning_reference, q_step, q_step_parallel
from distill_agents.teachers.records import ACTING, ENDED, IDLE

__all__ = [
    "ACTING",
    "ENDED",
    "IDLE",
    "a2c_step",
    "a2c_step_parallel",
    "q_learning_reference",
    "q_step",
    "q_step_parallel",
]
