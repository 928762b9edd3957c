"""Best-fit vector bin packing for rescheduling (an alpha-VBPP-style heuristic).

Each move takes a VM from the NUMA node with the most fragment cores (``free mod 16``; ties: the
least-used node, whose VMs are the cheapest to drain), smallest VM first, and re-packs it best-fit:
onto the feasible target that leaves the smallest normalised free-resource vector (cores and MB
left after placement, each divided by the NUMA capacity; 2-NUMA VMs: summed over both nodes). The
move is kept only if it does not raise the fragment rate; VMs whose best fit would are skipped for
the rest of the episode. Evacuations first.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines.vm_common import EPS, Move, MovePolicy, candidate_vms
from schedgym.envs.vmsched.state import VMState


class VMBestFitPolicy(MovePolicy):
    """Best-fit vector bin packing of the VMs of the most fragmented NUMA nodes."""

    name = "vm_bestfit"

    def __init__(self, max_tries: int = 256):
        super().__init__()
        self.max_tries = int(max_tries)
        self._skip: set[int] = set()
        self._state_id: int | None = None

    def rule(self, state: VMState) -> Move | None:
        if self._state_id != id(state) or not state.moves:
            self._skip, self._state_id = set(), id(state)
        mask, evac = candidate_vms(state)
        vms = np.flatnonzero(mask)
        if len(vms) == 0:
            return None
        frag = state.numa_frag()  # (P, 2)
        used = (state.instance.pm_cpu - state.free_c)
        node = np.where(state.span[vms] == 2, 0, state.vm_numa[vms])
        src_frag = np.where(state.span[vms] == 2, frag[state.vm_pm[vms]].sum(axis=1), frag[state.vm_pm[vms], node])
        src_used = np.where(state.span[vms] == 2, used[state.vm_pm[vms]].sum(axis=1), used[state.vm_pm[vms], node])
        order = vms[np.lexsort((state.c[vms], src_used, -src_frag))]
        cap_c = np.maximum(state.instance.pm_cpu, 1).astype(np.float64)
        cap_m = np.maximum(state.instance.pm_mem, 1).astype(np.float64)
        tries = 0
        for v in order:
            v = int(v)
            if v in self._skip and not evac:
                continue
            tries += 1
            if tries > self.max_tries:
                break
            tm = state.target_mask(v)
            if not tm.any():
                continue
            left = (state.free_c - state.c[v]) / cap_c + (state.free_m - state.m[v]) / cap_m
            if state.span[v] == 2:
                left = np.stack([left.sum(axis=1), np.full(state.P, np.inf)], axis=1)
            t = int(np.argmin(np.where(tm, left, np.inf).ravel()))
            p, n = divmod(t, 2)
            if evac or state.delta_fr(v, p, n) <= EPS:
                if not evac and state.delta_fr(v, p, n) > -EPS:
                    # neutral move: allowed once per VM, it may open room for others
                    self._skip.add(v)
                return v, p, n
            self._skip.add(v)
        return None
