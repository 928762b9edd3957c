"""Independent feasibility check of a GPU-DAG schedule.

Written from the problem definition only (it imports no scheduling code and none of the instance's
cached helpers): every task runs on one existing device whose type may run it, for exactly
``exec_time[task, type]``, starts no earlier than its job's arrival nor before the data of each
predecessor has arrived (predecessor end + transfer time, 0 on the same device, else link latency +
data / link bandwidth), and no device runs two tasks at once.
"""

from __future__ import annotations

import math

import numpy as np

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.gpudag.types import GPUDagInstance, GPUDagSolution

REL_TOL = 1e-9


def _tol(x: float) -> float:
    return REL_TOL * max(1.0, abs(x))


def validate(instance: GPUDagInstance, solution: GPUDagSolution) -> None:
    """Raise :class:`InfeasibleSolution` naming the first violated constraint; return None if feasible."""
    name = instance.name
    T = instance.exec_time.shape[0]
    D = instance.device_type.shape[0]
    start = np.asarray(solution.start, dtype=np.float64)
    dev = np.asarray(solution.device)
    if start.shape != (T,) or dev.shape != (T,):
        raise InfeasibleSolution(f"{name}: solution has {start.shape}/{dev.shape} start/device entries, "
                                 f"expected ({T},) each")
    end = [0.0] * T
    for t in range(T):
        s, d = float(start[t]), int(dev[t])
        if not math.isfinite(s) or s < 0:
            raise InfeasibleSolution(f"{name}: task {t} is not scheduled (start {s})")
        if not 0 <= d < D:
            raise InfeasibleSolution(f"{name}: task {t} runs on device {d}, the cluster has devices 0..{D - 1}")
        k = int(instance.device_type[d])
        if not instance.eligible[t, k]:
            raise InfeasibleSolution(f"{name}: task {t} runs on device {d} of type {k}, which cannot run it")
        arrival = float(instance.job_arrival[int(instance.task_job[t])])
        if s < arrival - _tol(arrival):
            raise InfeasibleSolution(f"{name}: task {t} starts at {s} before its job arrives at {arrival}")
        end[t] = s + float(instance.exec_time[t, k])
    for e in range(instance.edge_src.shape[0]):
        a, b = int(instance.edge_src[e]), int(instance.edge_dst[e])
        da, db = int(dev[a]), int(dev[b])
        comm = 0.0
        if da != db:
            comm = float(instance.link_latency[da, db]) + float(instance.edge_data[e]) / float(instance.link_bandwidth[da, db])
        need = end[a] + comm
        if float(start[b]) < need - _tol(need):
            raise InfeasibleSolution(
                f"{name}: edge {e}: task {b} on device {db} starts at {float(start[b])} before the data of task "
                f"{a} (device {da}, ends {end[a]}, transfer {comm}) arrives at {need}")
    per_dev: dict[int, list[tuple[float, float, int]]] = {}
    for t in range(T):
        if end[t] > float(start[t]):
            per_dev.setdefault(int(dev[t]), []).append((float(start[t]), end[t], t))
    for d, items in per_dev.items():
        items.sort()
        for (s1, e1, t1), (s2, e2, t2) in zip(items, items[1:], strict=False):
            if s2 < e1 - _tol(e1):
                raise InfeasibleSolution(
                    f"{name}: device {d} runs tasks {t1} [{s1}, {e1}) and {t2} [{s2}, {e2}) at the same time")
