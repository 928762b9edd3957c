"""OR-Tools CP-SAT models for VM rescheduling: the placement model, plan sequencing, and the full model.

Units: cores, MB, GPUs; fragment cores are counted per ACTIVE NUMA node as ``free mod g``; time
limits and wall times in seconds.

Placement model (over a set of PMs ``N`` and the movable VMs ``M`` on them; everything else fixed):

* ``x[v, t]`` boolean, VM ``v`` on target ``t = (pm, numa)`` (2-NUMA VMs: one variable per PM,
  taking half of its resources on each node); exactly one target per VM;
* capacity per NUMA node for cores, MB and GPUs, fixed VMs included;
* anti-affinity: at most one VM of a host group per PM (fixed members count), at most one VM of a
  rack group per rack;
* ``free = g * q + r`` with ``0 <= r < g``, ``q >= 0`` per NUMA node: ``r`` are its fragment cores;
* migrations: ``moved[v] = 1 - x[v, initial target of v]``, ``sum moved <= budget``;
* objective, lexicographic: ``(mnl + 1) * sum r + sum moved`` (fragment cores first, then fewer
  migrations). The free-core total is fixed, so fewer fragment cores is a lower fragment rate.

A placement is turned into a plan by :func:`sequence_plan`: each moved VM migrates once, in an order
where every migration is feasible when it is made (live migration: target room before the source is
freed). A placement with a cyclic dependency (two full nodes swapping VMs) has no such order and is
rejected (LNS) or cut back to its feasible prefix (full model, status ``feasible``).

The full model (:class:`VMCPSATSolver`) puts every ACTIVE PM and every movable VM in one model: on
S-size instances CP-SAT proves the optimum of the placement problem, a lower bound on the final
fragment rate of any plan (``solution.bound``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from schedgym.envs.vmsched.state import VMState
from schedgym.envs.vmsched.types import VMInstance, VMSolution


@dataclass
class SubResult:
    """Result of one placement model: new (pm, numa) per VM of the model, objective parts, status."""

    pm: dict[int, int]
    numa: dict[int, int]
    frag: int
    moved: int
    status: str
    bound_frag: float


def solve_placement(
    instance: VMInstance,
    pm: np.ndarray,
    numa: np.ndarray,
    pms: np.ndarray,
    budget: int,
    time_limit_s: float,
    mnl: int,
    workers: int = 1,
    seed: int = 0,
) -> SubResult | None:
    """Re-place the movable VMs currently on ``pms`` among the NUMA nodes of ``pms``.

    Args:
        pm, numa: (V,) the current placement (the model's warm start).
        pms: PMs of the neighbourhood (ACTIVE ones are used as targets).
        budget: migrations allowed for the VMs of the model (moves counted against the initial
            placement: a VM whose initial PM is elsewhere counts as moved whatever it does).
    Returns:
        the new placement of the model's VMs, or None when CP-SAT found nothing.
    """
    inst = instance
    g = int(inst.granularity)
    pms = np.asarray(sorted(set(int(p) for p in pms if inst.pm_active[int(p)])), dtype=np.int64)
    if len(pms) == 0:
        return None
    in_n = np.zeros(inst.n_pms, dtype=bool)
    in_n[pms] = True
    on = in_n[pm]
    vms = np.flatnonzero(on & inst.vm_movable)
    fixed = np.flatnonzero(on & ~inst.vm_movable)
    model = cp_model.CpModel()
    per_c, per_m, per_g = inst.numa_cpu, inst.numa_mem, inst.numa_gpu
    x: dict[tuple[int, int, int], cp_model.IntVar] = {}
    xv: dict[int, list[tuple[int, cp_model.IntVar]]] = {}
    load_c = {(int(p), n): [] for p in pms for n in (0, 1)}
    load_m = {(int(p), n): [] for p in pms for n in (0, 1)}
    load_g = {(int(p), n): [] for p in pms for n in (0, 1)}
    moved_terms = []
    base = 0  # VMs that count as moved whatever the model does
    for v in vms:
        v = int(v)
        span = int(inst.vm_span[v])
        lits = []
        for p in pms:
            p = int(p)
            nodes = (0,) if span == 2 else (0, 1)
            for n in nodes:
                ok = True
                for k in ((0, 1) if span == 2 else (n,)):
                    if per_c[v] > inst.pm_cpu[p, k] or per_m[v] > inst.pm_mem[p, k] or per_g[v] > inst.pm_gpu[p, k]:
                        ok = False
                if not ok:
                    continue
                lit = model.NewBoolVar(f"x{v}_{p}_{n}")
                x[(v, p, n)] = lit
                xv.setdefault(v, []).append((p, lit))
                lits.append(lit)
                for k in ((0, 1) if span == 2 else (n,)):
                    load_c[(p, k)].append((lit, int(per_c[v])))
                    load_m[(p, k)].append((lit, int(per_m[v])))
                    load_g[(p, k)].append((lit, int(per_g[v])))
                model.AddHint(lit, int(pm[v] == p and (span == 2 or numa[v] == n)))
        if not lits:
            return None
        model.AddExactlyOne(lits)
        ip, inn = int(inst.init_pm[v]), int(inst.init_numa[v]) if span == 1 else 0
        home = x.get((v, ip, inn))
        if home is None:
            base += 1
        else:
            moved_terms.append(home)  # moved = 1 - home
    # fixed VMs' usage
    fixed_c = {key: 0 for key in load_c}
    fixed_m = {key: 0 for key in load_c}
    fixed_g = {key: 0 for key in load_c}
    for v in fixed:
        v = int(v)
        p = int(pm[v])
        for k in ((0, 1) if inst.vm_span[v] == 2 else (int(numa[v]),)):
            fixed_c[(p, k)] += int(per_c[v])
            fixed_m[(p, k)] += int(per_m[v])
            fixed_g[(p, k)] += int(per_g[v])
    r_vars = []
    hint_used, _, _ = inst.usage(pm, numa)
    for key in load_c:
        p, k = key
        cap_c, cap_m, cap_g = int(inst.pm_cpu[p, k]), int(inst.pm_mem[p, k]), int(inst.pm_gpu[p, k])
        used_c = sum(c * lit for lit, c in load_c[key]) + fixed_c[key]
        model.Add(sum(mm * lit for lit, mm in load_m[key]) + fixed_m[key] <= cap_m)
        if cap_g or load_g[key]:
            model.Add(sum(gg * lit for lit, gg in load_g[key] if gg) + fixed_g[key] <= cap_g)
        q = model.NewIntVar(0, cap_c // g, f"q{p}_{k}")
        r = model.NewIntVar(0, g - 1, f"r{p}_{k}")
        model.Add(cap_c - used_c == g * q + r)
        r_vars.append(r)
        free_now = cap_c - int(hint_used[p, k])
        if free_now >= 0:
            model.AddHint(q, free_now // g)
            model.AddHint(r, free_now % g)
    # anti-affinity
    vm_set = set(int(v) for v in vms)
    for grp in inst.host_groups:
        inside = [int(v) for v in grp if int(v) in vm_set]
        if not inside:
            continue
        outside_pms = {int(pm[w]) for w in grp if int(w) not in vm_set}
        for p in pms:
            p = int(p)
            lits = [lit for v in inside for pp, lit in xv.get(v, []) if pp == p]
            if not lits:
                continue
            model.Add(sum(lits) <= (0 if p in outside_pms else 1))
    racks = inst.pm_rack
    for grp in inst.rack_groups:
        inside = [int(v) for v in grp if int(v) in vm_set]
        if not inside:
            continue
        outside_racks = {int(racks[int(pm[w])]) for w in grp if int(w) not in vm_set}
        for rk in {int(racks[int(p)]) for p in pms}:
            lits = [lit for v in inside for pp, lit in xv.get(v, []) if int(racks[pp]) == rk]
            if lits:
                model.Add(sum(lits) <= (0 if rk in outside_racks else 1))
    n_home = len(moved_terms)
    moved_expr = base + n_home - sum(moved_terms)
    model.Add(moved_expr <= max(0, int(budget)))
    w = int(mnl) + 1
    model.Minimize(w * sum(r_vars) + moved_expr)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, float(time_limit_s))
    solver.parameters.num_workers = int(workers)
    solver.parameters.random_seed = int(seed)
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    new_pm, new_numa = {}, {}
    for (v, p, n), lit in x.items():
        if solver.BooleanValue(lit):
            new_pm[v], new_numa[v] = p, n
    frag = int(sum(solver.Value(r) for r in r_vars))
    moved = int(solver.Value(moved_expr)) if not isinstance(moved_expr, int) else moved_expr
    # objective = w * frag + moved with moved <= mnl < w: floor(bound / w) bounds the fragment cores
    bound = float(np.floor(solver.BestObjectiveBound() / w + 1e-9))
    return SubResult(new_pm, new_numa, frag, moved, "optimal" if status == cp_model.OPTIMAL else "feasible",
                     bound)


def sequence_plan(instance: VMInstance, pm: np.ndarray, numa: np.ndarray, mnl: int | None = None,
                  start: VMState | None = None) -> tuple[VMState, list[int]]:
    """Migrate every VM whose placement differs from the snapshot to its final placement, once, in an
    order where each migration is feasible when made. Returns the state after the moves and the VMs
    that could not be moved (a cyclic dependency), which stay where they are."""
    st = start.clone() if start is not None else VMState(instance, mnl=mnl)
    todo = [int(v) for v in np.flatnonzero((st.vm_pm != pm) | ((st.vm_numa != numa) & (instance.vm_span == 1)))]
    # evacuations first, larger VMs first (they are the hardest to fit)
    todo.sort(key=lambda v: (not st.pending[v], -int(instance.vm_cpu[v])))
    progress = True
    while todo and progress and st.migrations_left > 0:
        progress = False
        rest = []
        for v in todo:
            n = int(numa[v]) if instance.vm_span[v] == 1 else 0
            if st.migrations_left > 0 and st.can_move(v, int(pm[v]), n):
                st.move(v, int(pm[v]), n)
                progress = True
            else:
                rest.append(v)
        todo = rest
    return st, todo


def frag_cores(instance: VMInstance, pm: np.ndarray, numa: np.ndarray) -> int:
    """Fragment cores (sum of ``free mod g`` over ACTIVE NUMA nodes) of a placement."""
    used, _, _ = instance.usage(pm, numa)
    free = (instance.pm_cpu - used)[instance.pm_active]
    return int((free % instance.granularity).sum())


class VMCPSATSolver:
    """The full CP-SAT placement model over all ACTIVE PMs (proves optimality on S-size instances).

    Evacuations are made first (joint greedy), then every movable VM on an ACTIVE PM is in the model.

    Args:
        num_workers: CP-SAT search workers.
        mnl: migration number limit (None: the instance's).
    """

    name = "vm_cpsat"

    def __init__(self, num_workers: int = 2, mnl: int | None = None):
        self.num_workers = int(num_workers)
        self.mnl = mnl

    def solve(self, instance: VMInstance, time_limit_s: float | None = None) -> VMSolution:
        t0 = time.perf_counter()
        limit = 60.0 if time_limit_s is None else float(time_limit_s)
        mnl = int(instance.mnl if self.mnl is None else self.mnl)
        start = evacuate(instance, mnl)
        pm, numa = start.placement_of()
        # every VM that can move is in the model, so the whole budget is the model's
        res = solve_placement(instance, pm, numa, np.flatnonzero(instance.pm_active), mnl, limit, mnl,
                              workers=self.num_workers)
        if res is None:
            sol = start.solution(status="feasible" if not start.pending.any() else "none")
            sol.wall_time_s = time.perf_counter() - t0
            return sol
        pm2, numa2 = pm.copy(), numa.copy()
        for v, p in res.pm.items():
            pm2[v], numa2[v] = p, res.numa[v]
        st, stuck = sequence_plan(instance, pm2, numa2, mnl=mnl)
        status = res.status if not stuck else "feasible"
        free = max(1, st.free_sum)
        sol = st.solution(status=status, bound=res.bound_frag / free if res.bound_frag is not None else None)
        sol.wall_time_s = time.perf_counter() - t0
        sol.meta.update(solver="cp-sat full", model_frag=res.frag, model_moved=res.moved, unsequenced=len(stuck))
        return sol


def moved_mask(instance: VMInstance, pm: np.ndarray, numa: np.ndarray) -> np.ndarray:
    """(V,) bool: VMs whose placement differs from the snapshot."""
    return (pm != instance.init_pm) | ((numa != instance.init_numa) & (instance.vm_span == 1))


def evacuate(instance: VMInstance, mnl: int | None = None) -> VMState:
    """A state where every VM that must leave a DISABLED/OUTAGE PM has moved (best joint-greedy move
    for each, while one can move)."""
    from schedgym.baselines.vm_joint_greedy import best_move

    st = VMState(instance, mnl=mnl)
    while st.pending.any() and st.migrations_left > 0:
        mv = best_move(st, improving_only=False)
        if mv is None or not st.pending[mv[0]]:
            break
        st.move(*mv)
    return st
