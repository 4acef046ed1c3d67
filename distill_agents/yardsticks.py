"""Plain compiled loops the benchmarks measure against (:mod:`distill_agents.bench.yardsticks`)."""

from distill_agents.bench.yardsticks import q_learning_loop, q_learning_rate

__all__ = ["q_learning_loop", "q_learning_rate"]
