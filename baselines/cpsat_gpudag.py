"""OR-Tools CP-SAT interval model for DAG scheduling on heterogeneous devices (static and online).

Units: instance times (execution, transfer, arrival) in the instance's time unit; time limits and
wall times in seconds.

Model (integers; times multiplied by ``scale`` and rounded down, ``scale = 1`` when every time of the
instance is already an integer):

* per task ``t``: ``start_t``, ``end_t`` and, per device ``d`` that can run it, a presence literal
  ``x_td`` with an optional interval ``[start_t, end_t)`` of length ``w(t, d)``; exactly one ``x_td``;
  ``start_t >= arrival of t's job``;
* ``AddNoOverlap`` per device;
* per edge ``(a, b)``: ``start_b >= end_a`` always, and ``start_b >= end_a + comm(a -> b, da, db)``
  enforced by ``x_a,da AND x_b,db`` for each pair of distinct devices;
* objective: the makespan (one job) or the sum of job completion times minus arrivals (several jobs).

Rounding every time down keeps the CP-SAT bound a valid lower bound of the real objective (any real
schedule, scaled and floored, is feasible for the rounded model). The CP-SAT assignment and device
order are re-timed with the exact times (each task as early as its inputs and its device allow), so
the returned schedule is exactly feasible. ``status == "optimal"`` only when CP-SAT proves optimality
and ``scale == 1`` (exact data); otherwise ``"feasible"`` with ``bound``. HEFT's schedule is the hint and
(``fallback=True``, the default) the incumbent of last resort: when CP-SAT finds nothing, or nothing as
good as HEFT, in time, HEFT's schedule is returned with ``status == "fallback_heft"`` and
``meta["solution_source"] == "heft"``, so a results table shows which schedules CP-SAT did not produce.
``fallback=False`` returns CP-SAT's own schedule however it compares (status ``"none"`` when it found
none): the CP-SAT model alone, as its tests check it.
"""

from __future__ import annotations

import math
import time

import numpy as np
from ortools.sat.python import cp_model

from schedgym.baselines.base import check_time_limit
from schedgym.baselines.heft import heft
from schedgym.envs.gpudag.instances import load_instance
from schedgym.envs.gpudag.types import GPUDagInstance, GPUDagSolution


def _is_integral(x: np.ndarray) -> bool:
    x = x[np.isfinite(x)]
    return bool(np.all(np.abs(x - np.round(x)) < 1e-9))


def comm_table(inst: GPUDagInstance) -> np.ndarray:
    """(E, D, D) transfer time of each edge between each pair of devices (0 on the diagonal)."""
    c = inst.latency[None, :, :] + inst.edge_data[:, None, None] * inst.inv_bandwidth[None, :, :]
    idx = np.arange(inst.n_devices)
    c[:, idx, idx] = 0.0
    return c


def choose_scale(inst: GPUDagInstance) -> float:
    """1 for integral data, else a factor that makes a mean task about 1000 integer units."""
    w = np.where(inst.dev_eligible, inst.dev_time, 0.0)
    if _is_integral(w) and _is_integral(comm_table(inst)) and _is_integral(inst.job_arrival):
        return 1.0
    return 1000.0 / max(float(inst.mean_time.mean()), 1e-12)


def retime(inst: GPUDagInstance, device: np.ndarray, order_key: np.ndarray) -> GPUDagSolution:
    """Earliest exact start times for a fixed device assignment and per-device order (by ``order_key``)."""
    T = inst.n_tasks
    prev_on_dev = np.full(T, -1, np.int64)
    for d in range(inst.n_devices):
        tasks = np.flatnonzero(device == d)
        tasks = tasks[np.lexsort((tasks, order_key[tasks]))]
        prev_on_dev[tasks[1:]] = tasks[:-1]
    # topological order of DAG + device chains
    src = np.concatenate([inst.edge_src, prev_on_dev[prev_on_dev >= 0]])
    dst = np.concatenate([inst.edge_dst, np.flatnonzero(prev_on_dev >= 0)])
    indeg = np.bincount(dst, minlength=T)
    succ: list[list[int]] = [[] for _ in range(T)]
    for a, b in zip(src.tolist(), dst.tolist(), strict=False):
        succ[a].append(b)
    stack = [int(t) for t in np.flatnonzero(indeg == 0)]
    start = np.zeros(T)
    end = np.zeros(T)
    w = inst.dev_time[np.arange(T), device]
    preds: list[list[tuple[int, int]]] = [[] for _ in range(T)]
    for e, (a, b) in enumerate(zip(inst.edge_src.tolist(), inst.edge_dst.tolist(), strict=False)):
        preds[b].append((a, e))
    seen = 0
    while stack:
        t = stack.pop()
        seen += 1
        s = float(inst.job_arrival[inst.task_job[t]])
        for a, e in preds[t]:
            s = max(s, end[a] + inst.comm_time(e, int(device[a]), int(device[t])))
        if prev_on_dev[t] >= 0:
            s = max(s, end[prev_on_dev[t]])
        start[t], end[t] = s, s + w[t]
        for b in succ[t]:
            indeg[b] -= 1
            if indeg[b] == 0:
                stack.append(b)
    if seen < T:
        raise RuntimeError("device order contradicts the precedence graph")
    return GPUDagSolution(start=start, device=device.astype(np.int64))


def objective(inst: GPUDagInstance, sol: GPUDagSolution) -> float:
    """Makespan for one job, else the sum of job completion times minus arrivals."""
    end = sol.end(inst)
    if inst.n_jobs == 1:
        return float(end.max())
    jend = np.zeros(inst.n_jobs)
    np.maximum.at(jend, inst.task_job, end)
    return float((jend - inst.job_arrival).sum())


class CPSATGPUDagSolver:
    """CP-SAT reference solver (see the module docstring).

    Args:
        num_workers: CP-SAT search workers.
        hint: start from HEFT's schedule.
        fallback: return HEFT's schedule (status ``"fallback_heft"``) when CP-SAT's is missing or worse.
        name: display name.
    """

    domains = ("gpudag",)

    def __init__(self, num_workers: int = 2, hint: bool = True, fallback: bool = True, name: str = "cpsat_gpudag"):
        self.num_workers = int(num_workers)
        self.hint = hint
        self.fallback = bool(fallback)
        self.name = name

    def solve(self, instance: GPUDagInstance | str, time_limit_s: float | None = 10.0) -> GPUDagSolution:
        time_limit_s = check_time_limit(time_limit_s, self.name)  # <= 0 would return the HEFT hint unsearched
        inst = load_instance(instance)
        t0 = time.perf_counter()
        T, D = inst.n_tasks, inst.n_devices
        scale = choose_scale(inst)
        W = np.where(inst.dev_eligible, np.floor(inst.dev_time * scale + 1e-9), 0).astype(np.int64)
        C = np.floor(comm_table(inst) * scale + 1e-9).astype(np.int64)
        arr = np.floor(inst.job_arrival * scale + 1e-9).astype(np.int64)
        base = heft(inst)
        horizon = int(math.ceil(objective_horizon(inst, base) * scale)) + 1
        m = cp_model.CpModel()
        start = [m.NewIntVar(int(arr[inst.task_job[t]]), horizon, f"s{t}") for t in range(T)]
        end = [m.NewIntVar(0, horizon, f"e{t}") for t in range(T)]
        x: dict[tuple[int, int], cp_model.IntVar] = {}
        per_dev: list[list] = [[] for _ in range(D)]
        for t in range(T):
            lits = []
            for d in np.flatnonzero(inst.dev_eligible[t]):
                d = int(d)
                lit = m.NewBoolVar(f"x{t}_{d}")
                iv = m.NewOptionalIntervalVar(start[t], int(W[t, d]), end[t], lit, f"i{t}_{d}")
                per_dev[d].append(iv)
                x[t, d] = lit
                lits.append(lit)
            m.AddExactlyOne(lits)
        for d in range(D):
            if len(per_dev[d]) > 1:
                m.AddNoOverlap(per_dev[d])
        for e, (a, b) in enumerate(zip(inst.edge_src.tolist(), inst.edge_dst.tolist(), strict=False)):
            m.Add(start[b] >= end[a])
            for da in np.flatnonzero(inst.dev_eligible[a]):
                for db in np.flatnonzero(inst.dev_eligible[b]):
                    c = int(C[e, da, db])
                    if da != db and c > 0:
                        m.Add(start[b] >= end[a] + c).OnlyEnforceIf([x[a, int(da)], x[b, int(db)]])
        if inst.n_jobs == 1:
            obj = m.NewIntVar(0, horizon, "makespan")
            m.AddMaxEquality(obj, end)
            m.Minimize(obj)
        else:
            cj = [m.NewIntVar(0, horizon, f"C{j}") for j in range(inst.n_jobs)]
            for t in range(T):
                m.Add(cj[int(inst.task_job[t])] >= end[t])
            m.Minimize(sum(cj) - int(arr.sum()))
        if self.hint:
            for t in range(T):
                m.AddHint(start[t], int(math.floor(base.start[t] * scale + 1e-9)))
                for d in np.flatnonzero(inst.dev_eligible[t]):
                    m.AddHint(x[t, int(d)], int(base.device[t] == d))
        solver = cp_model.CpSolver()
        if time_limit_s is not None:
            solver.parameters.max_time_in_seconds = float(time_limit_s)
        solver.parameters.num_workers = self.num_workers
        status = solver.Solve(m)
        bound = None
        cp_sol = None
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            dev = np.array([next(d for d in range(D) if (t, d) in x and solver.Value(x[t, d])) for t in range(T)])
            key = np.array([solver.Value(start[t]) for t in range(T)], dtype=np.float64)
            cp_sol = retime(inst, dev, key)
            slack = inst.n_jobs if inst.n_jobs > 1 else 0
            bound = max(0.0, (solver.BestObjectiveBound() - slack) / scale)
        # exact data and a proof: the re-timed schedule is no later than CP-SAT's, hence optimal too
        sol = self.choose_solution(inst, cp_sol, base, proved=status == cp_model.OPTIMAL and scale == 1.0)
        sol.bound = bound
        sol.meta.update(wall_time_s=time.perf_counter() - t0, scale=scale, cpsat_status=solver.StatusName(status),
                        objective=objective(inst, sol) if sol.status != "none" else None)
        return sol

    def choose_solution(self, inst: GPUDagInstance, cpsat: GPUDagSolution | None, heft_sol: GPUDagSolution,
                        proved: bool) -> GPUDagSolution:
        """The schedule :meth:`solve` returns, with its ``status`` and ``meta["solution_source"]``.

        CP-SAT's schedule (``"optimal"`` when ``proved``, else ``"feasible"``) unless it is missing or
        its objective (time units) is above HEFT's: then, with ``fallback``, HEFT's schedule with
        status ``"fallback_heft"``; without, CP-SAT's schedule anyway, or an all ``-1`` schedule with
        status ``"none"`` when CP-SAT found none.
        """
        worse = cpsat is None or objective(inst, cpsat) > objective(inst, heft_sol) + 1e-9
        if worse and self.fallback:
            return GPUDagSolution(start=heft_sol.start.copy(), device=heft_sol.device.copy(), status="fallback_heft",
                                  meta={"solution_source": "heft"})
        if cpsat is None:
            T = inst.n_tasks
            return GPUDagSolution(start=np.full(T, -1.0), device=np.full(T, -1, np.int64), status="none",
                                  meta={"solution_source": None})
        cpsat.status = "optimal" if proved else "feasible"
        cpsat.meta["solution_source"] = "cpsat"
        return cpsat


def objective_horizon(inst: GPUDagInstance, sol: GPUDagSolution) -> float:
    """An upper bound on any useful end time: the hint's makespan, or all tasks in sequence at their
    slowest device plus every transfer after the last arrival, whichever is larger."""
    seq = float(np.where(inst.dev_eligible, inst.dev_time, 0).max(axis=1).sum())
    comm = float(comm_table(inst).max(axis=(1, 2)).sum()) if inst.n_edges else 0.0
    return max(sol.makespan(inst), float(inst.job_arrival.max()) + seq + comm)
