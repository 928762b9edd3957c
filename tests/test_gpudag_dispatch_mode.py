"""GPUDag-v0 with action_mode="dispatch": event-driven, the agent picks a task, the env its device."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import schedgym  # noqa: F401
from schedgym.baselines.dag_online import RULES, DagDispatchPolicy
from schedgym.envs.gpudag.domain import make_env
from schedgym.envs.gpudag.generator import OnlineGenerator, TopcuogluGenerator
from schedgym.envs.gpudag.instances import load_instance
from schedgym.envs.gpudag.validate import validate

ONLINE = "online-topcuoglu-v20-ccr1-a1-b0.5-j5-load0.7-s1"


def _run(env, policy):
    obs, info = env.reset(seed=0)
    policy.reset(env)
    done, total, steps = False, 0.0, 0
    while not done:
        obs, r, term, trunc, info = env.step(policy.act(obs, info))
        total, steps = total + r, steps + 1
        done = term or trunc
    return info, total, steps


@pytest.mark.parametrize("rule", RULES)
def test_rules_give_the_same_schedule_in_pair_and_dispatch_mode(rule):
    inst = load_instance(ONLINE)
    a, ra, _ = _run(make_env(inst), DagDispatchPolicy(rule))
    b, rb, _ = _run(make_env(inst, action_mode="dispatch"), DagDispatchPolicy(rule))
    assert np.array_equal(a["solution"].device, b["solution"].device)
    assert np.array_equal(a["solution"].start, b["solution"].start)
    assert ra == pytest.approx(rb)
    validate(inst, b["solution"])
    assert b["metrics"]["mean_jct"] == pytest.approx(a["metrics"]["mean_jct"])


def test_observation_has_job_features_and_task_actions():
    inst = load_instance(ONLINE)
    env = make_env(inst, action_mode="dispatch")
    obs, info = env.reset(seed=0)
    e = env.unwrapped
    assert obs["x"].shape[1] == 16 and obs["action_mask"].shape == (e.max_tasks,)
    ready = np.flatnonzero(info["action_mask"])
    assert len(ready) and all(e.state.is_ready[t] for t in ready)
    t = int(ready[0])
    job = inst.task_job[t]
    expected = inst.mean_time[inst.task_job == job].sum() / e.time_scale
    assert obs["x"][t, 14] == pytest.approx(expected, rel=1e-6)
    assert obs["action_device_node"][t] == e.max_tasks + e.dispatch_device(t)


def test_invalid_task_is_a_no_op():
    env = make_env(load_instance(ONLINE), action_mode="dispatch")
    obs, info = env.reset(seed=0)
    bad = int(np.flatnonzero(info["action_mask"] == 0)[0])
    x0 = obs["x"].copy()
    obs, r, term, trunc, info = env.step(bad)
    assert info["invalid_action"] and not term and np.array_equal(obs["x"], x0)


def test_dispatch_mode_passes_check_env_and_is_deterministic():
    gen = OnlineGenerator(TopcuogluGenerator(n_tasks=8, n_procs=3), n_jobs=3, load=0.8)
    env = gym.make("schedgym/GPUDag-v0", action_mode="dispatch", generator=gen)
    check_env(env.unwrapped, skip_render_check=True)

    def trajectory(seed):
        obs, info = env.reset(seed=seed)
        rng, out, done = np.random.default_rng(seed), [], False
        while not done:
            a = int(rng.choice(np.flatnonzero(info["action_mask"])))
            obs, r, term, trunc, info = env.step(a)
            out.append((a, r))
            done = term or trunc
        return out, info["metrics"]["mean_jct"]

    assert trajectory(3) == trajectory(3)


def test_task_mode_is_refused_by_the_online_rules():
    env = make_env(load_instance(ONLINE), action_mode="task")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action_mode 'pair' or 'dispatch'"):
        DagDispatchPolicy("fifo").reset(env)
