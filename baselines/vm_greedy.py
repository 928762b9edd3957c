"""Greedy filter-and-score rescheduling (the shape of production VM schedulers).

Filter: rank the movable VMs by the fragment cores their source NUMA node(s) would lose if they left
(ties: smaller VM first) and keep the ``top_k`` best. Score: for each of them in that order, score
every feasible target by the fragment cores it would add, ties broken best-fit (fewest free cores
left on the target); take the first VM whose best target lowers the fragment rate. Stops when none
does (evacuations first, whatever they cost). Cheaper and more myopic than the joint greedy
(:mod:`schedgym.baselines.vm_joint_greedy`), which scores every (VM, target) pair.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines.vm_common import EPS, Move, MovePolicy, candidate_vms
from schedgym.envs.vmsched.state import VMState


class VMGreedyPolicy(MovePolicy):
    """Filter-and-score greedy.

    Args:
        top_k: VMs scored per move after the filter.
    """

    name = "vm_greedy"

    def __init__(self, top_k: int = 64):
        super().__init__()
        self.top_k = int(top_k)

    def rule(self, state: VMState) -> Move | None:
        mask, evac = candidate_vms(state)
        vms = np.flatnonzero(mask)
        if len(vms) == 0:
            return None
        dF_src, _ = state.source_delta()
        order = vms[np.lexsort((state.c[vms], dF_src[vms]))][: self.top_k]
        dest = state.class_dest_delta().reshape(state.K, -1)
        free_after = state.free_c.ravel()
        for v in order:
            v = int(v)
            tm = state.target_mask(v).ravel()
            if not tm.any():
                continue
            score = np.where(tm, dest[state.cls[v]] + 1e-3 * (free_after - state.c[v]) / max(1, state.g * 8), np.inf)
            t = int(np.argmin(score))
            p, n = divmod(t, 2)
            if evac or state.delta_fr(v, p, n) < -EPS:
                return v, p, n
        return None
