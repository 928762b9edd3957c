"""Independent feasibility check of a VM migration plan.

Written from the problem definition only (it imports no env or state code). A plan is a sequence
of moves ``(vm, pm, numa)`` executed one after the other; it is feasible when

1. it has at most ``instance.mnl`` moves (the instance's limit; a limit the plan declares is ignored);
2. every move names an existing VM, PM and NUMA node (0 or 1), moves a movable VM, and changes
   its placement (a 1-NUMA VM may move to the other NUMA node of its own PM);
3. the target PM is ACTIVE;
4. when the move is executed, the target NUMA node (both nodes, half each, for a 2-NUMA VM) has
   the VM's cores, MB and GPUs free, counted before the VM leaves its source (live migration);
5. after the move, no other VM of one of the VM's host-level anti-affinity groups is on the
   target PM and no other VM of one of its rack-level groups is in the target PM's rack;
6. after the last move, no movable VM is left on a DISABLED or OUTAGE PM (evacuation).
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.vmsched.types import VMInstance, VMSolution


def violations(instance: VMInstance, solution: VMSolution, first_only: bool = False) -> list[str]:
    """Messages of every violated constraint of the plan (empty when feasible)."""
    inst = instance
    name = inst.name
    out: list[str] = []

    def bad(msg: str) -> bool:
        out.append(f"{name}: {msg}")
        return first_only

    P, V = int(inst.pm_cpu.shape[0]), int(inst.vm_cpu.shape[0])
    moves = [tuple(row) for row in np.asarray(solution.moves, dtype=np.int64).reshape(-1, 3).tolist()]
    if len(moves) > int(inst.mnl) and bad(_over_limit(len(moves), int(inst.mnl), solution.mnl)):
        return out
    spans = inst.vm_span.tolist()

    def share(v: int) -> tuple[int, int, int]:
        """Cores, MB and GPUs the VM takes on each NUMA node it uses (half of each for 2-NUMA VMs)."""
        s = spans[v]
        return int(inst.vm_cpu[v]) // s, int(inst.vm_mem[v]) // s, int(inst.vm_gpu[v]) // s

    # current placement: per VM its PM and the NUMA nodes it occupies; VMs not moved yet are where
    # the snapshot puts them (looked up on demand: a plan touches few of the VMs)
    init_pm, init_numa = inst.init_pm.tolist(), inst.init_numa.tolist()
    moved_to: dict[int, tuple[int, list[int]]] = {}

    def where_of(v: int) -> tuple[int, list[int]]:
        if v in moved_to:
            return moved_to[v]
        return init_pm[v], [0, 1] if spans[v] == 2 else [init_numa[v]]

    # used resources per (pm, numa): sum over the VMs on it in the snapshot, then kept up to date
    used_arr = np.zeros((P, 2, 3), dtype=np.int64)
    per = np.stack([inst.vm_cpu, inst.vm_mem, inst.vm_gpu], axis=1) // inst.vm_span[:, None]
    one = inst.vm_span == 1
    np.add.at(used_arr, (inst.init_pm[one], inst.init_numa[one]), per[one])
    for node in (0, 1):
        np.add.at(used_arr, (inst.init_pm[~one], np.full(int((~one).sum()), node)), per[~one])
    used_cache: dict[tuple[int, int], list[int]] = {}

    def used_at(p: int, node: int) -> list[int]:
        key = (p, node)
        if key not in used_cache:
            used_cache[key] = used_arr[p, node].tolist()
        return used_cache[key]

    host_groups = [[int(x) for x in grp] for grp in inst.host_groups]
    rack_groups = [[int(x) for x in grp] for grp in inst.rack_groups]
    groups_of_vm: dict[int, list[tuple[str, list[int]]]] = {}
    for grp in host_groups:
        for v in grp:
            groups_of_vm.setdefault(v, []).append(("host", grp))
    for grp in rack_groups:
        for v in grp:
            groups_of_vm.setdefault(v, []).append(("rack", grp))
    capacity = {"cores": inst.pm_cpu.tolist(), "MB": inst.pm_mem.tolist(), "GPUs": inst.pm_gpu.tolist()}
    movable, status, rack = inst.vm_movable.tolist(), inst.pm_status.tolist(), inst.pm_rack.tolist()
    for i, (v, p, n) in enumerate(moves):
        step = f"move {i} (vm {v} -> pm {p}, numa {n})"
        if not (0 <= v < V):
            if bad(f"{step}: no VM {v} (the instance has {V})"):
                return out
            continue
        if not (0 <= p < P) or n not in (0, 1):
            if bad(f"{step}: no PM {p} / NUMA node {n} (the instance has {P} PMs, NUMA nodes 0 and 1)"):
                return out
            continue
        if not movable[v] and bad(f"{step}: VM {v} is not movable (allow_migration false)"):
            return out
        if status[p] != 0 and bad(f"{step}: PM {p} is not ACTIVE"):
            return out
        span = spans[v]
        nodes = [0, 1] if span == 2 else [n]
        p0, nodes0 = where_of(v)
        if p0 == p and (span == 2 or nodes0 == nodes):
            if bad(f"{step}: the VM is already there; a move must change the placement"):
                return out
            continue
        c, m, g = share(v)
        for node in nodes:
            u = used_at(p, node)
            for k, (label, need) in enumerate((("cores", c), ("MB", m), ("GPUs", g))):
                cap = capacity[label][p][node]
                if u[k] + need > cap and bad(
                        f"{step}: NUMA node {node} of PM {p} has {cap - u[k]} {label} free, the VM needs {need}"):
                    return out
        # execute: release the source, occupy the target
        for node in nodes0:
            u = used_at(p0, node)
            u[0] -= c
            u[1] -= m
            u[2] -= g
        for node in nodes:
            u = used_at(p, node)
            u[0] += c
            u[1] += m
            u[2] += g
        moved_to[v] = (p, nodes)
        for kind, grp in groups_of_vm.get(v, []):
            for w in grp:
                if w == v:
                    continue
                pw = where_of(w)[0]
                if kind == "host" and pw == p:
                    if bad(f"{step}: VM {w} of the same host anti-affinity group is on PM {p}"):
                        return out
                if kind == "rack" and rack[pw] == rack[p]:
                    if bad(f"{step}: VM {w} of the same rack anti-affinity group is in rack {rack[p]}"):
                        return out
    final_pm = inst.init_pm.astype(np.int64)
    for v, (p, _) in moved_to.items():
        final_pm[v] = p
    left = np.flatnonzero(inst.vm_movable & (inst.pm_status[final_pm] != 0)) if V else []
    for v in left:
        if bad(f"VM {int(v)} is left on PM {int(final_pm[v])}, which is not ACTIVE (it must be evacuated)"):
            return out
    return out


def _over_limit(n_moves: int, limit: int, declared: int | None) -> str:
    """Message for a plan with more migrations than the instance allows."""
    msg = f"the plan has {n_moves} migrations, more than the instance's migration limit mnl={limit}"
    if declared is not None and int(declared) != limit:
        msg += f" (the plan declares mnl={int(declared)}, which does not change the instance's limit)"
    return msg


def count_violations(instance: VMInstance, solution: VMSolution) -> int:
    """Number of violated constraints of the plan (0 when feasible)."""
    return len(violations(instance, solution))


def validate(instance: VMInstance, solution: VMSolution) -> None:
    """Raise :class:`InfeasibleSolution` naming the first violated constraint; return None if feasible."""
    errs = violations(instance, solution, first_only=True)
    if errs:
        raise InfeasibleSolution(errs[0])
