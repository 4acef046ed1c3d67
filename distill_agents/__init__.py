"""Tabular teachers, students and exact evaluation for policy distillation.

An implementation of Czarnecki et al., "Distilling Policy Distillation" (AISTATS 2019).
"""

from distill_agents.distill import distill, seed_streams, teacher_tables
from distill_agents.methods import METHOD_IDS, BetaSchedule, MethodSpec, parse_method
from distill_agents.policy import TabularPolicy
from distill_agents.recommend import Recommendation, recommend
from distill_agents.runner import RunResult, run_distillation
from distill_agents.supervised import multitask_distill, supervised_distill
from distill_agents.teachers import TabularTeacher, Teachers
from distill_agents.teachers.make import make_teachers
from distill_agents.updates import (
    TEACHER_PROB_FLOOR,
    episode_update,
    expected_loss,
    expected_update,
)

__all__ = [
    "METHOD_IDS",
    "TEACHER_PROB_FLOOR",
    "BetaSchedule",
    "MethodSpec",
    "Recommendation",
    "RunResult",
    "TabularPolicy",
    "TabularTeacher",
    "Teachers",
    "distill",
    "episode_update",
    "expected_loss",
    "expected_update",
    "make_teachers",
    "multitask_distill",
    "parse_method",
    "recommend",
    "run_distillation",
    "seed_streams",
    "supervised_distill",
    "teacher_tables",
]

__version__ = "0.1.0"
