"""Tabular teachers, students and exact evaluation for policy distillation (Czarnecki et al., 2019)."""

__version__ = "0.1.0"
