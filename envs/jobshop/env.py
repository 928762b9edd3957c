"""Gymnasium adapters of the job-shop core: ``schedgym/JobShop-v0`` and ``schedgym/FlexibleJobShop-v0``.

## Description
Job-shop scheduling as a sequence of dispatching decisions. Each step schedules one operation under
an explicit schedule-generation scheme (``scheme="active"``: L2D's permissible left shift, the
default for learning; ``scheme="non_delay"``: Giffler-Thompson style, what the published
dispatching-rule figures use). See :mod:`schedgym.envs.jobshop.state`.

## Action Space
* ``JobShop-v0``: ``Discrete(max_jobs)``: the job whose next operation is scheduled.
* ``FlexibleJobShop-v0``: ``Discrete(max_jobs * max_machines)``: ``job * max_machines + machine``.
Use :meth:`action_masks` (sb3-contrib convention; also ``info["action_mask"]``). An invalid action
is a no-op with ``info["invalid_action"] = True`` and ``invalid_action_penalty`` as reward; after
``n_ops`` invalid actions in an episode the episode is truncated.

## Observation Space
The padded disjunctive graph of :mod:`schedgym.envs.core.graph_obs`. Nodes are operations (and,
for the flexible env, machines after the ``max_ops`` operation rows). Node features, times divided
by ``time_scale = max processing time * max operations per job``:

0. lower bound of the completion time (L2D); 1. scheduled flag; 2. shortest processing time /
max processing time; 3. work from this operation to the end of its job; 4. candidate flag (the
operation of a valid action); 5. start time (0 if unscheduled); 6. position in job / ops in job;
7. ready time of the operation's (earliest) machine; 8. job due-date slack (due - completion bound,
0 without due dates); 9. machine-node flag; 10. work of the job before this operation (so rules like
FDD/MWKR are computable from one node); 11. total work of the job.

Edges: job precedence (o -> o+1), machine sequence of scheduled operations (in start order), and for
the flexible env operation -> machine eligibility. Edge features: one-hot type (precedence, machine
sequence, eligibility), processing time / max processing time (eligibility edges), assigned flag.
``globals``: fraction scheduled, makespan lower bound / time_scale, log(jobs) / 5, log(machines) / 5
(nothing depends on the padded sizes, so a policy sees the same numbers at any padding).

``time_origin="zero"`` (default, L2D) measures the times of features 0, 5, 7 and the makespan bound
from time 0. ``time_origin="now"`` measures them from the decision time (the earliest start of any
schedulable operation), clipped below at -1 (one ``time_scale`` in the past; machine ready times at
0, since an idle machine is free now): on a 100x20 instance
the absolute times grow to about 3 time scales while relative ones stay in the range seen on 10x10,
so a policy trained on small instances transfers to large ones.

## Rewards
``reward="lb"`` (default, L2D): decrease of the makespan lower bound, so an episode's rewards sum to
``-(makespan - initial lower bound)``. ``"makespan"``: ``-makespan`` at the last step only.
``"tardiness"``: decrease of the estimated weighted tardiness (sums to ``-total tardiness``).
Rewards are divided by ``reward_scale`` (default: the instance's maximum processing time).

## Starting State
An empty schedule of the instance given by ``reset(options={"instance": ...})`` (bundled name, file
path or :class:`JobShopInstance`), else of the env's ``instance`` argument, else one drawn from
``generator`` with the env's seeded random generator.

## Episode End
Terminates when every operation is scheduled; then ``info["solution"]`` (a
:class:`JobShopSolution`) and ``info["metrics"]`` (``makespan``, ``gap_to_bks_pct``, ...) are set.
Once the episode has ended (terminated or truncated), ``step()`` raises
:class:`~schedgym.envs.core.errors.ResetNeededError` until the next ``reset()``, as before the first
``reset()`` and after one that raised (:mod:`schedgym.envs.core.base_env`).

## Arguments
``instance``, ``generator``, ``scheme``, ``reward``, ``due_tightness`` (adds due dates by the
total-work rule when the instance has none), ``max_jobs``/``max_machines``/``max_ops`` (padded
sizes; default: the first instance's), ``reward_scale``, ``invalid_action_penalty``, ``render_mode``
(``"rgb_array"``: a Gantt chart), ``cycle`` (with a list of instances: take them in order at each
reset instead of at random; for evaluation), ``time_origin`` (``"zero"`` or ``"now"``, see above),
``candidate_features`` (``JobShop-v0``: add ``action_attr``, per-candidate machine-load and
competition features, :mod:`schedgym.envs.jobshop.candidate_features`).

## Version History
* v0: initial release.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.core.base_env import EpisodeState, SchedEnv, StepOutcome
from schedgym.envs.core.graph_obs import padded_graph_space
from schedgym.envs.core.sources import load_instances, padded_sizes
from schedgym.envs.jobshop.candidate_features import N_CANDIDATE_FEATURES, candidate_features
from schedgym.envs.jobshop.generator import FlexibleJobShopGenerator, UniformJobShopGenerator, add_due_dates
from schedgym.envs.jobshop.instances import load_instance
from schedgym.envs.jobshop.metrics import metrics
from schedgym.envs.jobshop.state import SCHEMES, JobShopState
from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution

N_NODE_FEATURES = 12
N_EDGE_FEATURES = 5
N_GLOBALS = 4
N_PAIR_FEATURES = 6  # action_attr of the flexible env
REWARDS = ("lb", "makespan", "tardiness")
TIME_ORIGINS = ("zero", "now")

InstanceSpec = str | JobShopInstance | Sequence[str | JobShopInstance] | None


class JobShopEnv(SchedEnv):
    """Classic JSSP: the action is a job; its next operation is scheduled (see module docstring)."""

    flexible = False

    def __init__(
        self,
        instance: InstanceSpec = None,
        generator: Callable[[np.random.Generator], JobShopInstance] | None = None,
        scheme: str = "active",
        reward: str = "lb",
        due_tightness: float | None = None,
        max_jobs: int | None = None,
        max_machines: int | None = None,
        max_ops: int | None = None,
        reward_scale: float | None = None,
        invalid_action_penalty: float = -1.0,
        render_mode: str | None = None,
        cycle: bool = False,
        time_origin: str = "zero",
        candidate_features: bool = False,
    ):
        if time_origin not in TIME_ORIGINS:
            raise ValueError(f"time_origin must be one of {TIME_ORIGINS}, got {time_origin!r}")
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        super().__init__(render_mode)
        self.scheme = scheme
        self.time_origin = time_origin
        self.reward_type = reward
        self.due_tightness = due_tightness
        self.reward_scale_arg = reward_scale
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.cycle = cycle
        self._next_index = 0
        self.instances = load_instances(instance, load_instance)
        self.generator = generator or self._default_generator()
        self.max_jobs, self.max_machines, self.max_ops = padded_sizes(
            self.instances, self.generator, lambda i: (i.n_jobs, i.n_machines, i.n_ops),
            (max_jobs, max_machines, max_ops))
        n_nodes = self.max_ops + (self.max_machines if self.flexible else 0)
        self.n_nodes = n_nodes
        self.max_edges = 2 * self.max_ops + (self.max_ops * self.max_machines if self.flexible else 0)
        self.n_actions = self.max_jobs * (self.max_machines if self.flexible else 1)
        self.action_space = gym.spaces.Discrete(self.n_actions)
        self.observation_space = padded_graph_space(
            n_nodes, N_NODE_FEATURES, self.max_edges, N_EDGE_FEATURES, self.n_actions, N_GLOBALS)
        # opt-in: per-candidate context features as action_attr (envs/jobshop/candidate_features.py)
        self.candidate_features = bool(candidate_features)
        if self.candidate_features:
            if self.flexible:
                raise ValueError("candidate_features is for JobShop-v0; the flexible env has its own action_attr")
            self.observation_space = gym.spaces.Dict(dict(self.observation_space.spaces) | {
                "action_attr": gym.spaces.Box(-1e6, 1e6, (self.n_actions, N_CANDIDATE_FEATURES), np.float32)})
        self.state: JobShopState | None = None
        self.instance: JobShopInstance | None = None

    def _default_generator(self):
        return UniformJobShopGenerator(10, 10)

    # ------------------------------------------------------------------------------------------
    # episode control
    # ------------------------------------------------------------------------------------------
    def _start_episode(self, options: dict[str, Any]) -> None:
        if options.get("instance") is not None:
            inst = load_instance(options["instance"])
        elif self.instances and self.cycle:
            inst = self.instances[self._next_index % len(self.instances)]
            self._next_index += 1
        elif self.instances:
            inst = self.instances[int(self.np_random.integers(len(self.instances)))]
        else:
            inst = self.generator(self.np_random)
        if self.due_tightness is not None and inst.due is None:
            inst = add_due_dates(inst, self.np_random, self.due_tightness)
        if self.reward_type == "tardiness" and inst.due is None:
            raise ValueError(f"{inst.name}: reward='tardiness' needs due dates; pass due_tightness=... "
                             "or an instance with due dates")
        self._check_fits(inst)
        self.instance = inst
        self.state = JobShopState(inst, scheme=self.scheme)
        self._prepare_static(inst)
        self.n_invalid = 0
        self._refresh()
        self._last_objective = self._objective_estimate()
        self._initial_lb = self._max_lb

    def _check_fits(self, inst: JobShopInstance) -> None:
        if inst.n_jobs > self.max_jobs or inst.n_machines > self.max_machines or inst.n_ops > self.max_ops:
            raise ValueError(
                f"instance {inst.name} ({inst.n_jobs} jobs, {inst.n_machines} machines, {inst.n_ops} ops) does "
                f"not fit this env's padded sizes (max_jobs={self.max_jobs}, max_machines={self.max_machines}, "
                f"max_ops={self.max_ops}); build the env with larger max_jobs/max_machines/max_ops")
        if self.flexible is False and inst.is_flexible:
            raise ValueError(f"instance {inst.name} is flexible; use schedgym/FlexibleJobShop-v0")

    def _prepare_static(self, inst: JobShopInstance) -> None:
        """Per-instance constant parts of the observation."""
        O, J, M = inst.n_ops, inst.n_jobs, inst.n_machines
        st = self.state
        self.time_scale = float(max(1, inst.max_proc) * max(1, int(inst.ops_per_job.max(initial=1))))
        self.reward_scale = float(self.reward_scale_arg or max(1, inst.max_proc))
        x = np.zeros((self.n_nodes, N_NODE_FEATURES), dtype=np.float32)
        x[:O, 2] = inst.min_proc / max(1, inst.max_proc)
        x[:O, 3] = (st.cum[st.job_end[inst.op_job]] - st.cum[:-1]) / self.time_scale
        x[:O, 6] = inst.op_pos / np.maximum(1, inst.ops_per_job[inst.op_job])
        job_start_cum = st.cum[st.job_first[inst.op_job]]
        x[:O, 10] = (st.cum[:-1] - job_start_cum) / self.time_scale
        x[:O, 11] = (st.cum[st.job_end[inst.op_job]] - job_start_cum) / self.time_scale
        if self.flexible:
            x[self.max_ops:self.max_ops + M, 9] = 1.0
        self._x = x
        # static edges: precedence, then (flexible) eligibility; machine-sequence edges follow
        src = np.arange(O - 1)
        keep = inst.op_job[:-1] == inst.op_job[1:]
        prec = np.stack([src[keep], src[keep] + 1])
        ei = np.zeros((2, self.max_edges), dtype=np.int64)
        ea = np.zeros((self.max_edges, N_EDGE_FEATURES), dtype=np.float32)
        n = prec.shape[1]
        ei[:, :n] = prec
        ea[:n, 0] = 1.0
        self._elig_slice = slice(n, n)
        if self.flexible:
            ops, ms = np.nonzero(inst.eligible)
            k = len(ops)
            ei[0, n:n + k] = ops
            ei[1, n:n + k] = self.max_ops + ms
            ea[n:n + k, 2] = 1.0
            ea[n:n + k, 3] = inst.proc[ops, ms] / max(1, inst.max_proc)
            self._elig_slice = slice(n, n + k)
            self._elig_ops, self._elig_ms = ops, ms
            n += k
        self._n_static_edges = n
        ei[0, n:n + O] = np.arange(O)
        ea[n:n + O, 1] = 1.0
        self._ei, self._ea = ei, ea
        self._edge_mask = np.zeros(self.max_edges, dtype=bool)
        self._edge_mask[:n] = True
        node_mask = np.zeros(self.n_nodes, dtype=np.int8)
        node_mask[:O] = 1
        if self.flexible:
            node_mask[self.max_ops:self.max_ops + M] = 1
        self._node_mask = node_mask
        self._job_last = inst.job_ptr[1:] - 1
        # size features that do not depend on the padding (so policies transfer across padded sizes)
        self._log_jobs = float(np.log(max(1, J))) / 5.0
        self._log_machines = float(np.log(max(1, M))) / 5.0

    # ------------------------------------------------------------------------------------------
    # actions
    # ------------------------------------------------------------------------------------------
    def encode_action(self, job: int, machine: int | None = None) -> int:
        """The action index of scheduling ``job``'s next operation (on ``machine``, flexible env)."""
        return int(job)

    def decode_action(self, action: int) -> tuple[int, int | None]:
        return int(action), None

    def _action_mask(self) -> np.ndarray:
        return self._mask.copy()

    def _compute_mask(self) -> np.ndarray:
        mask = np.zeros(self.n_actions, dtype=bool)
        mask[: self.state.n_jobs] = self.state.job_mask()
        return mask

    def _is_valid(self, job: int, machine: int | None) -> bool:
        return 0 <= job < self.state.n_jobs and bool(self._mask[job])

    def _apply(self, action) -> StepOutcome:
        job, machine = self.decode_action(int(action))
        st = self.state
        if st.done or not self._is_valid(job, machine):
            self.n_invalid += 1
            truncated = self.n_invalid > max(st.n_ops, 1) and not st.done
            return StepOutcome(self.invalid_action_penalty, False, truncated, invalid=True)
        st.schedule(job, machine)
        self._refresh()
        terminated = st.done
        reward = self._reward(terminated)
        return StepOutcome(reward, terminated, False, invalid=False)

    def advance(self, action) -> tuple[float, bool, bool, dict[str, Any]]:
        """:meth:`step` without building the observation: ``(reward, terminated, truncated, info)``.

        For samplers that need the observation only at some steps (:meth:`observe` builds it for
        the current state, the same arrays :meth:`step` would have returned)."""
        self._require(EpisodeState.RUNNING, call="advance()")
        out = self._apply(action)
        if out.terminated or out.truncated:
            self.episode_state = EpisodeState.ENDED
        return out.reward, out.terminated, out.truncated, self._info(invalid=out.invalid)

    def observe(self) -> dict[str, np.ndarray]:
        """The observation of the current state (what the last :meth:`step` or :meth:`reset` returned)."""
        self._require(EpisodeState.RUNNING, EpisodeState.ENDED, call="observe()")
        return self._observation()

    def _refresh(self) -> None:
        """Recompute the per-step caches (action mask, makespan lower bound) after a change."""
        self._mask = self._compute_mask()
        self._max_lb = self.state.max_lb()

    def _objective_estimate(self) -> float:
        if self.reward_type == "tardiness":
            return self.state.estimated_tardiness()
        return float(self._max_lb)

    def _reward(self, terminated: bool) -> float:
        if self.reward_type == "makespan":
            return -float(self._max_lb) / self.reward_scale if terminated else 0.0
        new = self._objective_estimate()
        r = (self._last_objective - new) / self.reward_scale
        self._last_objective = new
        return float(r)

    # ------------------------------------------------------------------------------------------
    # observation and info
    # ------------------------------------------------------------------------------------------
    def _candidate_ops(self, mask: np.ndarray) -> np.ndarray:
        """(A,) node index each action points at (0 for padded/invalid actions)."""
        st = self.state
        node = np.zeros(self.n_actions, dtype=np.int64)
        node[: st.n_jobs] = st.next_op_clipped()
        return node

    def _now(self) -> int:
        """Decision time (time units): the earliest start of any schedulable operation (the makespan
        bound once the schedule is complete)."""
        st = self.state
        if st.done:
            return int(self._max_lb)
        return st.earliest_start()

    def _observation(self) -> dict[str, np.ndarray]:
        """Build the observation from persistent buffers (only dynamic parts are rewritten)."""
        st, inst = self.state, self.instance
        O = st.n_ops
        ts = self.time_scale
        x = self._x
        sched = st.start >= 0
        if self.time_origin == "now":
            # times relative to the decision time, clipped at one time_scale in the past: the same
            # range on a 10x10 and a 100x20 instance, so a policy transfers across sizes
            now = self._now()
            x[:O, 0] = np.maximum((st.lb - now) / ts, -1.0)
            x[:O, 1] = sched
            x[:O, 5] = np.where(sched, np.maximum((st.start - now) / ts, -1.0), 0.0)
            mready = np.maximum((st.mach_ready - now) / ts, 0.0)  # an idle machine is free now
        else:
            now = 0
            np.divide(st.lb, ts, out=x[:O, 0], casting="unsafe")
            x[:O, 1] = sched
            np.divide(np.maximum(st.start, 0), ts, out=x[:O, 5], casting="unsafe")
            mready = st.mach_ready / ts
        if self.flexible:
            x[:O, 7] = np.where(inst.eligible, mready[None, :], np.inf).min(axis=1)
            x[self.max_ops:self.max_ops + st.n_machines, 7] = mready
        else:
            x[:O, 7] = mready[inst.op_machine]
        if inst.due is not None:
            slack = (inst.due - st.lb[self._job_last]) / ts
            x[:O, 8] = slack[inst.op_job]
        amask = self._mask
        if self.flexible:
            jobs_ok = amask.reshape(self.max_jobs, -1).any(axis=1)[: st.n_jobs]
        else:
            jobs_ok = amask[: st.n_jobs]
        x[:, 4] = 0.0
        cand = st.next_op[jobs_ok]
        x[cand[cand < O], 4] = 1.0
        # machine-sequence edges: slot n + o holds o -> its machine successor (masked when none)
        n = self._n_static_edges
        np.maximum(st.mach_next, 0, out=self._ei[1, n:n + O])
        np.greater_equal(st.mach_next, 0, out=self._edge_mask[n:n + O])
        if self.flexible:
            self._ea[self._elig_slice, 4] = st.assigned[self._elig_ops] == self._elig_ms
        g = np.array([st.n_scheduled / max(1, O), (self._max_lb - now) / ts, self._log_jobs, self._log_machines],
                     dtype=np.float32)
        return {
            "x": x.copy(),
            "edge_index": self._ei.copy(),
            "edge_attr": self._ea.copy(),
            "edge_mask": self._edge_mask.astype(np.int8),
            "node_mask": self._node_mask.copy(),
            "action_mask": amask.astype(np.int8),
            "action_node": self._candidate_ops(amask),
            "globals": g,
        } | ({"action_attr": candidate_features(st, inst, amask, self.n_actions, ts, self._now())}
             if self.candidate_features else {})

    def _domain_info(self) -> dict[str, Any]:
        return {"makespan_lb": self._max_lb}

    def _final_solution(self) -> JobShopSolution | None:
        return self.state.solution() if self.state.done else None

    def _metrics(self, solution: JobShopSolution) -> dict[str, float]:
        return metrics(self.instance, solution)

    # ------------------------------------------------------------------------------------------
    def _render_rgb(self) -> np.ndarray:
        from schedgym.envs.jobshop.viewer import gantt_rgb

        return gantt_rgb(self.instance, self.state.start, self.state.assigned)


class FlexibleJobShopEnv(JobShopEnv):
    """Flexible JSSP: the action is an (operation, machine) pair ``job * max_machines + machine``.

    The observation adds one node per machine (rows ``max_ops .. max_ops + max_machines - 1``) and
    operation -> machine eligibility edges; ``action_node`` points at the operation and
    ``action_machine_node`` at the machine node of each action. ``action_attr`` ``(A, 6)`` float32
    holds features of each (operation, machine) pair, zero for invalid actions; times are divided by
    ``time_scale`` and measured from the decision time (:meth:`_now`) under either ``time_origin``:

    0. processing time on this machine / max processing time; 1. processing time / the operation's
    shortest one - 1 (0 on its fastest machine, at most 4); 2. start time the scheme gives the pair;
    3. its completion time; 4. expected remaining load of the machine (sum over unscheduled operations
    eligible on it of processing time / number of eligible machines); 5. 1 / number of machines
    eligible for the operation.
    """

    flexible = True

    def __init__(self, instance: InstanceSpec = None, scheme: str = "active", **kwargs):
        super().__init__(instance=instance, scheme=scheme, **kwargs)
        spaces = dict(self.observation_space.spaces)
        spaces["action_machine_node"] = gym.spaces.Box(0, self.n_nodes - 1, (self.n_actions,), np.int64)
        spaces["action_attr"] = gym.spaces.Box(-1e6, 1e6, (self.n_actions, N_PAIR_FEATURES), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)

    def _default_generator(self):
        return FlexibleJobShopGenerator()

    def encode_action(self, job: int, machine: int | None = None) -> int:
        if machine is None:
            raise ValueError("the flexible env needs a machine for each action")
        return int(job) * self.max_machines + int(machine)

    def decode_action(self, action: int) -> tuple[int, int | None]:
        return divmod(int(action), self.max_machines)

    def _compute_mask(self) -> np.ndarray:
        st = self.state
        mask = np.zeros((self.max_jobs, self.max_machines), dtype=bool)
        mask[: st.n_jobs, : st.n_machines] = st.pair_mask()
        return mask.ravel()

    def _is_valid(self, job: int, machine: int | None) -> bool:
        st = self.state
        return (0 <= job < st.n_jobs and 0 <= machine < st.n_machines
                and bool(self._mask[job * self.max_machines + machine]))

    def _candidate_ops(self, mask: np.ndarray) -> np.ndarray:
        st = self.state
        node = np.zeros((self.max_jobs, self.max_machines), dtype=np.int64)
        node[: st.n_jobs, :] = st.next_op_clipped()[:, None]
        return node.ravel()

    def _observation(self) -> dict[str, np.ndarray]:
        obs = super()._observation()
        mnode = np.zeros((self.max_jobs, self.max_machines), dtype=np.int64)
        mnode[:, :] = self.max_ops + np.arange(self.max_machines)[None, :]
        obs["action_machine_node"] = np.minimum(mnode.ravel(), self.n_nodes - 1)
        obs["action_attr"] = self._pair_features()
        return obs

    def _pair_features(self) -> np.ndarray:
        """(A, N_PAIR_FEATURES) features of each valid (operation, machine) action (class docstring)."""
        st, inst = self.state, self.instance
        J, M = st.n_jobs, st.n_machines
        out = np.zeros((self.max_jobs, self.max_machines, N_PAIR_FEATURES), dtype=np.float32)
        valid = self._mask.reshape(self.max_jobs, self.max_machines)[:J, :M]
        if st.done or not valid.any():
            return out.reshape(self.n_actions, N_PAIR_FEATURES)
        ts, now = self.time_scale, self._now()
        nxt = st.next_op_clipped()
        p = inst.proc[nxt].astype(np.float64)  # (J, M)
        if self.scheme == "active":
            start = np.zeros((J, M))
            for j, m in zip(*np.nonzero(valid)):
                start[j, m] = st.start_time(int(j), int(m))[0]
        else:
            start = np.maximum(st.job_ready[:, None], st.mach_ready[None, :]).astype(np.float64)
        unsched = st.start < 0
        share = inst.proc * inst.eligible / np.maximum(1, self._n_elig)[:, None]
        load = share[unsched].sum(axis=0) / ts  # (M,)
        feats = np.stack([
            p / max(1, inst.max_proc),
            np.minimum(p / np.maximum(1, inst.min_proc[nxt])[:, None] - 1.0, 4.0),
            (start - now) / ts,
            (start + p - now) / ts,
            np.broadcast_to(load[None, :], (J, M)),
            np.broadcast_to(1.0 / np.maximum(1, self._n_elig[nxt])[:, None], (J, M)),
        ], axis=-1)
        out[:J, :M] = np.where(valid[..., None], feats, 0.0)
        return out.reshape(self.n_actions, N_PAIR_FEATURES)

    def _prepare_static(self, inst: JobShopInstance) -> None:
        super()._prepare_static(inst)
        self._n_elig = inst.eligible.sum(axis=1)
