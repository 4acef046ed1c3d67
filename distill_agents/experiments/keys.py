"""What a figure's results depend on: canonical JSON keys, their digests, and the pieces.

The MDPs ``0 .. N-1`` of a panel are cut into *pieces* of consecutive MDPs
(:func:`piece_ranges`); a :class:`Piece` is one curve of a panel on one range, and its key
(:func:`piece_key`) is everything its numbers depend on (teacher identity, method, control,
resolved critic, lr, gamma, iterations, evaluation points, metrics, seed, MDP range, package
version and source, :func:`code_digest`). Keys are stored in the files they name and checked
on load (:mod:`distill_agents.experiments.state`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill_agents import methods as M
from distill_agents.experiments import figures as X
from distill_agents.experiments.settings import FigureSettings

__all__ = [
    "PIECE_BYTES",
    "PIECE_MDPS",
    "PIECE_TABLES",
    "PLANNING_GAMMA",
    "STATE_VERSION",
    "Piece",
    "canonical",
    "code_digest",
    "digest",
    "env_key",
    "package_version",
    "piece_key",
    "piece_ranges",
    "planned_key",
    "resolved_critic",
    "teacher_key",
    "trained_key",
]

#: Most MDPs in one piece (the unit of resumption and of parallel work).
PIECE_MDPS = 500
#: Memory one piece's teacher and student tables may take (bytes); bounds pieces for large
#: action sets. A constant, so that the cutting depends on the settings only.
PIECE_BYTES = 1.5e9
#: ``[N, A]`` float64 tables per MDP counted against :data:`PIECE_BYTES` (teacher probabilities
#: and log-probabilities, the runner's logits, snapshots and evaluation policies).
PIECE_TABLES = 8
#: Discount of the planned (optimal, adversarial) teachers' value iteration.
PLANNING_GAMMA = 0.99
#: Version of the state layout in ``DIR/.state`` (part of every key).
STATE_VERSION = 1


def canonical(value: Any) -> str:
    """``value`` as canonical JSON (sorted keys, no spaces, no NaN): the text keys hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(key: Mapping[str, Any]) -> str:
    """The first 24 hex digits of the SHA-256 of ``key``'s canonical JSON (a file name)."""
    return hashlib.sha256(canonical(key).encode()).hexdigest()[:24]


def package_version() -> str:
    """The installed package version (part of every key and summary)."""
    from distill_agents import __version__

    return str(__version__)


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 (16 hex digits) of the source of ``gridworld_env`` and ``distill_agents``.

    Part of every teacher and piece key, so results computed by other code (an edit without a
    version bump included) are never reused: a changed line only costs a recomputation.
    """
    import distill_agents
    import gridworld_env

    digest = hashlib.sha256()
    for package in (gridworld_env, distill_agents):
        root = Path(str(package.__file__)).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root.parent).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def env_key(spec: X.TeacherSpec, seed: int) -> dict[str, Any]:
    """Identity of a panel's MDPs: the environment, its kwargs and the layout seed base."""
    return {"env_id": spec.env_id, "env_kwargs": dict(spec.env_kwargs), "layout_base": seed}


def trained_key(spec: X.TeacherSpec, settings: FigureSettings) -> dict[str, Any]:
    """Identity of a trained teacher's tables (before temperature and noise)."""
    key = {
        "state_version": STATE_VERSION,
        "version": package_version(),
        "code": code_digest(),
        "kind": spec.kind,
        **env_key(spec, settings.seed),
        "n_mdps": settings.mdps,
        "seed": settings.seed,
        "episodes": settings.teacher_episodes,
    }
    if spec.kind == "a2c":
        key["a2c_variant"] = "mc"
    return key


def planned_key(spec: X.TeacherSpec, settings: FigureSettings, lo: int, hi: int) -> dict[str, Any]:
    """Identity of the planned teachers of MDPs ``lo .. hi - 1`` (before noise)."""
    return {
        "state_version": STATE_VERSION,
        "version": package_version(),
        "code": code_digest(),
        "kind": spec.kind,
        **env_key(spec, settings.seed),
        "temperature": spec.temperature,
        "gamma": PLANNING_GAMMA,
        "mdps": [lo, hi],
    }


def teacher_key(spec: X.TeacherSpec, settings: FigureSettings) -> dict[str, Any]:
    """Identity of a panel's teachers."""
    if spec.trained:
        base: dict[str, Any] = trained_key(spec, settings)
    else:
        base = {"kind": spec.kind, **env_key(spec, settings.seed)}
    return {
        **base,
        "temperature": spec.temperature,
        "noise": spec.noise,
        "noise_seed": settings.seed,
    }


def piece_ranges(n_mdps: int, n_states: int, n_actions: int) -> list[tuple[int, int]]:
    """Consecutive MDP ranges ``[lo, hi)`` covering ``0 .. n_mdps - 1``.

    At most :data:`PIECE_MDPS` MDPs each, and at most as many as fit :data:`PIECE_BYTES` with
    :data:`PIECE_TABLES` ``[S, A]`` float64 tables per MDP (at least one MDP).
    """
    per_mdp = PIECE_TABLES * 8.0 * n_states * n_actions
    size = int(max(1, min(PIECE_MDPS, PIECE_BYTES // per_mdp)))
    return [(lo, min(n_mdps, lo + size)) for lo in range(0, n_mdps, size)]


@dataclass(frozen=True)
class Piece:
    """One unit of work: a curve of a panel on a range of MDPs."""

    key: dict[str, Any]
    path: str
    spec: X.TeacherSpec
    method: str
    control: str | None
    critic: str | None
    lr: float
    gamma: float
    metrics: tuple[str, ...]
    settings: FigureSettings
    lo: int
    hi: int
    teacher_file: str | None
    #: Where the planned (optimal, adversarial) teachers of the range are kept once made: every
    #: curve of a panel, and the panels of other figures with the same teachers, load them.
    planned_file: str | None = None

    @property
    def episodes(self) -> int:
        """The piece's training episodes (MDPs times iterations)."""
        return (self.hi - self.lo) * self.settings.iterations


def resolved_critic(method: str, critic: str | None) -> str:
    """The critic ``method`` learns with in a panel whose critic is ``critic``."""
    spec = M.parse_method(method)
    if spec.forced_critic is not None:
        return spec.forced_critic
    return spec.critic_mode(critic)


def piece_key(
    exp: X.Experiment,
    panel: X.Panel,
    curve: X.Curve,
    settings: FigureSettings,
    lo: int,
    hi: int,
) -> dict[str, Any]:
    """The key of curve ``curve`` of ``panel`` on MDPs ``lo .. hi - 1``."""
    spec = M.parse_method(curve.method)
    teacher: dict[str, Any]
    if spec.needs_teacher or any(m != "return" for m in exp.metrics):
        teacher = teacher_key(panel.teacher, settings)
    else:
        # A method that never reads its teacher learns the same on the same MDPs whatever the
        # teacher (baseline, td_v_zero); the teacher's own rows come from another curve.
        teacher = {"teacher_free": True, **env_key(panel.teacher, settings.seed)}
    return {
        "state_version": STATE_VERSION,
        "version": package_version(),
        "code": code_digest(),
        "teacher": teacher,
        "method": spec.id,
        "control": curve.control or spec.default_control,
        "critic": resolved_critic(curve.method, panel.critic),
        "lr": exp.lr,
        "gamma": exp.gamma,
        "iterations": settings.iterations,
        "eval_every": settings.eval_every,
        "metrics": list(exp.metrics),
        "seed": settings.seed,
        "lo": lo,
        "hi": hi,
        **({} if settings.mc_episodes is None else {"mc_episodes": settings.mc_episodes}),
        **({"early_eval": list(settings.early)} if settings.early else {}),
        **({"readings": settings.readings.changed()} if settings.readings.changed() else {}),
    }
