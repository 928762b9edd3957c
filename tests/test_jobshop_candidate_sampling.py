"""The lock-step batched sampler (agents/batched_sampler.py) on candidate-feature job-shop policies
(``CandidateAttentionExtractor``, ``SkipGraphExtractor``): the batch state's candidate features are the
env's ``action_attr`` bit for bit, the logits are ``masked_logits``' on the env observation up to float
rounding, the first sample is the env loop's greedy episode, and ``SampledPolicySolver`` picks the
batched sampler for such a checkpoint and draws the same episodes as its generic loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from schedgym.agents.batched_sampler import BatchedJobShopSampler, supports
from schedgym.agents.candidate_extractor import CandidateAttentionExtractor
from schedgym.agents.checkpoint import save_policy
from schedgym.agents.policies import GraphPointerPolicy, masked_logits
from schedgym.agents.skip_extractor import SkipGraphExtractor
from schedgym.agents.trained import SampledPolicySolver, _obs_to_tensor
from schedgym.envs.core.domain import get_domain
from schedgym.envs.jobshop.batch_state import BatchJobShopState
from schedgym.envs.jobshop.env import JobShopEnv
from schedgym.envs.jobshop.instances import load_instance
from schedgym.envs.jobshop.validate import validate
from tests.test_jobshop_sampling import _ragged_instance

ENV_KWARGS = {"scheme": "non_delay", "reward": "lb", "time_origin": "now", "candidate_features": True}


def _envs(inst, n: int, **kwargs) -> list[JobShopEnv]:
    envs = [JobShopEnv(instance=inst, **(ENV_KWARGS | kwargs)) for _ in range(n)]
    for e in envs:
        e.reset(seed=0, options={"instance": inst})
    return envs


def _policy(env: JobShopEnv, extractor=CandidateAttentionExtractor, seed: int = 0, **kw) -> GraphPointerPolicy:
    """A freshly initialised (seeded) pointer policy over ``extractor``; the scorer's weights are
    scaled up so that the logits of different candidates are far apart (no near ties)."""
    torch.manual_seed(seed)
    policy = GraphPointerPolicy(env.observation_space, env.action_space, lambda _: 1e-4,
                                features_extractor_class=extractor,
                                features_extractor_kwargs={"hidden_dim": 32, "skip_dim": 16} | kw)
    with torch.no_grad():
        policy.action_net.linear.weight.mul_(100.0)
    policy.set_training_mode(False)
    return policy


def _lockstep(inst, envs: list[JobShopEnv], seed: int = 0):
    """Random valid actions in ``envs`` and a batch state; yields ``(state, mask, now)`` before each step."""
    rng = np.random.default_rng(seed)
    state = BatchJobShopState(inst, len(envs))
    while not state.done:
        mask, now = state.masks()
        yield state, mask, now
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
        for e, a in zip(envs, actions):
            e.advance(int(a))
        state.schedule(actions)


@pytest.mark.parametrize("name", ["ft06", "la16", "ragged"])
@pytest.mark.parametrize("time_origin", ["now", "zero"])
def test_batch_candidate_features_equal_the_env(name: str, time_origin: str) -> None:
    inst = _ragged_instance(2) if name == "ragged" else load_instance(name)
    envs = _envs(inst, 3, time_origin=time_origin)
    steps = 0
    for state, mask, now in _lockstep(inst, envs, seed=1):
        rows = np.array([2, 0])  # a subset, out of order
        attr = state.candidate_features(rows, mask[rows], now[rows], envs[0].time_scale)
        ref = np.concatenate([envs[b].observe()["action_attr"][mask[b]] for b in rows])
        assert attr.dtype == np.float32 and np.array_equal(attr, ref)
        steps += 1
    assert steps == inst.n_ops


@pytest.mark.parametrize("extractor,kw", [(CandidateAttentionExtractor, {}),
                                          (CandidateAttentionExtractor, {"attention_layers": 2}),
                                          (CandidateAttentionExtractor, {"attention_layers": 0}),
                                          (SkipGraphExtractor, {})])
def test_logits_equal_the_policy_forward_pass(extractor, kw) -> None:
    inst = _ragged_instance(3) if kw else load_instance("la16")
    envs = _envs(inst, 4, candidate_features=extractor is CandidateAttentionExtractor)
    policy = _policy(envs[0], extractor, **kw)
    assert supports(policy, envs[0])
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
        torch.testing.assert_close(out[valid], ref[valid], rtol=1e-5, atol=1e-4)
        assert torch.equal(out.argmax(1), ref.argmax(1))
        steps += 1
    assert steps > 10


def test_candidate_policy_needs_the_candidate_env() -> None:
    inst = load_instance("ft06")
    env = _envs(inst, 1)[0]
    policy = _policy(env)
    plain = JobShopEnv(instance=inst, scheme="non_delay", time_origin="now")
    plain.reset(seed=0)
    assert supports(policy, env) and not supports(policy, plain)


def _env_loop_greedy(policy, inst) -> int:
    env = JobShopEnv(instance=inst, **ENV_KWARGS)
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        mask = np.asarray(info["action_mask"], dtype=bool)
        with torch.inference_mode():
            a = int(torch.argmax(masked_logits(policy, _obs_to_tensor([obs]), mask[None])[0]))
        obs, _, term, trunc, info = env.step(a)
        done = term or trunc
    return int(info["metrics"]["makespan"])


@pytest.mark.parametrize("name", ["ft10", "la16", "ta01"])
def test_first_sample_is_the_env_loop_greedy_episode(name: str) -> None:
    inst = load_instance(name)
    env = _envs(inst, 1)[0]
    policy = _policy(env, seed=1)
    sampler = BatchedJobShopSampler(policy, env)
    state = sampler.run(8, torch.Generator().manual_seed(0))
    for k in range(8):
        validate(inst, state.solution(k))
    makespans = state.end.max(axis=1)
    assert makespans[0] == _env_loop_greedy(policy, inst)
    assert len(set(makespans.tolist())) > 1


def test_solver_uses_the_batched_sampler_for_a_candidate_checkpoint(tmp_path) -> None:
    """Same seed, same draws: the batched sampler and the generic loop give the same episodes."""
    inst = load_instance("ft06")
    env = _envs(inst, 1)[0]
    ckpt = tmp_path / "v2.pt"
    save_policy(_policy(env, seed=2), ckpt, "schedgym/JobShop-v0", ENV_KWARGS, {"name": "test"})
    solver = SampledPolicySolver(str(ckpt), samples=16, seed=2, domain="jobshop")
    assert solver._batched_sampler(get_domain("jobshop"), inst, "makespan") is not None
    fast = solver.solve(inst)
    slow = SampledPolicySolver(str(ckpt), samples=16, seed=2, domain="jobshop", batched=False).solve(inst)
    validate(inst, fast)
    assert np.array_equal(fast.start, slow.start) and np.array_equal(fast.machine, slow.machine)
