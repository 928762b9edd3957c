"""GPU-DAG baselines: Topcuoglu's exact example, validator, hypothesis DAGs, CP-SAT, SLR figures."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schedgym.baselines.cpsat_gpudag import CPSATGPUDagSolver, retime
from schedgym.baselines.heft import ALGORITHMS, critical_path, schedule
from schedgym.envs.core.domain import get_domain
from schedgym.envs.core.episode import run_episode
from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.gpudag.generator import build_instance, topcuoglu_example
from schedgym.envs.gpudag.instances import load_instance
from schedgym.envs.gpudag.metrics import metrics
from schedgym.envs.gpudag.ranks import downward_rank, upward_rank
from schedgym.envs.gpudag.types import GPUDagSolution
from schedgym.envs.gpudag.validate import validate


def test_topcuoglu_exact_checks():
    inst = topcuoglu_example()
    ru = upward_rank(inst)
    assert ru[0] == pytest.approx(108.0)
    # the paper's Table: rank_u of n1..n10
    assert np.round(ru, 3).tolist() == pytest.approx(
        [108.0, 77.0, 80.0, 80.0, 69.0, 63.333, 42.667, 35.667, 44.333, 14.667], abs=1e-3)
    prio = ru + downward_rank(inst)
    assert critical_path(inst, prio, 0) == [0, 1, 8, 9]  # n1, n2, n9, n10 (|CP| = 108)
    heft = schedule(inst, "heft")
    cpop = schedule(inst, "cpop")
    validate(inst, heft)
    validate(inst, cpop)
    assert heft.makespan(inst) == 80.0
    assert cpop.makespan(inst) == 86.0
    assert np.all(cpop.device[[0, 1, 8, 9]] == 1)  # CP on P2


def test_validator_rejects_violations():
    inst = topcuoglu_example()
    sol = schedule(inst, "heft")
    bad = GPUDagSolution(sol.start.copy(), sol.device.copy())
    t = 9  # exit task: start before its data arrives
    bad.start[t] -= 1
    with pytest.raises(InfeasibleSolution, match="edge"):
        validate(inst, bad)
    bad = GPUDagSolution(sol.start.copy(), sol.device.copy())
    # move an entry successor to run at the same time as another task on that device
    d = int(sol.device[2])
    other = int(np.flatnonzero(sol.device == d)[-1])
    bad.start[other] = sol.start[2]
    with pytest.raises(InfeasibleSolution):
        validate(inst, bad)
    bad = GPUDagSolution(sol.start.copy(), sol.device.copy())
    bad.device[0] = 7
    with pytest.raises(InfeasibleSolution, match="device 7"):
        validate(inst, bad)


def test_validator_checks_device_pair_transfer_times():
    # two tasks, devices 0/1 in different nodes: slow link
    inst = build_instance("x", np.array([[1.0, 1.0], [1.0, 1.0]]), [(0, 1, 10.0)], device_type=np.array([0, 1]),
                          link_latency=np.array([[0, 2.0], [2.0, 0]]), link_bandwidth=np.array([[np.inf, 5.0], [5.0, np.inf]]))
    ok = GPUDagSolution(np.array([0.0, 5.0]), np.array([0, 1]))  # 1 + 2 + 10/5 = 5
    validate(inst, ok)
    with pytest.raises(InfeasibleSolution, match="transfer 4.0"):
        validate(inst, GPUDagSolution(np.array([0.0, 4.9]), np.array([0, 1])))
    validate(inst, GPUDagSolution(np.array([0.0, 1.0]), np.array([0, 0])))


@st.composite
def dags(draw, max_tasks=9, integral=True):
    n = draw(st.integers(2, max_tasks))
    k = draw(st.integers(1, 3))
    times = draw(st.lists(st.lists(st.integers(1, 20), min_size=k, max_size=k), min_size=n, max_size=n))
    edges = []
    for b in range(1, n):
        for a in range(b):
            if draw(st.booleans()) and draw(st.booleans()):
                edges.append((a, b, float(draw(st.integers(0, 15)))))
    n_dev = draw(st.integers(1, 3))
    dtype = np.array([draw(st.integers(0, k - 1)) for _ in range(n_dev)])
    for kk in range(k):  # every type present so every task can run
        if kk not in dtype:
            dtype = np.append(dtype, kk)
    return build_instance("hyp", np.array(times, float), edges, device_type=dtype,
                          type_names=tuple(f"T{i}" for i in range(k)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_every_baseline_is_feasible_and_cpsat_not_worse(inst):
    results = {}
    for alg in ALGORITHMS:
        sol = schedule(inst, alg, seed=0)
        validate(inst, sol)
        results[alg] = sol.makespan(inst)
    # the CP-SAT model's own schedule: without the fallback, HEFT's schedule cannot stand in for it
    sol = CPSATGPUDagSolver(num_workers=1, fallback=False).solve(inst, time_limit_s=5)
    validate(inst, sol)
    assert sol.meta["solution_source"] == "cpsat"
    assert sol.meta["scale"] == 1.0  # integral data
    assert sol.status == "optimal"  # at most 9 tasks: proved well within the limit
    assert sol.makespan(inst) <= min(results.values()) + 1e-9
    assert sol.bound == pytest.approx(sol.makespan(inst))
    m = metrics(inst, sol)
    assert m["slr"] >= 1.0 - 1e-9  # the critical path at minimum times is a lower bound


def test_cpsat_proves_example_optimum():
    """The CP-SAT model alone (no HEFT hint, no HEFT fallback) finds and proves the optimum 73 of
    Topcuoglu's 10-task example (HEFT: 80)."""
    inst = topcuoglu_example()
    sol = CPSATGPUDagSolver(hint=False, fallback=False).solve(inst, time_limit_s=20)
    validate(inst, sol)
    assert sol.meta["solution_source"] == "cpsat"
    assert sol.status == "optimal"
    assert sol.makespan(inst) == 73.0
    assert sol.bound == 73.0
    default = CPSATGPUDagSolver().solve(inst, time_limit_s=20)  # with hint and fallback: the same optimum
    assert (default.status, default.makespan(inst), default.meta["solution_source"]) == ("optimal", 73.0, "cpsat")


def _sequential_on(inst, device):
    """A valid but poor schedule: every task on ``device`` in index order (a topological order)."""
    return retime(inst, np.full(inst.n_tasks, device), np.arange(inst.n_tasks, dtype=np.float64))


def test_cpsat_fallback_to_heft_is_reported():
    inst = topcuoglu_example()
    heft_sol = schedule(inst, "heft")
    worse = _sequential_on(inst, 0)
    assert worse.makespan(inst) == 127.0  # P1 runs all ten tasks: 127 > HEFT's 80
    sol = CPSATGPUDagSolver().choose_solution(inst, worse, heft_sol, proved=False)
    assert sol.status == "fallback_heft" and sol.meta["solution_source"] == "heft"
    assert np.array_equal(sol.start, heft_sol.start) and np.array_equal(sol.device, heft_sol.device)
    missing = CPSATGPUDagSolver().choose_solution(inst, None, heft_sol, proved=False)
    assert missing.status == "fallback_heft"
    alone = CPSATGPUDagSolver(fallback=False)
    own = alone.choose_solution(inst, _sequential_on(inst, 0), heft_sol, proved=False)
    assert own.status == "feasible" and own.meta["solution_source"] == "cpsat" and own.makespan(inst) == 127.0
    assert alone.choose_solution(inst, None, heft_sol, proved=False).status == "none"


class _FallbackSolver(CPSATGPUDagSolver):
    """CP-SAT whose search always comes back with a schedule worse than HEFT's."""

    def choose_solution(self, inst, cpsat, heft_sol, proved):
        return super().choose_solution(inst, _sequential_on(inst, 0), heft_sol, proved=False)


def test_fallback_heft_is_a_valid_solved_status():
    """run_episode validates and measures a fallback schedule, and the leaderboard's aggregate counts it
    as solved (not failed)."""
    from schedgym.evaluation.aggregate import aggregate

    domain = get_domain("gpudag")
    res = run_episode(domain, load_instance("topcuoglu-example"), _FallbackSolver(), time_limit_s=5)
    assert res.status == "fallback_heft", res.error
    assert res.metrics["makespan"] == 80.0
    row = {"domain": "gpudag", "instance_set": "example", "policy": res.policy, "status": res.status,
           "metrics": res.metrics, "wall_time_s": res.wall_time_s}
    rec = next(r for r in aggregate([row], n_boot=10) if r["metric"] == "makespan")
    assert rec["failed"] == 0 and rec["episodes"] == 1 and rec["mean"] == 80.0


def test_cpsat_scaled_data_is_feasible_with_valid_bound():
    inst = load_instance("topcuoglu-v12-ccr1-a1-b0.5-s0")
    sol = CPSATGPUDagSolver().solve(inst, time_limit_s=10)
    validate(inst, sol)
    assert sol.status == "feasible"  # non-integral data: optimality of the rounded model is not claimed
    assert sol.bound <= sol.makespan(inst) + 1e-9


def test_cpsat_online_sum_of_jct():
    inst = load_instance("online-topcuoglu-v6-ccr1-a1-b0.5-j3-load0.9-s0")
    sol = CPSATGPUDagSolver(fallback=False).solve(inst, time_limit_s=10)  # CP-SAT's own schedule
    validate(inst, sol)
    assert sol.meta["solution_source"] == "cpsat"
    assert sol.bound <= sol.meta["objective"] + 1e-9
    h = schedule(inst, "heft")
    assert metrics(inst, sol)["mean_jct"] <= metrics(inst, h)["mean_jct"] + 1e-9


def test_slr_figures_near_reference():
    """Issue 5's study (50 DAGs, 50 tasks, 4 processors, alpha 1, beta 0.5, out-degree <= 3) at CCR 0.1
    and 5; reference mean SLR HEFT 1.47 / 3.45, CPOP 1.68 / 3.59 from an independent implementation."""
    ref = {"0.1": {"heft": 1.47, "cpop": 1.68}, "5": {"heft": 3.45, "cpop": 3.59}}
    for ccr, r in ref.items():
        slr = {a: [] for a in r}
        for s in range(50):
            inst = load_instance(f"topcuoglu-v50-ccr{ccr}-a1-b0.5-o3-p4-s{s}")
            for a in r:
                slr[a].append(metrics(inst, schedule(inst, a))["slr"])
        for a in r:
            assert abs(np.mean(slr[a]) / r[a] - 1) < 0.15, (ccr, a, np.mean(slr[a]))
        h, c = np.array(slr["heft"]), np.array(slr["cpop"])
        assert h.mean() < c.mean()
        if ccr == "0.1":
            assert (h < c).mean() >= 0.9


@pytest.mark.parametrize("bad", [0, -2.5, float("nan")])
def test_cpsat_rejects_non_positive_time_limit(bad):
    """Issue 11: time_limit_s <= 0 returned HEFT's hint labelled feasible, unsearched."""
    with pytest.raises(ValueError, match=r"cpsat_gpudag: time_limit_s=.* is out of range; .* > 0"):
        CPSATGPUDagSolver().solve(topcuoglu_example(), time_limit_s=bad)
