"""Best-of-k sampling of the shipped job-shop policy (SampledPolicySolver): reproducible, its first
episode is the greedy policy's, and every solution passes the validator."""

from __future__ import annotations

import numpy as np
import pytest

import schedgym.agents.trained as trained
from schedgym.agents.trained import SampledPolicySolver
from schedgym.envs.core.domain import get_domain
from schedgym.envs.jobshop.instances import load_instance
from schedgym.envs.jobshop.validate import validate


@pytest.mark.parametrize("name", ["ft10", "la16", "ta01"])
def test_first_sample_is_the_greedy_policy(name: str, jobshop_greedy_makespan) -> None:
    """The lock-step batched sampler applies to the shipped policy and its first episode is greedy."""
    inst = load_instance(name)
    solver = SampledPolicySolver(samples=1, domain="jobshop")
    assert solver._batched_sampler(get_domain("jobshop"), inst, "makespan") is not None
    sol = solver.solve(inst)
    validate(inst, sol)
    assert sol.meta["samples"] == 1
    assert int(sol.makespan(inst)) == jobshop_greedy_makespan(name)


def test_same_seed_same_result_and_valid(jobshop_greedy_makespan) -> None:
    inst = load_instance("la16")
    a = SampledPolicySolver(samples=12, batch_size=5, seed=3, domain="jobshop").solve(inst)
    b = SampledPolicySolver(samples=12, batch_size=5, seed=3, domain="jobshop").solve(inst)
    validate(inst, a)
    assert np.array_equal(a.start, b.start) and np.array_equal(a.machine, b.machine)
    assert a.meta["samples"] == 12
    assert a.makespan(inst) <= jobshop_greedy_makespan("la16")  # the greedy episode is one of the 12


def test_every_sampled_solution_is_valid_and_samples_differ(monkeypatch) -> None:
    """Collect every finished episode of one solve: all pass the validator, and sampling explores."""
    inst = load_instance("ft10")
    seen = []
    real = trained.SampledPolicySolver._finished

    def spy(infos, objective):
        seen.extend(info["solution"] for info in infos if "solution" in info)
        return real(infos, objective)

    monkeypatch.setattr(trained.SampledPolicySolver, "_finished", staticmethod(spy))
    best = SampledPolicySolver(samples=16, seed=0, domain="jobshop", batched=False).solve(inst)  # the env loop
    assert len(seen) == 16
    for sol in seen:
        validate(inst, sol)
    makespans = {int(s.makespan(inst)) for s in seen}
    assert len(makespans) > 1
    assert int(best.makespan(inst)) == min(makespans)


def test_forced_steps_skip_the_network(monkeypatch) -> None:
    """An episode with one valid action takes it without a forward pass (non-delay has many)."""
    inst = load_instance("ft06")
    rows = []
    real = trained.masked_logits

    def counting(policy, obs, masks):
        rows.append(len(masks))
        assert np.all(np.asarray(masks).sum(axis=1) > 1)
        return real(policy, obs, masks)

    monkeypatch.setattr(trained, "masked_logits", counting)
    sol = SampledPolicySolver(samples=4, domain="jobshop", batched=False).solve(inst)  # the env loop
    validate(inst, sol)
    assert 0 < sum(rows) < 4 * inst.n_ops
