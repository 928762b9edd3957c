"""Joint best-improvement greedy: every move takes the (VM, PM, NUMA) triple that lowers the fragment
rate most, over all VMs and targets at once (vectorised with numpy through resource classes, see
:meth:`schedgym.envs.vmsched.state.VMState.best_moves`). Stops when no move improves (a local
optimum of single migrations), or at the migration number limit. Evacuations first: while VMs must
leave DISABLED/OUTAGE PMs, the best of those moves is taken whatever it costs.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines.vm_common import EPS, Move, MovePolicy, candidate_vms
from schedgym.envs.vmsched.state import VMState


def best_move(state: VMState, improving_only: bool = True) -> Move | None:
    """The best single migration now (None when nothing moves, or nothing improves and
    ``improving_only``)."""
    target, dfr, _ = state.best_moves()
    cand, evac = candidate_vms(state)
    dfr = np.where(cand, dfr, np.inf)
    if len(dfr) == 0:  # a cluster without VMs
        return None
    v = int(np.argmin(dfr))
    if not np.isfinite(dfr[v]) or (improving_only and not evac and dfr[v] >= -EPS):
        return None
    p, n = divmod(int(target[v]), 2)
    return v, p, n


class VMJointGreedyPolicy(MovePolicy):
    """Joint best-improvement greedy over all moves."""

    name = "vm_joint_greedy"

    def rule(self, state: VMState) -> Move | None:
        return best_move(state)
