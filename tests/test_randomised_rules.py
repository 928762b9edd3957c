"""Randomised dispatching rules, best of k (baselines/randomised_rules.py)."""

import math
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from schedgym.baselines.base import check_policy_domain
from schedgym.baselines.dispatching import RULES, solve_with_rule
from schedgym.baselines.randomised_rules import NOISES, RandomisedRuleSolver, window_ranks
from schedgym.envs.core.errors import PolicyDomainError
from schedgym.envs.jobshop.instances import load_instance
from schedgym.envs.jobshop.state import JobShopState
from schedgym.envs.jobshop.types import JobShopInstance
from schedgym.envs.jobshop.validate import validate

CONF = Path(__file__).resolve().parents[1] / "conf" / "policy"


def _solve(inst, seed=0, **kw):
    solver = RandomisedRuleSolver(**kw)
    solver.reset_seed(seed)
    sol = solver.solve(inst)
    validate(inst, sol)
    return sol


def _random_instance(rng, flexible=False, n_jobs=4, n_machines=3):
    ops = rng.integers(1, 4, size=n_jobs)
    job_ptr = np.concatenate([[0], np.cumsum(ops)]).astype(np.int64)
    n_ops = int(job_ptr[-1])
    eligible = np.zeros((n_ops, n_machines), dtype=bool)
    proc = np.zeros((n_ops, n_machines), dtype=np.int64)
    for o in range(n_ops):
        k = int(rng.integers(1, n_machines + 1)) if flexible else 1
        ms = rng.choice(n_machines, size=k, replace=False)
        eligible[o, ms] = True
        proc[o, ms] = rng.integers(0, 10, size=k)  # zero durations included
    release = rng.integers(0, 6, size=n_jobs).astype(np.int64)
    return JobShopInstance(name="r", job_ptr=job_ptr, proc=proc, eligible=eligible, release=release)


def _classic_instance(rng, n_jobs, n_machines):
    """Every job visits every machine once, in a random order; durations 1-9."""
    n_ops = n_jobs * n_machines
    eligible = np.zeros((n_ops, n_machines), dtype=bool)
    proc = np.zeros((n_ops, n_machines), dtype=np.int64)
    for j in range(n_jobs):
        for pos, m in enumerate(rng.permutation(n_machines)):
            eligible[j * n_machines + pos, m] = True
            proc[j * n_machines + pos, m] = rng.integers(1, 10)
    return JobShopInstance(name="c", job_ptr=np.arange(0, n_ops + 1, n_machines), proc=proc, eligible=eligible,
                           release=np.zeros(n_jobs, dtype=np.int64))


# -- the deterministic sample and the lock-step engine ---------------------------------------------

@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("name", ["ft06", "ta01"])
def test_one_sample_is_the_deterministic_rule(rule, name):
    inst = load_instance(name)
    sol = _solve(inst, rule=rule, samples=1)
    ref = solve_with_rule(inst, rule)
    assert np.array_equal(sol.start, ref.start) and np.array_equal(sol.machine, ref.machine)
    assert sol.meta["samples"] == 1 and sol.meta["makespan"] == sol.meta["deterministic_makespan"]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_lockstep_engine_with_window_1_reproduces_the_rule(rule):
    """A window of 1 leaves the priority order as it is: every sample is the deterministic schedule."""
    from schedgym.baselines.randomised_rules import _Static

    for name in ("ta01", "la01"):
        inst = load_instance(name)
        solver = RandomisedRuleSolver(rule=rule, window=1)
        start, _, mk = solver._classic_batch(_Static(inst), 3)
        ref = solve_with_rule(inst, rule)
        assert all(np.array_equal(s, ref.start) for s in start)
        assert (mk == ref.makespan(inst)).all()


@pytest.mark.parametrize("rule", ["mwkr", "fdd_mwkr", "spt", "fifo"])
def test_lockstep_engine_matches_the_state_core_on_random_instances(rule):
    """Window 1 on instances with release dates and zero durations: the same schedule as the rule."""
    from schedgym.baselines.randomised_rules import _Static

    rng = np.random.default_rng(3)
    for _ in range(30):
        inst = _random_instance(rng)
        start, _, _ = RandomisedRuleSolver(rule=rule, window=1)._classic_batch(_Static(inst), 2)
        assert np.array_equal(start[1], solve_with_rule(inst, rule).start)


# -- correctness ------------------------------------------------------------------------------------

@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("name, optimum", [("ft06", 55), ("la01", 666)])
def test_best_of_k_is_valid_no_worse_than_the_rule_and_not_below_the_optimum(noise, name, optimum):
    inst = load_instance(name)
    sol = _solve(inst, rule="mopnr", samples=64, noise=noise)
    mk = sol.makespan(inst)
    assert optimum <= mk <= solve_with_rule(inst, "mopnr").makespan(inst)
    assert sol.meta["makespan"] == mk and sol.meta["samples"] == 64 and sol.status == "feasible"


def _best_non_delay(inst):
    """Smallest makespan over every non-delay schedule (depth-first over the candidate choices)."""
    best = math.inf

    def dfs(state):
        nonlocal best
        if state.done:
            best = min(best, state.solution().makespan(inst))
            return
        for j in np.flatnonzero(state.job_mask()):
            child = state.clone()
            child.schedule(int(j))
            dfs(child)

    dfs(JobShopState(inst, scheme="non_delay"))
    return best


@pytest.mark.parametrize("noise", ["softmax", "window"])
def test_enough_samples_find_the_best_non_delay_schedule_of_tiny_instances(noise):
    """3 jobs: a window of 3 (or a hot softmax) reaches every non-delay schedule; the best of 300
    samples is the best non-delay schedule found by brute force, and never below it."""
    rng = np.random.default_rng(11)
    beaten = 0
    for _ in range(8):
        tiny = _classic_instance(rng, 3, 3)
        best = _best_non_delay(tiny)
        mk = _solve(tiny, rule="mwkr", samples=300, noise=noise, temperature=5.0).makespan(tiny)
        assert mk == best
        beaten += solve_with_rule(tiny, "mwkr").makespan(tiny) > best
    assert beaten  # some of them are instances where the deterministic rule misses the best


@pytest.mark.parametrize("noise", NOISES)
def test_flexible_instances(noise):
    inst = load_instance("mk01")
    sol = _solve(inst, rule="mwkr", samples=8, noise=noise)
    assert sol.makespan(inst) <= solve_with_rule(inst, "mwkr").makespan(inst)
    rng = np.random.default_rng(5)
    for _ in range(10):
        small = _random_instance(rng, flexible=True)
        _solve(small, rule="spt", samples=5, noise=noise)


@pytest.mark.parametrize("noise, tie_break", [(n, "index") for n in NOISES] + [("window", "recent")])
def test_valid_on_taillard(noise, tie_break):
    for name in ("ta01", "ta21", "ta41"):
        inst = load_instance(name)
        sol = _solve(inst, rule="mopnr", samples=16, noise=noise, tie_break=tie_break)
        assert sol.makespan(inst) <= sol.meta["deterministic_makespan"]


def test_recent_tie_break_on_flexible_instances():
    inst = load_instance("mk01")
    _solve(inst, rule="mopnr", samples=4, noise="window", tie_break="recent")


# -- determinism and time limit ---------------------------------------------------------------------

def test_deterministic_per_seed():
    inst = load_instance("ta01")
    for noise in NOISES:
        a, b = _solve(inst, seed=4, noise=noise, samples=32), _solve(inst, seed=4, noise=noise, samples=32)
        assert np.array_equal(a.start, b.start)
    solver = RandomisedRuleSolver(noise="softmax", samples=32, batch_size=8)
    solver.reset_seed(4)
    first = solver.solve(inst).start
    solver.reset_seed(4)
    assert np.array_equal(solver.solve(inst).start, first)  # reset_seed restarts the stream
    outcomes = {int(_solve(inst, seed=s, noise="softmax", samples=8).makespan(inst)) for s in range(6)}
    assert len(outcomes) > 1  # the episode seed matters


def test_time_limit_stops_sampling_after_the_current_batch():
    inst = load_instance("ta21")
    solver = RandomisedRuleSolver(samples=10_000, batch_size=16)
    sol = solver.solve(inst, time_limit_s=0.3)
    validate(inst, sol)
    assert 1 <= sol.meta["samples"] < 10_000 and sol.meta["wall_time_s"] < 3.0
    sol = solver.solve(inst, time_limit_s=1e-9)  # only the deterministic rule
    assert sol.meta["samples"] == 1
    for bad in (0, -1.0, math.nan, "x", True):
        with pytest.raises(ValueError, match="time_limit_s"):
            solver.solve(inst, time_limit_s=bad)


@pytest.mark.parametrize("kwargs, match", [
    ({"rule": "mor"}, "dispatching rule"),
    ({"rule": "random"}, "dispatching rule"),
    ({"noise": "gauss"}, "noise"),
    ({"samples": 0}, "samples"),
    ({"samples": 2.5}, "samples"),
    ({"window": 0}, "window"),
    ({"batch_size": 0}, "batch_size"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": math.inf}, "temperature"),
    ({"tie_break": "oldest"}, "tie_break"),
])
def test_bad_parameters_are_rejected(kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):
        RandomisedRuleSolver(**kwargs)


# -- the sliding window ----------------------------------------------------------------------------

def test_window_ranks_are_a_bounded_perturbation_of_the_priority_order():
    rng = np.random.default_rng(0)
    prio = rng.integers(0, 5, size=(200, 9)).astype(float)
    active = rng.random((200, 9)) < 0.8
    for w in (1, 2, 3, 5):
        ranks = window_ranks(prio, active, w, rng)
        order = np.argsort(np.where(active, -prio, np.inf), axis=1, kind="stable")
        for r in range(200):
            n = int(active[r].sum())
            sorted_pos = np.empty(9, dtype=int)
            sorted_pos[order[r]] = np.arange(9)
            assert sorted(ranks[r][active[r]]) == list(range(n))
            assert (ranks[r][~active[r]] == 9).all()
            # a job moves up at most w - 1 places; window 1 is the priority order itself
            assert (ranks[r][active[r]] >= sorted_pos[active[r]] - (w - 1)).all()
    # ties: lower index first, or the larger recency first
    tied, everyone = np.array([[2.0, 5.0, 5.0, 5.0]]), np.ones((1, 4), bool)
    assert window_ranks(tied, everyone, 1, rng).tolist() == [[3, 0, 1, 2]]
    assert window_ranks(tied, everyone, 1, rng, recency=np.array([[9, 4, 7, 5]])).tolist() == [[3, 2, 0, 1]]
    # with window 3 the top job is first with probability 1/3
    ranks = window_ranks(np.tile(np.arange(6.0)[::-1], (3000, 1)), np.ones((3000, 6), bool), 3, rng)
    assert abs((ranks[:, 0] == 0).mean() - 1 / 3) < 0.04


# -- configs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, rule", [("random_mor", "mopnr"), ("random_mwkr", "mwkr"),
                                        ("random_fdd_mwkr", "fdd_mwkr"), ("random_mopnr", "mopnr")])
def test_configs_build_the_solver_for_the_jobshop_only(name, rule):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    solver = instantiate(cfg, _convert_="all")
    assert isinstance(solver, RandomisedRuleSolver) and solver.rule == rule and solver.samples == 128
    if name == "random_mor":  # Corsini et al.'s protocol
        assert (solver.noise, solver.window, solver.tie_break) == ("window", 3, "recent")
    check_policy_domain(name, cfg, "jobshop")
    with pytest.raises(PolicyDomainError):
        check_policy_domain(name, cfg, "llmserve")
    solver = instantiate(OmegaConf.merge(cfg, {"samples": 4}), _convert_="all")
    sol = solver.solve(load_instance("ft06"), 10.0)
    validate(load_instance("ft06"), sol)
    assert sol.meta["samples"] == 4
