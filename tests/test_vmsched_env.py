"""schedgym/VMReschedule-v0: checker, determinism, two-phase masks, episode end, evaluation hooks."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from vmsched_helpers import tiny_instance

import schedgym  # noqa: F401
from schedgym.envs.core.domain import get_domain
from schedgym.envs.core.episode import run_episode
from schedgym.envs.vmsched.validate import validate

ENV_ID = "schedgym/VMReschedule-v0"


def test_check_env_default_and_m_size():
    check_env(gym.make(ENV_ID).unwrapped, skip_render_check=True)
    env = gym.make(ENV_ID, instance="gen_m_medium_s0")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.unwrapped.n_actions == max(env.unwrapped.max_vms + 1, 2 * 279)


def _random_episode(env, seed):
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    trace, done = [], False
    while not done:
        valid = np.flatnonzero(info["action_mask"])
        if info["phase"] == 0 and len(valid) > 1:
            valid = valid[valid != env.unwrapped.stop_action]
        a = int(rng.choice(valid))
        obs, r, term, trunc, info = env.step(a)
        trace.append((a, r))
        done = term or trunc
    return trace, info


def test_same_seed_same_episode_and_valid_plan():
    env = gym.make(ENV_ID, instance=["gen_s_medium_s0", "gen_s_medium_s1"], mnl=20)
    t1, info1 = _random_episode(env, 5)
    t2, info2 = _random_episode(env, 5)
    assert t1 == t2
    sol = info1["solution"]
    assert sol.n_moves == 20 and sol.mnl == 20 and len(t1) == 40
    validate(env.unwrapped.instance, sol)
    m = info1["metrics"]
    assert m["violations"] == 0 and m["migrations"] == 20
    # rewards sum to the FR decrease
    assert sum(r for _, r in t1) == pytest.approx(m["initial_fragment_rate"] - m["fragment_rate"])


def test_two_phase_masks_and_step_move():
    env = gym.make(ENV_ID, instance="gen_s_medium_s0").unwrapped
    obs, info = env.reset(seed=0)
    st = env.state
    assert info["phase"] == 0 and obs["globals"][0] == 0
    mask = env.action_masks()
    assert mask[env.stop_action] and np.array_equal(mask[: st.V], st.vm_mask())
    v = int(np.flatnonzero(mask[: st.V])[0])
    obs, r, term, trunc, info = env.step(v)
    assert info["phase"] == 1 and r == 0 and not term
    tm = env.action_masks()
    assert np.array_equal(tm[: 2 * st.P], st.target_mask(v).ravel()) and tm.any()
    assert obs["x"][2 * env.max_pms + v, 10] == 1 and obs["action_node"][0] == 0
    # an invalid target is a no-op with a penalty
    bad = int(np.flatnonzero(~tm)[0])
    obs2, r2, term2, _, info2 = env.step(bad)
    assert info2["invalid_action"] and r2 < 0 and not term2 and info2["phase"] == 1
    t = int(np.flatnonzero(tm)[0])
    before = st.fragment_rate()
    obs, r, term, trunc, info = env.step(t)
    assert r == pytest.approx(before - st.fragment_rate()) and info["phase"] == 0
    assert st.moves == [(v, t // 2, t % 2)]
    # flat helper
    v2 = int(np.flatnonzero(env.action_masks()[: st.V])[-1])
    t2 = int(np.flatnonzero(st.target_mask(v2).ravel())[0])
    env.step_move(v2, t2 // 2, t2 % 2)
    assert st.moves[-1] == (v2, t2 // 2, t2 % 2)
    obs, r, term, trunc, info = env.step(env.stop_action)
    assert term and "solution" in info and info["metrics"]["migrations"] == 2


def test_evacuation_blocks_stop_until_done():
    inst = tiny_instance([[44, 44], [44, 44], [44, 44]], [(16, 1, 0, 0), (8, 1, 2, 0), (4, 1, 2, 1)],
                         status=[0, 0, 1], mnl=3)
    env = gym.make(ENV_ID, instance=inst).unwrapped
    obs, info = env.reset(seed=0)
    assert not info["action_mask"][env.stop_action]
    assert obs["globals"][7] == pytest.approx(2 / 3)
    for v in (1, 2):
        env.step_move(v, 1, 0)
    assert env.action_masks()[env.stop_action]
    obs, r, term, trunc, info = env.step(env.stop_action)
    validate(inst, info["solution"])


def test_reset_rejects_an_instance_too_large():
    env = gym.make(ENV_ID, instance="gen_s_medium_s0")
    with pytest.raises(ValueError, match="max_pms"):
        env.reset(options={"instance": "gen_m_medium_s0"})


def test_render_shows_before_and_after():
    env = gym.make(ENV_ID, render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.dtype == np.uint8 and img.shape[2] == 3 and img.std() > 0


def test_domain_runs_policies_and_solvers():
    from schedgym.baselines.vm_cpsat_lns import VMCPSATLNSSolver
    from schedgym.baselines.vm_greedy import VMGreedyPolicy

    dom = get_domain("vmsched")
    inst = dom.load("gen_s_medium_s1")
    res = run_episode(dom, inst, VMGreedyPolicy(), seed=0, env_kwargs={"mnl": 30})
    assert res.status == "ok" and res.metrics["violations"] == 0 and res.metrics["mnl"] == 30
    assert res.metrics["fragment_rate"] < res.metrics["initial_fragment_rate"]
    res = run_episode(dom, inst, VMCPSATLNSSolver(time_limit_s=1.0), seed=0)
    assert res.status == "feasible" and res.metrics["violations"] == 0


@pytest.mark.parametrize("name", ["snap_s_evac", "snap_s_gpu", "gen_s_medium_s0"])
def test_incremental_bookkeeping_matches_a_rebuild(name):
    """The env's features and the state's fit tables and source deltas are updated in place after
    each move; after random moves they equal a rebuild from the placement."""
    env = gym.make(ENV_ID, instance=name, mnl=30).unwrapped
    rng = np.random.default_rng(1)
    obs, info = env.reset(seed=1)
    done = False
    while not done:
        valid = np.flatnonzero(info["action_mask"])
        if info["phase"] == 0 and len(valid) > 1:
            valid = valid[valid != env.stop_action]
        obs, _, term, trunc, info = env.step(int(rng.choice(valid)))
        done = term or trunc
        st = env.state
        fresh = type(st)(env.instance, mnl=st.mnl)
        for v, p, n in st.moves:
            fresh.move(v, p, n)
        fresh._full_fit()  # the reference: fit tables from scratch
        for a in ("fit", "fit_pm", "fit_cls", "fit_rack", "free_c", "free_m", "free_g", "slot", "own_idx"):
            assert np.array_equal(getattr(st, a), getattr(fresh, a)), a
        fresh._src = None
        for a, b in zip(st.source_delta(), fresh.source_delta()):
            assert np.array_equal(a, b)
        x = env._xs.copy()
        env._xs = None
        assert np.array_equal(x, env._state_features())
        assert np.array_equal(obs["x"][:, :10], x[:, :10]) and np.array_equal(obs["x"][:, 11], x[:, 11])


def test_domain_render_solution_and_fr_plot(tmp_path):
    """The domain's solution picture, and the leaderboard's fragment-rate-against-migrations plot
    re-running two policies of a tiny suite cell."""
    from pathlib import Path

    from schedgym.baselines.vm_common import run_rule
    from schedgym.baselines.vm_greedy import VMGreedyPolicy
    from schedgym.evaluation.plots import RERUN_PLOTS, vmsched_fr_vs_migrations
    from schedgym.evaluation.suite import expand_suite

    dom = get_domain("vmsched")
    inst = dom.load("gen_s_medium_s1")
    sol = run_rule(inst, VMGreedyPolicy().rule)
    img = dom.render_solution(inst, sol)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 0
    assert vmsched_fr_vs_migrations in RERUN_PLOTS["vmsched"]
    conf = Path(__file__).resolve().parents[1] / "conf"
    tasks = expand_suite({"name": "t", "cells": [{"env": "vmsched", "instances": [["gen_s_medium_s1"]],
                                                   "policies": ["vm_greedy", "vm_random"]}]}, conf)
    rows = [{**t, "status": "ok", "metrics": {}} for t in tasks]
    paths = vmsched_fr_vs_migrations(rows, {t["key"]: t for t in tasks}, tmp_path)
    assert [p.name for p in paths] == ["vmsched_fr_vs_migrations.png"] and paths[0].stat().st_size > 0
    assert vmsched_fr_vs_migrations([], {}, tmp_path) == []
