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
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from schedgym.baselines.base import check_time_limit
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
        time_limit_s: CP-SAT search time limit in seconds, > 0 (``None`` or ``inf``: no limit; model
            building and the warm-start rules come on top; both are reported in ``meta``). A limit
            <= 0 is a ``ValueError``: it would return the warm start labelled feasible unsearched.
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

    domains = ("jobshop",)
    name = "cpsat"

    def __init__(
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
        limit = check_time_limit(time_limit_s, type(self).__name__)
        self.time_limit_s = math.inf if limit is None else limit
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
        """Solve ``instance``; ``time_limit_s`` (seconds, > 0) overrides the constructor's limit.

        Returns a :class:`JobShopSolution` (start times in time units) with ``status`` ``"optimal"``
        (proved), ``"feasible"`` or ``"none"``, ``bound`` = CP-SAT's proved lower bound on the
        objective (time units, weighted for ``weighted_tardiness``; for the makespan at least the
        trivial machine-load / job-length bound; ``None`` when the model was found infeasible), and ``meta``
        with ``wall_time_s`` (whole call, seconds), ``solver_wall_time_s``, ``objective``,
        ``objective_value``, ``makespan``, ``solver_status``, ``num_workers``, ``time_limit_s``,
        ``warm_start_rule``, ``warm_start_makespan``, ``warm_start_objective`` and
        ``solution_source`` (``"cpsat"``, ``"warm_start"`` or ``None``).

        Raises:
            ValueError: ``time_limit_s`` <= 0 or NaN, or a tardiness objective on an instance without
                due dates.
        """
        t0 = time.perf_counter()
        limit = self.time_limit_s if time_limit_s is None else check_time_limit(time_limit_s, type(self).__name__)
        if self.objective != "makespan" and instance.due is None:
            raise ValueError(
                f"{instance.name}: objective {self.objective!r} needs due dates; the instance has none "
                "(use JobShopInstance.with_due_dates or objective='makespan')")
        hint, hint_rule, hint_obj = self._warm_start(instance)
        hint_mk = hint.makespan(instance) if hint is not None else None
        horizon = horizon_of(instance) if hint_mk is None else max(horizon_of(instance), hint_mk)

        built = self._build_model(instance, horizon)
        if hint is not None:
            _add_hint(built, instance, hint)
        solver = self._search_parameters(instance, limit)
        build_s = time.perf_counter() - t0
        code = solver.Solve(built.model)
        if code == cp_model.MODEL_INVALID:  # a bug in this module or a malformed instance
            raise ValueError(f"{instance.name}: CP-SAT rejected the model: {built.model.Validate()}")

        meta = {
            "solver": self.name,
            "objective": self.objective,
            "solver_status": solver.StatusName(code),
            "num_workers": solver.parameters.num_workers,
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
        sol = self._extract_solution(instance, built, solver, code, hint, hint_obj, meta)
        meta["wall_time_s"] = time.perf_counter() - t0
        sol.meta.update(meta)
        return sol

    # ---- model building ---------------------------------------------------------------------
    def _build_model(self, instance: JobShopInstance, horizon: int) -> _Model:
        """The CP-SAT model: operation intervals, precedence, no-overlap, the makespan and the objective."""
        built = _Model(model=cp_model.CpModel(), horizon=horizon)
        min_p, est, lct = _time_windows(instance, horizon)
        _add_operations(built, instance, min_p, est, lct)
        _add_precedence_and_no_overlap(built, instance)
        _add_makespan(built, instance, min_p, est)
        if self.objective == "makespan":
            built.model.Minimize(built.makespan)
        else:
            self._add_tardiness_objective(built, instance)
        return built

    def _add_tardiness_objective(self, built: _Model, instance: JobShopInstance) -> None:
        """Tardiness variables ``T_j >= C_j - due_j`` and the (weighted) total tardiness objective."""
        model, horizon = built.model, built.horizon
        job_ptr = instance.job_ptr.astype(np.int64)
        release = instance.release.astype(np.int64)
        due = instance.due.astype(np.int64)
        for j in range(instance.n_jobs):
            a, b = int(job_ptr[j]), int(job_ptr[j + 1])
            t = model.NewIntVar(0, max(0, horizon - int(due[j])), f"T{j}")
            if b > a:
                model.Add(t >= built.ends[b - 1] - int(due[j]))
            else:
                model.Add(t >= int(release[j]) - int(due[j]))
            built.tard.append(t)
        if self.objective == "weighted_tardiness" and instance.weight is not None:
            w_int, built.obj_scale = _integer_weights(np.asarray(instance.weight, dtype=np.float64))
            model.Minimize(sum(w * t for w, t in zip(w_int, built.tard, strict=True)))
        else:
            model.Minimize(sum(built.tard))

    # ---- search parameters ------------------------------------------------------------------
    def _search_parameters(self, instance: JobShopInstance, limit: float) -> cp_model.CpSolver:
        """A CP-SAT solver with this class's parameters (``limit`` in seconds), ``parameters`` set last."""
        solver = cp_model.CpSolver()
        p = solver.parameters
        p.max_time_in_seconds = max(limit, 1e-3)
        p.num_workers = max(1, self.num_workers)
        p.random_seed = self.seed
        p.log_search_progress = self.log
        p.use_strong_propagation_in_disjunctive = not instance.is_flexible
        for key, value in self.parameters.items():
            setattr(p, key, value)
        return solver

    # ---- solution extraction ----------------------------------------------------------------
    def _extract_solution(self, instance: JobShopInstance, built: _Model, solver: cp_model.CpSolver, code: int,
                          hint: JobShopSolution | None, hint_obj: float | None, meta: dict) -> JobShopSolution:
        """CP-SAT's schedule, else the warm start, else an all ``-1`` schedule with status ``"none"``;
        fills ``meta``'s ``solution_source``, ``objective_value`` and ``makespan``."""
        n_ops = instance.n_ops
        bound = self._proved_bound(solver, code, built)
        if code in _STATUS:
            start = np.array([solver.Value(s) for s in built.starts], dtype=np.int64)
            sol = JobShopSolution(start=start, machine=_chosen_machines(instance, built, solver),
                                  status=_STATUS[code], bound=bound)
            meta["solution_source"] = "cpsat"
            meta["objective_value"] = solver.ObjectiveValue() / built.obj_scale
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
        return sol

    def _proved_bound(self, solver: cp_model.CpSolver, code: int, built: _Model) -> float | None:
        """CP-SAT's lower bound on the objective (time units); for the makespan at least the static bound."""
        if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.UNKNOWN):
            return None
        bound = solver.BestObjectiveBound() / built.obj_scale
        if self.objective == "makespan":
            bound = float(max(math.ceil(bound - 1e-9), built.static_lb))
        return bound


# ------------------------------------------------------------------------------------------------
# model-building steps (in this order: the variables' order is part of the model CP-SAT sees)
# ------------------------------------------------------------------------------------------------
@dataclass
class _Model:
    """A CP-SAT job-shop model and its variables (times in time units)."""

    model: cp_model.CpModel
    horizon: int
    starts: list[cp_model.IntVar] = field(default_factory=list)
    ends: list[cp_model.IntVar] = field(default_factory=list)
    #: (operation, machine) -> presence literal of the optional interval (flexible operations only)
    presence: dict[tuple[int, int], cp_model.IntVar] = field(default_factory=dict)
    #: machine -> the (optional) intervals that may run on it
    machine_intervals: list[list[cp_model.IntervalVar]] = field(default_factory=list)
    makespan: cp_model.IntVar | None = None
    tard: list[cp_model.IntVar] = field(default_factory=list)
    #: trivial makespan lower bound (machine load, job work)
    static_lb: int = 0
    #: objective = CP-SAT objective / obj_scale (integer weights of weighted tardiness)
    obj_scale: int = 1


def _time_windows(instance: JobShopInstance, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(O,) shortest processing time, earliest start (release + shortest work before) and latest end
    (horizon - shortest work after) of every operation, in time units."""
    n_ops = instance.n_ops
    proc, elig = instance.proc.astype(np.int64), instance.eligible
    job_ptr, release = instance.job_ptr.astype(np.int64), instance.release.astype(np.int64)
    min_p = np.where(elig, proc, np.iinfo(np.int64).max).min(axis=1) if n_ops else np.zeros(0, np.int64)
    est = np.zeros(n_ops, dtype=np.int64)
    lct = np.zeros(n_ops, dtype=np.int64)
    for j in range(instance.n_jobs):
        a, b = int(job_ptr[j]), int(job_ptr[j + 1])
        t = int(release[j])
        for o in range(a, b):
            est[o] = t
            t += int(min_p[o])
        t = horizon
        for o in range(b - 1, a - 1, -1):
            lct[o] = t
            t -= int(min_p[o])
    return min_p, est, lct


def _add_operations(built: _Model, instance: JobShopInstance, min_p: np.ndarray, est: np.ndarray,
                    lct: np.ndarray) -> None:
    """Start/end variables and the (optional, per eligible machine) intervals of every operation."""
    model = built.model
    proc = instance.proc.astype(np.int64)
    built.machine_intervals = [[] for _ in range(instance.n_machines)]
    for o in range(instance.n_ops):
        ms = [int(m) for m in np.flatnonzero(instance.eligible[o])]
        if not ms:
            raise ValueError(f"{instance.name}: operation {o} has no eligible machine")
        s = model.NewIntVar(int(est[o]), int(lct[o] - min_p[o]), f"s{o}")
        e = model.NewIntVar(int(est[o] + min_p[o]), int(lct[o]), f"e{o}")
        built.starts.append(s)
        built.ends.append(e)
        if len(ms) == 1:
            m = ms[0]
            built.machine_intervals[m].append(model.NewIntervalVar(s, int(proc[o, m]), e, f"i{o}"))
            continue
        lits = []
        for m in ms:
            x = model.NewBoolVar(f"x{o}_{m}")
            built.presence[(o, m)] = x
            lits.append(x)
            built.machine_intervals[m].append(model.NewOptionalIntervalVar(s, int(proc[o, m]), e, x, f"i{o}_{m}"))
        model.AddExactlyOne(lits)
        # the operation's own duration (redundant with the optional intervals, but it links
        # start and end for propagation when no machine is fixed yet)
        model.Add(e == s + sum(int(proc[o, m]) * built.presence[(o, m)] for m in ms))


def _add_precedence_and_no_overlap(built: _Model, instance: JobShopInstance) -> None:
    """Job precedence ``start_{o+1} >= end_o`` and one ``AddNoOverlap`` per machine."""
    job_ptr = instance.job_ptr.astype(np.int64)
    for j in range(instance.n_jobs):
        a, b = int(job_ptr[j]), int(job_ptr[j + 1])
        for o in range(a + 1, b):
            built.model.Add(built.starts[o] >= built.ends[o - 1])
    for intervals in built.machine_intervals:
        if len(intervals) > 1:
            built.model.AddNoOverlap(intervals)


def _add_makespan(built: _Model, instance: JobShopInstance, min_p: np.ndarray, est: np.ndarray) -> None:
    """The makespan variable (>= every job's last end) and the redundant static lower bound on it."""
    job_ptr = instance.job_ptr.astype(np.int64)
    built.makespan = built.model.NewIntVar(0, built.horizon, "makespan")
    for j in range(instance.n_jobs):
        if job_ptr[j + 1] > job_ptr[j]:
            built.model.Add(built.makespan >= built.ends[int(job_ptr[j + 1]) - 1])
    built.static_lb = _static_makespan_lb(instance, min_p, est)
    built.model.Add(built.makespan >= built.static_lb)


def _static_makespan_lb(instance: JobShopInstance, min_p: np.ndarray, est: np.ndarray) -> int:
    """Trivial makespan lower bound (time units): per machine, the earliest release plus the load of the
    operations that can only run there; per job, its release plus its shortest processing times."""
    if not instance.n_ops:
        return 0
    proc, elig = instance.proc.astype(np.int64), instance.eligible
    job_ptr, release = instance.job_ptr.astype(np.int64), instance.release.astype(np.int64)
    lb = 0
    single = elig.sum(axis=1) == 1
    for m in range(instance.n_machines):
        ops_m = np.flatnonzero(single & elig[:, m])
        if ops_m.size:
            lb = max(lb, int(est[ops_m].min()) + int(proc[ops_m, m].sum()))
    for j in range(instance.n_jobs):
        a, b = int(job_ptr[j]), int(job_ptr[j + 1])
        if b > a:
            lb = max(lb, int(release[j]) + int(min_p[a:b].sum()))
    return lb


# ---- warm start ----------------------------------------------------------------------------------
def _add_hint(built: _Model, instance: JobShopInstance, hint: JobShopSolution) -> None:
    """Pass the warm-start schedule to CP-SAT (``AddHint`` on every start, end, presence literal, the
    makespan and the tardiness variables)."""
    model = built.model
    job_ptr = instance.job_ptr.astype(np.int64)
    h_start = np.asarray(hint.start, dtype=np.int64)
    h_mach = np.asarray(hint.machine, dtype=np.int64)
    h_end = hint.end(instance)
    for o in range(instance.n_ops):
        model.AddHint(built.starts[o], int(h_start[o]))
        model.AddHint(built.ends[o], int(h_end[o]))
    for (o, m), x in built.presence.items():
        model.AddHint(x, int(h_mach[o] == m))
    model.AddHint(built.makespan, int(hint.makespan(instance)))
    if built.tard:
        h_job_end = h_end[job_ptr[1:] - 1] if instance.n_ops else np.zeros(instance.n_jobs, np.int64)
        for j, t in enumerate(built.tard):
            a, b = int(job_ptr[j]), int(job_ptr[j + 1])
            cj = int(h_job_end[j]) if b > a else int(instance.release[j])
            model.AddHint(t, max(0, cj - int(instance.due[j])))


# ---- solution extraction -------------------------------------------------------------------------
def _chosen_machines(instance: JobShopInstance, built: _Model, solver: cp_model.CpSolver) -> np.ndarray:
    """(O,) int64 machine of every operation in CP-SAT's solution (the true presence literal when flexible)."""
    if not instance.is_flexible:
        return instance.op_machine.astype(np.int64).copy()
    mach = instance.op_machine.copy()
    for (o, m), x in built.presence.items():
        if solver.BooleanValue(x):
            mach[o] = m
    return mach


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
