"""The runner's chunk machinery: one chunk of consecutive MDPs trained by either loop.

:class:`Run` holds what every chunk of one run shares (settings and counters);
:class:`Chunk` holds the students, streams and evaluators of one chunk and trains them with the
vector-env loop (:meth:`Chunk.run_chunk` through ``reset``/``step``, with compaction) or the
compiled loop (:func:`distill_agents.runner.loop_kernels.run_mdps`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from numpy.typing import NDArray

from distill_agents import methods as M
from distill_agents.distill import seed_streams
from distill_agents.runner import loop_kernels as K
from distill_agents.runner.envs import Built, EnvBuilder, built_chunk
from distill_agents.runner.evaluation import Evaluator, MonteCarloEvaluator
from distill_agents.runner.seeding import PerMDPUniforms, mdp_seed
from distill_agents.teachers import Teachers
from distill_agents.updates import floored_log
from distill_agents.updates import rows as RK

__all__ = ["Chunk", "Run"]

#: Action uniforms drawn per MDP at a time.
ACTION_BUFFER = 1024
#: Environment uniforms buffered per MDP.
ENV_BUFFER = 2048
#: Uniforms of each stream buffered per MDP by the compiled loop (``loop="compiled"``); a
#: buffer is refilled when a whole episode might not fit in what is left of it.
COMPILED_BUFFER = 8192
#: Compaction is considered every this many ``step`` calls ...
PLAN_EVERY = 256
#: ... when at most this share of the sub-envs is still in use ...
DRAIN_BELOW = 0.5
#: ... and saves more sub-env steps than twice this cost per sub-env of the new vector env
#: (building one 20x20 grid sub-env takes about as long as 40 000 sub-env steps).
BUILD_COST = 40_000.0


@dataclass
class Run:
    """Settings shared by every chunk of one :func:`run_distillation` call.

    ``group`` holds the teachers of every student trained per MDP (``teachers`` is the first):
    one for :func:`run_distillation`, several for :func:`run_distillation_group`. ``spec`` is
    the parsed method and ``method`` its numeric form, read by the compiled loops.
    """

    teachers: Teachers
    group: Sequence[Teachers]
    builder: EnvBuilder
    spec: M.MethodSpec
    control: int
    method: K.MethodParams
    seed: int
    first_mdp: int
    iterations: int
    eval_index: NDArray[np.int64]
    n_evals: int
    beta_table: NDArray[np.float64]
    metrics: tuple[str, ...]
    floor: float
    compact: bool
    progress: Callable[[int], None] | None
    compiled: bool = False
    mc_episodes: int | None = None
    kl_per_step: bool = False
    step_calls: int = 0
    sub_env_steps: int = 0
    env_builds: int = 0
    build_seconds: float = 0.0
    eval_seconds: float = 0.0
    setup_seconds: float = 0.0
    row_counts: NDArray[np.int64] = field(default_factory=lambda: np.zeros(RK.N_COUNTS, np.int64))


class Chunk:
    """Students of consecutive MDPs ``start .. start + b - 1`` of the teachers.

    The ``g_*`` arrays stack the group's ``G`` students per MDP (``[G, b, ...]``); ``probs``,
    ``logits``, ``metrics``, ... are the first student's (all the vector-env loop handles).
    """

    def __init__(self, run: Run, start: int, stop: int) -> None:
        t0 = time.perf_counter()
        self.run = run
        self.ids = np.arange(start, stop)
        teachers = run.teachers
        b = stop - start
        self.b = b
        n_index = teachers.n_index
        group = run.group
        self.g_probs = (
            teachers.probs[None, start:stop]
            if len(group) == 1
            else np.stack([t.probs[start:stop] for t in group])
        )
        g_values = np.stack(
            [np.zeros((b, n_index)) if t.values is None else t.values[start:stop] for t in group]
        )
        self.teachers = RK.teacher_table(
            self.g_probs,
            floored_log(self.g_probs, run.floor),
            g_values,
            np.ones(g_values.shape),
            run.control in M.TEACHER_CONTROLS,
        )
        n_explicit, explicit = RK.initial_explicit(self.g_probs)
        self.students = RK.StudentTable(
            np.zeros((len(group), b, n_index, teachers.n_actions)),
            np.zeros((len(group), b, n_index)),
            n_explicit,
            explicit,
        )
        self.g_critic = np.zeros((len(group), b, n_index))
        run.setup_seconds += time.perf_counter() - t0
        self.mdp_state = np.zeros((b, K.N_MDP_FIELDS), dtype=np.int64)
        self.act_gens: list[np.random.Generator] = []
        self.env_gens: list[np.random.Generator] = []
        for i in self.ids:
            env_seed, action_rng = seed_streams(mdp_seed(run.seed, run.first_mdp + int(i)))
            self.act_gens.append(action_rng)
            self.env_gens.append(seeding.np_random(env_seed)[0])
        self.act_buf = np.empty((b, ACTION_BUFFER))
        for m, gen in enumerate(self.act_gens):
            gen.random(out=self.act_buf[m])
        self.env_buf = np.empty((b, ENV_BUFFER))
        for m, gen in enumerate(self.env_gens):
            gen.random(out=self.env_buf[m])
        self.env_base = np.zeros(b, dtype=np.int64)
        self.g_metrics = [
            {name: np.full((b, run.n_evals), np.nan) for name in run.metrics} for _ in group
        ]
        self.metrics = self.g_metrics[0]
        self.n_slots = 2 * b
        self.snapshots: RK.StudentTable | None = None  # the vector loop's (see _phase)
        self.pending = np.zeros((self.n_slots, 2), dtype=np.int64)
        self.n_pending = 0
        self.sub = np.zeros((0, K.N_SUB_FIELDS), dtype=np.int64)

    def member(self, g: int) -> RK.StudentTable:
        """Group member ``g``'s students of the chunk, a stacked ``[b, ...]`` table."""
        s = self.students
        return RK.StudentTable(s.logits[g], s.bulk[g], s.n_explicit[g], s.explicit[g])

    def dense_logits(self) -> NDArray[np.float64]:
        """``[G, b, N, A]`` the students' logits, every bulk entry written out."""
        return RK.dense_logits(self.students)

    # -------------------------------------------------------------- streams
    def _fill(self, block: NDArray[np.float64]) -> None:
        """The vector env's block of uniforms (see :class:`PerMDPUniforms`)."""
        rows = block.shape[0]
        if rows > ENV_BUFFER:
            raise RuntimeError(f"the vector env asked for {rows} rows of uniforms at once")
        active = self.sub[self.sub[:, K.STATUS] != K.STOPPED, K.MDP]
        used = self.mdp_state[active, K.ENV_USED]
        low = active[used - self.env_base[active] + rows > ENV_BUFFER]
        for m in low:
            offset = int(self.mdp_state[m, K.ENV_USED] - self.env_base[m])
            keep = ENV_BUFFER - offset
            self.env_buf[m, :keep] = self.env_buf[m, offset:]
            self.env_gens[m].random(out=self.env_buf[m, keep:])
            self.env_base[m] += offset
        K.fill_env_uniforms(block, self.sub, self.mdp_state, self.env_buf, self.env_base)

    def _refill_actions(self) -> None:
        for m in np.flatnonzero(self.mdp_state[:, K.ACT_PTR] >= ACTION_BUFFER):
            self.act_gens[m].random(out=self.act_buf[m])
            self.mdp_state[m, K.ACT_PTR] = 0

    # -------------------------------------------------------------- evaluation
    def _flush(self) -> None:
        n = self.n_pending
        if n == 0:
            return
        idx = self.pending[:n, 0].copy()
        evals = self.pending[:n, 1]
        t0 = time.perf_counter()
        assert self.snapshots is not None
        values = self.evaluator.students(idx, self.snapshots, np.arange(n), evals)
        for name, vals in values.items():
            self.metrics[name][idx, evals] = vals
        self.n_pending = 0
        self.run.eval_seconds += time.perf_counter() - t0

    # -------------------------------------------------------------- training
    def run_chunk(self) -> None:
        """Build the chunk's envs and evaluators, evaluate at 0, and train with the run's loop."""
        run = self.run
        t0 = time.perf_counter()
        built: Built | None = None
        if run.compiled and run.mc_episodes is None:  # only tables: a kept build serves
            built, fresh = built_chunk(run.builder, self.ids)
            run.env_builds += int(fresh)
            envs: Any = None
            models = built.models
        else:
            envs = run.builder.make(self.ids)
            run.env_builds += 1
            models = envs.models
        run.build_seconds += time.perf_counter() - t0
        expected = run.teachers.n_indices[self.ids]
        bad = np.flatnonzero(np.asarray(models.n_indices) != expected)
        if bad.size:
            i = int(self.ids[bad[0]])
            raise ValueError(
                f"MDP {run.first_mdp + i}: its environment has {int(models.n_indices[bad[0]])} "
                f"table indices but its teacher has {int(expected[bad[0]])}: the teachers do not "
                "match their recorded environment (env_id, env_kwargs, layout_seeds)"
            )
        t0 = time.perf_counter()
        self.evaluators: list[Evaluator | MonteCarloEvaluator] = []
        for probs in self.g_probs:
            if run.mc_episodes is not None:
                self.evaluators.append(MonteCarloEvaluator(envs, run, self.ids, probs))
                continue
            like = built.evaluator if built is not None else None
            if self.evaluators:
                like = self.evaluators[0]  # type: ignore[assignment]
            evaluator = Evaluator(
                models, probs, run.metrics, like=like, kl_per_step=run.kl_per_step
            )
            self.evaluators.append(evaluator)
            if built is not None and built.evaluator is None:
                built.evaluator = evaluator
        self.evaluator = self.evaluators[0]
        self.g_teacher_metrics = [ev.teachers() for ev in self.evaluators]
        self.teacher_metrics = self.g_teacher_metrics[0]
        everyone = np.arange(self.b)
        for g, (ev, metrics) in enumerate(zip(self.evaluators, self.g_metrics, strict=True)):
            for name, vals in ev.students(everyone, self.member(g), everyone, 0).items():
                metrics[name][:, 0] = vals
        run.eval_seconds += time.perf_counter() - t0
        if run.iterations == 0:
            return
        if run.compiled:
            if built is None:
                built = Built(models, envs.outcome_tables(), envs.max_episode_steps)
                envs.close()
            self._run_compiled(built)
            return
        if len(run.group) > 1:
            raise ValueError('a group of students needs loop="compiled"')
        live = np.arange(self.b)
        while live.size:
            self._phase(envs, live)
            live = np.flatnonzero(self.mdp_state[:, K.DONE] < run.iterations)
            if live.size:
                t0 = time.perf_counter()
                envs = run.builder.make(self.ids[live])
                run.env_builds += 1
                run.build_seconds += time.perf_counter() - t0
        self._flush()

    def _run_compiled(self, built: Built) -> None:
        """Train every MDP of the chunk with the compiled loop (:func:`K.run_mdps`)."""
        run = self.run
        limit = built.limit
        if limit is None:
            raise ValueError("the runner needs a time limit: max_episode_steps must not be None")
        tables = built.tables
        # Longer buffers than the vector loop's: continue each stream where its buffer ends.
        length = max(COMPILED_BUFFER, 2 * (limit + 1))
        self.act_buf = self._extended(self.act_buf, self.act_gens, length)
        self.env_buf = self._extended(self.env_buf, self.env_gens, length)
        n_index, n_actions = self.students.logits.shape[2:]
        env = K.EnvTables._make((*tables, limit))
        streams = K.Streams(self.mdp_state, self.env_buf, self.env_base, self.act_buf)
        schedule = K.Schedule(run.iterations, run.eval_index, run.beta_table, run.control)
        method = run.method
        work = RK.make_row_work(n_index, n_actions, limit)
        episode = K.Episode(
            np.zeros(limit + 1, dtype=np.int64), np.zeros(limit, dtype=np.int64), np.zeros(limit)
        )
        events = np.zeros(self.b, dtype=np.int64)
        state = self.mdp_state
        tables = K.ChunkTables(self.teachers, self.students, self.g_critic)
        while True:
            episodes = K.run_mdps(env, streams, schedule, tables, method, work, episode, events)
            if episodes and run.progress is not None:
                run.progress(episodes * len(run.group))  # each episode trains G students
            at_eval = np.flatnonzero(events == K.EVENT_EVAL)
            if at_eval.size:
                t0 = time.perf_counter()
                points = run.eval_index[state[at_eval, K.DONE]]
                for g, (ev, metrics) in enumerate(
                    zip(self.evaluators, self.g_metrics, strict=True)
                ):
                    for name, vals in ev.students(at_eval, self.member(g), at_eval, points).items():
                        metrics[name][at_eval, points] = vals
                run.eval_seconds += time.perf_counter() - t0
            self._refill_compiled(limit)
            if not (state[:, K.DONE] < run.iterations).any():
                break
        run.row_counts += work.counts
        run.sub_env_steps += int(state[:, K.STEPS].sum())

    @staticmethod
    def _extended(
        buf: NDArray[np.float64], gens: Sequence[np.random.Generator], length: int
    ) -> NDArray[np.float64]:
        out = np.empty((buf.shape[0], max(length, buf.shape[1])))
        out[:, : buf.shape[1]] = buf
        for m, gen in enumerate(gens):
            gen.random(out=out[m, buf.shape[1] :])
        return out

    def _refill_compiled(self, limit: int) -> None:
        """Shift what is left of low uniform buffers to their front and draw the rest."""
        state = self.mdp_state
        env_len, act_len = self.env_buf.shape[1], self.act_buf.shape[1]
        env_off = state[:, K.ENV_USED] - self.env_base
        low_env = env_len - env_off < limit + 1
        low_act = act_len - state[:, K.ACT_PTR] < limit
        for m in np.flatnonzero((low_env | low_act) & (state[:, K.DONE] < self.run.iterations)):
            offset = int(env_off[m])
            keep = env_len - offset
            self.env_buf[m, :keep] = self.env_buf[m, offset:]
            self.env_gens[m].random(out=self.env_buf[m, keep:])
            self.env_base[m] += offset
            ptr = int(state[m, K.ACT_PTR])
            keep = act_len - ptr
            self.act_buf[m, :keep] = self.act_buf[m, ptr:]
            self.act_gens[m].random(out=self.act_buf[m, keep:])
            state[m, K.ACT_PTR] = 0

    def _phase(self, envs: Any, live: NDArray[np.int64]) -> None:
        """Run the MDPs ``live`` on ``envs`` (one sub-env each) until all stop."""
        run = self.run
        n_sub = live.size
        limit = envs.max_episode_steps
        if limit is None:
            raise ValueError("the runner needs a time limit: max_episode_steps must not be None")
        sub = np.zeros((n_sub, K.N_SUB_FIELDS), dtype=np.int64)
        sub[:, K.MDP] = live
        sub[:, K.STATUS] = K.RESETTING
        self.sub = sub
        episode = K.Episode(
            np.zeros((n_sub, limit + 1), dtype=np.int64),
            np.zeros((n_sub, limit), dtype=np.int64),
            np.zeros((n_sub, limit)),
        )
        n_index, n_actions = self.students.logits.shape[2:]
        work = RK.make_row_work(n_index, n_actions, limit)
        if self.snapshots is None:
            p = self.n_slots
            self.snapshots = RK.StudentTable(
                np.empty((p, n_index, n_actions)),
                np.empty((p, n_index)),
                np.empty((p, n_index), dtype=np.int64),
                np.empty((p, *self.students.explicit.shape[2:]), dtype=np.int32),
            )
        envs.np_random = PerMDPUniforms(n_sub, self._fill)
        obs, _ = envs.reset()
        actions = np.zeros(n_sub, dtype=np.int64)
        rewards = np.zeros(n_sub)
        flags = np.zeros(n_sub, dtype=bool)
        streams = K.Streams(self.mdp_state, self.env_buf, self.env_base, self.act_buf)
        schedule = K.Schedule(run.iterations, run.eval_index, run.beta_table, run.control)
        method = run.method
        drain = False
        calls = 0
        terminations, truncations = flags, flags
        while True:
            running, refills, episodes, self.n_pending = K.advance(
                obs, rewards, terminations, truncations, actions, sub, drain, episode, streams,
                schedule, self.teachers, self.students, self.g_critic, method, work,
                self.snapshots, self.pending, self.n_pending,
            )  # fmt: skip
            if refills:
                self._refill_actions()
            if self.n_pending + n_sub > self.n_slots:
                self._flush()
            if episodes and run.progress is not None:
                run.progress(episodes)
            if running == 0:
                break
            calls += 1
            if (
                run.compact
                and not drain
                and calls % PLAN_EVERY == 0
                and self._should_drain(running, n_sub)
            ):
                drain = True
                sub[sub[:, K.STATUS] == K.RESETTING, K.STATUS] = K.STOPPED
                if not (sub[:, K.STATUS] != K.STOPPED).any():
                    break
            obs, rewards, terminations, truncations, _ = envs.step(actions)
        run.step_calls += calls
        run.sub_env_steps += calls * n_sub
        run.row_counts += work.counts
        envs.close()

    def _should_drain(self, running: int, n_sub: int) -> bool:
        """The cost model: is a smaller vector env for the unfinished MDPs worth building?"""
        if running > DRAIN_BELOW * n_sub:
            return False
        state = self.mdp_state
        active = self.sub[self.sub[:, K.STATUS] != K.STOPPED, K.MDP]
        done = state[active, K.DONE]
        per_episode = (state[active, K.STEPS] + done) / np.maximum(done, 1)
        remaining = float(((self.run.iterations - done) * per_episode).max())
        return (n_sub - running) * remaining > 2.0 * BUILD_COST * running
