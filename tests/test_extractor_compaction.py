"""The compacted extractor (message passing over real nodes only) computes what the padded one does."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from schedgym.agents.extractor import PaddedGraphExtractor
from schedgym.envs.core.graph_obs import padded_graph_space

N, F, E, D, A, G = 40, 6, 90, 3, 25, 4


def _space(pair: bool) -> gym.spaces.Dict:
    extra = {"action_machine_node": gym.spaces.Box(0, N - 1, (A,), np.int64)} if pair else None
    return padded_graph_space(N, F, E, D, A, G, extra=extra)


def _random_batch(rng: np.random.Generator, B: int, pair: bool) -> dict[str, torch.Tensor]:
    """Padded graphs per the observation contract: padded node rows are zero and no real edge touches
    a padded node; padded edge slots hold arbitrary indices; actions may point at padded nodes."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in _space(pair).spaces}
    for _ in range(B):
        n = int(rng.integers(1, N + 1))
        real = np.sort(rng.choice(N, size=n, replace=False))  # real nodes anywhere, not only first
        node_mask = np.zeros(N, np.int8)
        node_mask[real] = 1
        x = np.zeros((N, F), np.float32)
        x[real] = rng.normal(size=(n, F))
        m = int(rng.integers(0, E + 1))
        ei = rng.integers(0, N, size=(2, E))
        slots = rng.choice(E, size=m, replace=False)
        ei[:, slots] = rng.choice(real, size=(2, m))
        edge_mask = np.zeros(E, np.int8)
        edge_mask[slots] = 1
        out["x"].append(x)
        out["edge_index"].append(ei)
        out["edge_attr"].append(rng.normal(size=(E, D)).astype(np.float32))
        out["edge_mask"].append(edge_mask)
        out["node_mask"].append(node_mask)
        out["action_mask"].append((rng.random(A) < 0.6).astype(np.int8))
        out["action_node"].append(rng.integers(0, N, size=A))
        out["globals"].append(rng.normal(size=G).astype(np.float32))
        if pair:
            out["action_machine_node"].append(rng.integers(0, N, size=A))
    return {k: torch.as_tensor(np.stack(v)).float() for k, v in out.items()}


@pytest.mark.parametrize("gnn", ["gin", "gat", "sage"])
@pytest.mark.parametrize("pair", [False, True])
@pytest.mark.parametrize("reverse_edges", [True, False])
def test_compact_equals_padded(gnn: str, pair: bool, reverse_edges: bool) -> None:
    torch.manual_seed(0)
    ex = PaddedGraphExtractor(_space(pair), gnn=gnn, hidden_dim=16, num_layers=3, reverse_edges=reverse_edges,
                              use_edge_attr=gnn == "gat")
    batch = _random_batch(np.random.default_rng(1), 7, pair)
    batch["action_mask"][0] = 0  # a graph without a valid action
    ex.compact = False
    ref = ex(batch)
    ex.compact = True
    out = ex(batch)
    assert out.shape == ref.shape == (7, ex.features_dim)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_compact_gradients_equal_padded() -> None:
    """Training sees the same gradients (up to float rounding), not only the same outputs."""
    batch = _random_batch(np.random.default_rng(2), 5, pair=False)
    weights = torch.randn(5, PaddedGraphExtractor(_space(False), hidden_dim=16).features_dim,
                          generator=torch.Generator().manual_seed(3))
    grads = []
    for compact in (False, True):
        torch.manual_seed(0)
        ex = PaddedGraphExtractor(_space(False), gnn="gin", hidden_dim=16, compact=compact)
        # a nonzero eps exercises the self-loop weights of the CSR product
        for conv in ex.gnn.convs:
            conv.eps.fill_(0.25)
        (ex(batch) * weights).sum().backward()
        grads.append({k: p.grad.clone() for k, p in ex.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-4, atol=1e-5, msg=k)


def test_invalid_actions_and_actions_on_padded_nodes_get_zero_embeddings() -> None:
    torch.manual_seed(0)
    ex = PaddedGraphExtractor(_space(False), gnn="gin", hidden_dim=16)
    batch = _random_batch(np.random.default_rng(4), 3, pair=False)
    out = ex(batch)[:, : A * 16].reshape(3, A, 16)
    idx = batch["action_node"].long()
    padded = batch["node_mask"].gather(1, idx) == 0
    invalid = batch["action_mask"] == 0
    zero = padded | invalid
    assert padded.any() and invalid.any() and (~zero).any()
    assert torch.all(out[zero] == 0)
    assert torch.all(out[~zero].abs().sum(-1) > 0)


@pytest.mark.parametrize("env_id,kwargs", [
    ("schedgym/JobShop-v0", {"instance": "ft06", "max_jobs": 8, "max_ops": 50}),
    ("schedgym/FlexibleJobShop-v0", {}),
    ("schedgym/VMReschedule-v0", {"instance": "snap_s_medium", "max_pms": 48}),
])
def test_compact_equals_padded_on_env_observations(env_id: str, kwargs: dict) -> None:
    import schedgym  # noqa: F401  (registers the env ids)

    env = gym.make(env_id, **kwargs).unwrapped
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    batch = []
    for _ in range(12):
        batch.append(obs)
        obs, _, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        if term or trunc:
            obs, info = env.reset(seed=1)
    tensors = {k: torch.as_tensor(np.stack([o[k] for o in batch])).float() for k in batch[0]}
    torch.manual_seed(0)
    ex = PaddedGraphExtractor(env.observation_space, gnn="gin")
    ex.compact = False
    ref = ex(tensors)
    ex.compact = True
    torch.testing.assert_close(ex(tensors), ref, rtol=1e-5, atol=1e-5)
