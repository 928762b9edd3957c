"""JobShop-v0 / FlexibleJobShop-v0 behaviour: rewards, schemes, padding, episode-end info."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.baselines.dispatching import DispatchingRulePolicy, solve_with_rule
from schedgym.envs.jobshop.instances import load_instance
from schedgym.envs.jobshop.validate import validate

ROOT = Path(__file__).resolve().parents[1]


def run(env, policy, **reset_kw):
    obs, info = env.reset(**reset_kw)
    policy.reset(env)
    rewards, done = [], False
    while not done:
        obs, r, term, trunc, info = env.step(policy.act(obs, info))
        rewards.append(r)
        done = term or trunc
    return rewards, info


def test_lb_reward_sums_to_negative_makespan_gap():
    env = gym.make("schedgym/JobShop-v0", instance="ft06")
    obs, info = env.reset(seed=0)
    lb0 = info["makespan_lb"]
    rewards, info = run(env, DispatchingRulePolicy("mwkr"), seed=0)
    scale = env.unwrapped.reward_scale
    assert np.isclose(sum(rewards) * scale, -(info["metrics"]["makespan"] - lb0))
    validate(env.unwrapped.instance, info["solution"])


def test_sparse_makespan_reward():
    env = gym.make("schedgym/JobShop-v0", instance="ft06", reward="makespan")
    rewards, info = run(env, DispatchingRulePolicy("spt"), seed=0)
    assert all(r == 0 for r in rewards[:-1])
    assert np.isclose(rewards[-1] * env.unwrapped.reward_scale, -info["metrics"]["makespan"])


def test_tardiness_reward_and_edd():
    env = gym.make("schedgym/JobShop-v0", instance="la01", reward="tardiness", due_tightness=1.5,
                   scheme="non_delay")
    rewards, info = run(env, DispatchingRulePolicy("edd"), seed=4)
    m = info["metrics"]
    assert "total_tardiness" in m
    assert np.isclose(sum(rewards) * env.unwrapped.reward_scale, -m["weighted_tardiness"])
    with pytest.raises(ValueError, match="due dates"):
        gym.make("schedgym/JobShop-v0", instance="la01", reward="tardiness").reset(seed=0)


@pytest.mark.parametrize("scheme", ["active", "non_delay"])
@pytest.mark.parametrize("name", ["ft06", "la16", "mk01"])
def test_env_matches_fast_rule_path(scheme, name):
    inst = load_instance(name)
    env = gym.make("schedgym/FlexibleJobShop-v0" if inst.is_flexible else "schedgym/JobShop-v0",
                   instance=name, scheme=scheme)
    _, info = run(env, DispatchingRulePolicy("mopnr"), seed=0)
    ref = solve_with_rule(inst, "mopnr", scheme=scheme)
    assert np.array_equal(info["solution"].start, ref.start)
    assert np.array_equal(info["solution"].machine, ref.machine)


def test_padding_and_bigger_instances():
    env = gym.make("schedgym/JobShop-v0", max_jobs=30, max_machines=20, max_ops=600)
    obs, info = env.reset(seed=0, options={"instance": "ta01"})
    assert obs["x"].shape == (600, 12)
    assert obs["node_mask"].sum() == 225
    assert obs["action_mask"][15:].sum() == 0
    _, info = run(env, DispatchingRulePolicy("spt"), seed=0, options={"instance": "ft06"})
    assert info["metrics"]["makespan"] >= 55
    small = gym.make("schedgym/JobShop-v0", instance="ft06")
    with pytest.raises(ValueError, match="does not fit"):
        small.reset(options={"instance": "ta01"})


def test_graph_edges_follow_machine_sequences():
    env = gym.make("schedgym/JobShop-v0", instance="ft06")
    obs, info = env.reset(seed=0)
    for _ in range(20):
        obs, *_ , info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
    st = env.unwrapped.state
    ei = obs["edge_index"][:, obs["edge_mask"].astype(bool)]
    types = obs["edge_attr"][obs["edge_mask"].astype(bool)]
    mseq = {(int(a), int(b)) for (a, b), t in zip(ei.T, types) if t[1] == 1}
    expected = {(o, int(st.mach_next[o])) for o in range(st.n_ops) if st.mach_next[o] >= 0}
    assert mseq == expected
    for a, b in mseq:
        assert st.assigned[a] == st.assigned[b] and st.start[a] < st.start[b] or st.end[a] <= st.start[b]
    prec = {(int(a), int(b)) for (a, b), t in zip(ei.T, types) if t[0] == 1}
    assert len(prec) == 36 - 6
    # candidate flags point at the next operation of each valid job
    cands = set(np.flatnonzero(obs["x"][:, 4]))
    assert cands == {int(st.next_op[j]) for j in np.flatnonzero(info["action_mask"])}


def test_random_instances_by_default_are_seeded():
    env = gym.make("schedgym/JobShop-v0")
    o1, _ = env.reset(seed=11)
    o2, _ = env.reset(seed=11)
    o3, _ = env.reset(seed=12)
    assert np.array_equal(o1["x"], o2["x"]) and not np.array_equal(o1["x"], o3["x"])


def test_evaluate_cli(tmp_path):
    out = tmp_path / "ev"
    cmd = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "env=jobshop", "instances=ft",
           "policy=mwkr", f"hydra.run.dir={out}"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("env_id,suite,instance,policy,seed")
    assert len(rows) == 4 and "ft06" in r.stdout
    for col in ("makespan", "gap_to_bks_pct", "wall_time_s", "status"):
        assert col in rows[0]
    # rerun into the same dir resumes: nothing recomputed
    r2 = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r2.returncode == 0 and "resuming: 3 of 3" in r2.stdout
    assert (out / "results.csv").read_text().splitlines() == rows


@pytest.mark.parametrize("env_id,name", [("schedgym/JobShop-v0", "ft06"), ("schedgym/FlexibleJobShop-v0", "mk01")])
def test_time_origin_now_is_invariant_to_a_time_shift(env_id, name):
    """With time_origin="now", releasing every job 500 units later changes no observed number;
    with the default time_origin="zero" the time features move."""
    import dataclasses

    inst = load_instance(name)
    shifted = dataclasses.replace(inst, release=inst.release + 500)
    for origin, same in (("now", True), ("zero", False)):
        envs = [gym.make(env_id, instance=i, scheme="non_delay", time_origin=origin) for i in (inst, shifted)]
        (o1, i1), (o2, i2) = envs[0].reset(seed=0), envs[1].reset(seed=0)
        for step in range(inst.n_ops):
            assert np.array_equal(i1["action_mask"], i2["action_mask"])
            if same:
                np.testing.assert_allclose(o1["x"], o2["x"], atol=1e-6, err_msg=f"step {step}")
                np.testing.assert_allclose(o1["globals"], o2["globals"], atol=1e-6)
            a = int(np.flatnonzero(i1["action_mask"])[-1])
            o1, _, t1, _, i1 = envs[0].step(a)
            o2, _, t2, _, i2 = envs[1].step(a)
            if not same and step == 3:
                assert not np.allclose(o1["x"], o2["x"])
        assert t1 and t2
        assert i2["metrics"]["makespan"] == i1["metrics"]["makespan"] + 500


def test_time_origin_now_bounds_features_on_large_instances():
    """Relative times stay within about one time scale on a 100x20 instance (absolute ones reach ~3)."""
    env = gym.make("schedgym/JobShop-v0", instance="ta71", scheme="non_delay", time_origin="now")
    obs, info = env.reset(seed=0)
    policy = DispatchingRulePolicy("mwkr")
    policy.reset(env)
    hi = 0.0
    for _ in range(1500):
        obs, _, term, _, info = env.step(policy.act(obs, info))
        hi = max(hi, float(np.abs(obs["x"][:, [0, 5, 7]]).max()))
    assert hi <= 1.5
    with pytest.raises(ValueError, match="time_origin"):
        gym.make("schedgym/JobShop-v0", instance="ft06", time_origin="later")


def test_generator_size_mixture():
    from schedgym.envs.jobshop.generator import UniformJobShopGenerator

    gen = UniformJobShopGenerator(sizes=["10x10", "15x10", "20x15"])
    assert gen.size_bounds() == (20, 15, 300)
    rng = np.random.default_rng(0)
    shapes = {(i.n_jobs, i.n_machines) for i in (gen(rng) for _ in range(60))}
    assert shapes == {(10, 10), (15, 10), (20, 15)}
    env = gym.make("schedgym/JobShop-v0", generator=gen)
    assert env.unwrapped.max_ops == 300
    with pytest.raises(ValueError, match="JOBSxMACHINES"):
        UniformJobShopGenerator(sizes=["10by10"])
