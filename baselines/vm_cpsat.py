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

The full model (:class:`VMCPSATSolver`) puts every ACTIVE PM and every movable VM in one model, with
redundant constraints (``tight=True``): the total of the fragment cores equals ``F - g * Q`` for the
constant free-core total ``F`` and an integer ``Q`` (without it the LP relaxation of the per-node
equations bounds the total by 0 and the search never closes the gap), fragment cores restricted to
the residues the VM sizes can reach, targets without room next to the fixed VMs dropped, and
interchangeable VMs ordered. Warm-started from the LNS and solved in two stages (fragment cores, then
migrations), it proves the optimum of the placement problem on S-size instances (40 PMs, about 330
VMs, MNL 50) in seconds to a minute; that optimum is a lower bound on the final fragment rate of any
plan (``solution.bound``), reached by the returned plan when its status is ``optimal``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from math import gcd

import numpy as np
from ortools.sat.python import cp_model

from schedgym.baselines.base import check_time_limit
from schedgym.baselines.vm_common import plan_limit
from schedgym.envs.vmsched.state import VMState
from schedgym.envs.vmsched.types import VMInstance, VMSolution


@dataclass
class SubResult:
    """Result of one placement model: new (pm, numa) per VM of the model, objective parts, status.

    ``status`` is ``"optimal"`` when the fragment cores are proved minimal (lexicographic objective:
    together with the migrations); ``moved_optimal`` says whether the migrations were proved minimal
    too (two-stage solves; None otherwise)."""

    pm: dict[int, int]
    numa: dict[int, int]
    frag: int
    moved: int
    status: str
    bound_frag: float
    moved_optimal: bool | None = None
    stats: dict = field(default_factory=dict)


Node = tuple[int, int]  # (pm, numa)


@dataclass
class _Neighbourhood:
    """The part of the cluster one placement model covers.

    ``pms``: its ACTIVE PMs (ascending); ``vms``: the movable VMs on them (the model's VMs);
    ``fixed``: the non-movable VMs on them; ``nodes``: its NUMA nodes ``(pm, numa)`` in model
    order; ``fixed_c`` / ``fixed_m`` / ``fixed_g``: cores, MB and GPUs the fixed VMs take per node.
    """

    pms: np.ndarray
    vms: np.ndarray
    fixed: np.ndarray
    nodes: list[Node]
    fixed_c: dict[Node, int]
    fixed_m: dict[Node, int]
    fixed_g: dict[Node, int]


@dataclass
class _Model:
    """A placement model being built: the CP-SAT model and the handles the later steps use.

    ``x[v, p, n]``: VM ``v`` on node ``(p, n)`` (2-NUMA VMs: ``n = 0``, both nodes of ``p``);
    ``xv[v]``: ``(p, literal)`` of each target of ``v``; ``load_c`` / ``load_m`` / ``load_g``: per
    node, ``(literal, amount)`` of every VM that may take cores / MB / GPUs there; ``homes[v]``: the
    snapshot target of ``v`` when it is in the model, else None; ``moved_terms``: the literals of
    those home targets; ``base``: model VMs whose snapshot target is outside the model (moved
    whatever the model does); ``r_vars`` / ``q_vars``: per node, fragment cores and 16-core slots.
    """

    model: cp_model.CpModel
    nodes: list[Node]
    x: dict[tuple[int, int, int], cp_model.IntVar] = field(default_factory=dict)
    xv: dict[int, list[tuple[int, cp_model.IntVar]]] = field(default_factory=dict)
    load_c: dict[Node, list] = field(default_factory=dict)
    load_m: dict[Node, list] = field(default_factory=dict)
    load_g: dict[Node, list] = field(default_factory=dict)
    homes: dict[int, Node | None] = field(default_factory=dict)
    moved_terms: list = field(default_factory=list)
    base: int = 0
    r_vars: list = field(default_factory=list)
    q_vars: list = field(default_factory=list)

    def __post_init__(self) -> None:
        for loads in (self.load_c, self.load_m, self.load_g):
            loads.update({key: [] for key in self.nodes})


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
    hint_pm: np.ndarray | None = None,
    hint_numa: np.ndarray | None = None,
    tight: bool = False,
    two_stage: bool = False,
    symmetry: bool = True,
    log: bool = False,
) -> SubResult | None:
    """Re-place the movable VMs currently on ``pms`` among the NUMA nodes of ``pms``.

    The steps: the neighbourhood (:func:`_neighbourhood`), the assignment variables
    (:func:`_add_assignments`), the hints (:func:`_add_hints`, tight: canonical under symmetry),
    capacity and fragment cores per node (:func:`_add_capacity_and_fragments`), anti-affinity
    (:func:`_add_anti_affinity`), the migration budget (:func:`_add_migration_budget`), the
    redundant constraints (tight: :func:`_tighten`), then one weighted solve
    (:func:`_solve_weighted`) or two stages (:func:`_solve_two_stage`).

    Args:
        pm, numa: (V,) the current placement (the model's warm start unless ``hint_pm`` is given).
        pms: PMs of the neighbourhood (ACTIVE ones are used as targets).
        budget: migrations allowed for the VMs of the model (moves counted against the initial
            placement: a VM whose initial PM is elsewhere counts as moved whatever it does).
        time_limit_s: CP-SAT time limit, seconds (both stages together).
        mnl: the migration number limit (weights the lexicographic objective).
        hint_pm, hint_numa: (V,) a feasible placement of the model's VMs to warm-start from (for
            example a large-neighbourhood search's result); None: ``pm``/``numa``.
        tight: the strengthened formulation of the full model (see :func:`_tighten`): targets
            that the fixed VMs leave no room on are dropped, fragment cores only take the residues
            that the VM sizes can reach, their total is tied to the constant free-core total
            (``sum r = F - g * Q``: the bound ``F mod g`` and steps of ``g``), and identical VMs
            with the same snapshot placement are ordered.
        symmetry: with ``tight``, order interchangeable VMs (symmetry breaking).
        two_stage: minimise the fragment cores alone first; once they are proved optimal, fix them
            and minimise the migrations with the time left (instead of one weighted objective).
        log: print CP-SAT's search log.
    Returns:
        the new placement of the model's VMs, or None when CP-SAT found nothing.
    """
    t_start = time.perf_counter()
    hint_pm = pm if hint_pm is None else hint_pm
    hint_numa = numa if hint_numa is None else hint_numa
    inst = instance
    nb = _neighbourhood(inst, pm, numa, pms)
    if nb is None:
        return None
    m = _Model(cp_model.CpModel(), nb.nodes)
    if not _add_assignments(m, inst, nb, _room(inst, nb, tight)):
        return None
    classes, hint_pm, hint_numa = _add_hints(m, inst, nb, hint_pm, hint_numa, tight, symmetry)
    hint_used, _, _ = inst.usage(hint_pm, hint_numa)
    _add_capacity_and_fragments(m, inst, nb, hint_used, tight)
    _add_anti_affinity(m, inst, pm, nb)
    moved_expr = _add_migration_budget(m, budget)
    stats: dict = {}
    g = int(inst.granularity)
    if tight:
        total_r = _tighten(m.model, inst, nb.vms, m.x, classes, m.r_vars, m.q_vars, m.load_c, nb.fixed_c, g,
                           hint_used, stats)
    else:
        total_r = sum(m.r_vars)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = int(workers)
    solver.parameters.random_seed = int(seed)
    solver.parameters.log_search_progress = bool(log)
    if not two_stage:
        return _solve_weighted(m, solver, total_r, moved_expr, int(mnl) + 1, time_limit_s, tight, stats)
    return _solve_two_stage(m, solver, total_r, moved_expr, t_start + float(time_limit_s), stats)


def _neighbourhood(inst: VMInstance, pm: np.ndarray, numa: np.ndarray, pms: np.ndarray) -> _Neighbourhood | None:
    """The ACTIVE PMs of ``pms``, the movable and fixed VMs on them and what the fixed VMs use per
    NUMA node (cores, MB, GPUs); None when no PM of ``pms`` is ACTIVE."""
    pms = np.asarray(sorted(set(int(p) for p in pms if inst.pm_active[int(p)])), dtype=np.int64)
    if len(pms) == 0:
        return None
    in_n = np.zeros(inst.n_pms, dtype=bool)
    in_n[pms] = True
    on = in_n[pm]
    vms = np.flatnonzero(on & inst.vm_movable)
    fixed = np.flatnonzero(on & ~inst.vm_movable)
    nodes = [(int(p), n) for p in pms for n in (0, 1)]
    fixed_c, fixed_m, fixed_g = ({key: 0 for key in nodes} for _ in range(3))
    for v in fixed:
        v = int(v)
        p = int(pm[v])
        for k in ((0, 1) if inst.vm_span[v] == 2 else (int(numa[v]),)):
            fixed_c[(p, k)] += int(inst.numa_cpu[v])
            fixed_m[(p, k)] += int(inst.numa_mem[v])
            fixed_g[(p, k)] += int(inst.numa_gpu[v])
    return _Neighbourhood(pms, vms, fixed, nodes, fixed_c, fixed_m, fixed_g)


def _room(inst: VMInstance, nb: _Neighbourhood, tight: bool) -> dict[Node, tuple[int, int, int]]:
    """Cores, MB and GPUs of each NUMA node that the model's VMs may use: the capacity (tight: less
    what the fixed VMs take, so that targets without room get no variable)."""
    return {key: (int(inst.pm_cpu[key]) - (nb.fixed_c[key] if tight else 0),
                  int(inst.pm_mem[key]) - (nb.fixed_m[key] if tight else 0),
                  int(inst.pm_gpu[key]) - (nb.fixed_g[key] if tight else 0)) for key in nb.nodes}


def _add_assignments(m: _Model, inst: VMInstance, nb: _Neighbourhood, room: dict[Node, tuple[int, int, int]]
                     ) -> bool:
    """One literal per (model VM, target with room), exactly one target per VM, the per-node loads,
    and each VM's home (snapshot) target; False when a VM has no target at all."""
    per_c, per_m, per_g = inst.numa_cpu, inst.numa_mem, inst.numa_gpu
    for v in nb.vms:
        v = int(v)
        span = int(inst.vm_span[v])
        lits = []
        for p in nb.pms:
            p = int(p)
            for n in ((0,) if span == 2 else (0, 1)):
                nodes = (0, 1) if span == 2 else (n,)
                if any(per_c[v] > room[(p, k)][0] or per_m[v] > room[(p, k)][1] or per_g[v] > room[(p, k)][2]
                       for k in nodes):
                    continue
                lit = m.model.NewBoolVar(f"x{v}_{p}_{n}")
                m.x[(v, p, n)] = lit
                m.xv.setdefault(v, []).append((p, lit))
                lits.append(lit)
                for k in nodes:
                    m.load_c[(p, k)].append((lit, int(per_c[v])))
                    m.load_m[(p, k)].append((lit, int(per_m[v])))
                    m.load_g[(p, k)].append((lit, int(per_g[v])))
        if not lits:
            return False
        m.model.AddExactlyOne(lits)
        ip, inn = int(inst.init_pm[v]), int(inst.init_numa[v]) if span == 1 else 0
        home = m.x.get((v, ip, inn))
        if home is None:
            m.base += 1
            m.homes[v] = None
        else:
            m.moved_terms.append(home)  # moved = 1 - home
            m.homes[v] = (ip, inn)
    return True


def _add_hints(m: _Model, inst: VMInstance, nb: _Neighbourhood, hint_pm: np.ndarray, hint_numa: np.ndarray,
               tight: bool, symmetry: bool) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Hint every assignment literal with the hint placement. Tight: first the classes of
    interchangeable VMs (:func:`_symmetry_classes`, when ``symmetry``) and the hint made canonical
    for their ordering (:func:`_canonical_hint`). Returns the classes and the hint placement used."""
    classes: list[list[int]] = []
    if tight:
        classes = _symmetry_classes(inst, nb.vms, m.homes) if symmetry else []
        hint_pm, hint_numa = _canonical_hint(inst, classes, hint_pm, hint_numa)
    for (v, p, n), lit in m.x.items():
        m.model.AddHint(lit, int(hint_pm[v] == p and (inst.vm_span[v] == 2 or hint_numa[v] == n)))
    return classes, hint_pm, hint_numa


def _add_capacity_and_fragments(m: _Model, inst: VMInstance, nb: _Neighbourhood, hint_used: np.ndarray,
                                tight: bool) -> None:
    """Per NUMA node: the MB and GPU capacities, and ``free cores = g * q + r`` with ``r`` the node's
    fragment cores (``0 <= r < g``; tight: only the residues the VM sizes can reach), both hinted
    from the hint placement's usage ``hint_used`` ((P, 2) cores)."""
    g = int(inst.granularity)
    if tight:
        # every model VM takes a multiple of d cores of a node, so free = cap - fixed (mod d)
        d = g
        for v in nb.vms:
            d = gcd(d, int(inst.numa_cpu[v]))
    model = m.model
    for key in nb.nodes:
        p, k = key
        cap_c, cap_m, cap_g = int(inst.pm_cpu[p, k]), int(inst.pm_mem[p, k]), int(inst.pm_gpu[p, k])
        used_c = sum(c * lit for lit, c in m.load_c[key]) + nb.fixed_c[key]
        model.Add(sum(mm * lit for lit, mm in m.load_m[key]) + nb.fixed_m[key] <= cap_m)
        if cap_g or m.load_g[key]:
            model.Add(sum(gg * lit for lit, gg in m.load_g[key] if gg) + nb.fixed_g[key] <= cap_g)
        q = model.NewIntVar(0, cap_c // g, f"q{p}_{k}")
        if tight:
            res0 = (cap_c - nb.fixed_c[key]) % d
            r = model.NewIntVarFromDomain(cp_model.Domain.FromValues(list(range(res0, g, d))), f"r{p}_{k}")
        else:
            r = model.NewIntVar(0, g - 1, f"r{p}_{k}")
        model.Add(cap_c - used_c == g * q + r)
        m.r_vars.append(r)
        m.q_vars.append(q)
        free_now = cap_c - int(hint_used[p, k])
        if free_now >= 0:
            model.AddHint(q, free_now // g)
            model.AddHint(r, free_now % g)


def _add_anti_affinity(m: _Model, inst: VMInstance, pm: np.ndarray, nb: _Neighbourhood) -> None:
    """At most one VM of a host group per PM and one of a rack group per rack, counting the
    group's members outside the model where they are (``pm``)."""
    vm_set = set(int(v) for v in nb.vms)
    for grp in inst.host_groups:
        inside = [int(v) for v in grp if int(v) in vm_set]
        if not inside:
            continue
        outside_pms = {int(pm[w]) for w in grp if int(w) not in vm_set}
        for p in nb.pms:
            p = int(p)
            lits = [lit for v in inside for pp, lit in m.xv.get(v, []) if pp == p]
            if not lits:
                continue
            m.model.Add(sum(lits) <= (0 if p in outside_pms else 1))
    racks = inst.pm_rack
    for grp in inst.rack_groups:
        inside = [int(v) for v in grp if int(v) in vm_set]
        if not inside:
            continue
        outside_racks = {int(racks[int(pm[w])]) for w in grp if int(w) not in vm_set}
        for rk in {int(racks[int(p)]) for p in nb.pms}:
            lits = [lit for v in inside for pp, lit in m.xv.get(v, []) if int(racks[pp]) == rk]
            if lits:
                m.model.Add(sum(lits) <= (0 if rk in outside_racks else 1))


def _add_migration_budget(m: _Model, budget: int):
    """``moved = base + sum(1 - home)`` (an int when no model VM can stay home) and ``moved <= budget``."""
    moved_expr = m.base + len(m.moved_terms) - sum(m.moved_terms)
    m.model.Add(moved_expr <= max(0, int(budget)))
    return moved_expr


def _value(solver: cp_model.CpSolver, expr) -> int:
    """The value of a linear expression in the solution (``expr`` itself when it is an int)."""
    return int(solver.Value(expr)) if not isinstance(expr, int) else expr


def _solve_weighted(m: _Model, solver: cp_model.CpSolver, total_r, moved_expr, w: int, time_limit_s: float,
                    tight: bool, stats: dict) -> SubResult | None:
    """One solve of ``w * fragment cores + migrations`` (``w = mnl + 1`` > any migration count:
    lexicographic), within ``time_limit_s`` seconds."""
    m.model.Minimize(w * total_r + moved_expr)
    solver.parameters.max_time_in_seconds = max(0.01, float(time_limit_s))
    status = solver.Solve(m.model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    new_pm, new_numa = _placement(solver, m.x)
    frag = int(sum(solver.Value(r) for r in m.r_vars))
    moved = _value(solver, moved_expr)
    # objective = w * frag + moved with moved <= mnl < w: floor(bound / w) bounds the fragment cores
    bound = float(np.floor(solver.BestObjectiveBound() / w + 1e-9))
    return SubResult(new_pm, new_numa, frag, moved, "optimal" if status == cp_model.OPTIMAL else "feasible",
                     bound, moved_optimal=(status == cp_model.OPTIMAL) if tight else None, stats=stats)


def _solve_two_stage(m: _Model, solver: cp_model.CpSolver, total_r, moved_expr, deadline: float,
                     stats: dict) -> SubResult | None:
    """Stage 1: fewest fragment cores (within the budget); stage 2, with the time left until
    ``deadline`` (a ``time.perf_counter()`` value): fewest migrations at that many fragment cores,
    warm-started from stage 1 (kept unless it finds fewer migrations)."""
    model = m.model
    model.Minimize(total_r)
    solver.parameters.max_time_in_seconds = max(0.01, deadline - time.perf_counter())
    status = solver.Solve(model)
    stats.update(stage1_s=solver.WallTime(), stage1_status=solver.StatusName(status))
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    new_pm, new_numa = _placement(solver, m.x)
    frag = int(sum(solver.Value(r) for r in m.r_vars))
    moved = _value(solver, moved_expr)
    bound = float(max(0, int(np.ceil(solver.BestObjectiveBound() - 1e-9))))
    frag_status = "optimal" if status == cp_model.OPTIMAL else "feasible"
    left = deadline - time.perf_counter()
    if isinstance(moved_expr, int) or left < 0.05:
        return SubResult(new_pm, new_numa, frag, moved, frag_status, bound, moved_optimal=isinstance(moved_expr, int),
                         stats=stats)
    _hint_from_solution(m, solver)
    model.Add(total_r <= frag)
    model.Minimize(moved_expr)
    solver.parameters.max_time_in_seconds = max(0.01, left)
    status2 = solver.Solve(model)
    stats.update(stage2_s=solver.WallTime(), stage2_status=solver.StatusName(status2))
    if status2 in (cp_model.OPTIMAL, cp_model.FEASIBLE) and int(solver.Value(moved_expr)) <= moved:
        new_pm, new_numa = _placement(solver, m.x)
        frag = int(sum(solver.Value(r) for r in m.r_vars))
        moved = int(solver.Value(moved_expr))
    stats["moved_bound"] = (float(max(0, int(np.ceil(solver.BestObjectiveBound() - 1e-9))))
                            if status2 != cp_model.UNKNOWN else None)
    return SubResult(new_pm, new_numa, frag, moved, frag_status, bound,
                     moved_optimal=status2 == cp_model.OPTIMAL, stats=stats)


def _hint_from_solution(m: _Model, solver: cp_model.CpSolver) -> None:
    """Replace the model's hints with the solver's last solution (assignments, r and q per node)."""
    values = {id(lit): solver.BooleanValue(lit) for lit in m.x.values()}
    rq = [(r, solver.Value(r)) for r in m.r_vars] + [(q, solver.Value(q)) for q in m.q_vars]
    m.model.ClearHints()
    for lit in m.x.values():
        m.model.AddHint(lit, values[id(lit)])
    for var, val in rq:
        m.model.AddHint(var, val)


def _placement(solver: cp_model.CpSolver, x: dict) -> tuple[dict[int, int], dict[int, int]]:
    new_pm, new_numa = {}, {}
    for (v, p, n), lit in x.items():
        if solver.BooleanValue(lit):
            new_pm[v], new_numa[v] = p, n
    return new_pm, new_numa


def _symmetry_classes(inst: VMInstance, vms: np.ndarray, homes: dict) -> list[list[int]]:
    """Groups (2 or more, VM indices ascending) of interchangeable model VMs: the same per-node
    cores, MB and GPUs, the same snapshot target in the model (or none) and no anti-affinity group.
    Swapping two of them changes neither a constraint nor the objective."""
    grouped = set()
    for grp in list(inst.host_groups) + list(inst.rack_groups):
        grouped.update(int(v) for v in grp)
    classes: dict[tuple, list[int]] = {}
    for v in vms:
        v = int(v)
        if v in grouped:
            continue
        key = (int(inst.numa_cpu[v]), int(inst.numa_mem[v]), int(inst.numa_gpu[v]), int(inst.vm_span[v]), homes[v])
        classes.setdefault(key, []).append(v)
    return [sorted(m) for m in classes.values() if len(m) > 1]


def _canonical_hint(inst: VMInstance, classes: list[list[int]], pm: np.ndarray,
                    numa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The placement with the targets of each class of interchangeable VMs sorted by
    ``2 * pm + numa`` in VM order (what the symmetry-breaking constraints require of a hint)."""
    pm, numa = np.asarray(pm).copy(), np.asarray(numa).copy()
    for members in classes:
        dbl = inst.vm_span[members[0]] == 2
        t = sorted(2 * int(pm[v]) + (0 if dbl else int(numa[v])) for v in members)
        for v, tv in zip(members, t):
            pm[v], numa[v] = divmod(tv, 2)
    return pm, numa


def _tighten(model: cp_model.CpModel, inst: VMInstance, vms: np.ndarray, x: dict, classes: list[list[int]],
             r_vars: list, q_vars: list, load_c: dict, fixed_c: dict, g: int,
             hint_used: np.ndarray, stats: dict):
    """Redundant constraints of the full model; returns the total fragment cores (an IntVar).

    * Total: the free cores ``F`` of the model's NUMA nodes do not depend on the placement (every
      VM is placed exactly once), so ``sum r = F - g * Q`` with ``Q = sum q`` an integer: the
      total is at least ``F mod g`` and moves in steps of ``g``, which the per-node equations only
      imply through integrality (their LP relaxation bounds the total by 0).
    * Symmetry: the target indices ``2 * pm + numa`` of interchangeable VMs
      (:func:`_symmetry_classes`) are ordered like the VMs.
    """
    per_c = inst.numa_cpu
    F = sum(int(inst.pm_cpu[key]) - fixed_c[key] for key in load_c)
    F -= sum(int(per_c[v]) * int(inst.vm_span[v]) for v in vms)
    q_total = model.NewIntVar(0, max(0, F // g), "Q")
    model.Add(q_total == sum(q_vars))
    total_r = model.NewIntVar(F % g if F >= 0 else 0, max(0, F), "frag_total")
    model.Add(total_r + g * q_total == F)
    model.Add(total_r == sum(r_vars))
    hq = sum(max(0, int(inst.pm_cpu[key]) - int(hint_used[key])) // g for key in load_c)
    model.AddHint(q_total, hq)
    model.AddHint(total_r, F - g * hq)
    by_vm: dict[int, list[tuple[int, object]]] = {}
    for (v, p, n), lit in x.items():
        by_vm.setdefault(v, []).append((2 * p + n, lit))
    n_sym = 0
    for members in classes:
        idx = [sum(t * lit for t, lit in by_vm[v]) for v in members]
        for a, b in zip(idx, idx[1:]):
            model.Add(a <= b)
            n_sym += 1
    stats.update(free_total=F, frag_lower_bound=F % g if F >= 0 else 0, symmetry_constraints=n_sym,
                 variables=len(x))
    return total_r


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

    1. Evacuations are made first (joint greedy); every movable VM on an ACTIVE PM is in the model.
    2. Warm start: the CP-SAT LNS (:class:`~schedgym.baselines.vm_cpsat_lns.VMCPSATLNSSolver`)
       runs for ``warm_start_share`` of the time limit (at most ``warm_start_max_s``); its
       placement is the model's hint.
    3. The tightened model (:func:`solve_placement` with ``tight=True``) is solved in two stages:
       fragment cores first (their total is at least ``F mod g``, ``F`` the constant free cores,
       and moves in steps of ``g``), then, once those are proved minimal, the fewest migrations.
    4. The placement is sequenced into a plan (:func:`sequence_plan`); if it cannot be (a cyclic
       dependency) or the LNS plan is better, the LNS plan is returned.

    ``status`` is ``"optimal"`` when the returned plan's fragment rate equals the proved lower bound
    (``bound``: the placement optimum over every placement within the migration limit, so a bound
    on every plan); ``meta["moves_optimal"]`` says whether its migrations were proved minimal too.

    Args:
        num_workers: CP-SAT search workers.
        mnl: a tighter migration number limit than the instance's (None: the instance's; a larger
            value does not raise it, see :func:`~schedgym.baselines.vm_common.plan_limit`).
        warm_start_share: fraction of the time limit given to the LNS warm start (0: none; the
            evacuated snapshot is the hint).
        warm_start_max_s: cap on the warm start, seconds.
        seed: seed of the LNS and CP-SAT.
        log: print CP-SAT's search log.
    """

    domains = ("vmsched",)
    name = "vm_cpsat"

    def __init__(self, num_workers: int = 2, mnl: int | None = None, warm_start_share: float = 0.2,
                 warm_start_max_s: float = 10.0, seed: int = 0, log: bool = False):
        self.num_workers = int(num_workers)
        self.mnl = mnl
        self.warm_start_share = float(warm_start_share)
        self.warm_start_max_s = float(warm_start_max_s)
        self.seed = int(seed)
        self.log = bool(log)

    def solve(self, instance: VMInstance, time_limit_s: float | None = None) -> VMSolution:
        """The plan for ``instance`` within ``time_limit_s`` seconds (> 0; None: 60 s).

        Raises:
            ValueError: ``time_limit_s`` <= 0, NaN or not a number.
        """
        from schedgym.baselines.vm_cpsat_lns import VMCPSATLNSSolver

        t0 = time.perf_counter()
        limit = check_time_limit(time_limit_s, self.name)
        limit = 60.0 if limit is None else limit
        mnl = plan_limit(instance, self.mnl)
        start = evacuate(instance, mnl)
        pm, numa = start.placement_of()
        warm = None
        hint_pm, hint_numa = pm, numa
        warm_s = min(self.warm_start_max_s, self.warm_start_share * limit)
        if warm_s > 0.05:
            lower = start.free_sum % int(instance.granularity)  # the fragment cores cannot go below
            warm = VMCPSATLNSSolver(time_limit_s=warm_s, mnl=mnl, seed=self.seed, stop_at_frag=lower).solve(instance)
            hint_pm, hint_numa = warm.final_placement(instance)
        left = max(0.05, limit - (time.perf_counter() - t0))
        # every VM that can move is in the model, so the whole budget is the model's
        res = solve_placement(instance, pm, numa, np.flatnonzero(instance.pm_active), mnl, left, mnl,
                              workers=self.num_workers, seed=self.seed, hint_pm=hint_pm, hint_numa=hint_numa,
                              tight=True, two_stage=True, log=self.log)
        g = int(instance.granularity)
        if res is None:
            sol = warm if warm is not None else start.solution(status="feasible" if not start.pending.any() else "none")
            sol.status = "feasible" if warm is not None or not start.pending.any() else "none"
            sol.wall_time_s = time.perf_counter() - t0
            sol.meta.update(solver="cp-sat full", model="none found")
            return sol
        pm2, numa2 = pm.copy(), numa.copy()
        for v, p in res.pm.items():
            pm2[v], numa2[v] = p, res.numa[v]
        st, stuck = sequence_plan(instance, pm2, numa2, mnl=mnl)
        free = max(1, st.free_sum)
        bound = res.bound_frag / free if res.bound_frag is not None else None
        sol = st.solution()
        frag_plan = st.frag_sum
        source = "model"
        if warm is not None:
            wpm, wnuma = warm.final_placement(instance)
            wfrag = frag_cores(instance, wpm, wnuma)
            if (wfrag, warm.n_moves) < (frag_plan, sol.n_moves) or stuck:
                sol, frag_plan, source = warm, wfrag, "warm start (LNS)"
        proved = res.bound_frag is not None and frag_plan <= res.bound_frag  # the bound holds for every plan
        sol.status = "optimal" if proved else "feasible"
        sol.bound = bound
        sol.wall_time_s = time.perf_counter() - t0
        sol.meta.update(solver="cp-sat full", plan_from=source, model_frag=res.frag, model_moved=res.moved,
                        frag_bound=res.bound_frag, fragment_cores=frag_plan, unsequenced=len(stuck),
                        moves_optimal=bool(proved and source == "model" and res.moved_optimal
                                           and sol.n_moves == res.moved),
                        warm_start_s=warm_s if warm is not None else 0.0, granularity=g, **res.stats)
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
