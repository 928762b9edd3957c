"""The learned flexible job-shop policy: its observation, training instances, recipe and shipped bar.

Fast tests check the pieces (the pair features of FlexibleJobShop-v0, ``gen:flexible`` names, the
generator's size mixture, the env-name-first checkpoint lookup, the ``sls_fjsp`` recipe shrunk); the
slow one checks the shipped checkpoint's bar: greedy mean gap on Brandimarte mk01-mk10 below MWKR's.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import schedgym  # noqa: F401  (registers the env ids)
from schedgym.agents.checkpoint import SHIPPED_DIR, shipped_name
from schedgym.baselines.base import bind_env_domain
from schedgym.envs.jobshop.generator import FlexibleJobShopGenerator
from schedgym.envs.jobshop.instances import load_instance

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = SHIPPED_DIR / "fjsp_gnn.pt"
MK = [f"mk{i:02d}" for i in range(1, 11)]


@pytest.mark.parametrize("scheme", ["non_delay", "active"])
def test_pair_features_describe_each_valid_pair(scheme):
    env = gym.make("schedgym/FlexibleJobShop-v0", instance="mk01", scheme=scheme, time_origin="now").unwrapped
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(15):
        obs, _, _, _, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
    attr, mask = obs["action_attr"], info["action_mask"].astype(bool)
    assert attr.shape == (env.n_actions, 6) and np.all(attr[~mask] == 0)
    st, inst = env.state, env.instance
    now = st.earliest_start()
    for a in np.flatnonzero(mask):
        j, m = env.decode_action(int(a))
        o = int(st.next_op[j])
        start = st.start_time(j, m)[0]
        assert attr[a, 0] == pytest.approx(inst.proc[o, m] / inst.max_proc)
        assert attr[a, 1] == pytest.approx(min(inst.proc[o, m] / inst.min_proc[o] - 1, 4.0))
        assert attr[a, 2] == pytest.approx((start - now) / env.time_scale)
        assert attr[a, 3] == pytest.approx((start + inst.proc[o, m] - now) / env.time_scale)
        assert attr[a, 5] == pytest.approx(1 / inst.eligible[o].sum())
        if scheme == "non_delay":
            assert attr[a, 2] == 0  # every non-delay candidate starts at the decision time
    # the classic env's observation has no pair features
    assert "action_attr" not in gym.make("schedgym/JobShop-v0", instance="ft06").observation_space.spaces


def test_generated_flexible_instances_are_named_reproducibly():
    a = load_instance("gen:flexible:15x8:7003:5-10:1-3:1-20")
    b = load_instance("gen:flexible:15x8:7003:5-10:1-3:1-20")
    assert np.array_equal(a.proc, b.proc) and a.is_flexible and (a.n_jobs, a.n_machines) == (15, 8)
    assert 5 * 15 <= a.n_ops <= 10 * 15 and a.eligible.sum(axis=1).max() <= 3
    assert a.lower_bound >= -(-int(a.min_proc.sum()) // 8)
    assert load_instance("gen:flexible:10x6:1").n_jobs == 10  # the generator's defaults
    with pytest.raises(Exception, match="gen:flexible"):
        load_instance("gen:flexible:10x6:1:5-7")


def test_generator_variants_mix_sizes():
    gen = FlexibleJobShopGenerator(variants=[{"n_jobs": 15, "n_machines": 8}, {"n_jobs": 10, "n_machines": 5}])
    rng = np.random.default_rng(0)
    sizes = {(i.n_jobs, i.n_machines) for i in (gen(rng) for _ in range(20))}
    assert sizes == {(15, 8), (10, 5)}
    assert gen.size_bounds() == (15, 8, 105)
    with pytest.raises(ValueError, match="variants\\[0\\] has unknown keys \\['jobs'\\]"):
        FlexibleJobShopGenerator(variants=[{"jobs": 3}])


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped FJSP checkpoint")
def test_fjsp_env_loads_its_own_checkpoint():
    cfg = {"_target_": "schedgym.agents.trained.load_trained_agent", "checkpoint": None, "domain": None}
    assert shipped_name("jobshop", "fjsp") == "fjsp_gnn"
    assert bind_env_domain(cfg, "jobshop", "fjsp")["checkpoint"] == "fjsp_gnn"
    assert bind_env_domain(cfg, "jobshop", "jobshop")["checkpoint"] is None  # the domain's own
    assert bind_env_domain({**cfg, "checkpoint": "x.pt"}, "jobshop", "fjsp")["checkpoint"] == "x.pt"
    assert shipped_name("jobshop", "nosuchenv") == "jobshop_gnn"


def test_recipe_trains_shrunk(tmp_path):
    """experiment=sls_fjsp composed as train.py does, two iterations of two samples, selected on one
    held-out generated instance: best_policy.pt records the recipe's observation settings."""
    import hydra
    from hydra import compose, initialize_config_dir

    from schedgym.agents.self_labeling import greedy_metrics, train_self_labeling

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=sls_fjsp"])
    held_out = cfg.env.train.eval_env_kwargs.instance
    assert all(str(n).startswith("gen:flexible:") for n in held_out)  # never Brandimarte
    env_kwargs = hydra.utils.instantiate(cfg.env.train.env_kwargs, _convert_="all")
    generator = env_kwargs.pop("generator")
    env = gym.make(cfg.env.train.env_id, generator=generator, **env_kwargs)
    pk = dict(cfg.agent.policy_kwargs)
    pk["features_extractor_class"] = hydra.utils.get_class(pk["features_extractor_class"])
    pk["features_extractor_kwargs"] = dict(pk["features_extractor_kwargs"])
    torch.manual_seed(0)
    policy = hydra.utils.get_class(cfg.agent.policy_class)(env.observation_space, env.action_space,
                                                           lambda _: 1e-3, **pk)
    eval_kwargs = {"instance": ["gen:flexible:6x4:1:3-4:1-3:1-9"], "cycle": True, "scheme": "non_delay",
                   "time_origin": "now"}
    out = train_self_labeling(
        policy=policy, env_id=cfg.env.train.env_id, env_kwargs=env_kwargs, generator=generator, out_dir=tmp_path,
        iterations=2, samples=2, learning_rate=1e-3, batch_size=64, objective="makespan", seed=0,
        eval_fn=lambda p: greedy_metrics(p, cfg.env.train.env_id, eval_kwargs, 1, domain="jobshop"), eval_every=2,
        eval_metric=cfg.env.train.eval_metric,
        label_policies=hydra.utils.instantiate(cfg.agent.label_policies, _convert_="all"), domain="jobshop")
    assert out["eval_history"][-1]["gap_to_lb_pct"] >= 0
    payload = torch.load(tmp_path / "best_policy.pt", weights_only=False)
    assert payload["env_kwargs"]["scheme"] == "non_delay" and payload["env_kwargs"]["time_origin"] == "now"
    assert payload["policy_kwargs"]["features_extractor_class"]["__class__"].endswith("PairSkipExtractor")


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped FJSP checkpoint")
def test_shipped_policy_beats_mwkr_on_brandimarte():
    """The bar of agents/checkpoints/README_fjsp.md: greedy mean gap to the best known makespan on
    mk01-mk10 below MWKR's (both under the non-delay scheme, MWKR computed here)."""
    from schedgym.agents.trained import load_trained_agent
    from schedgym.baselines.dispatching import solve_with_rule
    from schedgym.envs.jobshop.domain import make_env
    from schedgym.envs.jobshop.metrics import metrics
    from schedgym.envs.jobshop.validate import validate

    torch.set_num_threads(1)
    cfg = bind_env_domain({"checkpoint": None, "domain": None}, "jobshop", "fjsp")
    agent = load_trained_agent(**cfg)
    assert Path(agent.checkpoint).name == "fjsp_gnn.pt"
    learned, mwkr = [], []
    for name in MK:
        inst = load_instance(name)
        env = make_env(inst, **agent.env_kwargs)
        obs, info = env.reset(seed=0)
        agent.reset(env)
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(agent.act(obs, info))
            done = term or trunc
        validate(inst, info["solution"])
        learned.append(info["metrics"]["gap_to_bks_pct"])
        mwkr.append(metrics(inst, solve_with_rule(inst, "mwkr"))["gap_to_bks_pct"])
    assert np.mean(learned) < np.mean(mwkr), (np.round(learned, 1), np.round(mwkr, 1))
