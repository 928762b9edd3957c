"""Best single-migration target of every VM, for the ``vm`` action mode of ``VMReschedule-v0``.

A VM's best target is the feasible (PM, NUMA) where it adds the fewest fragment cores (``free mod
g`` summed over the NUMA nodes it lands on), ties broken best-fit (fewest free cores left there),
then by the lowest target index. Vectorised over resource classes as in
:meth:`~schedgym.envs.vmsched.state.VMState.best_moves`; VMs in anti-affinity groups are scored
exactly on their own target mask.
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.vmsched.state import VMState


def best_targets(state: VMState) -> tuple[np.ndarray, np.ndarray]:
    """The best target of every VM that may move now, and the fragment cores that move removes.

    Returns:
        target: (V,) int64 flat target ``pm * 2 + numa`` (``numa = 0`` for 2-NUMA VMs); -1 where the
            VM may not move now (:meth:`VMState.vm_mask` false or no feasible target).
        gain: (V,) float64 fragment cores (over ACTIVE PMs, in cores) removed by that move (source
            and destination together; negative: the move adds fragments); 0 where ``target`` is -1.
    """
    V = state.V
    if V == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    g = state.g
    dFs, _ = state.source_delta()
    dest = state.class_dest_delta()  # (K, P, 2), +inf where the class does not fit
    free_after = state.free_c[None].astype(np.float64) - state.k_c[:, None, None]
    dbl = state.k_span == 2
    if dbl.any():  # a 2-NUMA class stands on entry numa = 0 with both nodes' free cores
        free_after[dbl, :, 0] = state.free_c.sum(axis=1)[None] - 2 * state.k_c[dbl, None]
    score = (dest + 1e-3 * free_after / (8.0 * g)).reshape(state.K, -1)  # tie-break < 1 fragment core
    order = np.argsort(score, axis=1, kind="stable")[:, :2]  # best two targets per class
    first = order[state.cls, 0]
    second = order[state.cls, 1] if score.shape[1] > 1 else first
    own = state.vm_pm * 2 + np.where(state.span == 2, 0, state.vm_numa)
    target = np.where(first == own, second, first)
    flat_dest = dest.reshape(state.K, -1)
    dF_dest = flat_dest[state.cls, target]
    dF_dest = np.where(target == own, np.inf, dF_dest)  # a class with one fitting target: its own
    gv = state.group_vms
    if len(gv):  # anti-affinity: re-score exactly only the group VMs whose class target is blocked
        rv, rr, hv, hp, _, _ = state._blocking()
        pm = target[gv] // 2
        bad = np.isin(gv * state.P + pm, hv * state.P + hp)
        bad |= np.isin(gv * state.n_racks + state.rack[pm], rv * state.n_racks + rr)
        gv = gv[bad | (target[gv] == own[gv])]
    for v in gv:  # exact best target under anti-affinity
        tm = state.target_mask(int(v)).ravel()
        if tm.any():
            sv = np.where(tm, score[state.cls[v]], np.inf)
            t = int(np.argmin(sv))
            target[v], dF_dest[v] = t, flat_dest[state.cls[v], t]
        else:
            dF_dest[v] = np.inf
    ok = state.vm_mask()[:V] & np.isfinite(dF_dest)
    gain = np.where(ok, -(dFs + np.where(ok, dF_dest, 0.0)), 0.0)
    return np.where(ok, target, -1).astype(np.int64), gain.astype(np.float64)
