"""Batched teacher training in one namespace: the training side of :mod:`distill_agents.teachers`.

:class:`~distill_agents.teachers.env.TeacherEnv` (:mod:`distill_agents.teachers.env`),
:func:`~distill_agents.teachers.training.train_q_learning` and
:func:`~distill_agents.teachers.training.train_a2c` (:mod:`distill_agents.teachers.training`),
:func:`~distill_agents.teachers.make.make_teachers` (:mod:`distill_agents.teachers.make`) and
:func:`~distill_agents.teachers.bench.bench_q_learning` (:mod:`distill_agents.teachers.bench`).

    python -m distill_agents.teacher_training [N_MDPS [EPISODES [WORKERS [THREADS]]]]

prints :func:`~distill_agents.teachers.bench.bench_q_learning` as JSON.
"""

from distill_agents.parallel.pool import init_worker
from distill_agents.teachers.bench import bench_q_learning, main
from distill_agents.teachers.env import TeacherEnv
from distill_agents.teachers.make import (
    CHUNK_BUDGET_BYTES,
    KINDS,
    MAX_CHUNK,
    TeachRun,
    default_workers,
    make_teachers,
)
from distill_agents.teachers.training import (
    DEFAULT_EPISODES,
    DEFAULT_MAX_ACTORS,
    A2CResult,
    QLearningResult,
    TrainingStats,
    train_a2c,
    train_q_learning,
)

__all__ = [
    "CHUNK_BUDGET_BYTES",
    "DEFAULT_EPISODES",
    "DEFAULT_MAX_ACTORS",
    "KINDS",
    "MAX_CHUNK",
    "A2CResult",
    "QLearningResult",
    "TeachRun",
    "TeacherEnv",
    "TrainingStats",
    "bench_q_learning",
    "default_workers",
    "init_worker",
    "main",
    "make_teachers",
    "train_a2c",
    "train_q_learning",
]

if __name__ == "__main__":
    raise SystemExit(main())
