"""The deduplicated forward (GNN once per class of alike nodes, actor on the valid actions only)
computes what the plain extractor and policy compute, gradients included, and falls back to the
plain computation when its hash keys collide."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import schedgym  # noqa: F401  (registers the env ids)
from schedgym.agents import graph_dedup
from schedgym.agents.checkpoint import load_policy, save_policy
from schedgym.agents.extractor import PaddedGraphExtractor
from schedgym.agents.policies import GraphPointerPolicy
from schedgym.envs.core.graph_obs import padded_graph_space
from schedgym.envs.vmsched.generator import VMClusterGenerator

N, F, E, D, A, G = 40, 6, 90, 3, 25, 4


def _space(pair: bool) -> gym.spaces.Dict:
    extra = {"action_machine_node": gym.spaces.Box(0, N - 1, (A,), np.int64)} if pair else None
    return padded_graph_space(N, F, E, D, A, G, extra=extra)


def _repetitive_batch(rng: np.random.Generator, B: int, pair: bool) -> dict[str, torch.Tensor]:
    """Padded graphs (observation contract as in test_extractor_compaction) whose features take 3
    values, so that many nodes fall into one class; some graphs repeat earlier ones."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in _space(pair).spaces}
    for b in range(B):
        if b >= 2 and rng.random() < 0.3:  # an exact copy of an earlier graph
            j = int(rng.integers(b))
            for k in out:
                out[k].append(out[k][j].copy())
            continue
        n = int(rng.integers(1, N + 1))
        real = np.sort(rng.choice(N, size=n, replace=False))
        node_mask = np.zeros(N, np.int8)
        node_mask[real] = 1
        x = np.zeros((N, F), np.float32)
        x[real] = rng.integers(0, 3, size=(n, F)) * 0.5
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
        out["action_node"].append(rng.integers(0, N, size=A))  # may point at padded nodes
        out["globals"].append(rng.normal(size=G).astype(np.float32))
        if pair:
            out["action_machine_node"].append(rng.integers(0, N, size=A))
    return {k: torch.as_tensor(np.stack(v)).float() for k, v in out.items()}


def _extractor(pair: bool, eps: float = 0.0, reverse_edges: bool = True) -> PaddedGraphExtractor:
    torch.manual_seed(0)
    ex = PaddedGraphExtractor(_space(pair), gnn="gin", hidden_dim=16, num_layers=3, reverse_edges=reverse_edges)
    for conv in ex.gnn.convs:
        conv.eps.fill_(eps)
    return ex


@pytest.mark.parametrize("pair", [False, True])
@pytest.mark.parametrize("reverse_edges", [True, False])
@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_encode_equals_forward(pair: bool, reverse_edges: bool, eps: float) -> None:
    ex = _extractor(pair, eps, reverse_edges)
    batch = _repetitive_batch(np.random.default_rng(1), 9, pair)
    batch["action_mask"][0] = 0  # a graph without a valid action
    ref = ex(batch)
    enc = ex.encode(batch)
    assert enc.table.shape[0] - 1 < enc.valid.numel() * (2 if pair else 1)  # rows are shared
    torch.testing.assert_close(enc.dense(), ref, rtol=1e-5, atol=1e-5)


def test_encode_gradients_equal_forward() -> None:
    batch = _repetitive_batch(np.random.default_rng(2), 8, pair=False)
    weights = torch.randn(8, _extractor(False).features_dim, generator=torch.Generator().manual_seed(3))
    grads = []
    for dedup in (False, True):
        ex = _extractor(False, eps=0.25)
        out = ex.encode(batch).dense() if dedup else ex(batch)
        (out * weights).sum().backward()
        grads.append({k: p.grad for k, p in ex.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-4, atol=1e-5, msg=k)


def test_classes_merge_only_alike_nodes() -> None:
    """Two nodes share a round-k class exactly when their k-hop computations agree: a path a-b-c
    and a path d-e-f with equal features are alike node for node; a tail g-h with h unlike b is not."""
    x = torch.tensor([[1.0], [2.0], [1.0], [1.0], [2.0], [1.0], [1.0], [3.0]])
    und = [(0, 1), (1, 2), (3, 4), (4, 5), (6, 7)]
    src = torch.tensor([a for a, b in und] + [b for a, b in und])
    dst = torch.tensor([b for a, b in und] + [a for a, b in und])
    c0, c1 = graph_dedup.refine(x, src, dst, 1)
    assert c0.n_classes == 3
    lab = c1.label.tolist()
    assert lab[0] == lab[2] == lab[3] == lab[5] and lab[1] == lab[4]
    assert lab[6] != lab[0] and len(set(lab)) == 4


def test_round0_hash_collision_is_caught(monkeypatch) -> None:
    monkeypatch.setattr(graph_dedup, "_ROW_WEIGHTS", torch.zeros(4096, dtype=torch.long))  # all rows collide
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    cls = graph_dedup.feature_classes(x)
    assert cls.n_classes == 2 and cls.label[0] == cls.label[2] != cls.label[1]


def test_refinement_collision_falls_back_to_the_plain_computation(monkeypatch) -> None:
    real_get = graph_dedup._TABLES.get

    def colliding(n: int) -> torch.Tensor:
        t = real_get(n).clone()
        t[0], t[1] = 1, 1  # the first key collides for every class; the check key does not
        return t

    monkeypatch.setattr(graph_dedup._TABLES, "get", colliding)
    x = torch.tensor([[1.0], [2.0], [3.0]])
    with pytest.raises(graph_dedup.RefinementError):
        graph_dedup.refine(x, torch.tensor([0, 1]), torch.tensor([1, 2]), 1)
    ex = _extractor(False)
    batch = _repetitive_batch(np.random.default_rng(4), 5, pair=False)
    torch.testing.assert_close(ex.encode(batch).dense(), ex(batch), rtol=1e-5, atol=1e-5)


def _vm_batch(n: int) -> tuple[gym.Env, dict[str, np.ndarray], np.ndarray]:
    env = gym.make("schedgym/VMReschedule-v0", generator=VMClusterGenerator(size="S", utilisation="medium"), mnl=50)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    seen, actions = [], []
    while len(seen) < n:
        a = int(rng.choice(np.flatnonzero(obs["action_mask"])))
        seen.append(obs)
        actions.append(a)
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            obs, _ = env.reset()
    return env, {k: np.stack([o[k] for o in seen]) for k in seen[0]}, np.array(actions)


def test_dedup_policy_matches_the_plain_policy_on_vm_states(tmp_path) -> None:
    """MaskablePPO's loss terms and their gradients; the shortcut engages (16 >= dedup_min_batch)."""
    env, obs, actions = _vm_batch(16)
    t = {k: torch.as_tensor(v) for k, v in obs.items()}
    masks = obs["action_mask"].astype(bool)
    act = torch.as_tensor(actions)
    results = []
    for dedup in (False, True):
        torch.manual_seed(0)
        pol = GraphPointerPolicy(env.observation_space, env.action_space, lambda _: 3e-4,
                                 features_extractor_kwargs={"hidden_dim": 16}, head_hidden_dim=16, dedup=dedup)
        assert pol._encoded(t) == dedup
        values, log_prob, entropy = pol.evaluate_actions(t, act, action_masks=masks)
        (-log_prob.mean() + values.pow(2).mean() - 0.01 * entropy.mean()).backward()
        logits = pol.get_distribution(t, action_masks=masks).distribution.logits
        results.append((values.detach(), log_prob.detach(), entropy.detach(), logits.detach(),
                        pol.predict_values(t).detach(),
                        {k: p.grad for k, p in pol.named_parameters() if p.grad is not None}))
    for a, b in zip(results[0][:5], results[1][:5]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    g0, g1 = results[0][5], results[1][5]
    assert g0.keys() == g1.keys()
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-4, atol=1e-6, msg=k)
    # the option travels with a saved policy
    save_policy(pol, tmp_path / "p.pt", "schedgym/VMReschedule-v0")
    loaded = load_policy(tmp_path / "p.pt", env.observation_space, env.action_space)
    assert loaded.dedup is True


def test_small_batches_skip_the_refinement_and_match_the_plain_path(monkeypatch) -> None:
    """Rollout-sized batches (below dedup_min_batch) take the valid-actions-only rows without the class
    refinement; MaskablePPO's forward gives the plain path's values, log-probs and sampled actions."""
    import schedgym.agents.extractor as extractor_mod

    env, obs, _ = _vm_batch(2)
    t = {k: torch.as_tensor(v) for k, v in obs.items()}
    torch.manual_seed(0)
    pol = GraphPointerPolicy(env.observation_space, env.action_space, lambda _: 3e-4, dedup=True)
    assert t["x"].shape[0] < pol.dedup_min_batch and pol._encoded(t)
    monkeypatch.setattr(extractor_mod, "refine", lambda *a, **k: pytest.fail("refinement on a small batch"))
    masks = obs["action_mask"].astype(bool)
    out = []
    for dedup in (True, False):
        pol.dedup = dedup
        with torch.no_grad():
            logits = pol.get_distribution(t, action_masks=masks).distribution.logits
            torch.manual_seed(1)
            sampled = [pol(t, action_masks=masks) for _ in range(20)]
        out.append((logits, sampled))
    (l1, s1), (l0, s0) = out
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-5)
    for (a1, v1, p1), (a0, v0, p0) in zip(s1, s0):
        assert torch.equal(a1, a0)
        torch.testing.assert_close(v1, v0, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(p1, p0, rtol=1e-5, atol=1e-5)


def test_batches_with_few_duplicates_take_the_plain_rows() -> None:
    """Distinct random features: the refinement gives up (FewDuplicates) and encode() returns the
    rows of forward(), one table row per valid action."""
    ex = _extractor(False)
    rng = np.random.default_rng(5)
    batch = _repetitive_batch(rng, 6, pair=False)
    batch["x"] = torch.randn(batch["x"].shape, generator=torch.Generator().manual_seed(0)) * batch["node_mask"][..., None]
    with pytest.raises(graph_dedup.FewDuplicates):
        graph_dedup.refine(batch["x"].reshape(-1, F), torch.tensor([0]), torch.tensor([1]), 3, max_classes=10)
    enc = ex.encode(batch)
    assert enc.table.shape[0] == enc.valid.numel()
    torch.testing.assert_close(enc.dense(), ex(batch))
