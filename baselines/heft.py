"""Static list schedulers for DAGs on heterogeneous devices: HEFT, CPOP, PEFT, random priority,
min-min and max-min, as offline solvers, plus a policy that replays any of them through the env.

All of them place a task on a device at the earliest idle gap that starts after the task's inputs
have arrived and is long enough (insertion-based; Topcuoglu, Hariri and Wu, IEEE TPDS 2002), with
communication as in the instance (0 on the same device). Ties: the lowest task index, the lowest
device index. Times are in the instance's time units.

==========  ================================================================================
heft        tasks by decreasing upward rank; each on the device with the earliest finish time
cpop        priority rank_u + rank_d; the critical-path tasks on the one device minimising their
            total time, the others on the earliest-finish device (per job)
peft        Arabnejad and Barbosa (IEEE TPDS 2014): optimistic cost table OCT; tasks by
            decreasing mean OCT, each on the device minimising EFT + OCT
random      a uniformly random ready task each step (seeded), earliest-finish device
minmin      among the ready tasks, the one whose earliest finish time is smallest, on that device
maxmin      the ready task whose earliest finish time is largest, on its earliest-finish device
==========  ================================================================================

A task is *ready* for the list scheduler when all its predecessors are placed (not finished).
"""

from __future__ import annotations

import heapq
import time
from typing import Any

import numpy as np

from schedgym.envs.core.errors import UnknownNameError
from schedgym.envs.gpudag.list_schedule import ListSchedule
from schedgym.envs.gpudag.ranks import downward_rank, upward_rank
from schedgym.envs.gpudag.types import GPUDagInstance, GPUDagSolution

ALGORITHMS = ("heft", "cpop", "peft", "random", "minmin", "maxmin")


# ----------------------------------------------------------------------------------------------
def _priority_schedule(inst: GPUDagInstance, priority: np.ndarray, choose=None) -> ListSchedule:
    """Repeatedly take the ready task of highest priority and place it by ``choose`` (default EFT)."""
    ls = ListSchedule(inst)
    heap = [(-float(priority[t]), t) for t in ls.initial_ready()]
    heapq.heapify(heap)
    while heap:
        _, t = heapq.heappop(heap)
        est, eft = ls.est_eft(t)
        d = int(np.argmin(eft)) if choose is None else int(choose(t, est, eft))
        for c in ls.place(t, d, float(est[d])):
            heapq.heappush(heap, (-float(priority[c]), c))
    return ls


def heft(inst: GPUDagInstance) -> GPUDagSolution:
    """HEFT (insertion-based)."""
    return _priority_schedule(inst, upward_rank(inst)).solution(policy="heft")


def critical_path(inst: GPUDagInstance, prio: np.ndarray, job: int) -> list[int]:
    """CPOP's critical path of one job: from its highest-priority entry task, follow the successor of
    highest priority while it equals |CP| (relative tolerance 1e-9)."""
    tasks = inst.job_tasks(job)
    indeg = np.bincount(inst.edge_dst, minlength=inst.n_tasks)
    entries = [int(t) for t in tasks if indeg[t] == 0]
    t = max(entries, key=lambda x: (prio[x], -x))
    cp_len = prio[t]
    path = [t]
    while True:
        succ = inst.succs(t)
        succ = [int(s) for s in succ if abs(prio[s] - cp_len) <= 1e-9 * max(1.0, abs(cp_len))]
        if not succ:
            break
        t = max(succ, key=lambda x: (prio[x], -x))
        path.append(t)
    return path


def cpop(inst: GPUDagInstance) -> GPUDagSolution:
    """CPOP: critical-path tasks on the critical-path device, others by earliest finish."""
    prio = upward_rank(inst) + downward_rank(inst)
    cp_dev = np.full(inst.n_tasks, -1, np.int64)
    for j in range(inst.n_jobs):
        path = critical_path(inst, prio, j)
        tot = inst.dev_time[path].sum(axis=0)
        cp_dev[path] = int(np.argmin(tot))
        if not np.isfinite(tot.min()):  # no single device runs the whole path: fall back to EFT
            cp_dev[path] = -1

    def choose(t: int, est: np.ndarray, eft: np.ndarray) -> int:
        return int(cp_dev[t]) if cp_dev[t] >= 0 else int(np.argmin(eft))

    return _priority_schedule(inst, prio, choose).solution(policy="cpop")


def optimistic_cost_table(inst: GPUDagInstance) -> np.ndarray:
    """(T, D) PEFT's OCT(t, p) = max_s min_q (OCT(s, q) + w(s, q) + c̄(t, s) [p != q]); exit tasks 0."""
    T, D = inst.n_tasks, inst.n_devices
    oct_ = np.zeros((T, D))
    W = inst.dev_time
    c = inst.mean_comm
    ptr, se, dst = inst.succ_ptr, inst.succ_edge, inst.edge_dst
    for t in inst.topo_order[::-1]:
        best = np.zeros(D)
        for e in se[ptr[t]:ptr[t + 1]]:
            s = dst[e]
            m = oct_[s] + W[s]
            val = np.minimum(m, m.min() + c[e])
            np.maximum(best, val, out=best)
        oct_[t] = best
    return oct_


def peft(inst: GPUDagInstance) -> GPUDagSolution:
    """PEFT: rank by mean OCT, device by EFT + OCT."""
    oct_ = optimistic_cost_table(inst)
    el = inst.dev_eligible
    rank = np.where(el, oct_, 0.0).sum(axis=1) / el.sum(axis=1)
    return _priority_schedule(inst, rank, lambda t, est, eft: int(np.argmin(eft + oct_[t]))).solution(policy="peft")


def random_priority(inst: GPUDagInstance, seed: int | None = 0) -> GPUDagSolution:
    """Random-priority list scheduling: each step a uniformly random ready task, earliest-finish device."""
    rng = np.random.default_rng(seed)
    ls = ListSchedule(inst)
    ready = ls.initial_ready()
    while ready:
        t = ready.pop(int(rng.integers(len(ready))))
        est, eft = ls.est_eft(t)
        d = int(np.argmin(eft))
        ready += ls.place(t, d, float(est[d]))
    return ls.solution(policy="random", seed=seed)


def _batch_mode(inst: GPUDagInstance, largest: bool) -> GPUDagSolution:
    ls = ListSchedule(inst)
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {t: ls.est_eft(t) for t in ls.initial_ready()}
    while cache:
        best_t, best_key = -1, None
        for t, (_, eft) in cache.items():
            m = float(eft.min())
            key = (-m, t) if largest else (m, t)
            if best_key is None or key < best_key:
                best_t, best_key = t, key
        est, eft = cache.pop(best_t)
        d = int(np.argmin(eft))
        new = ls.place(best_t, d, float(est[d]))
        for t, (e_s, e_f) in cache.items():  # only device d's timeline changed
            if ls.inst.dev_eligible[t, d]:
                s1, f1 = ls.est_eft(t, devices=np.array([d]))
                e_s[d], e_f[d] = s1[d], f1[d]
        for c in new:
            cache[c] = ls.est_eft(c)
    return ls.solution(policy="maxmin" if largest else "minmin")


def minmin(inst: GPUDagInstance) -> GPUDagSolution:
    return _batch_mode(inst, largest=False)


def maxmin(inst: GPUDagInstance) -> GPUDagSolution:
    return _batch_mode(inst, largest=True)


def schedule(inst: GPUDagInstance, algorithm: str, seed: int | None = 0) -> GPUDagSolution:
    """Run one of :data:`ALGORITHMS` on ``inst``."""
    if algorithm == "random":
        return random_priority(inst, seed)
    fns = {"heft": heft, "cpop": cpop, "peft": peft, "minmin": minmin, "maxmin": maxmin}
    if algorithm not in fns:
        raise UnknownNameError("list-scheduling algorithm", algorithm, ALGORITHMS)
    return fns[algorithm](inst)


class ListSchedulingSolver:
    """One of :data:`ALGORITHMS` as a :class:`~schedgym.baselines.base.Solver` (offline, whole schedule).

    Args:
        algorithm: ``heft``, ``cpop``, ``peft``, ``random``, ``minmin`` or ``maxmin``.
        seed: seed of ``random`` (the evaluation script resets it per episode seed).
        name: display name (default: the algorithm).
    """

    domains = ("gpudag",)

    def __init__(self, algorithm: str = "heft", seed: int | None = 0, name: str | None = None):
        if algorithm not in ALGORITHMS:
            raise UnknownNameError("list-scheduling algorithm", algorithm, ALGORITHMS)
        self.algorithm = algorithm
        self.seed = seed
        self.name = name or algorithm

    def reset_seed(self, seed: int) -> None:
        self.seed = seed

    def solve(self, instance: GPUDagInstance, time_limit_s: float | None = None) -> GPUDagSolution:
        from schedgym.envs.gpudag.instances import load_instance

        inst = load_instance(instance)
        t0 = time.perf_counter()
        sol = schedule(inst, self.algorithm, self.seed)
        sol.meta["wall_time_s"] = time.perf_counter() - t0
        sol.status = "feasible"
        return sol


class PlanReplayPolicy:
    """Replays a static plan (from a solver) through ``schedgym/GPUDag-v0`` step by step.

    At each decision point, an idle device whose next planned task (in planned start order) is ready
    gets it; when none is, the policy waits. The env's start rule then reproduces the plan's times
    exactly (its starts are the earliest the plan allows), so the episode's makespan equals the
    plan's. Use it to compare a learned policy and a static heuristic on the same env.
    """

    domains = ("gpudag",)

    def __init__(self, algorithm: str = "heft", seed: int | None = 0, name: str | None = None):
        self.solver = ListSchedulingSolver(algorithm, seed)
        self.name = name or f"{algorithm}_replay"
        self.env: Any = None

    def reset_seed(self, seed: int) -> None:
        self.solver.reset_seed(seed)

    def reset(self, env) -> None:
        self.env = env.unwrapped
        if getattr(self.env, "action_mode", "pair") != "pair":
            raise ValueError(f"{self.name} replays (task, device) pairs: it needs GPUDag-v0 with action_mode 'pair'")
        inst = self.env.instance
        plan = self.solver.solve(inst)
        D = inst.n_devices
        order = np.lexsort((np.arange(inst.n_tasks), plan.start))
        self.queue = [[int(t) for t in order if plan.device[t] == d] for d in range(D)]
        self.pos = [0] * D

    def act(self, obs: Any, info: dict) -> int:
        st = self.env.state
        idle = st.idle_devices()
        for d in range(st.n_devices):
            q, k = self.queue[d], self.pos[d]
            if idle[d] and k < len(q) and st.is_ready[q[k]]:
                self.pos[d] += 1
                return int(self.env.encode_action(q[k], d))
        return int(self.env.wait_action)


class PriorityListPolicy:
    """A list-scheduling priority rule as a step-wise policy of ``GPUDag-v0(action_mode="task")``.

    Each step it picks the list-ready task of highest priority (ties: lowest index); the env places it
    by earliest finish time, so ``algorithm="heft"`` reproduces :func:`heft` exactly. Priorities:
    ``heft`` upward rank, ``cpop`` upward + downward rank, ``peft`` PEFT's mean optimistic cost (with
    earliest-finish placement, not PEFT's EFT + OCT), ``random`` a uniformly random ready task (seeded
    by the episode seed). Also the label source of the GPU-DAG self-labeling recipe.
    """

    domains = ("gpudag",)
    PRIORITIES = ("heft", "cpop", "peft", "random")
    #: the evaluation CLIs build the env in task mode for this policy
    required_env_kwargs = {"action_mode": "task"}

    def __init__(self, algorithm: str = "heft", seed: int | None = 0, name: str | None = None):
        if algorithm not in self.PRIORITIES:
            raise UnknownNameError("priority rule", algorithm, self.PRIORITIES)
        self.algorithm = algorithm
        self.seed = seed
        self.name = name or f"{algorithm}_list"
        self.rng = np.random.default_rng(seed)

    def reset_seed(self, seed: int) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self, env) -> None:
        env = env.unwrapped
        if getattr(env, "action_mode", None) != "task":
            raise ValueError(f"{self.name} needs GPUDag-v0 with action_mode='task' (got "
                             f"{getattr(env, 'action_mode', None)!r}); set env.kwargs.action_mode=task")
        inst = env.instance
        if self.algorithm == "heft":
            self.priority = upward_rank(inst)
        elif self.algorithm == "cpop":
            self.priority = upward_rank(inst) + downward_rank(inst)
        elif self.algorithm == "peft":
            el = inst.dev_eligible
            self.priority = np.where(el, optimistic_cost_table(inst), 0.0).sum(axis=1) / el.sum(axis=1)
        else:
            self.priority = None

    def act(self, obs: Any, info: dict) -> int:
        ready = np.flatnonzero(np.asarray(info["action_mask"], dtype=bool))
        if self.priority is None:
            return int(ready[int(self.rng.integers(len(ready)))])
        p = self.priority[ready]
        return int(ready[np.flatnonzero(p == p.max())[0]])
