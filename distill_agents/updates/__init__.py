"""The general distillation update of Czarnecki et al. (2019), Eq. 1, as pure array functions.

One call updates a tabular student after one episode:

    theta <- theta - lr * sum_t [ -grad log pi_theta(a_t | s_t) * Ahat_t  +  grad l_t ]
    V(s_t) <- V(s_t) + lr * [ target_t - V(s_t) ]  for t = 1..T  (L2 critic fit, paper A.3)

The three parts of Eq. 1 are computed separately (see :mod:`distill_agents.methods` for each
method's choice of them):

1. **control policy**: who sampled the episode; the update only sees its result (the arrays
   ``obs``, ``actions``, ``rewards``); :func:`sample_control_action` draws the actions.
2. **loss term** ``l_t`` at the current state, with closed-form tabular gradients
   (PAPER.md 5.4), for a student row ``theta_s`` with ``p = softmax(theta_s)``:

   - ``d/dtheta_s H_x(pi || pi_theta) = p - pi``;
   - ``d/dtheta_s H_x(pi_theta || pi) = -p * (log pi - sum_a p(a) log pi(a))``;
   - ``d/dtheta_s [-sum_a pi(a) p(a)] = -p * (pi - sum_a pi(a) p(a))``;
   - ``d/dtheta_s log pi_theta(a | s) = e_a - p``.

3. **reward term** ``rhat_i``; ``Rhat_t = sum_{i>=t} gamma^(i-t) rhat_i`` and the critic turn it
   into the advantage:

   - ``none``: ``Ahat_t = Rhat_t`` (REINFORCE, no baseline, no critic update);
   - ``mc``: ``Ahat_t = Rhat_t - V(s_t)``, critic target ``Rhat_t``;
   - ``td`` (TD(1)): ``Ahat_t = rhat_t + gamma V(s_{t+1}) - V(s_t)``, target
     ``rhat_t + gamma V(s_{t+1})``, where the bootstrapped ``V(s_{t+1})`` is the student's
     critic, the teacher's value (``td_v_teacher``) or 0 (``td_v_zero``), and 0 after a
     terminal transition.

Everything is evaluated at the parameters *before* the update (the update is the sum over the
episode of Eq. 1's terms at the current theta, then one step), so the expected update over
episodes is exactly the expected update field whose (non-)gradient structure the paper's
theorems are about. The critic's targets and the advantages use the critic before the update
too; its L2 step is then applied visit by visit (``methods.K_CRITIC_SEQUENTIAL``), because the
summed step diverges at lr 0.1 when a state is visited many times in one episode.

``log pi`` of the teacher is floored: ``log(max(pi, TEACHER_PROB_FLOOR))``, so that a greedy
teacher (``pi = 0`` off its argmax) gives finite rewards ``log(1e-8) = -18.42`` to the entropy
methods (PAPER.md 5.4 caveat; the paper does not say what it did). :func:`floored_log` builds the
table once per teacher.

The compiled kernels (:mod:`~distill_agents.updates.rows` and
:mod:`~distill_agents.updates.row_update`: O(1) work per step, the rows of an episode touched
once) work on typed records of arrays, so that the batched runner calls them inside its own
compiled loop over MDPs; :func:`episode_update` is the validated Python entry point and
:func:`episode_update_reference` a slow, obvious NumPy version used by the tests.
:func:`expected_update` computes the exact expected update on MDPs whose trajectories can be
enumerated (Theorem 1/2 checks, the Fig. 2 dynamics).

Modules
    :mod:`~distill_agents.updates.episode` (the Python entry point, the reference, sampling),
    :mod:`~distill_agents.updates.rows` (the compiled student and teacher row tables and the
    draws), :mod:`~distill_agents.updates.records` (the method and episode records the kernels
    take), :mod:`~distill_agents.updates.row_update` (the compiled update of one episode) and
    :mod:`~distill_agents.updates.expected` (exact expectations on small MDPs). This package
    re-exports the names of the first and the last.
"""

from distill_agents.updates.episode import (
    TEACHER_PROB_FLOOR,
    check_tables,
    control_probs,
    episode_update,
    episode_update_reference,
    floored_log,
    sample_control_action,
)
from distill_agents.updates.expected import (
    ExpectedUpdate,
    Trajectory,
    enumerate_trajectories,
    expected_loss,
    expected_update,
)

__all__ = [
    "TEACHER_PROB_FLOOR",
    "ExpectedUpdate",
    "Trajectory",
    "check_tables",
    "control_probs",
    "enumerate_trajectories",
    "episode_update",
    "episode_update_reference",
    "expected_loss",
    "expected_update",
    "floored_log",
    "sample_control_action",
]
