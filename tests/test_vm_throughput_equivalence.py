"""The VM training-throughput changes compute what the code before them computed.

* The snapshot generator's cheaper cluster simulation (flat NUMA-node arrays, the same random draws
  one for one) gives the same snapshots: fingerprints (sha256 of every array field, the groups, the
  name and the metadata) pinned from the numpy implementation of commit 57e59bb, over sizes,
  utilisation levels, the GPU and evacuation variants, pure best-fit and pure random-fit, seeds
  0-3 and a stream of draws from one generator as an env makes them.
* The policy's valid-actions-only rows (``PaddedGraphExtractor.encode(dedup=False)``) are the rows of
  the dense ``forward()`` exactly, and their logits those of the grouped path up to float rounding.
* ``GraphPointerPolicy._distribution`` builds the masked distribution of SB3's
  ``proba_distribution`` + ``apply_masking`` with one ``Categorical`` fewer: the same logits bit for bit.
"""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib.common.maskable.distributions import MaskableCategorical

import schedgym  # noqa: F401  (registers the env ids)
from schedgym.agents.extractor import ActionEncoding
from schedgym.agents.policies import GraphPointerPolicy
from schedgym.envs.vmsched.generator import VMClusterGenerator

CONFIGS = {
    "S": dict(size="S"),
    "S_low": dict(size="S", utilisation="low"),
    "S_high": dict(size="S", utilisation="high"),
    "M": dict(size="M"),
    "p140_mnl25": dict(n_pms=140, mnl=25),
    "S_gpu": dict(size="S", gpu=True),
    "p60_evac": dict(n_pms=60, utilisation="low", n_disabled=1, n_outage=1),
    "p20_bf0": dict(n_pms=20, best_fit=0.0),
    "p20_bf1_u90": dict(n_pms=20, best_fit=1.0, utilisation=0.9, churn=0.5),
}
# fingerprints of the 57e59bb generator: seeds 0, 1, 2, 3 (M: seed 0), then three draws from default_rng(123)
PINS = {
    "S": ["ee2989374cc08b9c", "38db0b71b4c4d593", "3a8f424bf1d7f1d4", "7874178ca4e90a59",
          "624a066d94e9629d", "3cfef60c8e8abebc", "a68ff9de93006dfe"],
    "S_low": ["241508489a434d75", "5840c14748d54618", "1a1244a1401cea13", "fc8d21fe47abc9dc",
              "db86f28ba00ad1d1", "4dcf59f967629174", "1be0c9af2953ed66"],
    "S_high": ["7442c639698719be", "8242241d20ac90a6", "605f7eb69f2e002a", "caac98b4d620f6ef",
               "20a42be9b2153aa6", "e746e3fafac53af5", "23248419aa6eb89d"],
    "M": ["0b438efaa45c38b9"],
    "p140_mnl25": ["68c3af4368933b06", "5b4f4808d821d834"],
    "S_gpu": ["14c6229e07128c46", "0d7466dc2e744b95", "1c2c7f6d07c5b15b", "3bd4a7910b431322",
              "9c42ce2ba0d4937f", "d910bdb81677d1ce", "9ebf08bbd2ab3b15"],
    "p60_evac": ["4ed3738b599e5954", "d3125e27a305114e", "dc4cc14741471498", "d5534cf920bf2a05",
                 "32769f901444e412", "202ffb3b4d517cb2", "408d3750e0ae98c2"],
    "p20_bf0": ["5955d83748199733", "95457b20188a709e", "730656d8b626490c", "07a5fb225c17122b",
                "f1fd0558b12388f5", "2e710b6294256a8a", "7d0d0505f91288f3"],
    "p20_bf1_u90": ["3d3dee72b0c4dd26", "799113649967710d", "60cde9ca5378ecb6", "5121ad8d0e17afa7",
                    "e1a8d40eb1df4f2d", "d67adaca99df6fd0", "6252b69b3a831d78"],
}


def fingerprint(inst) -> str:
    """sha256 (first 16 hex digits) of every array field, the anti-affinity groups, name and metadata."""
    h = hashlib.sha256()
    for f in ("pm_cpu", "pm_mem", "pm_gpu", "pm_status", "pm_rack", "vm_cpu", "vm_mem", "vm_gpu", "vm_span",
              "vm_movable", "vm_type", "init_pm", "init_numa"):
        a = np.ascontiguousarray(getattr(inst, f))
        h.update(f.encode())
        h.update(str(a.dtype).encode())
        h.update(a.tobytes())
    for grp in ("host_groups", "rack_groups"):
        for g in getattr(inst, grp):
            h.update(np.asarray(g, dtype=np.int64).tobytes())
            h.update(b"|")
        h.update(b"#")
    h.update(repr((inst.mnl, inst.name, inst.type_names, inst.source, inst.meta)).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_generator_gives_the_snapshots_of_the_numpy_implementation(name: str) -> None:
    gen = VMClusterGenerator(**CONFIGS[name])
    pins = PINS[name]
    n_seeds = 1 if name == "M" else (2 if name == "p140_mnl25" else 4)
    got = [fingerprint(gen(np.random.default_rng(s))) for s in range(n_seeds)]
    if len(pins) > n_seeds:
        stream = np.random.default_rng(123)
        got += [fingerprint(gen(stream)) for _ in range(3)]
    assert got == pins


def test_env_episodes_draw_the_pinned_snapshots() -> None:
    """The training env's resets (seeded np_random, a fresh S snapshot per episode) see the pinned
    stream: the env's first snapshots equal the generator's draws from a generator seeded alike."""
    env = gym.make("schedgym/VMReschedule-v0", mnl=50,
                   generator=VMClusterGenerator(size="S", utilisation="medium")).unwrapped
    env.reset(seed=0)
    first = fingerprint(env.instance)
    env.reset()
    second = fingerprint(env.instance)
    rng = np.random.Generator(np.random.PCG64(0))
    ref = VMClusterGenerator(size="S")
    assert [first, second] == [fingerprint(ref(rng)), fingerprint(ref(rng))]


def _vm_policy_batch(n: int, seed: int = 0):
    env = gym.make("schedgym/VMReschedule-v0", mnl=50, generator=VMClusterGenerator(size="S")).unwrapped
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    batch = []
    for _ in range(n):
        batch.append(obs)
        a = int(rng.choice(np.flatnonzero(obs["action_mask"])))
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            obs, _ = env.reset()
    t = {k: torch.as_tensor(np.stack([o[k] for o in batch])) for k in batch[0]}
    torch.manual_seed(0)
    pol = GraphPointerPolicy(env.observation_space, env.action_space, lambda _: 3e-4,
                             features_extractor_kwargs={"hidden_dim": 16}, head_hidden_dim=16, dedup=True)
    return pol, {k: v.float() for k, v in t.items()}, t["action_mask"].numpy().astype(bool)


def test_valid_action_rows_are_forwards_rows() -> None:
    pol, obs, masks = _vm_policy_batch(3)
    fe = pol.features_extractor
    with torch.no_grad():
        dense = fe(obs)
        enc = fe.encode(obs, dedup=False)
        B, A = masks.shape
        d = fe.per_action_dim
        assert enc.one_row_per_action and enc.table.shape[0] == int(masks.sum())
        assert torch.equal(enc.table, dense[:, : A * d].reshape(B * A, d)[enc.valid])
        assert torch.equal(enc.graph, dense[:, A * d:])
        assert torch.equal(enc.dense(), dense)
        # the actor on each valid action's row = the grouped path (no shared rows found) up to rounding
        heads, scorer = pol.mlp_extractor, pol.action_net.linear
        fast = heads.encoded_logits(enc, scorer)
        grouped = heads.encoded_logits(ActionEncoding(enc.graph, enc.valid, A, enc.table, enc.index), scorer)
        plain = pol.action_net(heads.forward_actor(dense))
    torch.testing.assert_close(fast, grouped, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)


def test_distribution_is_sb3s_masked_distribution() -> None:
    pol, obs, masks = _vm_policy_batch(2)
    with torch.no_grad():
        enc = pol._encode(obs)
        logits = pol.mlp_extractor.encoded_logits(enc, pol.action_net.linear)
        ref = pol.action_dist.proba_distribution(action_logits=logits)
        ref.apply_masking(masks)
        ref_logits = ref.distribution.logits.clone()
        got = pol._distribution(enc, masks)
    assert isinstance(got.distribution, MaskableCategorical)
    assert torch.equal(got.distribution.logits, ref_logits)
    assert torch.equal(got.distribution.masks, torch.as_tensor(masks))


def test_direct_rollout_buffer_gives_the_same_minibatches() -> None:
    """DirectDictRolloutBuffer (no flat copy of the observations) yields sb3-contrib's minibatches."""
    from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer

    from schedgym.agents.rollout_buffer import DirectDictRolloutBuffer

    space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (5, 3), np.float32),
                             "edge_index": gym.spaces.Box(0, 4, (2, 6), np.int64),
                             "action_mask": gym.spaces.MultiBinary(4)})
    n_steps, n_envs = 7, 3
    rng = np.random.default_rng(0)
    steps = [({k: np.stack([s.sample() for _ in range(n_envs)]) for k, s in space.spaces.items()},
              rng.integers(0, 4, n_envs), rng.normal(size=n_envs).astype(np.float32), rng.random(n_envs) < 0.2,
              torch.as_tensor(rng.normal(size=n_envs), dtype=torch.float32),
              torch.as_tensor(rng.normal(size=n_envs), dtype=torch.float32), rng.random((n_envs, 4)) < 0.7)
             for _ in range(n_steps)]
    out = []
    for cls in (MaskableDictRolloutBuffer, DirectDictRolloutBuffer):
        buf = cls(n_steps, space, gym.spaces.Discrete(4), "cpu", gae_lambda=0.95, gamma=0.99, n_envs=n_envs)
        for obs, act, rew, start, val, logp, masks in steps:
            buf.add(obs, act, rew, start, val, logp, action_masks=masks)
        buf.compute_returns_and_advantage(torch.zeros(n_envs), np.zeros(n_envs, dtype=bool))
        np.random.seed(3)
        out.append([b for epoch in range(2) for b in buf.get(batch_size=4)])
    assert len(out[0]) == len(out[1]) == 2 * 6
    for a, b in zip(*out):
        assert a.observations.keys() == b.observations.keys()
        for k in a.observations:
            assert torch.equal(a.observations[k], b.observations[k]), k
        for f in ("actions", "old_values", "old_log_prob", "advantages", "returns", "action_masks"):
            assert torch.equal(getattr(a, f), getattr(b, f)), f
