"""OR-Tools CP-SAT model for classic and flexible job-shop scheduling.

Units: every time (start, processing time, release, due date, makespan, tardiness, bound) is in the
instance's integer time units; time limits and wall times are in seconds.

Model (all integer):

* one interval ``[start_o, end_o)`` per operation ``o``; in a flexible instance, one optional
  interval per eligible (operation, machine) pair sharing the operation's start and end, with
  exactly one presence literal true per operation, and ``end_o = start_o + sum_m proc[o, m] * x_om``;
* job precedence ``start_{o+1} >= end_o`` and release dates ``start_first(j) >= release_j``;
* ``AddNoOverlap`` per machine over the (optional) intervals of that machine;
* objective ``makespan`` (``makespan >= end`` of every job's last operation), or with due dates
  ``total_tardiness`` (sum of ``max(0, C_j - due_j)``) or ``weighted_tardiness`` (weights scaled to
  integers when they are not integral);
* redundant makespan lower bounds: per machine (earliest release + load of the operations that can
  only run there) and per job (release + sum of shortest processing times).

The warm start (a dispatching-rule schedule, non-delay scheme) is passed to CP-SAT with ``AddHint``.
It is also the incumbent of last resort: when CP-SAT finds no solution within its time limit but a
warm start exists, the warm-start schedule is returned with status ``"feasible"`` and
``meta["solution_source"] == "warm_start"`` (like a MIP start in a MIP solver). ``status == "none"``
(start and machine arrays of -1) is returned only when there is neither.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from schedgym.baselines.dispatching import RULE_NAMES, solve_with_rule
from schedgym.envs.core.errors import UnknownNameError
from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution

OBJECTIVES = ("makespan", "total_tardiness", "weighted_tardiness")
#: rules tried by ``warm_start="best_rule"`` (``edd`` is added for the tardiness objectives).
WARM_START_RULES = ("spt", "mwkr", "mopnr", "fdd_mwkr")

_STATUS = {
    cp_model.OPTIMAL: "optimal",
    cp_model.FEASIBLE: "feasible",
}


def horizon_of(instance: JobShopInstance) -> int:
    """Upper bound on any sensible schedule's end (time units).

    Sum over operations of the longest eligible processing time, plus the latest release.
    """
    if instance.n_ops == 0:
        return int(instance.release.max()) if instance.release.size else 0
    max_p = np.where(instance.eligible, instance.proc, 0).max(axis=1)
    rel = int(instance.release.max()) if instance.release.size else 0
    return int(max_p.sum()) + rel


def _integer_weights(weight: np.ndarray, max_den: int = 1000) -> tuple[list[int], int]:
    """Integer weights ``w_int`` and a scale ``k`` with ``w_int / k`` equal (or closest) to ``weight``."""
    fracs = [Fraction(float(w)).limit_denominator(max_den) for w in weight]
    exact = all(abs(float(f) - float(w)) <= 1e-9 * max(1.0, abs(float(w))) for f, w in zip(fracs, weight, strict=True))
    if exact:
        scale = math.lcm(*(f.denominator for f in fracs)) if fracs else 1
        if scale <= 10**6:
            return [int(f * scale) for f in fracs], scale
    scale = 10**6
    return [int(round(float(w) * scale)) for w in weight], scale


def _objective_value(instance: JobShopInstance, solution: JobShopSolution, objective: str) -> float:
    """The objective of a complete schedule (time units, weighted for ``weighted_tardiness``)."""
    if objective == "makespan":
        return float(solution.makespan(instance))
    end = solution.end(instance)
    job_end = end[instance.job_ptr[1:] - 1]
    tard = np.maximum(0, job_end - instance.due).astype(np.float64)
    if objective == "weighted_tardiness" and instance.weight is not None:
        return float((instance.weight * tard).sum())
    return float(tard.sum())


class CPSATJobShopSolver:
    """CP-SAT solver for JSSP and flexible JSSP (:class:`~schedgym.baselines.base.Solver`).

    Args:
        time_limit_s: CP-SAT search time limit in seconds (model building and the warm-start rules
            come on top; both are reported in ``meta``).
        num_workers: CP-SAT search workers (threads).
        warm_start: ``"best_rule"`` (hint with the best of :data:`WARM_START_RULES`, plus ``edd`` for
            the tardiness objectives, under the non-delay scheme, judged by the objective), the name
            of one dispatching rule, or ``None`` for no hint.
        objective: ``"makespan"``, or with due dates ``"total_tardiness"`` / ``"weighted_tardiness"``.
        seed: CP-SAT random seed.
        log: print CP-SAT's search log.
        parameters: extra CP-SAT ``SatParameters`` fields set last (e.g. ``{"log_search_progress":
            True}``), overriding this class's choices.

    Search parameters: ``use_strong_propagation_in_disjunctive`` is switched on for classic JSSP
    (no optional intervals): on ta01 with 2 workers it cut the time to prove optimality from
    10-60+ s to 4-15 s over seeds 0-5. It is left off for flexible instances, where it made
    presolve probing seconds slower (mk06) and the schedules found in 5 s worse.
    """

    name = "cpsat"

    def __init__(
    domains = ("jobshop",)
        self,
        time_limit_s: float = 60.0,
        num_workers: int = 2,
        warm_start: str | None = "best_rule",
        objective: str = "makespan",
        seed: int = 0,
        log: bool = False,
        parameters: dict[str, Any] | None = None,
    ):
        if objective not in OBJECTIVES:
            raise UnknownNameError("CP-SAT job-shop objective", objective, OBJECTIVES)
        if warm_start is not None and warm_start != "best_rule" and warm_start not in RULE_NAMES:
            raise UnknownNameError("warm-start rule", warm_start, ("best_rule", *RULE_NAMES))
        self.time_limit_s = float(time_limit_s)
        self.num_workers = int(num_workers)
        self.warm_start = warm_start
        self.objective = objective
        self.seed = int(seed)
        self.log = bool(log)
        self.parameters = dict(parameters or {})

    # ------------------------------------------------------------------------------------------
    def _warm_start(self, instance: JobShopInstance) -> tuple[JobShopSolution | None, str | None, float | None]:
        """The warm-start schedule, its rule and its objective value (time units), or Nones."""
        if self.warm_start is None:
            return None, None, None
        if self.warm_start == "best_rule":
            rules = list(WARM_START_RULES)
            if self.objective != "makespan":
                rules.append("edd")
        else:
            rules = [self.warm_start]
        best: tuple[float, int, JobShopSolution, str] | None = None
        for rule in rules:
            sol = solve_with_rule(instance, rule, scheme="non_delay", seed=self.seed)
            key = (_objective_value(instance, sol, self.objective), sol.makespan(instance))
            if best is None or key < best[:2]:
                best = (*key, sol, rule)
        assert best is not None
        return best[2], best[3], best[0]

    # ------------------------------------------------------------------------------------------
    def solve(self, instance: JobShopInstance, time_limit_s: float | None = None) -> JobShopSolution:
        """Solve ``instance``; ``time_limit_s`` (seconds) overrides the constructor's limit.

        Returns a :class:`JobShopSolution` (start times in time units) with ``status`` ``"optimal"``
        (proved), ``"feasible"`` or ``"none"``, ``bound`` = CP-SAT's proved lower bound on the
        objective (time units, weighted for ``weighted_tardiness``; for the makespan at least the
        trivial machine-load / job-length bound; ``None`` when the model was found infeasible), and ``meta``
        with ``wall_time_s`` (whole call, seconds), ``solver_wall_time_s``, ``objective``,
        ``objective_value``, ``makespan``, ``solver_status``, ``num_workers``, ``time_limit_s``,
        ``warm_start_rule``, ``warm_start_makespan``, ``warm_start_objective`` and
        ``solution_source`` (``"cpsat"``, ``"warm_start"`` or ``None``).
        """
        t0 = time.perf_counter()
        limit = self.time_limit_s if time_limit_s is None else float(time_limit_s)
        if self.objective != "makespan" and instance.due is None:
            raise ValueError(
                f"{instance.name}: objective {self.objective!r} needs due dates; the instance has none "
                "(use JobShopInstance.with_due_dates or objective='makespan')")
        n_ops, n_mach, n_jobs = instance.n_ops, instance.n_machines, instance.n_jobs
        proc = instance.proc.astype(np.int64)
        elig = instance.eligible
        release = instance.release.astype(np.int64)
        job_ptr = instance.job_ptr.astype(np.int64)

        hint, hint_rule, hint_obj = self._warm_start(instance)
        hint_mk = hint.makespan(instance) if hint is not None else None
        horizon = horizon_of(instance)
        if hint_mk is not None:
            horizon = max(horizon, hint_mk)

        model = cp_model.CpModel()
        min_p = np.where(elig, proc, np.iinfo(np.int64).max).min(axis=1) if n_ops else np.zeros(0, np.int64)
        # earliest start (release + shortest work before) and latest end (horizon - shortest work after)
        est = np.zeros(n_ops, dtype=np.int64)
        lct = np.zeros(n_ops, dtype=np.int64)
        for j in range(n_jobs):
            a, b = int(job_ptr[j]), int(job_ptr[j + 1])
            t = int(release[j])
            for o in range(a, b):
                est[o] = t
                t += int(min_p[o])
            t = horizon
            for o in range(b - 1, a - 1, -1):
                lct[o] = t
                t -= int(min_p[o])

        starts: list[cp_model.IntVar] = []
        ends: list[cp_model.IntVar] = []
        machine_intervals: list[list[cp_model.IntervalVar]] = [[] for _ in range(n_mach)]
        presence: dict[tuple[int, int], cp_model.IntVar] = {}
        for o in range(n_ops):
            ms = [int(m) for m in np.flatnonzero(elig[o])]
            if not ms:
                raise ValueError(f"{instance.name}: operation {o} has no eligible machine")
            s = model.NewIntVar(int(est[o]), int(lct[o] - min_p[o]), f"s{o}")
            e = model.NewIntVar(int(est[o] + min_p[o]), int(lct[o]), f"e{o}")
            starts.append(s)
            ends.append(e)
            if len(ms) == 1:
                m = ms[0]
                machine_intervals[m].append(model.NewIntervalVar(s, int(proc[o, m]), e, f"i{o}"))
                continue
            lits = []
            for m in ms:
                x = model.NewBoolVar(f"x{o}_{m}")
                presence[(o, m)] = x
                lits.append(x)
                machine_intervals[m].append(
                    model.NewOptionalIntervalVar(s, int(proc[o, m]), e, x, f"i{o}_{m}"))
            model.AddExactlyOne(lits)
            # the operation's own duration (redundant with the optional intervals, but it links
            # start and end for propagation when no machine is fixed yet)
            model.Add(e == s + sum(int(proc[o, m]) * presence[(o, m)] for m in ms))

        for j in range(n_jobs):
            a, b = int(job_ptr[j]), int(job_ptr[j + 1])
            for o in range(a + 1, b):
                model.Add(starts[o] >= ends[o - 1])
        for m in range(n_mach):
            if len(machine_intervals[m]) > 1:
                model.AddNoOverlap(machine_intervals[m])

        last_ops = [int(job_ptr[j + 1]) - 1 for j in range(n_jobs) if job_ptr[j + 1] > job_ptr[j]]
        obj_scale = 1
        static_lb = 0  # trivial makespan lower bound (time units)
        makespan = model.NewIntVar(0, horizon, "makespan")
        for o in last_ops:
            model.Add(makespan >= ends[o])
        # redundant lower bounds: machine load of operations with a single eligible machine, job work
        if n_ops:
            single = elig.sum(axis=1) == 1
            for m in range(n_mach):
                ops_m = np.flatnonzero(single & elig[:, m])
                if ops_m.size:
                    lb_m = int(est[ops_m].min()) + int(proc[ops_m, m].sum())
                    static_lb = max(static_lb, lb_m)
            for j in range(n_jobs):
                a, b = int(job_ptr[j]), int(job_ptr[j + 1])
                if b > a:
                    static_lb = max(static_lb, int(release[j]) + int(min_p[a:b].sum()))
        model.Add(makespan >= static_lb)

        tard: list[cp_model.IntVar] = []
        if self.objective == "makespan":
            model.Minimize(makespan)
        else:
            due = instance.due.astype(np.int64)
            for j in range(n_jobs):
                a, b = int(job_ptr[j]), int(job_ptr[j + 1])
                t = model.NewIntVar(0, max(0, horizon - int(due[j])), f"T{j}")
                if b > a:
                    model.Add(t >= ends[b - 1] - int(due[j]))
                else:
                    model.Add(t >= int(release[j]) - int(due[j]))
                tard.append(t)
            if self.objective == "weighted_tardiness" and instance.weight is not None:
                w_int, obj_scale = _integer_weights(np.asarray(instance.weight, dtype=np.float64))
                model.Minimize(sum(w * t for w, t in zip(w_int, tard, strict=True)))
            else:
                model.Minimize(sum(tard))

        if hint is not None:
            h_start = np.asarray(hint.start, dtype=np.int64)
            h_mach = np.asarray(hint.machine, dtype=np.int64)
            h_end = hint.end(instance)
            for o in range(n_ops):
                model.AddHint(starts[o], int(h_start[o]))
                model.AddHint(ends[o], int(h_end[o]))
            for (o, m), x in presence.items():
                model.AddHint(x, int(h_mach[o] == m))
            model.AddHint(makespan, int(hint_mk))
            if tard:
                h_job_end = h_end[job_ptr[1:] - 1] if n_ops else np.zeros(n_jobs, np.int64)
                for j, t in enumerate(tard):
                    a, b = int(job_ptr[j]), int(job_ptr[j + 1])
                    cj = int(h_job_end[j]) if b > a else int(release[j])
                    model.AddHint(t, max(0, cj - int(instance.due[j])))

        solver = cp_model.CpSolver()
        p = solver.parameters
        p.max_time_in_seconds = max(limit, 1e-3)
        p.num_workers = max(1, self.num_workers)
        p.random_seed = self.seed
        p.log_search_progress = self.log
        p.use_strong_propagation_in_disjunctive = not instance.is_flexible
        for key, value in self.parameters.items():
            setattr(p, key, value)
        build_s = time.perf_counter() - t0
        code = solver.Solve(model)

        status_name = solver.StatusName(code)
        if code == cp_model.MODEL_INVALID:  # a bug in this module or a malformed instance
            raise ValueError(f"{instance.name}: CP-SAT rejected the model: {model.Validate()}")
        meta = {
            "solver": self.name,
            "objective": self.objective,
            "solver_status": status_name,
            "num_workers": p.num_workers,
            "time_limit_s": limit,
            "seed": self.seed,
            "horizon": horizon,
            "build_time_s": build_s,
            "solver_wall_time_s": solver.WallTime(),
            "warm_start_rule": hint_rule,
            "warm_start_makespan": hint_mk,
            "warm_start_objective": hint_obj,
            "num_branches": solver.NumBranches(),
            "num_conflicts": solver.NumConflicts(),
        }
        bound = None
        if code in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.UNKNOWN):
            bound = solver.BestObjectiveBound() / obj_scale
            if self.objective == "makespan":
                bound = float(max(math.ceil(bound - 1e-9), static_lb))

        if code in _STATUS:
            start = np.array([solver.Value(s) for s in starts], dtype=np.int64)
            if instance.is_flexible:
                mach = instance.op_machine.copy()
                for (o, m), x in presence.items():
                    if solver.BooleanValue(x):
                        mach[o] = m
            else:
                mach = instance.op_machine.astype(np.int64).copy()
            sol = JobShopSolution(start=start, machine=mach, status=_STATUS[code], bound=bound)
            meta["solution_source"] = "cpsat"
            meta["objective_value"] = solver.ObjectiveValue() / obj_scale
        elif hint is not None:
            sol = JobShopSolution(start=np.asarray(hint.start, dtype=np.int64).copy(),
                                  machine=np.asarray(hint.machine, dtype=np.int64).copy(),
                                  status="feasible", bound=bound)
            meta["solution_source"] = "warm_start"
            meta["objective_value"] = hint_obj
        else:
            sol = JobShopSolution(start=np.full(n_ops, -1, dtype=np.int64),
                                  machine=np.full(n_ops, -1, dtype=np.int64), status="none", bound=bound)
            meta["solution_source"] = None
            meta["objective_value"] = None
        if sol.status != "none":
            meta["makespan"] = sol.makespan(instance)
            if self.objective == "makespan" and sol.status == "optimal" and bound is not None:
                sol.bound = float(max(bound, meta["makespan"]))
        else:
            meta["makespan"] = None
        meta["wall_time_s"] = time.perf_counter() - t0
        sol.meta.update(meta)
        return sol


def solve_cpsat(
    instance: JobShopInstance,
    time_limit_s: float = 60.0,
    num_workers: int = 2,
    **kwargs,
) -> JobShopSolution:
    """Solve a (flexible) job-shop instance with CP-SAT.

    ``time_limit_s`` is the CP-SAT search limit in seconds; other keyword arguments (``warm_start``,
    ``objective``, ``seed``, ``log``) go to :class:`CPSATJobShopSolver`. Times in the returned
    solution are in the instance's time units.
    """
    solver = CPSATJobShopSolver(time_limit_s=time_limit_s, num_workers=num_workers, **kwargs)
    return solver.solve(instance)
