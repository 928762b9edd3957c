"""Fast core of the job-shop environments: a partial schedule with incremental bookkeeping.

It knows nothing of Gymnasium. Two schedule-generation schemes are supported:

* ``"active"`` (L2D's permissible left shift): any job's next operation may be chosen; it is placed
  in the earliest idle gap of its machine that starts no earlier than the job's ready time and is
  long enough, else appended after the machine's last operation. Scheduled operations never move.
* ``"non_delay"`` (Giffler-Thompson style, what the published dispatching-rule figures use): let t*
  be the earliest start time over all jobs' next operations (on any eligible machine); only the
  (operation, machine) pairs that can start at t* are candidates. Operations are appended.

All times are integers in the instance's time units.
"""

from __future__ import annotations

import copy
from bisect import bisect_right

import numpy as np

from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution

SCHEMES = ("active", "non_delay")
_INT_MAX = np.iinfo(np.int64).max


class JobShopState:
    """Partial schedule of a :class:`JobShopInstance` under a schedule-generation scheme."""

    def __init__(self, instance: JobShopInstance, scheme: str = "active"):
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        self.instance = instance
        self.scheme = scheme
        inst = instance
        self.n_jobs, self.n_machines, self.n_ops = inst.n_jobs, inst.n_machines, inst.n_ops
        self.flexible = inst.is_flexible
        self.proc = inst.proc
        self.eligible = inst.eligible
        self.min_proc = inst.min_proc.astype(np.int64)
        self.job_ptr = inst.job_ptr
        self.job_first = inst.job_ptr[:-1]
        self.job_last = inst.job_ptr[1:] - 1  # may be < job_first for a job with no operations
        self.job_end = inst.job_ptr[1:]
        self.op_job = inst.op_job
        self.op_machine = inst.op_machine  # -1 for flexible ops
        # cumsum of min processing times, with a leading 0: C[k] = sum(min_proc[:k])
        self.cum = np.concatenate([[0], np.cumsum(self.min_proc)]).astype(np.int64)
        self.reset()

    # ------------------------------------------------------------------------------------------
    def reset(self) -> None:
        inst = self.instance
        self.next_op = self.job_first.copy()
        self.job_ready = inst.release.astype(np.int64).copy()
        self.mach_ready = np.zeros(self.n_machines, dtype=np.int64)
        self.start = np.full(self.n_ops, -1, dtype=np.int64)
        self.end = np.full(self.n_ops, -1, dtype=np.int64)
        self.assigned = np.full(self.n_ops, -1, dtype=np.int64)
        self.mach_next = np.full(self.n_ops, -1, dtype=np.int64)
        self.mach_prev = np.full(self.n_ops, -1, dtype=np.int64)
        self.m_starts: list[list[int]] = [[] for _ in range(self.n_machines)]
        self.m_ends: list[list[int]] = [[] for _ in range(self.n_machines)]
        self.m_ops: list[list[int]] = [[] for _ in range(self.n_machines)]
        # lower bound of each operation's completion time (L2D): actual end once scheduled,
        # otherwise predecessor's bound + shortest processing time.
        rel = self.job_ready[self.op_job]
        base = self.cum[self.job_first][self.op_job]
        self.lb = (rel + self.cum[1:] - base).astype(np.int64)
        self.n_scheduled = 0
        self.last_op = -1
        self._est = None  # cache of earliest_start() for the current state

    def clone(self) -> JobShopState:
        """An independent copy (for look-ahead search)."""
        new = copy.copy(self)
        for name in ("next_op", "job_ready", "mach_ready", "start", "end", "assigned", "mach_next",
                     "mach_prev", "lb"):
            setattr(new, name, getattr(self, name).copy())
        new.m_starts = [list(x) for x in self.m_starts]
        new.m_ends = [list(x) for x in self.m_ends]
        new.m_ops = [list(x) for x in self.m_ops]
        return new

    # ------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.n_scheduled == self.n_ops

    def active_jobs(self) -> np.ndarray:
        """(J,) bool: jobs with unscheduled operations."""
        return self.next_op < self.job_end

    def max_lb(self) -> int:
        """Current lower bound of the makespan (max over jobs of the last operation's bound)."""
        return int(self.lb[self.job_last].max()) if self.n_ops else 0

    def remaining_work(self) -> np.ndarray:
        """(J,) int64 sum of the shortest processing times of each job's unscheduled operations."""
        return self.cum[self.job_end] - self.cum[self.next_op]

    def remaining_ops(self) -> np.ndarray:
        """(J,) int64 number of unscheduled operations of each job."""
        return self.job_end - self.next_op

    def next_op_clipped(self) -> np.ndarray:
        """(J,) next operation index of each job, clipped to a valid index for finished jobs."""
        return np.minimum(self.next_op, self.n_ops - 1)

    def pair_est(self) -> np.ndarray:
        """(J, M) earliest append start time of each job's next operation on each machine;
        a large value where not eligible or the job is finished."""
        nxt = self.next_op_clipped()
        est = np.maximum(self.job_ready[:, None], self.mach_ready[None, :])
        ok = self.eligible[nxt] & self.active_jobs()[:, None]
        return np.where(ok, est, np.iinfo(np.int64).max)

    def earliest_start(self) -> int:
        """Earliest time (time units) at which any unscheduled operation can start by appending it
        to a machine (the decision time of the non-delay scheme); 0 for a complete schedule."""
        if self._est is not None:
            return self._est
        if self.done:
            est = 0
        elif self.flexible:
            est = int(self.pair_est().min())
        else:
            active = self.active_jobs()
            nm = self.op_machine[self.next_op_clipped()[active]]
            est = int(np.maximum(self.job_ready[active], self.mach_ready[nm]).min())
        self._est = est
        return est

    def pair_mask(self) -> np.ndarray:
        """(J, M) bool: (job, machine) pairs that may be scheduled now under the scheme."""
        if self.done:
            return np.zeros((self.n_jobs, self.n_machines), dtype=bool)
        nxt = self.next_op_clipped()
        ok = self.eligible[nxt] & self.active_jobs()[:, None]
        if self.scheme == "active":
            return ok
        est = self.pair_est()
        return ok & (est == est.min())

    def job_mask(self) -> np.ndarray:
        """(J,) bool: jobs whose next operation may be scheduled now (classic JSSP action mask)."""
        active = self.next_op < self.job_end
        if self.scheme == "active" or self.done:
            return active
        if self.flexible:
            return self.pair_mask().any(axis=1)
        nm = self.op_machine[self.next_op_clipped()]
        est = np.maximum(self.job_ready, self.mach_ready[nm])
        est = np.where(active, est, _INT_MAX)
        t = est.min()
        self._est = int(t)  # the same minimum as earliest_start(): over the active jobs
        return est == t

    # ------------------------------------------------------------------------------------------
    def start_time(self, job: int, machine: int) -> tuple[int, int]:
        """(start time, insertion position) the scheme would give ``job``'s next op on ``machine``."""
        o = int(self.next_op[job])
        d = int(self.proc[o, machine])
        r = int(self.job_ready[job])
        starts, ends = self.m_starts[machine], self.m_ends[machine]
        n = len(starts)
        if self.scheme != "active" or n == 0:
            return max(r, int(self.mach_ready[machine])), n
        k = bisect_right(ends, r)
        t = r
        while k < n and t + d > starts[k]:
            t = max(t, ends[k])
            k += 1
        return t, k

    def schedule(self, job: int, machine: int | None = None) -> tuple[int, int]:
        """Schedule ``job``'s next operation on ``machine`` (the op's only machine when None).

        The caller checks the mask; this method assumes the pair is a candidate.
        Returns (operation index, start time).
        """
        o = int(self.next_op[job])
        if machine is None:
            machine = int(self.op_machine[o])
        m = int(machine)
        d = int(self.proc[o, m])
        t, pos = self.start_time(job, m)
        e = t + d
        ops = self.m_ops[m]
        prev = ops[pos - 1] if pos > 0 else -1
        nxt = ops[pos] if pos < len(ops) else -1
        self.m_starts[m].insert(pos, t)
        self.m_ends[m].insert(pos, e)
        ops.insert(pos, o)
        self.mach_prev[o] = prev
        self.mach_next[o] = nxt
        if prev >= 0:
            self.mach_next[prev] = o
        if nxt >= 0:
            self.mach_prev[nxt] = o
        self.start[o] = t
        self.end[o] = e
        self.assigned[o] = m
        self.job_ready[job] = e
        if e > self.mach_ready[m]:
            self.mach_ready[m] = e
        self.next_op[job] = o + 1
        je = int(self.job_end[job])
        self.lb[o] = e
        if o + 1 < je:
            self.lb[o + 1:je] = e + self.cum[o + 2:je + 1] - self.cum[o + 1]
        self.n_scheduled += 1
        self.last_op = o
        self._est = None
        return o, t

    def solution(self) -> JobShopSolution:
        """The schedule built so far (complete when :attr:`done`)."""
        return JobShopSolution(start=self.start.copy(), machine=self.assigned.copy(),
                               meta={"scheme": self.scheme})

    def estimated_tardiness(self) -> float:
        """Weighted total tardiness of the jobs' completion-time lower bounds (0 without due dates)."""
        due = self.instance.due
        if due is None:
            return 0.0
        tard = np.maximum(0, self.lb[self.job_last] - due)
        w = self.instance.weight
        return float(tard.sum() if w is None else (w * tard).sum())
