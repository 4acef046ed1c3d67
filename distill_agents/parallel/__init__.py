"""Running work in parallel: the local process pool and Ray.

- :mod:`~distill_agents.parallel.pool`: spawned worker processes kept for one invocation;
- :mod:`~distill_agents.parallel.ray_backend`: Ray sessions and tasks (``--backend ray``).
"""
