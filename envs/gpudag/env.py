"""Gymnasium adapter of the GPU-DAG core: ``schedgym/GPUDag-v0``.

## Description
DAG jobs (Topcuoglu random DAGs, transformer-operator DAGs with measured kernel times, tile
Cholesky/LU/QR DAGs) on a heterogeneous cluster of devices (H100, A100, A40, CPU cores, ...). The
env is event-driven (see :mod:`schedgym.envs.gpudag.state`): at each decision point the agent
assigns a ready task (all predecessors finished, job arrived) to an idle device that can run it, or
waits until the next event (a task completion or a job arrival). A task starts when its inputs have
arrived on the device (transfer time 0 on the same device, link latency + data / bandwidth
otherwise). Static mode: one DAG, objective makespan. Online mode: several DAGs arriving as a
Poisson process (an instance with several jobs), objective mean job completion time.

## Action Space
``Discrete(max_tasks * max_devices + 1)``: action ``task * max_devices + device`` assigns ``task`` to
``device``; the last action (``wait_action``) waits for the next event. The action is *flattened*
(task x device in one step) rather than two-phase (task, then device as in the VM env) because (1)
the device count is small (4-16 here), so the flat space stays a few thousand actions; (2) the two
choices are strongly coupled (a task's finish time depends on the device through heterogeneous
times *and* data locality), and a flat mask expresses exactly which pairs are valid (the task is
ready, the device is idle and of a type that can run it), whereas a two-phase scheme lets the agent
pick a task whose only good device is busy; (3) one env step is one decision, so rewards and
credit assignment stay simple. ``action_node`` (task node) and ``action_device_node`` (device node)
give pointer heads both ends of each pair, so a GNN scores a pair from two node embeddings without
any parameter depending on the action count. Use :meth:`action_masks` (also ``info["action_mask"]``).
Waiting is valid only while a later event exists. An invalid action is a no-op with
``info["invalid_action"] = True`` and ``invalid_action_penalty`` as reward; after ``n_tasks`` invalid
actions in an episode the episode is truncated.

### Task mode (``action_mode="task"``)
An offline list scheduler instead of the event-driven dispatcher: ``Discrete(max_tasks)``, action
``t`` picks a *list-ready* task (every predecessor placed, not necessarily finished) and the env
places it on the device where it finishes earliest, at the earliest idle gap after its inputs arrive
(insertion-based, :mod:`schedgym.envs.gpudag.list_schedule`; ties to the lowest device index). This
is HEFT's placement, so the agent learns the priority order only, and picking the ready task of
highest upward rank every step reproduces HEFT's schedule exactly. There is no wait action and every
action sequence that picks ready tasks completes a valid schedule. Jobs arriving later are release
times known in advance (offline). ``action_device_node[t]`` is the device node of ready task ``t``'s
earliest-finish placement.

### Dispatch mode (``action_mode="dispatch"``)
The event-driven dispatcher with the device chosen by the env: ``Discrete(max_tasks)``, action ``t``
picks a ready task that has an idle eligible device, and the env assigns it to the idle eligible
device on which it finishes earliest (ties: lowest index), as every online rule of
:mod:`schedgym.baselines.dag_online` does. There is no wait action (the rules never wait).
``action_device_node[t]`` is that device's node. Two more node features (16 in all) carry job-level
state that job-ordering rules use: 14. remaining work of the task's job (sum of the mean times of
its unassigned tasks) / time_scale; 15. the job's age (now - arrival) / time_scale, 0 before it
arrives.

### Look-ahead dispatch mode (``action_mode="dispatch_la"``)
Dispatch mode in which the env waits for a busy device when that pays: the candidates are the
*no-regret* ready tasks only, those whose earliest finish over all their eligible devices (a busy
device counted from when it frees: ``max(now, busy_until, data arrival) + time``) is reached on an
idle device (:meth:`GPUDagState.no_regret_mask`); the chosen task runs there, and while no ready task
is no-regret the env advances to the next event inside the step (its time counts in the step's
reward). On the dag_online workloads this alone lowers every rule's mean JCT by 9-35 %
(``dag_<rule>_la``, :mod:`schedgym.baselines.dag_online`). Node features (18): those of dispatch mode
plus 16. devices held by the task's job (its running tasks) / devices; 17. the job's remaining
critical path (largest upward rank among its unassigned tasks) / time_scale.

## Observation Space
The padded graph of :mod:`schedgym.envs.core.graph_obs`: rows ``0..max_tasks-1`` are tasks, rows
``max_tasks..max_tasks+max_devices-1`` devices. Node features (times divided by ``time_scale`` = the
largest upward rank of the instance):

0. mean execution time; 1. minimum; 2. maximum (over devices that can run it); 3. upward rank;
4. downward rank; 5. ready flag; 6. running flag; 7. done flag; 8. job-arrived flag; 9. start - now
(assigned tasks, else 0); 10. device-node flag; 11. device speed (mean over tasks of the mean time /
time on this device, eligible tasks only); 12. device busy time left (``busy_until - now``);
13. candidate flag (task or device of a valid pair).

In task mode columns 5-9, 12 and the globals mean (times relative to ``ref``, the earliest start
of any ready task, divided by ``time_scale`` and clipped at -1):
5. list-ready flag; 6. placed flag; 7. ready: earliest finish - ref, placed: end - ref;
8. ready: earliest start - ref, placed: start - ref; 9. ready: second-best finish - best finish
(the cost of losing the best device; 0 with one eligible device); 12. device: end of its last task -
ref; globals: ref / time_scale, fraction of tasks placed, ready tasks / max_tasks, (partial makespan -
ref) / time_scale, number of jobs with unplaced tasks / jobs.

Edges: the data edges (producer -> consumer) and, for assigned tasks, task -> device edges. Edge
features: data size / largest data size; mean transfer time / time_scale; data-edge flag;
assignment-edge flag. ``globals``: now / time_scale, fraction of tasks assigned, ready tasks /
max_tasks, idle devices / max_devices, jobs in system / jobs.

## Rewards
``reward="makespan"``: ``-(now after - now before) / reward_scale`` per step, and at the last step the
rest of the schedule ``-(makespan - now)``, so an episode's rewards sum to ``-makespan / reward_scale``.
In task mode the reward is ``-(increase of the partial schedule's makespan) / reward_scale`` per
step, again summing to ``-makespan / reward_scale``. ``reward="jct"`` (Decima): ``-(time jobs spend in the system during the step) / reward_scale``, summing
to ``-sum of job completion times / reward_scale``. ``"auto"`` (default): makespan for one job, jct for
several. ``reward_scale`` defaults to the sum of the tasks' shortest times / number of devices.

## Starting State
Time 0 (jobs arriving later are not visible yet) of the instance given by
``reset(options={"instance": ...})`` (a generated workload name, ``"topcuoglu-example"``, a ``.json``
path or a :class:`GPUDagInstance`), else of the env's ``instance`` argument, else one drawn from
``generator`` (default: Topcuoglu random DAGs, 30 tasks, 4 processors) with the env's seeded generator.

## Episode End
Terminates when every task is assigned (the rest of the schedule is then determined); then
``info["solution"]`` (a :class:`GPUDagSolution`) and ``info["metrics"]`` (``makespan``, ``slr``,
``speedup``, ``mean_jct``, ``p95_jct``) are set.
Once the episode has ended (terminated or truncated), ``step()`` raises
:class:`~schedgym.envs.core.errors.ResetNeededError` until the next ``reset()``, as before the first
``reset()`` and after one that raised (:mod:`schedgym.envs.core.base_env`).

## Arguments
``instance``, ``generator``, ``reward``, ``max_tasks``/``max_devices``/``max_edges`` (padded sizes;
default: the first instance's or the generator's bounds), ``reward_scale``,
``invalid_action_penalty``, ``action_mode`` (``"pair"``, default: event-driven (task, device) pairs
and waits; ``"task"``: list scheduling with earliest-finish placement; ``"dispatch"`` and
``"dispatch_la"``: event-driven, the agent picks a task and the env its device), ``render_mode`` (``"rgb_array"``: a Gantt chart per device).

## Version History
* v0: initial release.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.core.base_env import SchedEnv, StepOutcome
from schedgym.envs.core.graph_obs import padded_graph_space
from schedgym.envs.core.sources import load_instances, padded_sizes
from schedgym.envs.gpudag.generator import TopcuogluGenerator
from schedgym.envs.gpudag.instances import load_instance
from schedgym.envs.gpudag.list_schedule import ListSchedule
from schedgym.envs.gpudag.metrics import metrics
from schedgym.envs.gpudag.ranks import downward_rank, upward_rank
from schedgym.envs.gpudag.state import GPUDagState
from schedgym.envs.gpudag.types import GPUDagInstance, GPUDagSolution

N_NODE_FEATURES = 14
N_EDGE_FEATURES = 4
N_GLOBALS = 5
REWARDS = ("auto", "makespan", "jct")
ACTION_MODES = ("pair", "task", "dispatch", "dispatch_la")

InstanceSpec = str | GPUDagInstance | Sequence[str | GPUDagInstance] | None


class GPUDagEnv(SchedEnv):
    """Event-driven DAG scheduling on heterogeneous devices (see the module docstring)."""

    def __init__(
        self,
        instance: InstanceSpec = None,
        generator: Callable[[np.random.Generator], GPUDagInstance] | None = None,
        reward: str = "auto",
        max_tasks: int | None = None,
        max_devices: int | None = None,
        max_edges: int | None = None,
        reward_scale: float | None = None,
        invalid_action_penalty: float = -1.0,
        render_mode: str | None = None,
        action_mode: str = "pair",
    ):
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
        self.action_mode = action_mode
        super().__init__(render_mode)
        self.reward_type = reward
        self.reward_scale_arg = reward_scale
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.instances = load_instances(instance, load_instance)
        self.generator = generator or TopcuogluGenerator(n_tasks=30, n_procs=4)
        self.max_tasks, self.max_devices, self.max_edges = padded_sizes(
            self.instances, self.generator, lambda i: (i.n_tasks, i.n_devices, i.n_edges),
            (max_tasks, max_devices, max_edges))
        self.n_nodes = self.max_tasks + self.max_devices
        self.n_edge_slots = self.max_edges + self.max_tasks
        self.n_node_features = N_NODE_FEATURES + {"dispatch": 2, "dispatch_la": 4}.get(action_mode, 0)
        if action_mode in ("task", "dispatch", "dispatch_la"):
            self.n_actions = self.max_tasks
            self.wait_action = -1  # no wait action in task mode
        else:
            self.n_actions = self.max_tasks * self.max_devices + 1
            self.wait_action = self.n_actions - 1
        self.action_space = gym.spaces.Discrete(self.n_actions)
        self.observation_space = padded_graph_space(
            self.n_nodes, self.n_node_features, self.n_edge_slots, N_EDGE_FEATURES, self.n_actions, N_GLOBALS,
            extra={"action_device_node": gym.spaces.Box(0, self.n_nodes - 1, (self.n_actions,), np.int64)})
        self.state: GPUDagState | None = None
        self.instance: GPUDagInstance | None = None
        self._mask_key: tuple[int, int] | None = None
        self._mask = np.zeros(self.n_actions, dtype=bool)
        pair_task = np.repeat(np.arange(self.max_tasks, dtype=np.int64), self.max_devices)
        pair_dev = self.max_tasks + np.tile(np.arange(self.max_devices, dtype=np.int64), self.max_tasks)
        self._action_node = np.concatenate([pair_task, [0]])
        self._action_device_node = np.concatenate([pair_dev, [self.max_tasks]])
        if action_mode in ("task", "dispatch", "dispatch_la"):
            self._action_node = np.arange(self.max_tasks, dtype=np.int64)
            self._action_device_node = np.full(self.max_tasks, self.max_tasks, dtype=np.int64)
        self.list_state: ListSchedule | None = None

    # ------------------------------------------------------------------------------------------
    def _start_episode(self, options: dict[str, Any]) -> None:
        if options.get("instance") is not None:
            inst = load_instance(options["instance"])
        elif self.instances:
            inst = self.instances[int(self.np_random.integers(len(self.instances)))]
        else:
            inst = self.generator(self.np_random)
        self._check_fits(inst)
        self.instance = inst
        self._prepare_static(inst)
        if self.action_mode == "task":
            self.state = None
            self._start_list(inst)
        else:
            self.state = GPUDagState(inst)
            if self.action_mode == "dispatch_la":
                self._wait_for_no_regret()  # never waits at time 0 (every device is idle)
        self.n_invalid = 0
        self._objective = self._objective_name(inst)

    @property
    def objective_metric(self) -> str:
        """The ``info["metrics"]`` key of the current episode's objective: ``mean_jct`` (reward jct, or
        auto with several jobs) or ``makespan``; solvers that rank episodes (best of k) use it. Before
        the first reset: from ``reward`` alone (``auto`` counts as makespan)."""
        return "mean_jct" if getattr(self, "_objective", self.reward_type) == "jct" else "makespan"

    def _objective_name(self, inst: GPUDagInstance) -> str:
        if self.reward_type == "auto":
            return "jct" if inst.n_jobs > 1 else "makespan"
        return self.reward_type

    def _check_fits(self, inst: GPUDagInstance) -> None:
        if inst.n_tasks > self.max_tasks or inst.n_devices > self.max_devices or inst.n_edges > self.max_edges:
            raise ValueError(
                f"instance {inst.name} ({inst.n_tasks} tasks, {inst.n_devices} devices, {inst.n_edges} edges) does "
                f"not fit this env's padded sizes (max_tasks={self.max_tasks}, max_devices={self.max_devices}, "
                f"max_edges={self.max_edges}); build the env with larger max_tasks/max_devices/max_edges")
        if inst.n_tasks == 0:
            raise ValueError(f"instance {inst.name} has no tasks")

    def _prepare_static(self, inst: GPUDagInstance) -> None:
        T, D, E = inst.n_tasks, inst.n_devices, inst.n_edges
        ru, rd = upward_rank(inst), downward_rank(inst)
        self._rank_up = ru
        self.time_scale = float(max(ru.max(), 1e-12))
        self.reward_scale = float(self.reward_scale_arg or max(inst.min_time.sum() / D, 1e-12))
        ts = self.time_scale
        x = np.zeros((self.n_nodes, self.n_node_features), dtype=np.float32)
        x[:T, 0] = inst.mean_time / ts
        x[:T, 1] = inst.min_time / ts
        x[:T, 2] = inst.max_time / ts
        x[:T, 3] = ru / ts
        x[:T, 4] = rd / ts
        dv = slice(self.max_tasks, self.max_tasks + D)
        x[dv, 10] = 1.0
        ratio = np.where(inst.dev_eligible, inst.mean_time[:, None] / np.where(inst.dev_eligible, inst.dev_time, 1.0), 0)
        ratio = np.where(inst.dev_eligible & (inst.dev_time > 0), ratio, 0.0)
        cnt = np.maximum((inst.dev_eligible & (inst.dev_time > 0)).sum(axis=0), 1)
        x[dv, 11] = ratio.sum(axis=0) / cnt
        self._x0 = x
        ei = np.zeros((2, self.n_edge_slots), dtype=np.int64)
        ea = np.zeros((self.n_edge_slots, N_EDGE_FEATURES), dtype=np.float32)
        ei[0, :E], ei[1, :E] = inst.edge_src, inst.edge_dst
        ea[:E, 0] = inst.edge_data / max(float(inst.edge_data.max(initial=0.0)), 1e-12)
        ea[:E, 1] = inst.mean_comm / ts
        ea[:E, 2] = 1.0
        self._ei0, self._ea0 = ei, ea
        nm = np.zeros(self.n_nodes, dtype=np.int8)
        nm[:T] = 1
        nm[dv] = 1
        self._node_mask = nm

    # ------------------------------------------------------------------------------------------
    def encode_action(self, task: int, device: int) -> int:
        """The action index of assigning ``task`` to ``device``."""
        return int(task) * self.max_devices + int(device)

    def decode_action(self, action: int) -> tuple[int, int] | None:
        """(task, device), or None for the wait action."""
        if int(action) == self.wait_action:
            return None
        return divmod(int(action), self.max_devices)

    def _action_mask(self) -> np.ndarray:
        """(A,) bool mask of valid actions, cached per decision."""
        if self.action_mode == "task":
            mask = np.zeros(self.n_actions, dtype=bool)
            mask[list(self._cand)] = True
            return mask
        if self.action_mode in ("dispatch", "dispatch_la"):
            return self._dispatch_mask()
        st = self.state
        key = (id(st), st.n_decisions)
        if self._mask_key == key:
            return self._mask.copy()
        mask = np.zeros(self.n_actions, dtype=bool)
        self._mask_key, self._mask = key, mask
        if st.done:
            return mask.copy()
        pm = np.zeros((self.max_tasks, self.max_devices), dtype=bool)
        pm[: st.n_tasks, : st.n_devices] = st.pair_mask()
        mask[:-1] = pm.ravel()
        mask[-1] = st.can_wait()
        return mask.copy()

    def _is_valid(self, action: int) -> bool:
        if self.action_mode == "task":
            return action in self._cand
        if self.action_mode in ("dispatch", "dispatch_la"):
            return 0 <= action < self.n_actions and bool(self._dispatch_mask()[action])
        st = self.state
        if not 0 <= action < self.n_actions or st.done:
            return False
        dec = self.decode_action(action)
        if dec is None:
            return st.can_wait()
        t, d = dec
        return (t < st.n_tasks and d < st.n_devices and bool(st.is_ready[t])
                and bool(st.eligible[t, d]) and st.busy_until[d] <= st.now)

    def _apply(self, action) -> StepOutcome:
        a = int(action)
        if self.action_mode == "task":
            return self._apply_task(a)
        if self.action_mode in ("dispatch", "dispatch_la"):
            if not self._is_valid(a):
                return self._run_decision(None, invalid=True)
            # a valid task becomes the pair (task, earliest-finish idle device), then runs as in pair mode
            return self._run_decision((a, self.dispatch_device(a)))
        valid = self._is_valid(a)
        return self._run_decision(self.decode_action(a) if valid else None, invalid=not valid)

    def _run_decision(self, dec: tuple[int, int] | None, invalid: bool = False) -> StepOutcome:
        """Assign the (task, device) pair ``dec`` (already validated), or wait (None); ``invalid``:
        an invalid action (a no-op with the penalty)."""
        st = self.state
        if invalid:
            self.n_invalid += 1
            truncated = self.n_invalid > max(st.n_tasks, 1) and not st.done
            return StepOutcome(self.invalid_action_penalty, False, truncated, invalid=True)
        t0 = st.now
        if dec is None:
            st.wait()
        else:
            st.assign(*dec)
        if self.action_mode == "dispatch_la":
            self._wait_for_no_regret()
        terminated = st.done
        t1 = st.makespan() if terminated else st.now
        if self._objective == "makespan":
            cost = max(t1, t0) - t0
        else:
            cost = st.time_in_system(t0, np.inf if terminated else t1)
        return StepOutcome(-float(cost) / self.reward_scale, terminated, False, invalid=False)

    # ------------------------------------------------------------------------------------------
    def _observation(self) -> dict[str, np.ndarray]:
        if self.action_mode == "task":
            return self._observation_task()
        if self.action_mode in ("dispatch", "dispatch_la"):
            return self._observation_dispatch()
        return self._observation_pair_layout()

    def _observation_pair_layout(self) -> dict[str, np.ndarray]:
        """The pair-mode observation (dispatch mode adds its own columns and action keys)."""
        st, inst = self.state, self.instance
        T, D = st.n_tasks, st.n_devices
        ts = self.time_scale
        x = self._x0.copy()
        now = st.now
        assigned = st.device >= 0
        x[:T, 5] = st.is_ready
        x[:T, 6] = assigned & (st.end > now)
        x[:T, 7] = assigned & (st.end <= now)
        x[:T, 8] = st.arrived[inst.task_job]
        x[:T, 9] = np.where(assigned, st.start - now, 0.0) / ts
        dv = slice(self.max_tasks, self.max_tasks + D)
        x[dv, 12] = np.maximum(st.busy_until - now, 0.0) / ts
        amask = self._action_mask()
        pm = self._pair_grid()
        x[: self.max_tasks, 13] = pm.any(axis=1)
        x[dv, 13] = pm.any(axis=0)[:D]
        ei, ea, em = self._edges(st.device)
        g = np.array([now / ts, st.n_assigned / T, len(st._ready) / self.max_tasks,
                      st.idle_devices().sum() / self.max_devices, st.jobs_in_system() / max(st.n_jobs, 1)],
                     dtype=np.float32)
        return {"x": x, "edge_index": ei, "edge_attr": ea, "edge_mask": em, "node_mask": self._node_mask.copy(),
                "action_mask": amask.astype(np.int8), "action_node": self._action_node.copy(),
                "action_device_node": self._action_device_node.copy(), "globals": g}

    def _domain_info(self) -> dict[str, Any]:
        if self.action_mode == "task":
            return {"now": self._ref_time()}
        return {"now": self.state.now}

    def _final_solution(self) -> GPUDagSolution | None:
        if self.action_mode == "task":
            return self.list_state.solution() if self._n_placed == self.instance.n_tasks else None
        return self.state.solution() if self.state.done else None

    def _metrics(self, solution: GPUDagSolution) -> dict[str, float]:
        return metrics(self.instance, solution)

    # ------------------------------------------------------------------------------------------
    def _render_rgb(self) -> np.ndarray:
        from schedgym.envs.gpudag.viewer import gantt_rgb

        if self.action_mode == "task":
            ls = self.list_state
            return gantt_rgb(self.instance, ls.start, ls.device, now=self._ref_time())
        return gantt_rgb(self.instance, self.state.start, self.state.device, now=self.state.now)

    def _edges(self, device: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(edge_index, edge_attr, edge_mask): the data edges, then a task -> device edge for every task
        with ``device[t] >= 0`` (assigned or placed)."""
        ei, ea = self._ei0.copy(), self._ea0.copy()
        E = self.instance.n_edges
        at = np.flatnonzero(device >= 0)
        k = len(at)
        ei[0, E:E + k] = at
        ei[1, E:E + k] = self.max_tasks + device[at]
        ea[E:E + k, 3] = 1.0
        em = np.zeros(self.n_edge_slots, dtype=np.int8)
        em[:E + k] = 1
        return ei, ea, em

    # ------------------------------------------------------------------------------------------
    # dispatch mode: event-driven, the env picks the earliest-finish idle device
    def _pair_grid(self) -> np.ndarray:
        """(max_tasks, max_devices) bool: the (task, device) pairs that may be assigned now."""
        st = self.state
        pm = np.zeros((self.max_tasks, self.max_devices), dtype=bool)
        if not st.done:
            pm[: st.n_tasks, : st.n_devices] = st.pair_mask()
        return pm

    def _dispatch_mask(self) -> np.ndarray:
        st = self.state
        key = (id(st), st.n_decisions)
        if self._mask_key != key:
            mask = self._pair_grid().any(axis=1)
            if self.action_mode == "dispatch_la" and not st.done:
                mask[: st.n_tasks] &= st.no_regret_mask()
            self._mask_key, self._mask = key, mask
        return self._mask.copy()

    def _wait_for_no_regret(self) -> None:
        """dispatch_la: advance to the next event while no ready task can start without regret
        (:meth:`GPUDagState.no_regret_mask`); the time passes inside the current step."""
        st = self.state
        while not st.done and not st.no_regret_mask().any():
            st.wait()

    def dispatch_device(self, task: int) -> int:
        """The idle eligible device on which ``task`` (ready) would finish earliest (lowest index on ties)."""
        st = self.state
        fin = np.where(st.eligible[task] & st.idle_devices(), st.finish_times(task), np.inf)
        return int(np.argmin(fin))

    def _observation_dispatch(self) -> dict[str, np.ndarray]:
        obs = self._observation_pair_layout()
        st, inst = self.state, self.instance
        T = st.n_tasks
        ts = self.time_scale
        x = obs["x"]
        unassigned = st.device < 0
        rem = np.bincount(inst.task_job[unassigned], weights=inst.mean_time[unassigned], minlength=inst.n_jobs)
        x[:T, 14] = rem[inst.task_job] / ts
        age = np.where(st.arrived, st.now - inst.job_arrival, 0.0)
        x[:T, 15] = age[inst.task_job] / ts
        mask = self._dispatch_mask()
        adev = self._action_device_node.copy()
        for t in np.flatnonzero(mask):
            adev[t] = self.max_tasks + self.dispatch_device(int(t))
        if self.action_mode == "dispatch_la":
            running = (st.device >= 0) & (st.end > st.now)
            held = np.bincount(inst.task_job[running], minlength=inst.n_jobs)
            x[:T, 16] = held[inst.task_job] / st.n_devices
            cp = np.zeros(inst.n_jobs)
            np.maximum.at(cp, inst.task_job[unassigned], self._rank_up[unassigned])
            x[:T, 17] = cp[inst.task_job] / ts
        obs.update(action_mask=mask.astype(np.int8), action_node=self._action_node.copy(), action_device_node=adev)
        return obs

    # ------------------------------------------------------------------------------------------
    # task mode: list scheduling with insertion-based earliest-finish placement
    def _start_list(self, inst: GPUDagInstance) -> None:
        ls = ListSchedule(inst)
        self.list_state = ls
        self._n_placed = 0
        self._partial_makespan = 0.0
        #: ready task -> (earliest start, earliest finish) per device
        self._cand: dict[int, tuple[np.ndarray, np.ndarray]] = {t: ls.est_eft(t) for t in ls.initial_ready()}

    def placement(self, task: int) -> tuple[int, float]:
        """(device, start) where ``task`` (list-ready) would be placed: earliest finish, lowest index."""
        est, eft = self._cand[int(task)]
        d = int(np.argmin(eft))
        return d, float(est[d])

    def _apply_task(self, a: int) -> StepOutcome:
        if not self._is_valid(a):
            self.n_invalid += 1
            truncated = self.n_invalid > max(self.instance.n_tasks, 1)
            return StepOutcome(self.invalid_action_penalty, False, truncated, invalid=True)
        ls = self.list_state
        d, start = self.placement(a)
        del self._cand[a]
        new = ls.place(a, d, start)
        eligible = self.instance.dev_eligible
        dev = np.array([d])
        for t, (est, eft) in self._cand.items():  # only device d's timeline changed
            if eligible[t, d]:
                s1, f1 = ls.est_eft(t, devices=dev)
                est[d], eft[d] = s1[d], f1[d]
        for c in new:
            self._cand[int(c)] = ls.est_eft(int(c))
        self._n_placed += 1
        old = self._partial_makespan
        self._partial_makespan = max(old, float(ls.end[a]))
        terminated = self._n_placed == self.instance.n_tasks
        return StepOutcome(-(self._partial_makespan - old) / self.reward_scale, terminated, False, invalid=False)

    def _ref_time(self) -> float:
        """Earliest start of any ready task (the partial makespan once every task is placed)."""
        if not self._cand:
            return self._partial_makespan
        return float(min(est.min() for est, _ in self._cand.values()))

    def _observation_task(self) -> dict[str, np.ndarray]:
        ls, inst = self.list_state, self.instance
        T, D = inst.n_tasks, inst.n_devices
        ts = self.time_scale
        ref = self._ref_time()
        x = self._x0.copy()
        placed = ls.device >= 0
        x[:T, 6] = placed
        x[:T, 7] = np.where(placed, np.maximum((ls.end - ref) / ts, -1.0), 0.0)
        x[:T, 8] = np.where(placed, np.maximum((ls.start - ref) / ts, -1.0), 0.0)
        adev = self._action_device_node.copy()
        for t, (est, eft) in self._cand.items():
            d = int(np.argmin(eft))
            x[t, 5] = 1.0
            x[t, 7] = (eft[d] - ref) / ts
            x[t, 8] = (est[d] - ref) / ts
            fin = np.sort(eft[np.isfinite(eft)])
            x[t, 9] = (fin[1] - fin[0]) / ts if len(fin) > 1 else 0.0
            x[t, 13] = 1.0
            adev[t] = self.max_tasks + d
        dv = slice(self.max_tasks, self.max_tasks + D)
        last_end = np.array([ends[-1] if ends else 0.0 for ends in ls.ends])
        x[dv, 12] = np.maximum((last_end - ref) / ts, -1.0)
        x[dv, 13] = 1.0 if self._cand else 0.0
        ei, ea, em = self._edges(ls.device)
        unplaced_jobs = len(np.unique(inst.task_job[~placed])) if self._n_placed < T else 0
        g = np.array([ref / ts, self._n_placed / T, len(self._cand) / self.max_tasks,
                      (self._partial_makespan - ref) / ts, unplaced_jobs / max(inst.n_jobs, 1)], dtype=np.float32)
        return {"x": x, "edge_index": ei, "edge_attr": ea, "edge_mask": em, "node_mask": self._node_mask.copy(),
                "action_mask": self._action_mask().astype(np.int8), "action_node": self._action_node.copy(),
                "action_device_node": adev, "globals": g}
