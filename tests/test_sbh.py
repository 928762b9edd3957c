"""Shifting Bottleneck (baselines/sbh.py) and its exact one-machine solver (baselines/single_machine.py)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from schedgym.baselines.base import Solver, check_policy_domain
from schedgym.baselines.cpsat_jobshop import solve_cpsat
from schedgym.baselines.sbh import CycleError, ShiftingBottleneckSolver, _Graph, solve_sbh
from schedgym.baselines.single_machine import (
    carlier,
    evaluate_sequence,
    preemptive_bound,
    schrage,
)
from schedgym.envs.jobshop.instances import load_instance
from schedgym.envs.jobshop.types import JobShopInstance
from schedgym.envs.jobshop.validate import validate


def _brute_force(r: list[int], p: list[int], q: list[int]) -> int:
    return min(evaluate_sequence(r, p, q, s) for s in itertools.permutations(range(len(p))))


# ---- one-machine problem 1|r_j, q_j|C_max ---------------------------------------------------------
@st.composite
def _one_machine(draw: st.DrawFn) -> tuple[list[int], list[int], list[int]]:
    n = draw(st.integers(1, 7))
    ints = st.integers(0, 40)
    r = draw(st.lists(ints, min_size=n, max_size=n))
    p = draw(st.lists(st.integers(0, 15), min_size=n, max_size=n))
    q = draw(st.lists(ints, min_size=n, max_size=n))
    return r, p, q


@settings(max_examples=300, deadline=None)
@given(_one_machine())
def test_carlier_matches_brute_force(problem: tuple[list[int], list[int], list[int]]) -> None:
    r, p, q = problem
    best = _brute_force(r, p, q)
    res = carlier(r, p, q)
    assert res.proved
    assert res.value == best == res.lower_bound
    assert sorted(res.sequence) == list(range(len(p)))
    assert evaluate_sequence(r, p, q, res.sequence) == best
    assert preemptive_bound(r, p, q) <= best <= schrage(r, p, q)[0]


@st.composite
def _one_machine_with_precedences(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], list[list[int]], list[int]]:
    """Heads and tails from a random DAG's longest paths, as SBH builds them (consistent with the arcs)."""
    n = draw(st.integers(2, 7))
    p = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    arcs = draw(st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda a: a[0] < a[1]),
                        max_size=n))
    lags = {a: draw(st.integers(0, 10)) for a in sorted(arcs)}  # time spent on other machines in between
    r = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    q = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    for (i, j) in sorted(arcs):  # index order is topological
        r[j] = max(r[j], r[i] + p[i] + lags[(i, j)])
    for (i, j) in sorted(arcs, reverse=True):
        q[i] = max(q[i], lags[(i, j)] + p[j] + q[j])
    preds: list[set[int]] = [set() for _ in range(n)]
    for j in range(n):
        for (i, jj) in arcs:
            if jj == j:
                preds[j] |= {i} | preds[i]
    return r, p, q, [sorted(s) for s in preds], list(range(n))


@settings(max_examples=200, deadline=None)
@given(_one_machine_with_precedences())
def test_carlier_with_precedences_is_exact_and_respects_them(problem) -> None:
    r, p, q, preds, rank = problem
    best = _brute_force(r, p, q)  # without the precedences: they cost nothing when heads/tails agree
    res = carlier(r, p, q, preds=preds, rank=rank)
    assert res.proved and res.value == best
    pos = {j: k for k, j in enumerate(res.sequence)}
    assert all(pos[i] < pos[j] for j, pr in enumerate(preds) for i in pr)


def test_carlier_node_limit_and_bad_parameters() -> None:
    rng = np.random.default_rng(3)
    n = 40
    r = rng.integers(0, 400, n).tolist()
    p = rng.integers(1, 30, n).tolist()
    q = rng.integers(0, 400, n).tolist()
    full = carlier(r, p, q)
    capped = carlier(r, p, q, max_nodes=1)
    assert full.proved
    assert capped.lower_bound <= full.value <= capped.value
    assert not capped.proved and capped.nodes == 1 < full.nodes
    with pytest.raises(ValueError, match="max_nodes"):
        carlier(r, p, q, max_nodes=0)
    assert carlier([], [], []).value == 0


# ---- the Shifting Bottleneck heuristic ------------------------------------------------------------
def test_protocol_and_config_target() -> None:
    solver = ShiftingBottleneckSolver()
    assert isinstance(solver, Solver)
    assert solver.name == "sbh"
    assert solver.domains == ("jobshop",)
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "policy" / "sbh.yaml")
    built = instantiate(cfg)
    assert isinstance(built, ShiftingBottleneckSolver) and built.reopt_rounds == 3
    check_policy_domain("sbh", OmegaConf.to_container(cfg), "jobshop")


def test_ft06_reaches_the_optimum() -> None:
    inst = load_instance("ft06")
    sol = ShiftingBottleneckSolver().solve(inst, 30.0)
    validate(inst, sol)
    assert sol.makespan(inst) <= 60  # SB I with re-optimisation: 55 (the optimum) here
    assert sol.meta["makespan"] == sol.makespan(inst)
    assert sol.bound is not None and sol.bound <= 55
    assert sol.meta["subproblems_unproved"] == 0
    assert sorted(sol.meta["machine_order"]) == list(range(inst.n_machines))


@pytest.mark.parametrize("name", ["la01", "la02", "la03", "la04", "la05"])
def test_lawrence_small(name: str) -> None:
    inst = load_instance(name)
    sol = solve_sbh(inst, 30.0)
    validate(inst, sol)
    mk = sol.makespan(inst)
    assert mk <= 1.08 * inst.upper_bound  # ABZ 1988 report 666/720/623/597/593 for SB I
    assert sol.bound <= inst.upper_bound <= mk
    if name in ("la01", "la05"):  # both reach their optimum (and prove it by the one-machine bound)
        assert mk == inst.upper_bound


def test_reoptimisation_helps_and_plain_sbh_is_valid() -> None:
    inst = load_instance("ft10")
    plain = ShiftingBottleneckSolver(reopt_rounds=0).solve(inst)
    reopt = ShiftingBottleneckSolver(reopt_rounds=3).solve(inst)
    for sol in (plain, reopt):
        validate(inst, sol)
    assert plain.meta["reopt_moves"] == 0
    assert reopt.makespan(inst) < plain.makespan(inst)


def test_brute_force_tiny_instance() -> None:
    """4 jobs x 3 machines: the optimum over every machine permutation is 30, above the one-machine
    bound (29); SBH finds it."""
    machines = np.array([[2, 0, 1], [2, 1, 0], [0, 1, 2], [0, 2, 1]])
    durations = np.array([[4, 6, 8], [7, 9, 2], [8, 1, 6], [3, 2, 6]])
    inst = JobShopInstance.from_matrices("tiny4x3", machines, durations)
    graph = _Graph(inst)
    best = None
    for perms in itertools.product(*(itertools.permutations(graph.ops_of[m]) for m in range(3))):
        for perm in perms:
            graph.set_sequence(list(perm))
        try:
            mk = graph.paths().makespan
        except RuntimeError:
            continue
        best = mk if best is None else min(best, mk)
    sol = solve_sbh(inst)
    validate(inst, sol)
    assert best == 30
    assert sol.makespan(inst) == best
    assert sol.bound == 29 and sol.status == "feasible"


def test_deterministic_and_taillard_valid() -> None:
    inst = load_instance("ta01")
    a = ShiftingBottleneckSolver().solve(inst, 30.0)
    b = ShiftingBottleneckSolver().solve(inst, 30.0)
    validate(inst, a)
    assert np.array_equal(a.start, b.start)
    assert a.meta["machine_order"] == b.meta["machine_order"]
    assert a.makespan(inst) <= 1.15 * inst.upper_bound
    assert a.status == "feasible" and a.bound >= inst.lower_bound * 0.9


def test_release_dates_respected() -> None:
    inst = load_instance("la01")
    rel = JobShopInstance(name="la01_rel", job_ptr=inst.job_ptr, proc=inst.proc, eligible=inst.eligible,
                          release=np.arange(inst.n_jobs, dtype=np.int64) * 40)
    sol = solve_sbh(rel)
    validate(rel, sol)
    assert (sol.start[rel.job_ptr[:-1]] >= rel.release).all()


def test_time_limit_still_returns_a_valid_schedule() -> None:
    inst = load_instance("ta21")
    t0 = time.perf_counter()
    sol = ShiftingBottleneckSolver().solve(inst, 0.05)
    wall = time.perf_counter() - t0
    validate(inst, sol)
    assert sol.meta["time_limit_hit"]
    assert sol.meta["schrage_only"] > 0
    assert wall < 5.0  # the limit plus a Schrage-only completion (well under a second here)


def test_bad_parameters_rejected() -> None:
    with pytest.raises(ValueError, match="time_limit_s"):
        ShiftingBottleneckSolver(time_limit_s=0)
    with pytest.raises(ValueError, match="time_limit_s"):
        ShiftingBottleneckSolver().solve(load_instance("ft06"), -1.0)
    with pytest.raises(ValueError, match="reopt_rounds"):
        ShiftingBottleneckSolver(reopt_rounds=-1)
    with pytest.raises(ValueError, match="max_nodes"):
        ShiftingBottleneckSolver(max_nodes=0)
    with pytest.raises(ValueError, match="flexible"):
        ShiftingBottleneckSolver().solve(load_instance("mk01"))


@pytest.mark.parametrize("seed", range(8))
def test_random_instances_with_zero_durations_and_recirculation(seed: int) -> None:
    """Jobs that visit a machine twice and zero processing times: paths between operations of the same
    machine become precedences of its subproblem; the schedule must stay acyclic and valid."""
    rng = np.random.default_rng(seed)
    n_jobs, n_per, n_mach = 6, 5, 3
    machines = rng.integers(0, n_mach, (n_jobs, n_per))
    durations = rng.integers(0, 6, (n_jobs, n_per))
    inst = JobShopInstance.from_matrices(f"rand{seed}", machines, durations, n_machines=n_mach)
    opt = solve_cpsat(inst, time_limit_s=20.0, num_workers=1)
    assert opt.status == "optimal"
    for rounds in (0, 3):
        sol = ShiftingBottleneckSolver(reopt_rounds=rounds).solve(inst)
        validate(inst, sol)
        assert sol.bound <= opt.makespan(inst) <= sol.makespan(inst)


def test_cyclic_selection_is_detected() -> None:
    """Two jobs crossing two machines in opposite orders: selecting both 'wrong' orders closes a cycle."""
    inst = JobShopInstance.from_matrices("cross", np.array([[0, 1], [1, 0]]), np.array([[2, 3], [4, 1]]))
    graph = _Graph(inst)
    graph.set_sequence([1, 2])  # machine 1: job 0's second op before job 1's first
    graph.set_sequence([0, 3])  # machine 0: job 0's first op before job 1's second: 0 -> 1 -> 2 -> 3
    assert graph.paths().makespan == 10
    graph.set_sequence([3, 0])  # machine 0: job 1's second op first closes 0 -> 1 -> 2 -> 3 -> 0
    with pytest.raises(CycleError, match="cycle"):
        graph.paths()
