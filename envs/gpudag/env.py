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

## Observation Space
The padded graph of :mod:`schedgym.envs.core.graph_obs`: rows ``0..max_tasks-1`` are tasks, rows
``max_tasks..max_tasks+max_devices-1`` devices. Node features (times divided by ``time_scale`` = the
largest upward rank of the instance):

0. mean execution time; 1. minimum; 2. maximum (over devices that can run it); 3. upward rank;
4. downward rank; 5. ready flag; 6. running flag; 7. done flag; 8. job-arrived flag; 9. start - now
(assigned tasks, else 0); 10. device-node flag; 11. device speed (mean over tasks of the mean time /
time on this device, eligible tasks only); 12. device busy time left (``busy_until - now``);
13. candidate flag (task or device of a valid pair).

Edges: the data edges (producer -> consumer) and, for assigned tasks, task -> device edges. Edge
features: data size / largest data size; mean transfer time / time_scale; data-edge flag;
assignment-edge flag. ``globals``: now / time_scale, fraction of tasks assigned, ready tasks /
max_tasks, idle devices / max_devices, jobs in system / jobs.

## Rewards
``reward="makespan"``: ``-(now after - now before) / reward_scale`` per step, and at the last step the
rest of the schedule ``-(makespan - now)``, so an episode's rewards sum to ``-makespan / reward_scale``.
``reward="jct"`` (Decima): ``-(time jobs spend in the system during the step) / reward_scale``, summing
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
``invalid_action_penalty``, ``render_mode`` (``"rgb_array"``: a Gantt chart per device).

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
from schedgym.envs.gpudag.metrics import metrics
from schedgym.envs.gpudag.ranks import downward_rank, upward_rank
from schedgym.envs.gpudag.state import GPUDagState
from schedgym.envs.gpudag.types import GPUDagInstance, GPUDagSolution

N_NODE_FEATURES = 14
N_EDGE_FEATURES = 4
N_GLOBALS = 5
REWARDS = ("auto", "makespan", "jct")

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
    ):
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
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
        self.n_actions = self.max_tasks * self.max_devices + 1
        self.wait_action = self.n_actions - 1
        self.action_space = gym.spaces.Discrete(self.n_actions)
        self.observation_space = padded_graph_space(
            self.n_nodes, N_NODE_FEATURES, self.n_edge_slots, N_EDGE_FEATURES, self.n_actions, N_GLOBALS,
            extra={"action_device_node": gym.spaces.Box(0, self.n_nodes - 1, (self.n_actions,), np.int64)})
        self.state: GPUDagState | None = None
        self.instance: GPUDagInstance | None = None
        self._mask_key: tuple[int, int] | None = None
        self._mask = np.zeros(self.n_actions, dtype=bool)
        pair_task = np.repeat(np.arange(self.max_tasks, dtype=np.int64), self.max_devices)
        pair_dev = self.max_tasks + np.tile(np.arange(self.max_devices, dtype=np.int64), self.max_tasks)
        self._action_node = np.concatenate([pair_task, [0]])
        self._action_device_node = np.concatenate([pair_dev, [self.max_tasks]])

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
        self.state = GPUDagState(inst)
        self._prepare_static(inst)
        self.n_invalid = 0
        self._objective = self._objective_name(inst)

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
        self.time_scale = float(max(ru.max(), 1e-12))
        self.reward_scale = float(self.reward_scale_arg or max(inst.min_time.sum() / D, 1e-12))
        ts = self.time_scale
        x = np.zeros((self.n_nodes, N_NODE_FEATURES), dtype=np.float32)
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
        st = self.state
        if not self._is_valid(a):
            self.n_invalid += 1
            truncated = self.n_invalid > max(st.n_tasks, 1) and not st.done
            return StepOutcome(self.invalid_action_penalty, False, truncated, invalid=True)
        t0 = st.now
        dec = self.decode_action(a)
        if dec is None:
            st.wait()
        else:
            st.assign(*dec)
        terminated = st.done
        t1 = st.makespan() if terminated else st.now
        if self._objective == "makespan":
            cost = max(t1, t0) - t0
        else:
            cost = st.time_in_system(t0, np.inf if terminated else t1)
        return StepOutcome(-float(cost) / self.reward_scale, terminated, False, invalid=False)

    # ------------------------------------------------------------------------------------------
    def _observation(self) -> dict[str, np.ndarray]:
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
        pm = amask[:-1].reshape(self.max_tasks, self.max_devices)
        x[: self.max_tasks, 13] = pm.any(axis=1)
        x[dv, 13] = pm.any(axis=0)[:D]
        ei, ea = self._ei0.copy(), self._ea0.copy()
        E = inst.n_edges
        at = np.flatnonzero(assigned)
        k = len(at)
        ei[0, E:E + k] = at
        ei[1, E:E + k] = self.max_tasks + st.device[at]
        ea[E:E + k, 3] = 1.0
        em = np.zeros(self.n_edge_slots, dtype=np.int8)
        em[:E + k] = 1
        g = np.array([now / ts, st.n_assigned / T, len(st._ready) / self.max_tasks,
                      st.idle_devices().sum() / self.max_devices, st.jobs_in_system() / max(st.n_jobs, 1)],
                     dtype=np.float32)
        return {"x": x, "edge_index": ei, "edge_attr": ea, "edge_mask": em, "node_mask": self._node_mask.copy(),
                "action_mask": amask.astype(np.int8), "action_node": self._action_node.copy(),
                "action_device_node": self._action_device_node.copy(), "globals": g}

    def _domain_info(self) -> dict[str, Any]:
        return {"now": self.state.now}

    def _final_solution(self) -> GPUDagSolution | None:
        return self.state.solution() if self.state.done else None

    def _metrics(self, solution: GPUDagSolution) -> dict[str, float]:
        return metrics(self.instance, solution)

    # ------------------------------------------------------------------------------------------
    def _render_rgb(self) -> np.ndarray:
        from schedgym.envs.gpudag.viewer import gantt_rgb

        return gantt_rgb(self.instance, self.state.start, self.state.device, now=self.state.now)
