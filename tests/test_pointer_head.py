"""The pointer head's shortcuts (graph half of the first layer once per graph, zero rows of invalid
actions scored once per graph) leave the policy's masked logits, values and gradients unchanged."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

import schedgym  # noqa: F401  (registers the env ids)
from schedgym.agents.policies import GraphPointerPolicy, PointerHeads


def _plain_actor(heads: PointerHeads, features: torch.Tensor) -> torch.Tensor:
    """The reference: the actor MLP on [a_i || g] for every action."""
    a, g = heads._split(features)
    return heads.actor(torch.cat([a, g.unsqueeze(1).expand(-1, a.shape[1], -1)], dim=-1)).reshape(len(a), -1)


def test_policy_loss_and_gradients_match_the_plain_head() -> None:
    env = gym.make("schedgym/JobShop-v0", instance="ft06").unwrapped
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    batch = []
    for _ in range(16):
        batch.append(obs)
        obs, _, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        if term or trunc:
            obs, info = env.reset(seed=1)
    t = {k: torch.as_tensor(np.stack([o[k] for o in batch])).float() for k in batch[0]}
    masks = t["action_mask"].bool().numpy()
    actions = torch.as_tensor([int(np.flatnonzero(m)[0]) for m in masks])
    results = []
    for plain in (False, True):
        torch.manual_seed(0)
        policy = GraphPointerPolicy(env.observation_space, env.action_space, lambda _: 3e-4,
                                    features_extractor_kwargs={"hidden_dim": 16}, head_hidden_dim=16)
        if plain:
            policy.mlp_extractor.forward_actor = lambda f, h=policy.mlp_extractor: _plain_actor(h, f)
        values, log_prob, entropy = policy.evaluate_actions(t, actions, action_masks=masks)
        loss = -log_prob.mean() + values.pow(2).mean() - 0.01 * entropy.mean()
        loss.backward()
        results.append((loss.detach(), {k: p.grad.clone() for k, p in policy.named_parameters() if p.grad is not None}))
    (loss0, g0), (loss1, g1) = results
    torch.testing.assert_close(loss0, loss1)
    assert g0.keys() == g1.keys()
    for k in g0:
        torch.testing.assert_close(g0[k], g1[k], rtol=1e-4, atol=1e-6, msg=k)


def test_zero_rows_score_like_the_plain_head() -> None:
    torch.manual_seed(0)
    heads = PointerHeads(12, 16, 16, 16)
    features = torch.randn(5, 12 * 16 + 16)
    features[:, : 12 * 16].view(5, 12, 16)[:, ::3] = 0  # every third action "invalid"
    torch.testing.assert_close(heads.forward_actor(features), _plain_actor(heads, features))
    features[:, : 12 * 16] = 0  # no valid action at all
    torch.testing.assert_close(heads.forward_actor(features), _plain_actor(heads, features))
