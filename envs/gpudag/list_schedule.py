"""Insertion-based list scheduling state for DAGs on heterogeneous devices.

A partial *static* schedule: tasks are placed one at a time (in any precedence-feasible order) at
the earliest idle gap of a device that starts after the task's inputs have arrived and is long enough
(Topcuoglu, Hariri and Wu, IEEE TPDS 2002). Communication as in the instance (0 on the same device).
Used by the list-scheduling baselines (HEFT, CPOP, PEFT, ...) and by ``GPUDag-v0`` with
``action_mode="task"``. Times are in the instance's time units.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

import numpy as np

from schedgym.envs.gpudag.types import GPUDagInstance, GPUDagSolution


class ListSchedule:
    """A partial static schedule with insertion-based earliest-finish-time placement."""

    def __init__(self, inst: GPUDagInstance, insertion: bool = True):
        self.inst = inst
        self.insertion = insertion
        T, D = inst.n_tasks, inst.n_devices
        self.W = inst.dev_time
        self.lat, self.inv_bw = inst.latency, inst.inv_bandwidth
        self.start = np.full(T, -1.0)
        self.end = np.full(T, np.inf)
        self.device = np.full(T, -1, np.int64)
        self.starts: list[list[float]] = [[] for _ in range(D)]
        self.ends: list[list[float]] = [[] for _ in range(D)]
        self.preds: list[list[tuple[int, float]]] = [[] for _ in range(T)]
        self.succs: list[list[int]] = [[] for _ in range(T)]
        for a, b, x in zip(inst.edge_src.tolist(), inst.edge_dst.tolist(), inst.edge_data.tolist(), strict=False):
            self.preds[b].append((a, x))
            self.succs[a].append(b)
        self.missing = np.bincount(inst.edge_dst, minlength=T).astype(np.int64)
        self.arrival = inst.job_arrival[inst.task_job]
        self.elig_devs = [np.flatnonzero(inst.dev_eligible[t]) for t in range(T)]

    def initial_ready(self) -> list[int]:
        return [int(t) for t in np.flatnonzero(self.missing == 0)]

    def data_ready(self, t: int) -> np.ndarray:
        """(D,) arrival time of ``t``'s inputs on each device (all predecessors placed)."""
        r = np.full(self.inst.n_devices, float(self.arrival[t]))
        for p, x in self.preds[t]:
            dp = self.device[p]
            arr = self.end[p] + self.lat[dp] + x * self.inv_bw[dp]
            arr[dp] = self.end[p]
            np.maximum(r, arr, out=r)
        return r

    def slot(self, d: int, ready: float, dur: float) -> float:
        """Earliest start >= ready on device d with an idle gap of length ``dur``."""
        starts, ends = self.starts[d], self.ends[d]
        n = len(starts)
        if n == 0:
            return ready
        if not self.insertion:
            return max(ready, ends[-1])
        k = bisect_right(ends, ready)
        t = ready
        while k < n and t + dur > starts[k]:
            t = max(t, ends[k])
            k += 1
        return t

    def est_eft(self, t: int, devices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(D,) earliest start and finish of ``t`` on each device (inf where not eligible or not asked)."""
        D = self.inst.n_devices
        est = np.full(D, np.inf)
        dr = self.data_ready(t)
        for d in (self.elig_devs[t] if devices is None else devices):
            est[d] = self.slot(int(d), float(dr[d]), float(self.W[t, d]))
        return est, est + self.W[t]

    def place(self, t: int, d: int, s: float) -> list[int]:
        """Place task t on device d at s; returns the successors that became ready."""
        e = s + float(self.W[t, d])
        k = bisect_right(self.starts[d], s)
        # keep zero-length tasks after equal starts; the lists stay sorted by start and by end
        self.starts[d].insert(k, s)
        self.ends[d].insert(k, e)
        self.start[t], self.end[t], self.device[t] = s, e, d
        new = []
        for c in self.succs[t]:
            self.missing[c] -= 1
            if self.missing[c] == 0:
                new.append(c)
        return new

    def solution(self, **meta: Any) -> GPUDagSolution:
        return GPUDagSolution(start=self.start.copy(), device=self.device.copy(), meta=dict(meta))
