"""SkipGraphExtractor: the pointer policy also scores each action from its node's raw features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import schedgym  # noqa: F401
from schedgym.agents.checkpoint import load_policy, save_policy
from schedgym.agents.policies import GraphPointerPolicy, masked_logits
from schedgym.agents.self_labeling import _stack
from schedgym.agents.skip_extractor import SkipGraphExtractor
from schedgym.envs.gpudag.domain import make_env
from schedgym.envs.gpudag.instances import load_instance

KW = {"features_extractor_class": SkipGraphExtractor,
      "features_extractor_kwargs": {"gnn": "gin", "hidden_dim": 16, "num_layers": 2, "skip_dim": 8},
      "head_hidden_dim": 16}


def _policy(env):
    torch.manual_seed(0)
    return GraphPointerPolicy(env.observation_space, env.action_space, lambda _: 1e-3, **KW)


def test_features_hold_the_skip_part_and_logits_cover_every_action():
    env = make_env(load_instance("topcuoglu-v50-ccr1-a1-b0.5-o3-p4-s0"), action_mode="task")
    obs, info = env.reset(seed=0)
    pol = _policy(env)
    fe = pol.features_extractor
    assert fe.per_action_dim == 16 + 8 and fe.features_dim == env.unwrapped.n_actions * 24 + 16
    feats = fe(_stack([obs]))
    assert feats.shape == (1, fe.features_dim)
    logits = masked_logits(pol, _stack([obs]), info["action_mask"][None].astype(bool))
    assert logits.shape == (1, env.unwrapped.n_actions)
    assert torch.isfinite(logits[0, info["action_mask"].astype(bool)]).all()


def test_scores_depend_on_the_action_nodes_own_features():
    env = make_env(load_instance("topcuoglu-example"), action_mode="task")
    obs, info = env.reset(seed=0)
    pol = _policy(env)
    with torch.no_grad():
        pol.features_extractor.gnn.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
        for p in pol.features_extractor.gnn.parameters():
            p.zero_()  # no message passing signal: only the skip path can tell nodes apart
        base = pol.features_extractor(_stack([obs]))
        obs2 = {k: v.copy() for k, v in obs.items()}
        obs2["x"][0, 3] += 1.0  # task 0's upward rank
        moved = pol.features_extractor(_stack([obs2]))
    fe = pol.features_extractor
    per = fe.per_action_dim
    assert not torch.allclose(base[0, :per], moved[0, :per])  # task 0's features changed
    assert torch.allclose(base[0, per:2 * per], moved[0, per:2 * per])  # task 1's did not


def test_checkpoint_loads_into_another_padded_size(tmp_path):
    small = make_env(load_instance("topcuoglu-example"), action_mode="task")
    big = make_env(load_instance("topcuoglu-v50-ccr5-a1-b0.5-o3-p4-s2"), action_mode="task")
    pol = _policy(small)
    path = tmp_path / "p.pt"
    save_policy(pol, path, "schedgym/GPUDag-v0", {"action_mode": "task"}, {"name": "t"})
    loaded = load_policy(path, big.observation_space, big.action_space)
    obs, info = big.reset(seed=0)
    out = masked_logits(loaded, _stack([obs]), info["action_mask"][None].astype(bool))
    assert out.shape == (1, big.unwrapped.n_actions) and np.isfinite(out.detach().numpy()).any()


def test_geometric_mean_of_positive_metrics():
    from schedgym.agents.self_labeling import summarise_metrics

    out = summarise_metrics({"slr": [1.0, 4.0], "gap": [0.0, 2.0]})
    assert out["slr"] == 2.5 and out["geomean_slr"] == pytest.approx(2.0)
    assert out["gap"] == 1.0 and "geomean_gap" not in out  # not positive on every episode
