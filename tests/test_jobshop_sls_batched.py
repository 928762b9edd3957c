"""Self-labeling on job-shop with the lock-step batched sampler (agents/batched_sampler.py
``sample_labels`` and ``greedy_metrics``): the same labels, losses and weights as the env loop of
``sample_solutions``, the same held-out greedy metrics, and other envs left to the env loop."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import schedgym  # noqa: F401
from schedgym.agents import self_labeling
from schedgym.agents.batched_sampler import greedy_metrics as batched_greedy_metrics
from schedgym.agents.batched_sampler import sample_labels
from schedgym.agents.candidate_extractor import CandidateAttentionExtractor
from schedgym.agents.extractor import PaddedGraphExtractor
from schedgym.agents.policies import GraphPointerPolicy
from schedgym.baselines.dispatching import DispatchingRulePolicy
from schedgym.envs.jobshop.generator import UniformJobShopGenerator

KWARGS = {"scheme": "non_delay", "reward": "lb", "time_origin": "now"}


def _policy(env: gym.Env, candidate: bool) -> GraphPointerPolicy:
    torch.manual_seed(0)
    fe = CandidateAttentionExtractor if candidate else PaddedGraphExtractor
    kw = {"hidden_dim": 32} | ({"skip_dim": 16} if candidate else {})
    return GraphPointerPolicy(env.observation_space, env.action_space, lambda _: 1e-3,
                              features_extractor_class=fe, features_extractor_kwargs=kw)


def _train(candidate: bool, batched: bool, tmp_path, iterations: int = 4):
    gen = UniformJobShopGenerator(6, 5, sizes=["6x5", "8x6"])
    kwargs = KWARGS | ({"candidate_features": True} if candidate else {})
    env = gym.make("schedgym/JobShop-v0", generator=gen, **kwargs)
    policy = _policy(env, candidate)
    logs = []
    self_labeling.train_self_labeling(
        policy=policy, env_id="schedgym/JobShop-v0", env_kwargs=kwargs, generator=gen,
        out_dir=tmp_path / f"{candidate}_{batched}", iterations=iterations, samples=8, learning_rate=1e-3,
        batch_size=16, label_policies=[DispatchingRulePolicy(rule="mwkr")], domain="jobshop",
        batched_sampling=batched, log_fn=lambda stats, it: logs.append(stats))
    return policy.state_dict(), logs


@pytest.mark.parametrize("candidate", [False, True])
def test_batched_sampling_trains_the_same_weights_as_the_env_loop(candidate: bool, tmp_path) -> None:
    fast, fast_logs = _train(candidate, True, tmp_path)
    slow, slow_logs = _train(candidate, False, tmp_path)
    keys = ["train/loss", "train/best_objective", "train/sampled_best_objective", "train/mean_objective"]
    assert [[s[k] for k in keys] for s in fast_logs] == [[s[k] for k in keys] for s in slow_logs]
    assert all(torch.equal(fast[k], slow[k]) for k in fast)


def test_sample_labels_returns_the_env_loops_best_episode() -> None:
    gen = UniformJobShopGenerator(8, 6)
    inst = gen(np.random.default_rng(4))
    envs = [gym.make("schedgym/JobShop-v0", instance=inst, **KWARGS) for _ in range(6)]
    policy = _policy(envs[0], False)
    policy.set_training_mode(False)
    ref = self_labeling.sample_solutions(policy, envs, inst, 11, torch.Generator().manual_seed(3), "makespan")
    out = sample_labels(policy, envs[0], inst, 11, 6, torch.Generator().manual_seed(3), "makespan")
    assert out is not None
    assert out[0] == ref[0] and out[3] == ref[3] and out[4] == ref[4]
    assert all(np.array_equal(a, b) for a, b in zip(out[2], ref[2]))
    assert all(np.array_equal(a["x"], b["x"]) for a, b in zip(out[1], ref[1]))


def test_other_envs_are_left_to_the_env_loop() -> None:
    """A flexible job-shop env (and any non-JobShop-v0 env) is not reset or touched."""
    env = gym.make("schedgym/FlexibleJobShop-v0", instance="mk01")
    policy = GraphPointerPolicy(env.observation_space, env.action_space, lambda _: 1e-3)
    assert sample_labels(policy, env, None, 0, 4, torch.Generator(), "makespan") is None
    assert batched_greedy_metrics(policy, env) is None
    active = gym.make("schedgym/JobShop-v0", instance="ft06", scheme="active", time_origin="now")
    active.reset(seed=0)
    assert batched_greedy_metrics(_policy(active, False), active) is None
    plain = gym.make("schedgym/JobShop-v0", instance="ft06", **KWARGS)
    assert sample_labels(_policy(plain, False), plain, None, 0, 4, torch.Generator(), "tardiness") is None


def test_greedy_metrics_equal_the_env_loop(monkeypatch) -> None:
    kwargs = KWARGS | {"candidate_features": True, "instance": ["ft06", "la16", "gen:taillard:15x15:1:2"],
                       "cycle": True}
    env = gym.make("schedgym/JobShop-v0", instance="ft06", candidate_features=True, **KWARGS)
    policy = _policy(env, True)
    policy.set_training_mode(False)
    fast = self_labeling.greedy_metrics(policy, "schedgym/JobShop-v0", kwargs, 3, domain="jobshop")
    monkeypatch.setattr(self_labeling, "batched_greedy_metrics", lambda policy, env: None)
    slow = self_labeling.greedy_metrics(policy, "schedgym/JobShop-v0", kwargs, 3, domain="jobshop")
    assert fast == slow and fast["makespan"] > 0
