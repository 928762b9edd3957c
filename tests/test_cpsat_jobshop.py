"""CP-SAT job-shop solver: optimality on small instances, flexible JSSP, tardiness, time limits."""

from __future__ import annotations

import time

import numpy as np
import pytest

from schedgym.baselines.base import Solver
from schedgym.baselines.cpsat_jobshop import CPSATJobShopSolver, horizon_of, solve_cpsat
from schedgym.baselines.dispatching import solve_with_rule
from schedgym.envs.jobshop.generator import add_due_dates
from schedgym.envs.jobshop.instances import load_instance
from schedgym.envs.jobshop.metrics import metrics
from schedgym.envs.jobshop.types import JobShopInstance
from schedgym.envs.jobshop.validate import validate


def _with_release(inst: JobShopInstance, release: np.ndarray) -> JobShopInstance:
    return JobShopInstance(
        name=inst.name + "_rel", job_ptr=inst.job_ptr, proc=inst.proc, eligible=inst.eligible,
        release=np.asarray(release, dtype=np.int64), due=inst.due, weight=inst.weight,
    )


def test_protocol_and_name() -> None:
    solver = CPSATJobShopSolver()
    assert isinstance(solver, Solver)
    assert solver.name == "cpsat"


def test_ft06_optimal() -> None:
    inst = load_instance("ft06")
    sol = solve_cpsat(inst, time_limit_s=30.0, num_workers=2)
    validate(inst, sol)
    assert sol.status == "optimal"
    assert sol.makespan(inst) == 55
    assert sol.bound == 55
    meta = sol.meta
    assert meta["solver_status"] == "OPTIMAL"
    assert meta["objective_value"] == 55
    assert meta["num_workers"] == 2
    assert meta["warm_start_makespan"] >= 55
    assert meta["solution_source"] == "cpsat"
    assert 0 < meta["wall_time_s"] < 30
    assert metrics(inst, sol)["gap_to_bks_pct"] == 0.0


def test_mk01_flexible_feasible() -> None:
    inst = load_instance("mk01")
    assert inst.is_flexible
    sol = CPSATJobShopSolver(time_limit_s=10.0).solve(inst)
    validate(inst, sol)
    assert sol.status in ("optimal", "feasible")
    mk = sol.makespan(inst)
    assert 40 <= mk <= sol.meta["warm_start_makespan"]
    assert sol.bound is not None and sol.bound <= mk
    # the warm start is the best of the four rules
    rules = [solve_with_rule(inst, r).makespan(inst) for r in ("spt", "mwkr", "mopnr", "fdd_mwkr")]
    assert sol.meta["warm_start_makespan"] == min(rules)


def test_time_limit_override_and_no_warm_start() -> None:
    inst = load_instance("ft06")
    sol = CPSATJobShopSolver(time_limit_s=1000.0, warm_start=None).solve(inst, time_limit_s=20.0)
    validate(inst, sol)
    assert sol.meta["time_limit_s"] == 20.0
    assert sol.meta["warm_start_makespan"] is None
    assert sol.makespan(inst) == 55


def test_single_rule_warm_start() -> None:
    inst = load_instance("ft06")
    sol = CPSATJobShopSolver(warm_start="spt").solve(inst, time_limit_s=20.0)
    assert sol.meta["warm_start_rule"] == "spt"
    assert sol.meta["warm_start_makespan"] == solve_with_rule(inst, "spt").makespan(inst)


def test_release_dates_respected() -> None:
    inst = _with_release(load_instance("ft06"), [0, 10, 0, 25, 5, 0])
    sol = solve_cpsat(inst, time_limit_s=20.0)
    validate(inst, sol)
    assert sol.status == "optimal"
    assert horizon_of(inst) >= sol.makespan(inst) >= 55
    assert sol.makespan(inst) <= solve_with_rule(inst, "mwkr").makespan(inst)


def test_total_tardiness_matches_metrics_and_beats_edd() -> None:
    inst = add_due_dates(load_instance("ft06"), np.random.default_rng(0), tightness=1.5, spread=0.3)
    sol = CPSATJobShopSolver(objective="total_tardiness", time_limit_s=20.0).solve(inst)
    validate(inst, sol)
    assert sol.status in ("optimal", "feasible")
    m = metrics(inst, sol)
    assert sol.meta["objective_value"] == pytest.approx(m["total_tardiness"])
    edd = metrics(inst, solve_with_rule(inst, "edd"))["total_tardiness"]
    assert m["total_tardiness"] <= edd
    assert sol.bound is not None and sol.bound <= m["total_tardiness"] + 1e-9
    if sol.status == "optimal":
        assert sol.bound == pytest.approx(m["total_tardiness"])


def test_weighted_tardiness_fractional_weights() -> None:
    base = add_due_dates(load_instance("ft06"), np.random.default_rng(1), tightness=1.3, spread=0.2)
    weights = np.array([1.0, 0.5, 2.25, 1.0, 3.0, 0.1])
    inst = base.with_due_dates(base.due, weights)
    sol = CPSATJobShopSolver(objective="weighted_tardiness", time_limit_s=20.0).solve(inst)
    validate(inst, sol)
    m = metrics(inst, sol)
    assert sol.meta["objective_value"] == pytest.approx(m["weighted_tardiness"])
    assert m["weighted_tardiness"] <= sol.meta["warm_start_objective"] + 1e-9


def test_tardiness_needs_due_dates() -> None:
    with pytest.raises(ValueError, match="due dates"):
        CPSATJobShopSolver(objective="total_tardiness").solve(load_instance("ft06"))


def test_unknown_names() -> None:
    with pytest.raises(KeyError):
        CPSATJobShopSolver(objective="flowtime")
    with pytest.raises(KeyError):
        CPSATJobShopSolver(warm_start="nope")


def test_tiny_time_limit_on_ta41() -> None:
    inst = load_instance("ta41")
    sol = CPSATJobShopSolver(time_limit_s=0.01).solve(inst)
    assert sol.status in ("feasible", "none")
    if sol.status == "feasible":
        validate(inst, sol)
        assert sol.makespan(inst) <= sol.meta["warm_start_makespan"]
        assert sol.bound is None or sol.bound <= sol.makespan(inst)
    else:
        assert (sol.start == -1).all()


def test_tiny_time_limit_without_warm_start() -> None:
    inst = load_instance("ta41")
    sol = CPSATJobShopSolver(time_limit_s=0.01, warm_start=None).solve(inst)
    assert sol.status in ("feasible", "none")
    assert sol.start.shape == (inst.n_ops,)
    if sol.status == "feasible":
        validate(inst, sol)


@pytest.mark.slow
def test_ta01_proved_optimal_with_two_workers() -> None:
    inst = load_instance("ta01")
    t0 = time.perf_counter()
    sol = solve_cpsat(inst, time_limit_s=60.0, num_workers=2)
    elapsed = time.perf_counter() - t0
    validate(inst, sol)
    print(f"ta01: status={sol.status} makespan={sol.makespan(inst)} bound={sol.bound} "
          f"solver={sol.meta['solver_wall_time_s']:.2f}s total={elapsed:.2f}s")
    assert sol.status == "optimal"
    assert sol.makespan(inst) == 1231
    assert sol.bound == 1231


# ---- issue 11: a time limit <= 0 returned the warm start labelled feasible, unsearched -----------
@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan"), "soon", True])
def test_non_positive_time_limit_is_rejected(bad) -> None:
    pattern = r"CPSATJobShopSolver: time_limit_s=.* is out of range; it must be a number of seconds > 0"
    with pytest.raises(ValueError, match=pattern):
        CPSATJobShopSolver(time_limit_s=bad)
    with pytest.raises(ValueError, match=pattern):
        CPSATJobShopSolver(time_limit_s=5.0).solve(load_instance("ft06"), time_limit_s=bad)
    with pytest.raises(ValueError, match=pattern):
        solve_cpsat(load_instance("ft06"), time_limit_s=bad)


def test_time_limit_none_means_no_limit() -> None:
    solver = CPSATJobShopSolver(time_limit_s=None)
    assert solver.time_limit_s == float("inf")
    sol = solver.solve(load_instance("ft06"))
    assert sol.status == "optimal" and sol.makespan(load_instance("ft06")) == 55
