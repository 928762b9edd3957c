"""Online list scheduling with reservations, replanned at every job arrival (GPU-DAG online mode).

An *online* planner for ``schedgym/GPUDag-v0`` workloads with job arrivals (objective mean job
completion time). At each distinct arrival time ``a`` (an epoch) it knows only the jobs arrived by
``a``. Tasks planned to start before ``a`` have started and stay fixed; every other task of an arrived
job is (re)planned: jobs in the order of the rule's key (lowest first), each job's unstarted tasks by
list scheduling in decreasing upward rank (HEFT's priority; a task is list-ready when its
predecessors are planned), each at its earliest-finish device, insertion-based (the earliest idle
gap that fits, Topcuoglu et al. 2002), never before ``a``. A planned task is a *reservation*: later
jobs' tasks may fill the gaps around it, and the next epoch may move it if it has not started.
Between epochs nothing new is known and task times are deterministic, so the plan runs as planned;
the schedule returned is the plan of the last epoch. No decision uses a job before it arrives
(``tests/test_gpudag_replan.py`` checks that changing later jobs leaves every earlier start unchanged).

Job keys (at each epoch, over the job's unstarted tasks; ties: lower job index):

==========  ======================================================================================
srpt        remaining work: sum of the mean times (over eligible device types) of its unstarted tasks
sjf         remaining critical path: the largest upward rank among its unstarted tasks
fifo        arrival time
==========  ======================================================================================

With ``samples=k > 0`` (a sampling planner, a search method rather than a rule) each epoch also
draws ``k`` randomised plans (job keys and task priorities each multiplied by ``exp(sigma * z)``,
``z`` standard normal) and keeps the plan, the rule's included, of lowest *planned* sum of
completion time minus arrival over the jobs known at that epoch (no knowledge of later jobs).
Seeded: the same seed gives the same schedule. :func:`pilot_bound` is a clairvoyant search bound over
the same decisions (it looks at later arrivals to choose, so it is not a policy). Times are in the
instance's time units.
"""

from __future__ import annotations

import time

import numpy as np

from schedgym.envs.core.errors import UnknownNameError
from schedgym.envs.gpudag.list_schedule import ListSchedule
from schedgym.envs.gpudag.ranks import upward_rank
from schedgym.envs.gpudag.types import GPUDagInstance, GPUDagSolution

KEYS = ("srpt", "sjf", "fifo")


class ReplanState:
    """The plan (start, device, end per task; -1 / -1 / inf while unplanned) of an instance with arrivals."""

    def __init__(self, inst: GPUDagInstance):
        self.inst = inst
        self.rank = upward_rank(inst)
        self.epochs = np.unique(inst.job_arrival)
        self.job_tasks = [np.flatnonzero(inst.task_job == j) for j in range(inst.n_jobs)]
        self.preds: list[list[int]] = [[] for _ in range(inst.n_tasks)]
        for a, b in zip(inst.edge_src.tolist(), inst.edge_dst.tolist(), strict=False):
            self.preds[b].append(a)
        T = inst.n_tasks
        self.start = np.full(T, -1.0)
        self.device = np.full(T, -1, np.int64)
        self.end = np.full(T, np.inf)

    def copy_plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.start.copy(), self.device.copy(), self.end.copy()

    def set_plan(self, plan: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        self.start, self.device, self.end = (x.copy() for x in plan)

    def open_jobs(self, a: float) -> tuple[np.ndarray, np.ndarray]:
        """(jobs arrived by ``a`` with unstarted tasks, (T,) bool fixed = planned to start before ``a``)."""
        fixed = (self.device >= 0) & (self.start < a)
        arrived = np.flatnonzero(self.inst.job_arrival <= a)
        jobs = np.array([j for j in arrived if not fixed[self.job_tasks[j]].all()], dtype=np.int64)
        return jobs, fixed

    def job_key(self, jobs: np.ndarray, fixed: np.ndarray, key: str) -> np.ndarray:
        """The rule's key of each job of ``jobs`` (lower first; module docstring)."""
        inst = self.inst
        out = np.zeros(len(jobs))
        for i, j in enumerate(jobs):
            tj = self.job_tasks[j]
            un = tj[~fixed[tj]]
            if key == "srpt":
                out[i] = inst.mean_time[un].sum()
            elif key == "sjf":
                out[i] = self.rank[un].max()
            else:
                out[i] = inst.job_arrival[j]
        return out

    def plan(self, a: float, job_order: np.ndarray, fixed: np.ndarray,
             prio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The plan after replanning at epoch ``a``: the fixed tasks stay, the unstarted tasks of the jobs
        of ``job_order`` are placed job after job, each job's by list scheduling in decreasing ``prio``
        (ties: lower task id), insertion-based earliest finish, start >= ``a``. Does not change ``self``."""
        inst = self.inst
        start, device, end = self.copy_plan()
        ls = ListSchedule(inst)
        for d in range(inst.n_devices):
            idx = np.flatnonzero(fixed & (device == d))
            idx = idx[np.argsort(start[idx], kind="stable")]
            ls.starts[d] = start[idx].tolist()
            ls.ends[d] = end[idx].tolist()
        ls.start[fixed], ls.end[fixed], ls.device[fixed] = start[fixed], end[fixed], device[fixed]
        ls.arrival = np.maximum(ls.arrival, a)  # release time of every task planned now: the epoch
        placed = fixed.copy()
        for j in job_order:
            tj = self.job_tasks[int(j)]
            left = [int(t) for t in tj[~fixed[tj]]]
            while left:
                ready = [t for t in left if all(placed[p] for p in self.preds[t])]
                t = max(ready, key=lambda x: (prio[x], -x))
                est, eft = ls.est_eft(t)
                d = int(np.argmin(eft))
                ls.place(t, d, float(est[d]))
                placed[t] = True
                left.remove(t)
        new = ~fixed & (ls.device >= 0)
        start[new], device[new], end[new] = ls.start[new], ls.device[new], ls.end[new]
        return start, device, end

    def planned_sum_jct(self, plan: tuple[np.ndarray, np.ndarray, np.ndarray], a: float) -> float:
        """Sum over the jobs arrived by ``a`` of planned completion minus arrival (what is known at ``a``)."""
        inst = self.inst
        known = inst.job_arrival <= a
        jend = np.zeros(inst.n_jobs)
        np.maximum.at(jend, inst.task_job, np.where(plan[1] >= 0, plan[2], 0.0))
        return float((jend - inst.job_arrival)[known].sum())

    def solution(self) -> GPUDagSolution:
        return GPUDagSolution(start=self.start.copy(), device=self.device.copy())


def replan_schedule(inst: GPUDagInstance, key: str = "srpt", samples: int = 0, sigma: float = 0.3,
                    seed: int = 0) -> GPUDagSolution:
    """The schedule of the replanning rule ``key`` (or, with ``samples``, the sampling planner)."""
    if key not in KEYS:
        raise UnknownNameError("GPU-DAG replanning job key", key, KEYS)
    if samples < 0 or sigma < 0:
        raise ValueError(f"replan_schedule: samples and sigma must be >= 0, got {samples}, {sigma}")
    rng = np.random.default_rng(seed)
    st = ReplanState(inst)
    for a in st.epochs:
        a = float(a)
        jobs, fixed = st.open_jobs(a)
        k = st.job_key(jobs, fixed, key)
        best = st.plan(a, jobs[np.lexsort((jobs, k))], fixed, st.rank)
        if samples:
            best_val = st.planned_sum_jct(best, a)
            for _ in range(samples):
                cand = _random_plan(st, a, jobs, k, fixed, rng, sigma, sigma)
                val = st.planned_sum_jct(cand, a)
                if val < best_val:
                    best, best_val = cand, val
        st.set_plan(best)
    return st.solution()


def _random_plan(st: ReplanState, a: float, jobs: np.ndarray, k: np.ndarray, fixed: np.ndarray,
                 rng: np.random.Generator, sigma_job: float, sigma_task: float) -> tuple[np.ndarray, ...]:
    """A randomised plan at epoch ``a``: job keys x exp(sigma_job z), upward ranks x exp(sigma_task z)."""
    kj = k * np.exp(sigma_job * rng.standard_normal(len(k)))
    prio = st.rank * np.exp(sigma_task * rng.standard_normal(len(st.rank)))
    return st.plan(a, jobs[np.lexsort((jobs, kj))], fixed, prio)


def _rule_completion(st: ReplanState, plan: tuple[np.ndarray, ...], first_epoch: int, key: str) -> float:
    """Mean JCT of ``plan`` completed by the rule ``key`` over the epochs from ``first_epoch`` on."""
    saved = st.copy_plan()
    st.set_plan(plan)
    for a in st.epochs[first_epoch:]:
        a = float(a)
        jobs, fixed = st.open_jobs(a)
        st.set_plan(st.plan(a, jobs[np.lexsort((jobs, st.job_key(jobs, fixed, key)))], fixed, st.rank))
    jend = np.zeros(st.inst.n_jobs)
    np.maximum.at(jend, st.inst.task_job, st.end)
    st.set_plan(saved)
    return float((jend - st.inst.job_arrival).mean())


def pilot_bound(inst: GPUDagInstance, key: str = "srpt", samples: int = 16, sigma_job: float = 0.3,
                sigma_task: float = 0.3, seed: int = 0) -> GPUDagSolution:
    """A *clairvoyant* search bound over the replanning decisions (not an online policy: it looks at
    later arrivals). At each epoch, the rule's plan and ``samples`` randomised plans are each completed
    by the rule over all later epochs; the plan whose completed schedule has the lowest mean JCT is
    kept. Every kept plan is an online decision (it uses only the jobs arrived by then), so the result
    shows what the replanning action space contains; its mean JCT is never above the rule's."""
    if key not in KEYS:
        raise UnknownNameError("GPU-DAG replanning job key", key, KEYS)
    rng = np.random.default_rng(seed)
    st = ReplanState(inst)
    for i, a in enumerate(st.epochs):
        a = float(a)
        jobs, fixed = st.open_jobs(a)
        k = st.job_key(jobs, fixed, key)
        cands = [st.plan(a, jobs[np.lexsort((jobs, k))], fixed, st.rank)]
        cands += [_random_plan(st, a, jobs, k, fixed, rng, sigma_job, sigma_task) for _ in range(samples)]
        vals = [_rule_completion(st, c, i + 1, key) for c in cands]
        st.set_plan(cands[int(np.argmin(vals))])
    return st.solution()


class DagReplanSolver:
    """The replanning rule (or sampling planner) as a :class:`~schedgym.baselines.base.Solver`.

    Online despite the solver interface: each epoch's plan uses only the jobs arrived by then (module
    docstring). Args: ``key`` (``srpt``, ``sjf``, ``fifo``), ``samples`` (0: the deterministic rule),
    ``sigma`` (log-normal noise of the samples), ``seed``, ``name``.
    """

    domains = ("gpudag",)

    def __init__(self, key: str = "srpt", samples: int = 0, sigma: float = 0.3, seed: int = 0,
                 name: str | None = None):
        if key not in KEYS:
            raise UnknownNameError("GPU-DAG replanning job key", key, KEYS)
        if samples < 0 or sigma < 0:
            raise ValueError(f"DagReplanSolver: samples and sigma must be >= 0, got {samples}, {sigma}")
        self.key, self.samples, self.sigma, self.seed = key, int(samples), float(sigma), int(seed)
        self.name = name or f"dag_replan_{key}" + (f"_x{samples}" if samples else "")

    def reset_seed(self, seed: int) -> None:
        self.seed = int(seed)

    def solve(self, instance: GPUDagInstance | str, time_limit_s: float | None = None) -> GPUDagSolution:
        """The whole schedule (``time_limit_s`` is ignored: the planner's work is fixed)."""
        from schedgym.envs.gpudag.instances import load_instance

        inst = load_instance(instance)
        t0 = time.perf_counter()
        sol = replan_schedule(inst, self.key, self.samples, self.sigma, self.seed)
        sol.meta["wall_time_s"] = time.perf_counter() - t0
        sol.meta["policy"] = self.name
        sol.status = "feasible"
        return sol
