"""LLMRouting-v0 / LLMQueue-v0: checker, determinism, baselines through the env on every shipped
profile, render, and the evaluation CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import schedgym  # noqa: F401
from schedgym.baselines.llm_queue import RULES, QueueOrderPolicy, queue_key
from schedgym.baselines.llm_routing import RoutingPolicy
from schedgym.envs.llmserve.cluster import ROUTERS
from schedgym.envs.llmserve.profiles import shipped_profiles
from schedgym.envs.llmserve.sim import simulate
from schedgym.envs.llmserve.validate import validate
from schedgym.envs.llmserve.workload import build_workload

ROOT = Path(__file__).resolve().parent.parent
IDS = ["schedgym/LLMRouting-v0", "schedgym/LLMQueue-v0"]


@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)


def _run(env, policy, seed=0, instance=None):
    obs, info = env.reset(seed=seed, options={"instance": instance} if instance else None)
    policy.reset(env)
    rewards, done = [], False
    while not done:
        assert env.observation_space.contains(obs)
        obs, r, term, trunc, info = env.step(policy.act(obs, info))
        rewards.append(r)
        done = term or trunc
    return rewards, info


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_trajectory(env_id):
    from schedgym.baselines.base import RandomMaskedPolicy

    runs = [_run(gym.make(env_id), RandomMaskedPolicy(seed=1), seed=5) for _ in range(2)]
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1]["solution"].completion, runs[1][1]["solution"].completion)
    sol = runs[0][1]["solution"]
    validate(gym.make(env_id).unwrapped._pick_instance({"instance": runs[0][1]["instance"]}), sol)
    assert sum(runs[0][0]) == pytest.approx(2 * runs[0][1]["metrics"]["slo_attainment"] - 1)


def test_fcfs_policy_in_env_equals_inline_simulator():
    name = "azure_conv:rate=5:n=120:seed=2:replicas=2"
    inst = build_workload(name)
    for rule in ("fcfs", "srpt", "edf"):
        _, info = _run(gym.make("schedgym/LLMQueue-v0"), QueueOrderPolicy(rule), instance=name)
        ref = simulate(inst, queue_key=None if rule == "fcfs" else queue_key(rule))
        np.testing.assert_allclose(info["solution"].completion, ref.completion)


@pytest.mark.parametrize("profile", shipped_profiles())
def test_all_baselines_run_on_every_profile(profile):
    from schedgym.envs.core.errors import InstanceFormatError
    from schedgym.envs.llmserve.cluster import kv_capacity_blocks
    from schedgym.envs.llmserve.types import ReplicaSpec

    device, model, tp = profile.split("__")
    for pp in (1, 2, 4, 8):  # the fewest pipeline stages that fit the model in memory
        try:
            kv_capacity_blocks(ReplicaSpec(model=model, device=device, tp=int(tp[2:]), pp=pp))
            break
        except InstanceFormatError:
            continue
    opts = f"model={model}:device={device}:tp={tp[2:]}:pp={pp}:max_tokens=2048"
    qname = f"azure_conv:rate=4:n=25:seed=0:{opts}"
    rname = f"azure_conv:rate=8:n=25:seed=0:replicas=2:{opts}"
    for rule in RULES:
        _, info = _run(gym.make("schedgym/LLMQueue-v0"), QueueOrderPolicy(rule), instance=qname)
        validate(build_workload(qname), info["solution"])
        assert np.isfinite(info["metrics"]["ttft_p99_s"])
    for rule in ROUTERS:
        _, info = _run(gym.make("schedgym/LLMRouting-v0"), RoutingPolicy(rule), instance=rname)
        validate(build_workload(rname), info["solution"])


def test_invalid_action_is_a_noop_with_penalty():
    env = gym.make("schedgym/LLMQueue-v0").unwrapped
    obs, info = env.reset(seed=0)
    bad = int(np.flatnonzero(~info["action_mask"])[0])
    obs2, r, term, trunc, info2 = env.step(bad)
    assert info2["invalid_action"] and r == env.invalid_action_penalty and not term
    np.testing.assert_array_equal(obs["x"], obs2["x"])


def test_render_rgb():
    env = gym.make("schedgym/LLMRouting-v0", render_mode="rgb_array")
    _run(env, RoutingPolicy("least_kv"), instance="azure_conv:rate=8:n=30:seed=0:replicas=2")
    img = env.render()
    assert img.ndim == 3 and img.shape[2] == 3 and img.std() > 0


def test_evaluate_cli(tmp_path):
    cmd = [sys.executable, str(ROOT / "scripts/evaluate.py"), "env=llmserve", "workload=azure_conv",
           "policy=least_outstanding", "progress=false", f"hydra.run.dir={tmp_path}",
           "workload.spec=['azure_conv:rate=12:n=80:replicas=2:seed=0']"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = (tmp_path / "results.csv").read_text()
    assert "slo_attainment" in text and "goodput_rps" in text and ",ok," in text


@pytest.mark.parametrize("env_id", ["schedgym/LLMQueue-v0", "schedgym/LLMRouting-v0"])
def test_cluster_that_serves_nothing_is_rejected_before_the_episode(env_id):
    """Orca reserves a whole max-length slot per request; with 20 KV blocks every request would be
    rejected at arrival (an episode with no decision and NaN latencies): an error at load time."""
    from schedgym.envs.core.errors import InstanceFormatError

    spec = ("synthetic:prompt_mean=300:output_mean=600:rate=12:n=30:seed=2:max_tokens=4000:scheduler=orca:"
            "num_blocks=20:replicas=2")
    with pytest.raises(InstanceFormatError, match=r"serve no request.*num_blocks=20.*valid: num_blocks >="):
        gym.make(env_id, instance=spec)


@pytest.mark.parametrize("env_id", IDS)
def test_episode_metrics_are_never_nan(env_id):
    """One-token outputs have no TPOT or inter-token gap: those metrics are 0, not NaN."""
    from schedgym.baselines.base import RandomMaskedPolicy
    from schedgym.envs.llmserve.types import ReplicaSpec
    from schedgym.envs.llmserve.workload import make_instance

    inst = make_instance(np.arange(12) * 0.05, np.full(12, 64), np.ones(12, np.int64),
                         replicas=(ReplicaSpec(num_blocks=200),) * 2)
    _, info = _run(gym.make(env_id), RandomMaskedPolicy(seed=0), instance=inst)
    m = info["metrics"]
    assert not [k for k, v in m.items() if np.isnan(v)]
    assert m["tpot_p99_s"] == 0.0 and m["tbt_p99_s"] == 0.0 and np.isfinite(m["ttft_p99_s"])
