"""Ray helpers (``--backend ray``); they live in :mod:`distill_agents.parallel.ray_backend`."""

from distill_agents.parallel.ray_backend import (
    BACKENDS,
    DEFAULT_RETRIES,
    FAIL_ONCE_ENV,
    NOT_RETRIED,
    RAY_MISSING,
    RAY_RETRIES,
    InjectedFailure,
    RayUnavailableError,
    check_backend,
    import_ray,
    ray_map,
    ray_map_ordered,
    ray_session,
    spread_cpus,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_RETRIES",
    "FAIL_ONCE_ENV",
    "NOT_RETRIED",
    "RAY_MISSING",
    "RAY_RETRIES",
    "InjectedFailure",
    "RayUnavailableError",
    "check_backend",
    "import_ray",
    "ray_map",
    "ray_map_ordered",
    "ray_session",
    "spread_cpus",
]
