"""GPUDag-v0 with action_mode="task": list scheduling with earliest-finish placement."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import schedgym  # noqa: F401
from schedgym.baselines.heft import PriorityListPolicy, heft
from schedgym.envs.gpudag.domain import make_env
from schedgym.envs.gpudag.generator import TopcuogluMixture
from schedgym.envs.gpudag.instances import load_instance
from schedgym.envs.gpudag.metrics import metrics
from schedgym.envs.gpudag.validate import validate

NAMES = ["topcuoglu-example", "topcuoglu-v50-ccr0.1-a1-b0.5-o3-p4-s3", "topcuoglu-v50-ccr5-a1-b0.5-o3-p4-s7",
         "cholesky-T4-c4g2-s0", "online-topcuoglu-v20-ccr1-a1-b0.5-j5-load0.7-s0"]


def _run(env, policy) -> dict:
    obs, info = env.reset(seed=0)
    policy.reset(env)
    done, total = False, 0.0
    while not done:
        obs, r, term, trunc, info = env.step(policy.act(obs, info))
        total += r
        done = term or trunc
    info["return"] = total
    return info


@pytest.mark.parametrize("name", NAMES)
def test_heft_priority_list_reproduces_heft(name):
    inst = load_instance(name)
    info = _run(make_env(inst, action_mode="task"), PriorityListPolicy("heft"))
    plan = heft(inst)
    assert np.array_equal(info["solution"].device, plan.device)
    assert np.allclose(info["solution"].start, plan.start, rtol=0, atol=1e-9)
    validate(inst, info["solution"])  # raises on an invalid schedule
    if name == "topcuoglu-example":
        assert info["metrics"]["makespan"] == pytest.approx(80.0)


def test_rewards_sum_to_minus_makespan_and_random_orders_are_valid():
    inst = load_instance(NAMES[1])
    env = make_env(inst, action_mode="task")
    for seed in range(3):
        pol = PriorityListPolicy("random", seed=seed)
        info = _run(env, pol)
        validate(inst, info["solution"])  # raises on an invalid schedule
        assert info["return"] == pytest.approx(-info["metrics"]["makespan"] / env.unwrapped.reward_scale)


def test_non_ready_task_is_an_invalid_no_op():
    env = make_env(load_instance("topcuoglu-example"), action_mode="task")
    obs, info = env.reset(seed=0)
    mask = info["action_mask"].astype(bool)
    assert mask.sum() == 1 and mask[0]  # the example has one entry task
    before = obs["x"].copy()
    obs, r, term, trunc, info = env.step(9)  # the exit task is not ready
    assert info["invalid_action"] and not term and r == env.unwrapped.invalid_action_penalty
    assert np.array_equal(obs["x"], before)


def test_task_mode_passes_check_env_and_is_deterministic():
    env = gym.make("schedgym/GPUDag-v0", action_mode="task",
                   generator=TopcuogluMixture(n_tasks=[10, 20], ccr=[0.1, 5.0], n_procs=3))
    check_env(env.unwrapped, skip_render_check=True)

    def trajectory(seed):
        obs, info = env.reset(seed=seed)
        rng, out, done = np.random.default_rng(seed), [], False
        while not done:
            a = int(rng.choice(np.flatnonzero(info["action_mask"])))
            obs, r, term, trunc, info = env.step(a)
            out.append((a, r, obs["x"].sum()))
            done = term or trunc
        return out

    assert trajectory(5) == trajectory(5)


def test_observation_marks_ready_tasks_and_their_placement():
    env = make_env(load_instance(NAMES[1]), action_mode="task")
    obs, info = env.reset(seed=0)
    e = env.unwrapped
    ready = np.flatnonzero(info["action_mask"])
    assert np.array_equal(np.flatnonzero(obs["x"][: e.max_tasks, 5]), ready)
    for t in ready:
        d, start = e.placement(int(t))
        assert obs["action_device_node"][t] == e.max_tasks + d
        assert obs["x"][t, 8] == pytest.approx((start - info["now"]) / e.time_scale, abs=1e-6)
    assert obs["action_mask"].shape == (e.max_tasks,)


def test_priority_list_needs_task_mode():
    env = make_env(load_instance("topcuoglu-example"))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action_mode='task'"):
        PriorityListPolicy("heft").reset(env)


def test_bad_action_mode_is_refused():
    with pytest.raises(ValueError, match=r"action_mode must be one of \('pair', 'task', 'dispatch', 'dispatch_la'\)"):
        make_env(load_instance("topcuoglu-example"), action_mode="list")


def test_topcuoglu_mixture_draws_from_each_list():
    mix = TopcuogluMixture(n_tasks=[12, 24], ccr=[0.1, 5.0], n_procs=3)
    rng = np.random.default_rng(0)
    sizes = {mix(rng).n_tasks for _ in range(20)}
    assert sizes == {12, 24}
    assert mix.size_bounds()[:2] == (24, 3)
    with pytest.raises(ValueError, match="n_procs must be one number"):
        TopcuogluMixture(n_procs=[2, 4])
    with pytest.raises(ValueError, match="ccr lists no value"):
        TopcuogluMixture(ccr=[])


def test_evaluate_builds_task_mode_for_priority_lists():
    from schedgym.envs.core.episode import env_kwargs_for_agent

    assert env_kwargs_for_agent({"reward": "auto"}, PriorityListPolicy("peft"))["action_mode"] == "task"
    inst = load_instance(NAMES[2])
    info = _run(make_env(inst, action_mode="task"), PriorityListPolicy("peft"))
    assert metrics(inst, info["solution"])["makespan"] == pytest.approx(info["metrics"]["makespan"])


def test_topcuoglu_mixture_makes_online_workloads():
    mix = TopcuogluMixture(n_tasks=[6, 9], ccr=[1.0], n_procs=3, n_jobs=4, load=0.8)
    inst = mix(np.random.default_rng(1))
    assert inst.n_jobs == 4 and inst.n_devices == 3
    assert inst.job_arrival[0] == 0.0 and np.all(np.diff(np.sort(inst.job_arrival)) >= 0)
    assert set(np.bincount(inst.task_job).tolist()) <= {6, 9}
    assert mix.size_bounds()[0] == 36
    with pytest.raises(ValueError, match="n_jobs must be >= 1"):
        TopcuogluMixture(n_jobs=0)
