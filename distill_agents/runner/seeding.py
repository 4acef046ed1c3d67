"""The runner's random streams: per-MDP seeds, the vector env's uniforms, evaluation points.

MDP ``g`` of a run with ``seed`` learns from the streams of :func:`mdp_seed` ``(seed, g)``
alone (see :mod:`distill_agents.runner`), which :class:`PerMDPUniforms` hands to the vector
env column by column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["STUDENT_STREAM", "PerMDPUniforms", "early_iterations", "eval_iterations", "mdp_seed"]

#: First ``spawn_key`` entry of the per-MDP seeds (:func:`mdp_seed`); distinct from the
#: teachers' streams (0: training, 1: agent uniforms, 2: noise).
STUDENT_STREAM = 3


def mdp_seed(seed: int, mdp: int) -> int:
    """The seed of MDP ``mdp`` in a run with ``seed``: ``distill(..., seed=mdp_seed(seed, g))``.

    ``SeedSequence(seed, spawn_key=(STUDENT_STREAM, mdp))`` reduced to one 64-bit integer.
    """
    for name, value in (("seed", seed), ("mdp", mdp)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    sequence = np.random.SeedSequence(int(seed), spawn_key=(STUDENT_STREAM, int(mdp)))
    return int(sequence.generate_state(1, np.uint64)[0])


class PerMDPUniforms(np.random.Generator):
    """A vector env's ``np_random`` whose block of uniforms comes from per-MDP streams.

    The vector env draws its uniforms as ``np_random.random(out=block)`` with ``block`` of
    shape ``[R, Bp]``; this generator hands the block to ``fill(block)`` (the runner writes
    column ``j`` from the stream of sub-env ``j``'s MDP). Any other draw is refused: the
    runner's reproducibility depends on this being the only one.
    """

    def __init__(self, n_sub: int, fill: Callable[[NDArray[np.float64]], None]) -> None:
        super().__init__(np.random.PCG64(0))
        self._n_sub = n_sub
        self._fill = fill

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        """Fill ``out`` (``[R, Bp]`` float64) from the per-MDP streams."""
        if (
            size is not None
            or out is None
            or not isinstance(out, np.ndarray)
            or out.ndim != 2
            or out.shape[1] != self._n_sub
            or out.dtype != np.float64
        ):
            raise RuntimeError(
                "PerMDPUniforms only serves the vector env's blocks random(out=[R, B]); the "
                "vector env drew its randomness in another way (the runner cannot keep per-MDP "
                "streams)"
            )
        self._fill(out)
        return out

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("PerMDPUniforms only serves random(out=...) blocks")

    integers = choice = uniform = normal = standard_normal = _refuse


def eval_iterations(
    iterations: int, eval_every: int, extra: Sequence[int] = ()
) -> NDArray[np.int64]:
    """The evaluation points ``0, k, 2k, ..., iterations`` (the last one always included).

    ``extra`` iterations (within ``[0, iterations]``) are added, e.g. :func:`early_iterations`.
    """
    points = set(range(0, iterations + 1, eval_every))
    points.add(iterations)
    points.update(int(i) for i in extra)
    return np.array(sorted(points), dtype=np.int64)


def early_iterations(eval_every: int, iterations: int) -> tuple[int, ...]:
    """Evaluation points before the first regular one: 10, 20, 50, 100, 200, 500, ... ``< k``.

    Students on 20x20 grids learn most of what they learn in their first few hundred episodes;
    at the paper's scale (``k = 1000``) these points show that part of the curves.
    """
    out: list[int] = []
    base = 10
    while base < eval_every and base < iterations:
        out += [x for x in (base, 2 * base, 5 * base) if x < eval_every and x < iterations]
        base *= 10
    return tuple(out)
