"""Fast event-driven core of the GPU-DAG environment (no Gymnasium).

Simulated time ``now`` advances from event to event (a task completion or a job arrival). At a
decision point the candidates are the (ready task, idle device) pairs:

* a task is *ready* when its job has arrived, every predecessor has finished (end <= now) and it is
  not assigned yet;
* a device is *idle* when its last assigned task has ended (``busy_until <= now``);
* assigning task t to device d starts it at ``max(now, data arrival on d)``, where data from a
  predecessor p arrives at ``end[p] + comm(p -> t, device[p], d)`` (0 on the same device); the device
  is reserved from now until the task ends.

After an assignment the state stays at ``now`` while candidate pairs remain, else advances to the
next event. :meth:`wait` skips to the next event even though candidates exist (to keep a device free
for a task that is not ready yet). The episode is over when every task is assigned; all end times
are then known. Times in the instance's time units.
"""

from __future__ import annotations

import heapq

import numpy as np

from schedgym.envs.gpudag.types import GPUDagInstance, GPUDagSolution


class GPUDagState:
    """Partial schedule of a :class:`GPUDagInstance` under event-driven dispatching."""

    def __init__(self, instance: GPUDagInstance):
        inst = instance
        self.instance = inst
        self.n_tasks, self.n_devices, self.n_jobs = inst.n_tasks, inst.n_devices, inst.n_jobs
        self.W = inst.dev_time  # (T, D) inf where not eligible
        self.eligible = inst.dev_eligible  # (T, D)
        self.lat = inst.latency
        self.inv_bw = inst.inv_bandwidth
        src, dst, data = inst.edge_src, inst.edge_dst, inst.edge_data
        self._pred_lists: list[list[tuple[int, float]]] = [[] for _ in range(self.n_tasks)]
        self._succ_lists: list[list[int]] = [[] for _ in range(self.n_tasks)]
        for a, b, x in zip(src.tolist(), dst.tolist(), data.tolist(), strict=False):
            self._pred_lists[b].append((a, x))
            self._succ_lists[a].append(b)
        self.indeg = np.bincount(dst, minlength=self.n_tasks).astype(np.int64)
        self._job_tasks = [np.flatnonzero(inst.task_job == j) for j in range(self.n_jobs)]
        self._job_sources = [[int(t) for t in tasks if self.indeg[t] == 0] for tasks in self._job_tasks]
        self._job_size = np.array([len(x) for x in self._job_tasks], np.int64)
        self._arrival_order = np.argsort(inst.job_arrival, kind="stable")
        self.reset()

    # ------------------------------------------------------------------------------------------
    def reset(self) -> None:
        T, D, J = self.n_tasks, self.n_devices, self.n_jobs
        self.now = 0.0
        self.start = np.full(T, -1.0)
        self.end = np.full(T, np.inf)
        self.device = np.full(T, -1, np.int64)
        self.busy_until = np.zeros(D)
        self.waiting_preds = self.indeg.copy()
        self.is_ready = np.zeros(T, dtype=bool)
        self.finished = np.zeros(T, dtype=bool)
        self.arrived = np.zeros(J, dtype=bool)
        self.job_unassigned = self._job_size.copy()
        self.job_end = np.full(J, -np.inf)
        self._ready: set[int] = set()
        self._events: list[tuple[float, int]] = []
        self._next_arrival = 0
        self.n_assigned = 0
        self.n_decisions = 0
        self._release(0.0)
        self._settle()

    # ------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.n_assigned == self.n_tasks

    def ready_tasks(self) -> np.ndarray:
        """Sorted ready task ids."""
        return np.array(sorted(self._ready), dtype=np.int64)

    def idle_devices(self) -> np.ndarray:
        """(D,) bool devices free at ``now``."""
        return self.busy_until <= self.now

    def pair_mask(self) -> np.ndarray:
        """(T, D) bool: the (task, device) pairs that may be assigned now."""
        mask = np.zeros((self.n_tasks, self.n_devices), dtype=bool)
        if self._ready:
            r = self.ready_tasks()
            mask[r] = self.eligible[r] & self.idle_devices()[None, :]
        return mask

    def has_candidates(self) -> bool:
        if not self._ready:
            return False
        r = self.ready_tasks()
        return bool((self.eligible[r] & self.idle_devices()[None, :]).any())

    def no_regret_mask(self) -> np.ndarray:
        """(T,) bool: the ready tasks whose earliest finish over all their eligible devices (a busy
        device counted from when it frees: ``max(now, busy_until, data arrival) + time``) is reached
        on an idle device, i.e. starting them now loses nothing against waiting for a busy device."""
        out = np.zeros(self.n_tasks, dtype=bool)
        idle = self.idle_devices()
        for t in self._ready:
            dr = np.maximum(self.now, self.data_ready_all(t))
            el = self.eligible[t]
            fin_idle = np.where(el & idle, dr + self.W[t], np.inf).min()
            out[t] = np.isfinite(fin_idle) and fin_idle <= np.where(el, np.maximum(dr, self.busy_until) + self.W[t],
                                                                    np.inf).min()
        return out

    def can_wait(self) -> bool:
        """True when a later event exists (a running task or a job still to arrive)."""
        return not self.done and (bool(self._events) or self._next_arrival < self.n_jobs)

    def next_event_time(self) -> float:
        t = np.inf
        if self._events:
            t = self._events[0][0]
        if self._next_arrival < self.n_jobs:
            t = min(t, float(self.instance.job_arrival[self._arrival_order[self._next_arrival]]))
        return t

    def data_ready(self, task: int, device: int) -> float:
        """Time at which every input of ``task`` is on ``device`` (predecessors must be assigned)."""
        t = float(self.instance.job_arrival[self.instance.task_job[task]])
        for p, x in self._pred_lists[task]:
            dp = self.device[p]
            arr = self.end[p] if dp == device else self.end[p] + self.lat[dp, device] + x * self.inv_bw[dp, device]
            if arr > t:
                t = arr
        return t

    def data_ready_all(self, task: int) -> np.ndarray:
        """(D,) data arrival time of ``task``'s inputs on every device."""
        t = np.full(self.n_devices, float(self.instance.job_arrival[self.instance.task_job[task]]))
        for p, x in self._pred_lists[task]:
            dp = self.device[p]
            arr = self.end[p] + self.lat[dp] + x * self.inv_bw[dp]
            arr[dp] = self.end[p]
            np.maximum(t, arr, out=t)
        return t

    def start_time(self, task: int, device: int) -> float:
        """Start time that assigning ``task`` to ``device`` now would give."""
        return max(self.now, self.data_ready(task, device))

    def finish_times(self, task: int) -> np.ndarray:
        """(D,) finish time of ``task`` on each device if assigned now (inf where not eligible)."""
        return np.maximum(self.now, self.data_ready_all(task)) + self.W[task]

    # ------------------------------------------------------------------------------------------
    def assign(self, task: int, device: int) -> float:
        """Assign a ready task to an idle eligible device (the caller checks); returns its start time."""
        task, device = int(task), int(device)
        s = self.start_time(task, device)
        e = s + float(self.W[task, device])
        self.start[task] = s
        self.end[task] = e
        self.device[task] = device
        self.busy_until[device] = e
        self._ready.discard(task)
        self.is_ready[task] = False
        heapq.heappush(self._events, (e, task))
        j = int(self.instance.task_job[task])
        self.job_unassigned[j] -= 1
        if e > self.job_end[j]:
            self.job_end[j] = e
        self.n_assigned += 1
        self.n_decisions += 1
        self._settle()
        return s

    def wait(self) -> None:
        """Advance to the next event (the caller checks :meth:`can_wait`)."""
        self.n_decisions += 1
        self._advance()
        self._settle()

    # ------------------------------------------------------------------------------------------
    def _release(self, t: float) -> None:
        arr = self.instance.job_arrival
        while self._next_arrival < self.n_jobs and arr[self._arrival_order[self._next_arrival]] <= t:
            j = int(self._arrival_order[self._next_arrival])
            self.arrived[j] = True
            for task in self._job_sources[j]:
                self._ready.add(task)
                self.is_ready[task] = True
            self._next_arrival += 1

    def _advance(self) -> None:
        t1 = self.next_event_time()
        if not np.isfinite(t1):
            raise RuntimeError("no further event: the schedule cannot progress")
        self.now = float(t1)
        ev = self._events
        while ev and ev[0][0] <= t1:
            _, task = heapq.heappop(ev)
            self.finished[task] = True
            for s in self._succ_lists[task]:
                self.waiting_preds[s] -= 1
                if self.waiting_preds[s] == 0 and self.arrived[self.instance.task_job[s]]:
                    self._ready.add(s)
                    self.is_ready[s] = True
        self._release(t1)

    def _settle(self) -> None:
        """Advance until a decision exists or every task is assigned."""
        while not self.done and not self.has_candidates():
            self._advance()

    # ------------------------------------------------------------------------------------------
    def time_in_system(self, t0: float, t1: float) -> float:
        """Sum over jobs of the time in [t0, t1) they spend in the system (arrived, not complete);
        a job with unassigned tasks counts as not complete."""
        a = self.instance.job_arrival
        c = np.where(self.job_unassigned > 0, np.inf, self.job_end)
        lo = np.maximum(a, t0)
        hi = np.minimum(c, t1)
        return float(np.clip(hi - lo, 0.0, None).sum())

    def jobs_in_system(self) -> int:
        c = np.where(self.job_unassigned > 0, np.inf, self.job_end)
        return int((self.arrived & (c > self.now)).sum())

    def makespan(self) -> float:
        """Largest end time among assigned tasks (the makespan once :attr:`done`)."""
        return float(self.end[self.device >= 0].max()) if self.n_assigned else 0.0

    def solution(self) -> GPUDagSolution:
        return GPUDagSolution(start=self.start.copy(), device=self.device.copy())
