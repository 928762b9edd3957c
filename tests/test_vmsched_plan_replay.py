"""Replaying a CP-SAT LNS plan through the two-phase env reproduces the plan exactly."""

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.baselines.vm_cpsat_lns import VMCPSATLNSSolver
from schedgym.baselines.vm_plan_replay import VMPlanReplayPolicy, replay_actions
from schedgym.envs.core.domain import get_domain
from schedgym.envs.core.episode import run_episode
from schedgym.envs.vmsched.instances import load_instance
from schedgym.envs.vmsched.state import VMState


def test_replayed_cpsat_plan_gives_the_same_moves_and_fragment_rate():
    dom = get_domain("vmsched")
    inst = load_instance("snap_s_evac").with_mnl(20)  # evacuations first, then LNS moves
    plan = VMCPSATLNSSolver(time_limit_s=1.0, seed=0).solve(inst)
    assert plan.n_moves > 0
    res = run_episode(dom, inst, VMPlanReplayPolicy(plan=plan), seed=0)
    assert res.status == "ok" and res.metrics["violations"] == 0
    assert res.metrics["fragment_rate"] == pytest.approx(dom.metrics(inst, plan)["fragment_rate"], abs=1e-12)
    env = gym.make("schedgym/VMReschedule-v0", instance=inst)
    obs, info = env.reset(seed=0)
    for a in replay_actions(env, plan):
        assert info["action_mask"][a]
        obs, _, term, trunc, info = env.step(a)
    assert np.array_equal(env.unwrapped.solution().moves, plan.moves)


def test_replay_rejects_bad_use():
    with pytest.raises(ValueError, match="exactly one"):
        VMPlanReplayPolicy()
    env = gym.make("schedgym/VMReschedule-v0", instance="gen_s_medium_s0", action_mode="vm")
    env.reset(seed=0)
    plan = VMCPSATLNSSolver(time_limit_s=0.5).solve(load_instance("gen_s_medium_s0").with_mnl(5))
    with pytest.raises(ValueError, match="two_phase"):
        replay_actions(env, plan)
    policy = VMPlanReplayPolicy(plan=plan)
    st = VMState(load_instance("gen_s_medium_s0").with_mnl(5))
    first = policy.rule(st)
    st.move(*first)
    policy._next = 0  # the same move again: the VM is already there
    with pytest.raises(RuntimeError, match="infeasible"):
        policy.rule(st)
