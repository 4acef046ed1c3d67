"""Typed records of the compiled update: the method in numeric form and one episode's arrays.

numba passes a ``NamedTuple`` of arrays and scalars to a compiled function as one typed value
(``parallel=True`` kernels included), so the kernels take these records instead of long lists
of positional arguments; the fields keep the dtypes the kernels read. The student and teacher
tables and the workspace are the records of :mod:`distill_agents.updates.rows`
(:class:`~distill_agents.updates.rows.StudentTable`,
:class:`~distill_agents.updates.rows.TeacherTable`, :class:`~distill_agents.updates.rows.RowWork`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["EpisodeSteps", "MethodParams"]


class MethodParams(NamedTuple):
    """The method in numeric form (:meth:`distill_agents.methods.MethodSpec.params`).

    Attributes:
        coef: ``[N_COEF]`` float64 method coefficients (``methods.C_*``).
        codes: ``[N_CODES]`` int64 method codes (``methods.K_*``).
        lr: learning rate.
        gamma: discount.
    """

    coef: NDArray[np.float64]
    codes: NDArray[np.int64]
    lr: float
    gamma: float


class EpisodeSteps(NamedTuple):
    """One episode as :func:`~distill_agents.updates.row_update.update_student` reads it.

    Attributes:
        obs: ``[>= T + 1]`` int64 student table index at steps ``0..T`` (the last is the
            observation after the final step; unused when ``terminated``).
        keys: ``[>= T + 1]`` int64 teacher key at the same steps (``obs`` itself when the
            teacher is indexed like the student; other keys need dense rows).
        actions: ``[>= T]`` int64 actions taken (explicit in their rows when the method has a
            policy-gradient term: :func:`~distill_agents.updates.rows.split_taken` splits them).
        rewards: ``[>= T]`` float64 environment rewards ``r_t``.
        n_steps: the episode's length ``T >= 1``.
        terminated: the last transition entered a terminal state (values and losses after it
            are 0); ``False`` for a truncated episode (bootstrapped from step ``T``).
    """

    obs: NDArray[np.int64]
    keys: NDArray[np.int64]
    actions: NDArray[np.int64]
    rewards: NDArray[np.float64]
    n_steps: int
    terminated: bool
