"""Tabular teachers, students and exact evaluation for policy distillation.

An implementation of Czarnecki et al., "Distilling Policy Distillation" (AISTATS 2019).
"""

__version__ = "0.1.0"
