"""The vectorised lock-step sampler of job-shop graph policies (agents/batched_sampler.py) against the
single env and the policy's own forward pass: the batch state steps like ``JobShopState``, the node
features are the env observation's bit for bit, the logits are ``masked_logits``' up to float
rounding, the greedy episode is ``TrainedPolicy``'s, and the sampled episodes are valid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from schedgym.agents.batched_sampler import BatchedJobShopSampler, supports
from schedgym.agents.policies import masked_logits
from schedgym.agents.trained import SampledPolicySolver, TrainedPolicy, _obs_to_tensor
from schedgym.envs.core.domain import get_domain
from schedgym.envs.jobshop.batch_state import BatchJobShopState
from schedgym.envs.jobshop.env import JobShopEnv
from schedgym.envs.jobshop.instances import load_instance
from schedgym.envs.jobshop.types import JobShopInstance
from schedgym.envs.jobshop.validate import validate


def _ragged_instance(seed: int = 0) -> JobShopInstance:
    """Jobs of 2-6 operations (a machine may repeat, also back to back), release and due dates."""
    rng = np.random.default_rng(seed)
    J, M = 7, 4
    lengths = rng.integers(2, 7, size=J)
    ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    O = int(ptr[-1])
    machines = rng.integers(0, M, size=O)
    machines[1] = machines[0]  # job 0's first two operations on one machine: a parallel edge
    proc = np.zeros((O, M), dtype=np.int64)
    proc[np.arange(O), machines] = rng.integers(1, 20, size=O)
    eligible = proc > 0
    release = rng.integers(0, 15, size=J)
    due = release + rng.integers(30, 90, size=J)
    return JobShopInstance("ragged", ptr, proc, eligible, release.astype(np.int64), due=due.astype(np.int64))


def _envs(inst: JobShopInstance, n: int, **kwargs) -> list[JobShopEnv]:
    envs = [JobShopEnv(instance=inst, scheme="non_delay", **kwargs) for _ in range(n)]
    for e in envs:
        e.reset(seed=0, options={"instance": inst})
    return envs


def _lockstep(inst: JobShopInstance, envs: list[JobShopEnv], seed: int = 0):
    """Drive ``envs`` and a batch state with the same random valid actions; yields before each step
    ``(state, mask, now)`` after checking the state against the envs."""
    rng = np.random.default_rng(seed)
    state = BatchJobShopState(inst, len(envs))
    while not state.done:
        mask, now = state.masks()
        for b, e in enumerate(envs):
            assert np.array_equal(e.action_masks()[: inst.n_jobs], mask[b])
            assert e._now() == now[b]
            assert np.array_equal(e.state.lb, state.lb(np.array([b]))[0])
            assert e.state.max_lb() == state.max_lb(np.array([b]))[0]
        yield state, mask, now
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
        for e, a in zip(envs, actions):
            e.advance(int(a))
        state.schedule(actions)
    for b, e in enumerate(envs):
        assert np.array_equal(e.state.start, state.start[b]) and np.array_equal(e.state.end, state.end[b])
        assert np.array_equal(e.state.mach_prev, state.mach_prev[b])
        assert np.array_equal(e.state.mach_next, state.mach_next[b])
        sol = state.solution(b)
        validate(inst, sol)
        assert np.array_equal(sol.machine, e.state.solution().machine)


@pytest.mark.parametrize("name", ["ft06", "la16", "ragged"])
@pytest.mark.parametrize("time_origin", ["now", "zero"])
def test_batch_state_and_features_equal_the_env(name: str, time_origin: str) -> None:
    inst = _ragged_instance() if name == "ragged" else load_instance(name)
    envs = _envs(inst, 3, time_origin=time_origin)
    policy = TrainedPolicy()._policy_for(envs[0])
    sampler = BatchedJobShopSampler(policy, envs[0])
    for state, mask, now in _lockstep(inst, envs):
        rows = np.array([2, 0])  # a subset, out of order
        x, g = sampler.features(state, rows, mask[rows], now[rows])
        for r, b in enumerate(rows):
            obs = envs[b].observe()
            assert np.array_equal(obs["x"], x[r])
            assert np.array_equal(obs["globals"], g[r])


@pytest.mark.parametrize("name", ["la16", "ragged"])
def test_logits_equal_the_policy_forward_pass(name: str) -> None:
    """Per step, on the same partial schedules, the batched logits are ``masked_logits``' on the
    env's observations (float tolerance: the neighbour sums run in another order)."""
    inst = _ragged_instance(1) if name == "ragged" else load_instance(name)
    agent = TrainedPolicy()
    envs = _envs(inst, 4, time_origin=agent.env_kwargs["time_origin"])
    policy = agent._policy_for(envs[0])
    sampler = BatchedJobShopSampler(policy, envs[0])
    sampler.chunk_nodes = 2 * inst.n_ops  # several chunks per forward pass
    steps = 0
    for state, mask, now in _lockstep(inst, envs, seed=5):
        choose = np.flatnonzero(mask.sum(axis=1) > 1)
        if not choose.size:
            continue
        with torch.inference_mode():
            ref = masked_logits(policy, _obs_to_tensor([envs[b].observe() for b in choose]), mask[choose])
            out = sampler.logits(state, choose, mask[choose], now[choose])
        valid = torch.as_tensor(mask[choose])
        assert torch.equal(out[~valid], ref[~valid])
        torch.testing.assert_close(out[valid], ref[valid], rtol=1e-5, atol=1e-5)
        assert torch.equal(out.argmax(1), ref.argmax(1))
        steps += 1
    assert steps > 10


def test_batched_and_generic_solvers_agree() -> None:
    """Same seed, same draws: the same softmax, sampled in the same order, gives the same episodes
    (the generic loop over gymnasium envs is the reference)."""
    inst = load_instance("ft06")
    fast = SampledPolicySolver(samples=16, seed=2, domain="jobshop").solve(inst)
    slow = SampledPolicySolver(samples=16, seed=2, domain="jobshop", batched=False).solve(inst)
    validate(inst, fast)
    assert np.array_equal(fast.start, slow.start) and np.array_equal(fast.machine, slow.machine)


def test_sampled_episodes_are_valid_seeded_and_explore(jobshop_greedy_makespan) -> None:
    inst = load_instance("la16")
    agent = TrainedPolicy()
    env = get_domain("jobshop").make_env(inst, **agent.env_kwargs)
    env.reset(seed=0, options={"instance": inst})
    sampler = BatchedJobShopSampler(agent._policy_for(env), env.unwrapped)
    a = sampler.run(12, torch.Generator().manual_seed(3))
    b = sampler.run(12, torch.Generator().manual_seed(3))
    assert np.array_equal(a.start, b.start)
    for k in range(12):
        validate(inst, a.solution(k))
    makespans = a.end.max(axis=1)
    assert makespans[0] == jobshop_greedy_makespan("la16")
    assert len(set(makespans.tolist())) > 1
    sol, best = sampler.best(a)
    assert best == makespans.min() and int(sol.makespan(inst)) == best


def test_unsupported_configurations_use_the_generic_loop() -> None:
    inst = load_instance("ft06")
    agent = TrainedPolicy()
    active = JobShopEnv(instance=inst, scheme="active", time_origin="now")
    active.reset(seed=0)
    assert not supports(agent._policy_for(active), active)
    with pytest.raises(ValueError, match="non_delay"):
        BatchedJobShopSampler(agent._policy_for(active), active)
    with pytest.raises(ValueError, match="classic"):
        BatchJobShopState(load_instance("mk01"), 2)


def test_forced_steps_skip_the_network(monkeypatch) -> None:
    """The batched sampler scores only the episodes with a choice (non-delay has many forced steps)."""
    inst = load_instance("ft06")
    rows = []
    real = BatchedJobShopSampler.logits

    def counting(self, state, choose, mask, now):
        rows.append(len(choose))
        assert np.all(mask.sum(axis=1) > 1)
        return real(self, state, choose, mask, now)

    monkeypatch.setattr(BatchedJobShopSampler, "logits", counting)
    sol = SampledPolicySolver(samples=4, domain="jobshop").solve(inst)
    validate(inst, sol)
    assert 0 < sum(rows) < 4 * inst.n_ops
