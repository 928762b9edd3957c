"""INSA, tabu search on N5 (Nowicki & Smutnicki 1996) and the disjunctive-graph helper."""

import itertools
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import schedgym  # noqa: F401
from schedgym.baselines.base import check_policy_domain
from schedgym.baselines.dispatching import DispatchingRulePolicy, solve_with_rule
from schedgym.baselines.insa import INSASolver, best_insertion, insa_graph, insertion_order
from schedgym.baselines.jobshop_graph import (
    CycleError,
    DisjunctiveGraph,
    schedule_from_sequences,
    sequences_from_solution,
)
from schedgym.baselines.tabu_jobshop import TabuSearchSolver, n5_moves, swap_estimate, swap_exact
from schedgym.envs.jobshop.instances import load_instance
from schedgym.envs.jobshop.types import JobShopInstance
from schedgym.envs.jobshop.validate import validate

ROOT = Path(__file__).resolve().parents[1]
OPTIMA = {"ft06": 55, "la01": 666, "la02": 655, "la03": 597, "la04": 590, "la05": 593}


def _tiny(seed: int, n_jobs: int = 3, n_machines: int = 3) -> JobShopInstance:
    rng = np.random.default_rng(seed)
    machines = np.array([rng.permutation(n_machines) for _ in range(n_jobs)])
    durations = rng.integers(1, 10, size=(n_jobs, n_machines))
    return JobShopInstance.from_matrices(f"tiny{seed}", machines, durations)


def _brute_force(inst: JobShopInstance) -> int:
    """Optimal makespan over every combination of machine sequences (the cyclic ones skipped)."""
    per_machine = [[o for o in range(inst.n_ops) if inst.op_machine[o] == m] for m in range(inst.n_machines)]
    best = math.inf
    for seqs in itertools.product(*(itertools.permutations(ops) for ops in per_machine)):
        try:
            best = min(best, DisjunctiveGraph(inst, seqs).makespan())
        except CycleError:
            continue
    return int(best)


# ---- graph helper ----------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["non_delay", "active"])
@pytest.mark.parametrize("name", ["ft06", "la01", "ta01"])
def test_graph_reproduces_env_schedule(name, scheme):
    """The env's rule schedule is semi-active: its machine sequences' heads are its start times."""
    inst = load_instance(name)
    env = gym.make("schedgym/JobShop-v0", instance=name, scheme=scheme)
    obs, info = env.reset(seed=0)
    policy = DispatchingRulePolicy("mwkr", scheme=scheme)
    policy.reset(env)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(policy.act(obs, info))
        done = term or trunc
    sol = info["solution"]
    assert np.array_equal(sol.start, solve_with_rule(inst, "mwkr", scheme=scheme).start)
    again = schedule_from_sequences(inst, sequences_from_solution(inst, sol))
    assert np.array_equal(again.start, sol.start)
    assert np.array_equal(again.machine, sol.machine)
    graph = DisjunctiveGraph(inst, sequences_from_solution(inst, sol))
    r, q, cmax = graph.heads_tails()
    assert cmax == sol.makespan(inst) == max(a + p + b for a, p, b in zip(r, graph.p, q, strict=True))


def test_critical_path_and_blocks():
    inst = load_instance("ta01")
    graph = insa_graph(inst)
    r, q, cmax = graph.heads_tails()
    path = graph.critical_path(r, q, cmax)
    p = graph.p
    assert r[path[0]] == 0 and r[path[-1]] + p[path[-1]] == cmax
    for a, b in itertools.pairwise(path):  # consecutive, tight, along a job or a machine arc
        assert b in (graph.job_next[a], graph.mach_next[a]) and r[a] + p[a] == r[b]
    blocks = graph.blocks(path)
    assert [o for blk in blocks for o in blk] == path
    for blk in blocks:
        assert len({graph.machine[o] for o in blk}) == 1
    for b1, b2 in itertools.pairwise(blocks):
        assert graph.mach_next[b1[-1]] != b2[0]


@pytest.mark.parametrize("name", ["la03", "ta21"])
def test_swap_update_matches_full_recomputation(name):
    """The incremental order / heads / tails update after a critical swap equals recomputing them."""
    inst = load_instance(name)
    graph = insa_graph(inst)
    order, r = graph.order_and_heads()
    q = graph.tails(order)
    pos = [0] * graph.n
    for k, o in enumerate(order):
        pos[o] = k
    rng = np.random.default_rng(0)
    for _ in range(150):
        cmax = max(a + b for a, b in zip(r, graph.p, strict=True))
        blocks = graph.blocks(graph.critical_path(r, q, cmax))
        pairs = [(b[k], b[k + 1]) for b in blocks for k in range(len(b) - 1)]
        u, v = pairs[int(rng.integers(len(pairs)))]
        new_cmax = graph.swap_update(u, v, order, pos, r, q)
        r2, q2, c2 = graph.heads_tails()
        assert (r, q, new_cmax) == (r2, q2, c2)
        assert sorted(order) == list(range(graph.n)) and all(order[pos[o]] == o for o in order)
        for o in order:  # still a topological order
            for s in (graph.job_next[o], graph.mach_next[o]):
                assert s == -1 or pos[s] > pos[o]


def test_cycle_detected():
    inst = JobShopInstance.from_matrices("x", np.array([[0, 1], [1, 0]]), np.array([[1, 1], [1, 1]]))
    # job 0: op0 on m0 then op1 on m1; job 1: op2 on m1 then op3 on m0. m0: op3 before op0 and
    # m1: op1 before op2 closes the cycle op0 -> op1 -> op2 -> op3 -> op0.
    with pytest.raises(CycleError):
        DisjunctiveGraph(inst, [[3, 0], [1, 2]]).heads_tails()
    with pytest.raises(ValueError, match="another machine"):
        DisjunctiveGraph(inst, [[1, 0], [2, 3]])


def test_flexible_instance_rejected():
    mk01 = load_instance("mk01")
    with pytest.raises(ValueError, match="flexible"):
        INSASolver().solve(mk01)
    with pytest.raises(ValueError, match="flexible"):
        TabuSearchSolver(max_iters=10).solve(mk01, 1.0)


# ---- INSA -------------------------------------------------------------------------------------
def test_insertion_formula_matches_inserted_graph():
    """The insertion's head + p + tail formula equals the longest path through the operation after
    the insertion; every other position is either cyclic or no shorter."""
    inst = load_instance("la01")
    graph = DisjunctiveGraph(inst)
    first, rest = insertion_order(inst)
    for o in first:
        graph.insert(o, len(graph.seqs[graph.machine[o]]))
    for v in rest[:25]:
        pos, length = best_insertion(graph, v)
        for i in range(len(graph.seqs[graph.machine[v]]) + 1):
            trial = DisjunctiveGraph(inst, graph.sequences())
            trial.insert(v, i)
            try:
                r, q, _ = trial.heads_tails()
            except CycleError:
                assert i != pos
                continue
            through = r[v] + trial.p[v] + q[v]
            assert through >= length and (i != pos or through == length)
        graph.insert(v, pos)


@pytest.mark.parametrize("name", [*OPTIMA, "ta01", "ta11", "ta21", "ta31"])
def test_insa_valid_and_deterministic(name):
    inst = load_instance(name)
    a, b = INSASolver().solve(inst), INSASolver().solve(inst)
    validate(inst, a)
    assert np.array_equal(a.start, b.start)
    assert a.makespan(inst) >= inst.lower_bound
    assert a.bound is not None and a.makespan(inst) >= a.bound
    assert a.meta["makespan"] == a.makespan(inst)


def test_insa_order_is_the_papers():
    inst = load_instance("ta01")
    first, rest = insertion_order(inst)
    p = inst.proc[np.arange(inst.n_ops), inst.op_machine]
    totals = [p[list(inst.job_ops(j))].sum() for j in range(inst.n_jobs)]
    assert first == list(inst.job_ops(int(np.argmax(totals))))
    assert all(p[a] >= p[b] for a, b in itertools.pairwise(rest))
    assert len(first) + len(rest) == inst.n_ops


def test_insa_taillard_15x15_gap_near_published():
    """INSA's mean gap on Taillard 15x15 (published 14.5 %, Corsini et al. 2024 results sheet)."""
    gaps = []
    for k in range(1, 11):
        inst = load_instance(f"ta{k:02d}")
        gaps.append(INSASolver().solve(inst).makespan(inst) / inst.upper_bound - 1)
    assert abs(100 * np.mean(gaps) - 14.5) <= 1.0


def test_insa_bad_parameters():
    with pytest.raises(ValueError, match="first_job"):
        INSASolver(first_job="shortest")
    for bad in (0, -1.0, math.nan, "x"):
        with pytest.raises(ValueError, match="time_limit_s"):
            INSASolver().solve(load_instance("ft06"), bad)


# ---- tabu search --------------------------------------------------------------------------------
def test_n5_moves_and_estimate():
    """N5 takes the first / last pair of the inner blocks only; the estimate is exact or a lower bound."""
    inst = load_instance("la03")
    graph = insa_graph(inst)
    for _ in range(40):
        r, q, cmax = graph.heads_tails()
        blocks = graph.blocks(graph.critical_path(r, q, cmax))
        moves = n5_moves(graph, blocks)
        firsts = {(b[0], b[1]) for b in blocks[1:] if len(b) > 1}
        lasts = {(b[-2], b[-1]) for b in blocks[:-1] if len(b) > 1}
        assert set(moves) == (firsts | lasts if len(blocks) > 1 else set())
        exact = [swap_exact(graph, u, v) for u, v in moves]
        assert graph.heads_tails()[2] == cmax  # swap_exact leaves the graph unchanged
        for (u, v), x in zip(moves, exact, strict=True):
            assert swap_estimate(graph, r, q, u, v) <= x
        if not moves:
            break
        graph.swap(*moves[int(np.argmin(exact))])


@pytest.mark.parametrize("name", list(OPTIMA))
def test_tabu_reaches_optimum_on_small_classics(name):
    inst = load_instance(name)
    sol = TabuSearchSolver(time_limit_s=20.0).solve(inst)
    validate(inst, sol)
    assert sol.makespan(inst) <= OPTIMA[name] * 1.01
    if name in ("ft06", "la01"):
        assert sol.makespan(inst) == OPTIMA[name] and sol.status == "optimal"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tabu_brute_force_tiny(seed):
    inst = _tiny(seed)
    opt = _brute_force(inst)
    sol = TabuSearchSolver(max_iters=2000, time_limit_s=math.inf).solve(inst)
    validate(inst, sol)
    assert sol.makespan(inst) == opt


@pytest.mark.parametrize("evaluation", ["estimate", "exact"])
def test_tabu_never_worse_than_insa(evaluation):
    inst = load_instance("ta01")
    insa = INSASolver().solve(inst).makespan(inst)
    sol = TabuSearchSolver(max_iters=300, evaluation=evaluation, time_limit_s=math.inf).solve(inst)
    validate(inst, sol)
    assert sol.meta["start_makespan"] == insa
    assert sol.makespan(inst) == sol.meta["makespan"] < insa
    assert sol.meta["iterations"] == 300 and sol.meta["stop_reason"] == "max_iters"


@pytest.mark.parametrize("name", ["ta11", "ta21", "ta31"])
def test_tabu_valid_on_taillard(name):
    inst = load_instance(name)
    sol = TabuSearchSolver(max_iters=200).solve(inst, 30.0)
    validate(inst, sol)
    assert inst.lower_bound <= sol.makespan(inst) <= sol.meta["start_makespan"]


def test_tabu_deterministic_per_seed():
    """Same seed and iteration budget, same schedule, restarts (the random part) included."""
    inst = load_instance("la03")
    kw = dict(max_iters=6000, max_no_improve=300, time_limit_s=math.inf)
    a, b = TabuSearchSolver(seed=3, **kw).solve(inst), TabuSearchSolver(seed=3, **kw).solve(inst)
    assert a.meta["restarts"] > 0
    assert np.array_equal(a.start, b.start) and a.meta["iterations"] == b.meta["iterations"]
    c = TabuSearchSolver(restarts=False, **kw).solve(inst)
    assert c.meta["stop_reason"] in ("exhausted", "lower_bound") and c.meta["restarts"] == 0


def test_tabu_time_limit_respected():
    inst = load_instance("ta21")
    sol = TabuSearchSolver().solve(inst, 0.5)
    validate(inst, sol)
    assert sol.meta["stop_reason"] == "time_limit" and sol.meta["time_limit_s"] == 0.5
    assert sol.meta["wall_time_s"] < 0.5 + 1.5  # the INSA start (~0.1 s) plus one iteration's overshoot
    # the constructor's limit (a tabu_10s config) overrides the caller's
    own = TabuSearchSolver(time_limit_s=0.3).solve(inst, 60.0)
    assert own.meta["time_limit_s"] == 0.3 and own.meta["wall_time_s"] < 0.3 + 1.5


def test_tabu_bad_parameters():
    for kw in (dict(tenure=0), dict(max_no_improve=0), dict(elite_size=-1), dict(evaluation="fast"),
               dict(max_iters=-5), dict(first_job="x"), dict(perturbation=0), dict(time_limit_s=0),
               dict(time_limit_s=-2.0), dict(tenure=2.5)):
        with pytest.raises(ValueError):
            TabuSearchSolver(**kw)
    with pytest.raises(ValueError, match="time_limit_s"):
        TabuSearchSolver().solve(load_instance("ft06"), math.nan)


@pytest.mark.parametrize("name, cls, limit", [("insa", INSASolver, None), ("tabu", TabuSearchSolver, None),
                                              ("tabu_10s", TabuSearchSolver, 10.0),
                                              ("tabu_60s", TabuSearchSolver, 60.0)])
def test_policy_configs(name, cls, limit):
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(ROOT / "conf" / "policy"), version_base=None):
        cfg = compose(config_name=name)
    check_policy_domain(name, cfg, "jobshop")
    solver = instantiate(cfg)
    assert isinstance(solver, cls)
    if cls is TabuSearchSolver:
        assert solver.time_limit_s == limit
