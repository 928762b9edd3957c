"""Learned LLM-serving policies with admission: the observation that makes SLO-aware admission
computable, the recipes (shrunk), and (slow) the shipped checkpoints' goodput bars."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.baselines.llm_admission import AdmissionPolicy

ROOT = Path(__file__).resolve().parents[1]
WL = "azure_conv:rate={rate}:n={n}:replicas=4:ttft=0.5:tpot=0.05:scheduler=vllm_v1:seed={seed}"


def _unique_argmin(v: np.ndarray) -> int | None:
    k = int(np.argmin(v))
    return k if np.sum(v == v[k]) == 1 else None


def test_routing_features_reproduce_slo_admission():
    """At every route decision of SLO-aware admission (least-outstanding routing), the replica it
    admits to shows predicted TTFT and TPOT ratios <= 1 (features 20, 21), and when it rejects
    (defers) on the unique least-loaded replica, that replica's TTFT (TPOT) ratio exceeds 1."""
    env = gym.make("schedgym/LLMRouting-v0", instance=WL.format(rate=33.15, n=250, seed=3), admission="agent")
    agent = AdmissionPolicy("slo")
    obs, info = env.reset(seed=0)
    agent.reset(env)
    M = env.unwrapped.max_replicas
    seen = {"admit": 0, "reject": 0, "defer": 0}
    done = False
    while not done:
        a = agent.act(obs, info)
        x = obs["x"]
        c = info["candidates"]
        lo = _unique_argmin(np.array(c["queued"]) + np.array(c["running"]))
        if a < M:
            assert x[a, 20] <= 1.0 + 1e-6 and x[a, 21] <= 1.0 + 1e-6
            seen["admit"] += 1
        elif a == M + 1 and lo is not None and info["action_mask"][M]:
            assert x[lo, 20] > 1.0 or x[lo, 21] > 1.0  # reject, or a deferral past its deadline
            seen["reject"] += 1
        elif a == M and lo is not None:
            assert x[lo, 20] <= 1.0 + 1e-6 < x[lo, 21]
            seen["defer"] += 1
        obs, _, term, trunc, info = env.step(a)
        done = term or trunc
    assert min(seen.values()) > 0, seen


def test_defer_and_reject_have_their_own_action_nodes():
    for env_id, kw in (("schedgym/LLMRouting-v0", {}), ("schedgym/LLMQueue-v0", {"router": "least_outstanding"})):
        env = gym.make(env_id, instance=WL.format(rate=30, n=40, seed=1), admission="agent", **kw)
        obs, info = env.reset(seed=0)
        while info["action_mask"][-1] == 0:  # to the first route / gate decision
            obs, _, _, _, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
        an, x = obs["action_node"], obs["x"]
        d, r = int(an[-2]), int(an[-1])
        assert d != r and x[d, 18] == 1 and x[r, 19] == 1 and x[d, 19] == 0 and x[r, 18] == 0
        assert obs["node_mask"][d] and obs["node_mask"][r]
        req = int(an[0]) if env_id.endswith("Queue-v0") else env.unwrapped.max_replicas
        assert x[req, 15] == 1 and 0 < x[req, 23] and x[req, 24] == pytest.approx(0.5)
        env.observation_space.contains(obs)


def test_env_checks_mode_and_draws_from_generator():
    with pytest.raises(ValueError, match="mode 'routing'"):
        gym.make("schedgym/LLMRouting-v0", mode="queue")
    from schedgym.agents.llm_workloads import LLMLoadMixture

    gen = LLMLoadMixture("azure_conv:replicas=2:scheduler=vllm_v1", rates=[5.0], n=20)
    env = gym.make("schedgym/LLMRouting-v0", generator=gen, mode="routing", episode_metrics="slo")
    env.reset(seed=4)
    name = env.unwrapped.instance.name
    env.reset(seed=4)
    assert env.unwrapped.instance.name == name and ":rate=5:n=20:seed=" in name
    with pytest.raises(ValueError, match="must not set rate"):
        LLMLoadMixture("azure_conv:rate=3", rates=[1.0])


@pytest.mark.slow  # two train.py processes (Hydra, torch): 10-20 s each on a shared 2-core box
@pytest.mark.parametrize("recipe", ["sls_llm_routing", "sls_llm_queue"])
def test_recipe_trains_shrunk(tmp_path, recipe):
    """The recipe end to end, shrunk: 2 iterations on 40-request workloads, one held-out episode;
    the checkpoint records the env it needs (mode, admission) and plays a greedy episode."""
    out = tmp_path / recipe
    small = "azure_conv:rate=30:n=40:replicas=4:ttft=0.5:tpot=0.05:scheduler=vllm_v1:seed=1000"
    cmd = [sys.executable, "scripts/train.py", f"experiment={recipe}", f"hydra.run.dir={out}", "progress_bar=false",
           "agent.algo.iterations=2", "agent.algo.eval_every=2", "agent.algo.samples=2",
           "env.train.env_kwargs.generator.n=40", f"env.train.eval_env_kwargs.instance=[\"{small}\"]",
           "env.train.eval_episodes=1", "agent.label_policies=[{_target_: schedgym.baselines.llm_admission."
           "AdmissionPolicy, rule: slo}]"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    from schedgym.agents.trained import TrainedPolicy

    agent = TrainedPolicy(str(out / "best_policy.pt"))
    mode = "routing" if "routing" in recipe else "queue"
    assert agent.required_env_kwargs["mode"] == mode and agent.required_env_kwargs["admission"] == "agent"
    from schedgym.envs.llmserve.domain import load, make_env

    env = make_env(load(small), **agent.required_env_kwargs)
    obs, info = env.reset(seed=0)
    agent.reset(env)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(agent.act(obs, info))
        done = term or trunc
    assert 0.0 <= info["metrics"]["slo_attainment"] <= 1.0


BAR_SEEDS = (2000, 2001, 2002)  # held out: training draws seeds 2-999, selection used 1000-1001
KNEE = 22.1  # conf/workload/azure_conv_overload.yaml (vLLM v1, 4 replicas)
MIXED = "azure_conv:rate={rate}:n={n}:replicas=4:ttft=0.5:tpot=0.05:batch_share=0.2:scheduler=vllm_v1:seed={seed}"
MIXED_KNEE = 17.1  # conf/workload/mixed_overload.yaml (80 % interactive, 20 % batch)


def _episode(instance, agent, **env_kwargs) -> dict:
    from schedgym.envs.llmserve.domain import make_env

    env = make_env(instance, episode_metrics="slo", **env_kwargs)
    obs, info = env.reset(seed=0)
    agent.reset(env)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(agent.act(obs, info))
        done = term or trunc
    return info["metrics"]


def _rules(scenario: str, checkpoint: str) -> dict:
    """The rules a learned policy is compared with: name -> (router, queue order, admission rule, its
    options, required ratio). They run inline in the simulator (the same decisions as the policies in
    the env: test_llmserve_admission / test_llmserve_classes check it), which is ~10x cheaper.

    Issue 13's bar (ratio 1) against the routing and admission baselines and, with two SLO classes
    (mixed_overload), adm_slo_classes. adm_slo_tight (adm_slo at TTFT margin 0.5, the label rule) is a
    measured check: >= 0.98x (measured 0.99-1.03x with goodput over the arrival span, see
    agents/checkpoints/README_llmserve.md). Both shipped policies were trained on single- and
    mixed-class workloads and meet the bar against adm_slo_classes."""
    rules = {"adm_slo_tight": ("least_outstanding", None, "slo", {"ttft_margin": 0.5}, 0.98)}
    for rule in ("slo", "kv", "queue_len"):
        rules[f"adm_{rule}"] = ("least_outstanding", None, rule, {}, 1.0)
    if scenario == "single":
        rules["least_outstanding"] = ("least_outstanding", None, None, {}, 1.0)
    else:
        rules["adm_slo_classes"] = ("least_outstanding", "priority", "slo", {"protect": "tightest"}, 1.0)
    return rules


def _inline(instance, router: str, queue: str | None, rule: str | None, options: dict) -> dict:
    from schedgym.baselines.llm_admission import make_rule
    from schedgym.baselines.llm_queue import queue_key
    from schedgym.envs.llmserve.env import slo_metrics
    from schedgym.envs.llmserve.sim import simulate

    sol = simulate(instance, router=router, queue_key=queue_key(queue) if queue else None,
                   admission=make_rule(rule, **options) if rule else None)
    return slo_metrics(instance, sol)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["single", "mixed"])
@pytest.mark.parametrize("checkpoint", ["llm_routing_gnn", "llm_queue_gnn"])
def test_shipped_policy_goodput_at_least_best_rule(checkpoint, scenario):
    """Issue 13's bar on held-out seeds 2000-2002 (1,000 requests): the shipped policy's mean goodput
    against each rule's at 1.0x, 1.25x and 1.5x the knee (single class: Azure conversation, knee
    22.1 req/s; mixed: 80 % interactive / 20 % batch, knee 17.1 req/s), at the ratio ``_rules`` sets."""
    import torch

    from schedgym.agents.trained import TrainedPolicy
    from schedgym.envs.llmserve.domain import load

    torch.set_num_threads(1)
    agent = TrainedPolicy(checkpoint)
    tpl, knee = (WL, KNEE) if scenario == "single" else (MIXED, MIXED_KNEE)
    for mult in (1.0, 1.25, 1.5):
        insts = [load(tpl.format(rate=round(knee * mult, 4), n=1000, seed=s)) for s in BAR_SEEDS]
        learned = np.mean([_episode(i, agent, **agent.required_env_kwargs)["goodput_rps"] for i in insts])
        for name, (router, queue, rule_name, options, ratio) in _rules(scenario, checkpoint).items():
            rule = np.mean([_inline(i, router, queue, rule_name, options)["goodput_rps"] for i in insts])
            assert learned >= ratio * rule, (f"{checkpoint}, {scenario} at {mult}x the knee: goodput {learned:.3f} "
                                             f"< {ratio} x {name}'s {rule:.3f}")
