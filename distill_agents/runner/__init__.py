"""The batched runner: one distillation method on many MDPs through the vector env (SPEC 4).

:func:`run_distillation` trains one tabular student per MDP of a
:class:`~distill_agents.teachers.Teachers` (``B = teachers.n_mdps``) with one method of
:mod:`distill_agents.methods`, through the native vector env's ``reset``/``step``
(:mod:`gridworld_env.vector`, table-index observations matching the teachers' tables), and
evaluates every student *exactly* on its MDP's model at iterations ``0, k, 2k, ..., iterations``.
The per-episode update is :func:`distill_agents.updates.row_update.episode_update_tables`, the
kernel of the single-env :func:`~distill_agents.distill` too: Eq. 1 accumulated per distinct student
row of the episode, so a step costs O(1) and a row O(its explicit actions) once per episode
(:mod:`distill_agents.updates.rows`); actions are drawn by the same
:func:`~distill_agents.updates.rows.draw_action` (binary search, O(log A)).

Iterations
    One iteration of MDP ``m`` = one full episode of the control policy on ``m``, then the
    update of ``m``'s student. Sub-envs run asynchronously under Gymnasium's next-step
    autoreset: each keeps its own episode buffer and its MDP is updated when its episode ends
    (:mod:`distill_agents.runner.loop_kernels`).

Randomness: one stream per MDP, so results do not depend on how MDPs are batched
    MDP ``g`` (its index among all MDPs: ``first_mdp + i`` for the teachers' ``i``) has the
    seed :func:`mdp_seed` ``(seed, g)`` and from it, exactly as
    ``distill(env_g, teacher_g, method, seed=mdp_seed(seed, g))`` does
    (:func:`distill_agents.distill.seed_streams`), an environment seed and an action
    generator. The action generator gives one uniform per step, turned into the control
    policy's action by inverse CDF. The environment stream (Gymnasium's
    ``np_random(env_seed)``) gives one uniform per reset and per step: the vector env draws
    its uniforms in blocks of ``[R, Bp]`` with one ``np_random.random(out=...)`` call, sub-env
    ``j`` reading only column ``j`` (documented in :mod:`gridworld_env.vector`), so the runner
    installs a :class:`PerMDPUniforms` generator that fills column ``j`` from the stream of the
    MDP sub-env ``j`` runs, starting at the first uniform that MDP has not consumed yet.
    Consequently each MDP's learning is a function of ``(seed, g)``, its teacher and its
    model alone: identical, bit for bit, whatever ``chunk_size``, the order or number of
    MDPs run together, the compaction schedule, or the number of threads. With deterministic
    dynamics it is also exactly ``distill``'s learning on the single env with
    ``seed=mdp_seed(seed, g)``; with stochastic dynamics the single env and the vector env
    map a uniform to an outcome in different orders (model order versus outcomes sorted by
    probability), so the two agree in distribution only (see ``tests/test_runner.py``).

Finished MDPs, and compaction
    An MDP that has completed ``iterations`` episodes stops learning; its sub-env keeps being
    stepped (with action 0, results ignored) while others run. When at most half of a vector
    env's sub-envs are still in use and the cost model (:data:`BUILD_COST`) says it pays off,
    the runner *drains* (starts no new episodes, lets the running ones end) and continues with
    a new vector env holding only the unfinished MDPs (built from their cached layouts); with
    per-MDP streams this changes no result. Cost model decisions depend on counts only.

Evaluation
    When MDP ``m`` completes iteration ``e * k`` (or the last iteration) its logits are copied
    to a snapshot slot; snapshots are evaluated in batches with :mod:`distill_agents.planning`
    on the exact model: the student's policy over table indices is mapped to states through
    ``state_to_index``, then ``return`` is the expected undiscounted return from the start
    (``planning.expected_return``), and ``kl_student``/``kl_teacher``/``kl_uniform`` are the
    expected per-episode sums of ``KL(pi || pi_theta)`` along trajectories of the student, the
    teacher and the uniform policy (``planning.expected_kl``; Fig. 3's columns). The visits of
    the teacher and of the uniform policy are computed once per MDP. The teacher's own values
    (``return``; 0 for the KLs) are recorded too. The computation goes through
    ``planning.expected_visits`` on action-row weights
    (:class:`~distill_agents.runner.evaluation.Evaluator`), which gives the values of
    ``planning.expected_return``/``expected_kl`` (to ~1e-14 relative) without building
    ``[S, A]`` arrays; the students' values come from a compiled kernel doing the same
    banded solve (:mod:`distill_agents.runner.eval_kernels`). With ``mc_episodes=n`` every metric
    is instead a Monte Carlo estimate from ``n`` sampled episodes
    (:class:`~distill_agents.runner.evaluation.MonteCarloEvaluator`).

Loops
    ``loop="vector"`` steps the vector env through ``reset``/``step`` (above);
    ``loop="compiled"`` (the default) runs each MDP's episodes in one compiled function over
    the same vector env's outcome tables with the same per-MDP uniforms, so it trains the same
    students bit for bit, several times faster.

Groups
    :func:`run_distillation_group` trains ``G`` students per MDP (one per set of teachers of
    the same MDPs) from the same episodes, when the control policy does not depend on the
    student (``uniform``; ``teacher`` with equal teachers): the compiled loop generates each
    episode once and updates the ``G`` students in turn. With the per-MDP streams the episodes
    are those each student's own run would see, so the results are the separate runs', bit
    for bit.

Memory
    MDPs are processed in chunks of consecutive MDPs, each with its own vector env; the chunk
    size comes from :func:`gridworld_env.vector.chunk_size_for` with
    :data:`CHUNK_BUDGET_BYTES` (per MDP: logits, floored teacher log-probabilities, two
    snapshot slots and room for the evaluation, ``[N, A]`` float64 each, plus the env: 77 MB
    per 20x20 MDP with 4000 actions, so about 50 MDPs per 4 GB chunk). Chunking changes no result
    (see above). The :class:`~distill_agents.teachers.Teachers` passed in hold ``[B, N, A]``
    probabilities for all their MDPs (12.8 GB for 1000 MDPs with 4000 actions): for such sizes
    make and distil the teachers piece by piece, calling :func:`run_distillation` with
    ``first_mdp`` set to each piece's first MDP, and join the pieces with
    :meth:`RunResult.concatenate` (the same numbers as one run).

Modules
    :mod:`~distill_agents.runner.seeding` (per-MDP seeds and uniforms, evaluation points),
    :mod:`~distill_agents.runner.result` (:class:`RunResult`),
    :mod:`~distill_agents.runner.envs` (vector envs of chunks, kept builds),
    :mod:`~distill_agents.runner.evaluation` (exact and Monte Carlo evaluators),
    :mod:`~distill_agents.runner.chunks` (one chunk trained by either loop) and
    :mod:`~distill_agents.runner.distillation` (:func:`run_distillation`,
    :func:`run_distillation_group`).
"""

from __future__ import annotations

from distill_agents.runner.distillation import (
    CHUNK_BUDGET_BYTES,
    KL_METRICS,
    LOOPS,
    TABLES_PER_MDP,
    run_distillation,
    run_distillation_group,
)
from distill_agents.runner.evaluation import METRICS
from distill_agents.runner.result import RunResult
from distill_agents.runner.seeding import (
    STUDENT_STREAM,
    PerMDPUniforms,
    early_iterations,
    eval_iterations,
    mdp_seed,
)

__all__ = [
    "CHUNK_BUDGET_BYTES",
    "KL_METRICS",
    "LOOPS",
    "METRICS",
    "STUDENT_STREAM",
    "TABLES_PER_MDP",
    "PerMDPUniforms",
    "RunResult",
    "early_iterations",
    "eval_iterations",
    "mdp_seed",
    "run_distillation",
    "run_distillation_group",
]
