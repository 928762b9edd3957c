"""Graph quantities of Topcuoglu et al. (2002) on a :class:`GPUDagInstance`.

* upward rank ``rank_u(i) = w̄_i + max_{k in succ(i)} (c̄_ik + rank_u(k))`` (exit: ``w̄_exit``);
* downward rank ``rank_d(i) = max_{p in pred(i)} (rank_d(p) + w̄_p + c̄_pi)`` (entry: 0);
* the minimum-time critical path (no communication) that SLR divides by.

``w̄`` is the mean execution time over the devices that can run the task, ``c̄`` the mean transfer
time over ordered pairs of distinct devices (time units).
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.gpudag.types import GPUDagInstance


def upward_rank(inst: GPUDagInstance, w: np.ndarray | None = None, c: np.ndarray | None = None) -> np.ndarray:
    """(T,) float64 upward rank of every task (time units)."""
    w = inst.mean_time if w is None else w
    c = inst.mean_comm if c is None else c
    rank = np.zeros(inst.n_tasks)
    ptr, se, dst = inst.succ_ptr, inst.succ_edge, inst.edge_dst
    for t in inst.topo_order[::-1]:
        es = se[ptr[t]:ptr[t + 1]]
        rank[t] = w[t] + (float((c[es] + rank[dst[es]]).max()) if len(es) else 0.0)
    return rank


def downward_rank(inst: GPUDagInstance, w: np.ndarray | None = None, c: np.ndarray | None = None) -> np.ndarray:
    """(T,) float64 downward rank of every task (time units)."""
    w = inst.mean_time if w is None else w
    c = inst.mean_comm if c is None else c
    rank = np.zeros(inst.n_tasks)
    ptr, pe, src = inst.pred_ptr, inst.pred_edge, inst.edge_src
    for t in inst.topo_order:
        es = pe[ptr[t]:ptr[t + 1]]
        if len(es):
            p = src[es]
            rank[t] = float((rank[p] + w[p] + c[es]).max())
    return rank


def min_critical_path(inst: GPUDagInstance, job: int | None = None) -> float:
    """Length of the longest path with node weights ``min_j w(i, j)`` and no communication (SLR's
    denominator); restricted to one job's tasks when ``job`` is given."""
    w = inst.min_time
    if inst.n_tasks == 0:
        return 0.0
    zero = np.zeros(inst.n_edges)
    lp = upward_rank(inst, w=w, c=zero)
    if job is None:
        return float(lp.max())
    return float(lp[inst.task_job == job].max())
