"""The paper's experiments: the figures as data, and the ``reproduce`` command that runs them.

The figure definitions (:mod:`~distill_agents.experiments.figures`: :data:`EXPERIMENTS`,
:class:`Experiment`, :func:`analyse`, ...) are importable from here. The rest of the
package, by what it holds:

- :mod:`~distill_agents.experiments.readings`: the choices the paper leaves open (``--set``);
- :mod:`~distill_agents.experiments.settings`: ``reproduce``'s options and resolved settings;
- :mod:`~distill_agents.experiments.keys`: canonical keys, digests, piece ranges, pieces;
- :mod:`~distill_agents.experiments.state`: the ``DIR/.state`` store (pieces, partial files,
  manifests);
- :mod:`~distill_agents.experiments.piece_teachers`: the teachers of a piece;
- :mod:`~distill_agents.experiments.jobs`: running pieces (jobs, groups, spans);
- :mod:`~distill_agents.experiments.curves`: the learning-curve figures;
- :mod:`~distill_agents.experiments.oscillation`: Fig. 2;
- :mod:`~distill_agents.experiments.layout`: Fig. 7;
- :mod:`~distill_agents.experiments.reproduce`: ``distill-grid reproduce`` itself;
- :mod:`~distill_agents.experiments.ablate`: ``distill-grid ablate``.
"""

from distill_agents.experiments.figures import (
    EXPERIMENTS,
    FIGURES,
    TEACHER_EPISODES,
    Curve,
    Experiment,
    Panel,
    Scale,
    TeacherSpec,
    analyse,
    format_analysis,
    get_experiment,
)

__all__ = [
    "EXPERIMENTS",
    "FIGURES",
    "TEACHER_EPISODES",
    "Curve",
    "Experiment",
    "Panel",
    "Scale",
    "TeacherSpec",
    "analyse",
    "format_analysis",
    "get_experiment",
]
