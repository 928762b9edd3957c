"""``B`` partial schedules of one classic job-shop instance under the non-delay scheme, stepped together.

A numpy-vectorised counterpart of :class:`~schedgym.envs.jobshop.state.JobShopState` for samplers
that run many episodes of one instance in lock-step (one row per episode). Only what the
non-delay scheme needs: every operation is appended to its machine at
``max(job ready time, machine ready time)``, and the candidates are the jobs whose next operation can
start at the earliest such time. It reproduces :class:`JobShopState` (``scheme="non_delay"``) on a
classic (non-flexible) instance: the same masks, start times, completion bounds and solutions
(``tests/test_jobshop_sampling.py`` checks it step by step). All times are integers in the
instance's time units.
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution

_INT_MAX = np.iinfo(np.int64).max


class BatchJobShopState:
    """``batch`` independent non-delay partial schedules of one classic instance.

    Arrays (row ``b`` is episode ``b``): ``next_op`` (B, J), ``job_ready`` (B, J), ``mach_ready``
    (B, M), ``start``/``end`` (B, O) (-1 while unscheduled), ``mach_prev``/``mach_next`` (B, O) (the
    neighbours of each scheduled operation in its machine's sequence, -1 for none), ``n_scheduled``
    (B,), ``job_sequence`` (B, O) (the job chosen at each step, -1 for steps not taken yet: the
    episode's actions), ``mach_work``/``mach_count`` (B, M) (the unscheduled processing time and operation count of
    each machine: the machine-load inputs of :meth:`candidate_features`).
    """

    def __init__(self, instance: JobShopInstance, batch: int):
        if instance.is_flexible:
            raise ValueError(f"{instance.name}: BatchJobShopState handles classic instances only "
                             "(one eligible machine per operation)")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        inst = instance
        self.instance = inst
        self.batch = int(batch)
        self.n_jobs, self.n_machines, self.n_ops = inst.n_jobs, inst.n_machines, inst.n_ops
        self.op_job = np.asarray(inst.op_job, dtype=np.int64)
        self.op_machine = np.asarray(inst.op_machine, dtype=np.int64)
        self.op_proc = inst.proc[np.arange(self.n_ops), self.op_machine].astype(np.int64)
        self.job_first = inst.job_ptr[:-1].astype(np.int64)
        self.job_end = inst.job_ptr[1:].astype(np.int64)
        self.job_last = self.job_end - 1
        # C[k] = sum of the processing times of operations 0 .. k-1 (as JobShopState.cum)
        self.cum = np.concatenate([[0], np.cumsum(inst.min_proc.astype(np.int64))]).astype(np.int64)
        B, J, M, O = self.batch, self.n_jobs, self.n_machines, self.n_ops
        self.next_op = np.broadcast_to(self.job_first, (B, J)).copy()
        self.job_ready = np.broadcast_to(inst.release.astype(np.int64), (B, J)).copy()
        self.mach_ready = np.zeros((B, M), dtype=np.int64)
        self.mach_last = np.full((B, M), -1, dtype=np.int64)
        self.start = np.full((B, O), -1, dtype=np.int64)
        self.end = np.full((B, O), -1, dtype=np.int64)
        self.mach_prev = np.full((B, O), -1, dtype=np.int64)
        self.mach_next = np.full((B, O), -1, dtype=np.int64)
        self.n_scheduled = np.zeros(B, dtype=np.int64)
        self.job_sequence = np.full((B, O), -1, dtype=np.int64)
        self.mach_work = np.broadcast_to(np.bincount(self.op_machine, weights=self.op_proc, minlength=M)
                                         .astype(np.int64), (B, M)).copy()
        self.mach_count = np.broadcast_to(np.bincount(self.op_machine, minlength=M).astype(np.int64), (B, M)).copy()
        self._rows = np.arange(B)

    @property
    def done(self) -> bool:
        """Every episode is complete (they all take ``n_ops`` steps)."""
        return bool((self.n_scheduled == self.n_ops).all())

    def _est(self) -> np.ndarray:
        """(B, J) earliest append start of each job's next operation; INT_MAX for finished jobs."""
        active = self.next_op < self.job_end
        nxt = np.minimum(self.next_op, self.n_ops - 1)
        est = np.maximum(self.job_ready, np.take_along_axis(self.mach_ready, self.op_machine[nxt], axis=1))
        return np.where(active, est, _INT_MAX)

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mask (B, J) bool, now (B,) int64)``: the jobs whose next operation may be scheduled
        (those that can start at the earliest start time) and that time (the decision time)."""
        est = self._est()
        now = est.min(axis=1)
        mask = (est == now[:, None]) & (est < _INT_MAX)
        return mask, now

    def lb(self, rows: np.ndarray | None = None) -> np.ndarray:
        """(b, O) int64 lower bound of each operation's completion time (L2D): its end once
        scheduled, else its job's ready time plus the shortest processing times up to it."""
        r = self._rows if rows is None else rows
        nxt = self.next_op[r]  # (b, J)
        unsched = (self.job_ready[r] - self.cum[nxt])[:, self.op_job] + self.cum[1:][None, :]
        end = self.end[r]
        return np.where(end >= 0, end, unsched)

    def max_lb(self, rows: np.ndarray | None = None) -> np.ndarray:
        """(b,) int64 makespan lower bound: max over jobs of the last operation's bound."""
        r = self._rows if rows is None else rows
        last = self.job_last
        end = self.end[r][:, last]
        unsched = self.job_ready[r] + self.cum[last + 1][None, :] - self.cum[self.next_op[r]]
        return np.where(end >= 0, end, unsched).max(axis=1)

    def schedule(self, jobs: np.ndarray) -> None:
        """Schedule job ``jobs[b]``'s next operation in every episode ``b`` (the caller checks the
        masks; every episode must still be running)."""
        jobs = np.asarray(jobs, dtype=np.int64)
        r = self._rows
        o = self.next_op[r, jobs]
        m = self.op_machine[o]
        t = np.maximum(self.job_ready[r, jobs], self.mach_ready[r, m])
        e = t + self.op_proc[o]
        prev = self.mach_last[r, m]
        has_prev = prev >= 0
        self.mach_next[r[has_prev], prev[has_prev]] = o[has_prev]
        self.mach_prev[r, o] = prev
        self.mach_last[r, m] = o
        self.start[r, o] = t
        self.end[r, o] = e
        self.job_ready[r, jobs] = e
        self.mach_ready[r, m] = np.maximum(self.mach_ready[r, m], e)
        self.next_op[r, jobs] = o + 1
        self.job_sequence[r, self.n_scheduled] = jobs
        self.n_scheduled += 1
        self.mach_work[r, m] -= self.op_proc[o]
        self.mach_count[r, m] -= 1

    def candidate_features(self, rows: np.ndarray, mask: np.ndarray, now: np.ndarray,
                           time_scale: float) -> np.ndarray:
        """``(K, N_CANDIDATE_FEATURES)`` float32 context features of the valid actions of episodes
        ``rows``, one row per ``True`` of ``mask`` (b, J) in ``np.nonzero`` order; ``now`` (b,) the
        rows' decision times, ``time_scale`` the env's (time units). The same numbers as
        :func:`schedgym.envs.jobshop.candidate_features.candidate_features` (the env's ``action_attr``
        with ``candidate_features=True``) computes for each episode, in the same float64 arithmetic
        (the per-machine sums are integers here, maintained as operations are scheduled)."""
        from schedgym.envs.jobshop.candidate_features import N_CANDIDATE_FEATURES

        J, M = self.n_jobs, self.n_machines
        bi, jobs = np.nonzero(mask)
        K = bi.size
        out = np.zeros((K, N_CANDIDATE_FEATURES), dtype=np.float32)
        if not K:
            return out
        b = mask.shape[0]
        ts = float(time_scale)
        r = rows[bi]
        o = self.next_op[r, jobs]
        mach = self.op_machine[o]
        p = self.op_proc[o].astype(np.float64)
        mwork_all = self.mach_work[rows]  # (b, M) int64
        mwork = mwork_all[bi, mach].astype(np.float64)
        mcount = self.mach_count[r, mach].astype(np.float64)
        est = np.maximum(self.job_ready[r, jobs], self.mach_ready[r, mach]).astype(np.float64)
        t = now[bi]
        rem_work = (self.cum[self.job_end[jobs]] - self.cum[o]).astype(np.float64)
        rem_ops = (self.job_end[jobs] - o).astype(np.float64)
        slot = bi * M + mach
        cand_on = np.bincount(slot, minlength=b * M).astype(np.float64)[slot]
        pmin = np.full(b * M, np.inf)
        np.minimum.at(pmin, slot, p)
        rmax = np.zeros(b)
        np.maximum.at(rmax, bi, rem_work)
        wmax = mwork_all.max(axis=1).astype(np.float64)
        has_next = o + 1 < self.job_end[jobs]
        nmach = self.op_machine[np.where(has_next, o + 1, 0)]
        feats = np.stack([
            p / max(1, self.instance.max_proc),
            (est - t) / ts,
            (est + p - t) / ts,
            rem_ops / max(1, M),
            mwork / ts,
            mcount / max(1, J),
            cand_on / max(1, J),
            rem_work / np.maximum(1.0, rmax[bi]),
            mwork / np.maximum(1.0, wmax[bi]),
            np.minimum(p / np.maximum(1.0, pmin[slot]) - 1.0, 4.0),
            np.where(has_next, mwork_all[bi, nmach] / ts, 0.0),
            np.where(has_next, np.maximum(self.mach_ready[r, nmach] - t, 0) / ts, 0.0),
        ], axis=-1)
        out[:] = feats
        return out

    def solution(self, b: int) -> JobShopSolution:
        """Episode ``b``'s schedule (complete once :attr:`done`), as ``JobShopState.solution()``."""
        machine = np.where(self.start[b] >= 0, self.op_machine, -1)
        return JobShopSolution(start=self.start[b].copy(), machine=machine, meta={"scheme": "non_delay"})
