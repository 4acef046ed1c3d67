"""Tabular teachers for many MDPs at once: the tables, how they are built and trained.

A *teacher* gives, for every table index ``o`` of an MDP (the observations
:class:`~gridworld_env.TableIndexWrapper` enumerates, or the ``"index"``/``"partial_index"``
observations of the vector env), action probabilities ``pi(.|o)`` and, where it has them, a
value ``V_pi(o)`` and action values ``Q(o, .)`` (SPEC section 2; Czarnecki et al., 2019, A.3,
A.4, Figs. 5, 6, 8).

:class:`Teachers` holds the teachers of ``B`` MDPs as ``[B, N, A]`` arrays (``N`` the largest
number of table indices; rows at and beyond ``n_indices[i]`` are padding with a uniform policy
and zero values) plus what is needed to rebuild each MDP (env id, env kwargs, layout seeds).
``Teachers.teacher(i)`` is the single-MDP object students use
(:class:`TabularTeacher`: ``action_probs(obs)``, ``value(obs)``).

Kinds and their tables:

- ``q_learning``: ``q_values`` from tabular Q-learning (A.4); ``probs = softmax(Q / T)``
  (``T = 0``: greedy, ties split uniformly); ``values = sum_a pi(a|o) Q(o, a)``.
- ``a2c``: softmax actor ``probs = softmax(logits)`` and its critic ``values`` (A.3); no
  ``q_values``.
- ``optimal`` / ``adversarial``: value iteration on the exact model (``gamma = 0.99``),
  maximising / minimising the return; greedy (or Boltzmann at ``T > 0``) in the state's Q
  values, mapped to table indices (:func:`planned_teachers`).
- ``custom``: any arrays a user supplies.

Any kind can be made *noisy* (Fig. 5's "teacher noise", :func:`noisy_teachers`).

Modules
    :mod:`~distill_agents.teachers.tables` (:class:`Teachers`, :class:`TabularTeacher`: the
    tables, saving and loading), :mod:`~distill_agents.teachers.build` (teachers from Q values,
    A2C tables or value iteration, and their exact values), :mod:`~distill_agents.teachers.noise`
    (noisy teachers), :mod:`~distill_agents.teachers.env` (the vector envs teachers train on),
    :mod:`~distill_agents.teachers.training` (batched Q-learning and A2C),
    :mod:`~distill_agents.teachers.make` (:func:`~distill_agents.teachers.make.make_teachers`:
    a kind for many MDPs, in worker processes), the trainers' compiled agent kernels
    (:mod:`~distill_agents.teachers.q_kernels`, :mod:`~distill_agents.teachers.a2c_kernels`,
    :mod:`~distill_agents.teachers.policy_kernels`, the records they take in
    :mod:`~distill_agents.teachers.records`; :mod:`~distill_agents.teachers.kernels` names them
    all) and :mod:`~distill_agents.teachers.bench` (the trainer's benchmark). This package
    re-exports the tables, builders and noise; :mod:`distill_agents.teacher_training`
    re-exports the training side.
"""

from distill_agents.teachers.build import (
    a2c_teachers,
    acting_indices,
    exact_values,
    index_average,
    planned_teachers,
    policy_values,
    q_learning_teachers,
)
from distill_agents.teachers.noise import NOISE_PROCEDURES, noisy_teachers
from distill_agents.teachers.tables import (
    FILE_KIND,
    NOISE_STREAM,
    SIMPLEX_ATOL,
    TEACHER_KINDS,
    TabularTeacher,
    Teachers,
)

__all__ = [
    "FILE_KIND",
    "NOISE_PROCEDURES",
    "NOISE_STREAM",
    "SIMPLEX_ATOL",
    "TEACHER_KINDS",
    "TabularTeacher",
    "Teachers",
    "a2c_teachers",
    "acting_indices",
    "exact_values",
    "index_average",
    "noisy_teachers",
    "planned_teachers",
    "policy_values",
    "q_learning_teachers",
]
