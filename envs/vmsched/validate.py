"""Independent feasibility check of a VM migration plan.

Written from the problem definition only (it imports no env or state code). A plan is a sequence
of moves ``(vm, pm, numa)`` executed one after the other; it is feasible when

1. it has at most ``mnl`` moves (the plan's declared limit, else the instance's);
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
    moves = [tuple(int(x) for x in row) for row in solution.moves]
    limit = int(inst.mnl if solution.mnl is None else solution.mnl)
    if len(moves) > limit and bad(f"the plan has {len(moves)} migrations, more than the limit {limit}"):
        return out
    spans = inst.vm_span.tolist()
    shares = [(c // s, m // s, g // s) for c, m, g, s in zip(inst.vm_cpu.tolist(), inst.vm_mem.tolist(),
                                                           inst.vm_gpu.tolist(), spans)]

    def share(v: int) -> tuple[int, int, int]:
        return shares[v]

    # current placement: per VM its PM and the NUMA nodes it occupies (half the resources each)
    init_pm, init_numa = inst.init_pm.tolist(), inst.init_numa.tolist()
    where: list[tuple[int, list[int]]] = [(p, [0, 1] if s == 2 else [n]) for p, n, s in zip(init_pm, init_numa, spans)]
    # used resources per (pm, numa): sum over the VMs on it
    used_arr = np.zeros((P, 2, 3), dtype=np.int64)
    per = np.stack([inst.vm_cpu, inst.vm_mem, inst.vm_gpu], axis=1) // inst.vm_span[:, None]
    one = inst.vm_span == 1
    np.add.at(used_arr, (inst.init_pm[one], inst.init_numa[one]), per[one])
    for node in (0, 1):
        np.add.at(used_arr, (inst.init_pm[~one], np.full(int((~one).sum()), node)), per[~one])
    used = {(p, n): used_arr[p, n].tolist() for p in range(P) for n in (0, 1)}
    host_groups = [[int(x) for x in grp] for grp in inst.host_groups]
    rack_groups = [[int(x) for x in grp] for grp in inst.rack_groups]
    groups_of_vm: dict[int, list[tuple[str, list[int]]]] = {}
    for grp in host_groups:
        for v in grp:
            groups_of_vm.setdefault(v, []).append(("host", grp))
    for grp in rack_groups:
        for v in grp:
            groups_of_vm.setdefault(v, []).append(("rack", grp))
    capacity = {"cores": inst.pm_cpu, "MB": inst.pm_mem, "GPUs": inst.pm_gpu}
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
        if not bool(inst.vm_movable[v]) and bad(f"{step}: VM {v} is not movable (allow_migration false)"):
            return out
        if int(inst.pm_status[p]) != 0 and bad(f"{step}: PM {p} is not ACTIVE"):
            return out
        span = int(inst.vm_span[v])
        nodes = [0, 1] if span == 2 else [n]
        p0, nodes0 = where[v]
        if p0 == p and (span == 2 or nodes0 == nodes):
            if bad(f"{step}: the VM is already there; a move must change the placement"):
                return out
            continue
        c, m, g = share(v)
        for node in nodes:
            u = used[(p, node)]
            for k, (label, need) in enumerate((("cores", c), ("MB", m), ("GPUs", g))):
                cap = int(capacity[label][p, node])
                if u[k] + need > cap and bad(
                        f"{step}: NUMA node {node} of PM {p} has {cap - u[k]} {label} free, the VM needs {need}"):
                    return out
        # execute: release the source, occupy the target
        for node in nodes0:
            u = used[(p0, node)]
            u[0] -= c
            u[1] -= m
            u[2] -= g
        for node in nodes:
            u = used[(p, node)]
            u[0] += c
            u[1] += m
            u[2] += g
        where[v] = (p, nodes)
        for kind, grp in groups_of_vm.get(v, []):
            for w in grp:
                if w == v:
                    continue
                pw = where[w][0]
                if kind == "host" and pw == p:
                    if bad(f"{step}: VM {w} of the same host anti-affinity group is on PM {p}"):
                        return out
                if kind == "rack" and int(inst.pm_rack[pw]) == int(inst.pm_rack[p]):
                    if bad(f"{step}: VM {w} of the same rack anti-affinity group is in rack "
                           f"{int(inst.pm_rack[p])}"):
                        return out
    final_pm = np.array([w[0] for w in where], dtype=np.int64)
    left = np.flatnonzero(inst.vm_movable & (inst.pm_status[final_pm] != 0)) if V else []
    for v in left:
        if bad(f"VM {int(v)} is left on PM {int(final_pm[v])}, which is not ACTIVE (it must be evacuated)"):
            return out
    return out


def count_violations(instance: VMInstance, solution: VMSolution) -> int:
    """Number of violated constraints of the plan (0 when feasible)."""
    return len(violations(instance, solution))


def validate(instance: VMInstance, solution: VMSolution) -> None:
    """Raise :class:`InfeasibleSolution` naming the first violated constraint; return None if feasible."""
    errs = violations(instance, solution, first_only=True)
    if errs:
        raise InfeasibleSolution(errs[0])
