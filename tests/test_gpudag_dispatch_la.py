"""GPUDag-v0 with action_mode="dispatch_la" (the env offers the no-regret ready tasks only and waits
for a busy device by itself) and the look-ahead online rules ``dag_<rule>_la``."""

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
def test_lookahead_rules_give_the_same_schedule_in_pair_and_dispatch_la_mode(rule):
    inst = load_instance(ONLINE)
    a, ra, _ = _run(make_env(inst), DagDispatchPolicy(rule, lookahead=True))
    b, rb, steps = _run(make_env(inst, action_mode="dispatch_la"), DagDispatchPolicy(rule, lookahead=True))
    assert np.array_equal(a["solution"].device, b["solution"].device)
    assert np.array_equal(a["solution"].start, b["solution"].start)
    assert ra == pytest.approx(rb)
    assert steps == inst.n_tasks  # one step per task: the waits happen inside the steps
    validate(inst, b["solution"])


def test_lookahead_lowers_mean_jct_of_fair_on_this_workload():
    inst = load_instance(ONLINE)
    plain, _, _ = _run(make_env(inst, action_mode="dispatch"), DagDispatchPolicy("fair"))
    la, _, _ = _run(make_env(inst, action_mode="dispatch_la"), DagDispatchPolicy("fair", lookahead=True))
    assert la["metrics"]["mean_jct"] < plain["metrics"]["mean_jct"]


def test_candidates_are_exactly_the_no_regret_ready_tasks_and_rewards_sum_to_jct():
    inst = load_instance(ONLINE)
    env = make_env(inst, action_mode="dispatch_la", reward="jct")
    obs, info = env.reset(seed=0)
    e = env.unwrapped
    rng, total, done, seen_busy = np.random.default_rng(0), 0.0, False, False
    while not done:
        st = e.state
        mask = np.asarray(info["action_mask"], dtype=bool)
        for t in st.ready_tasks():
            fin = [max(st.now, st.busy_until[d], st.data_ready(int(t), d)) + st.W[t, d]
                   for d in range(st.n_devices) if st.eligible[t, d]]
            best_idle = min((max(st.now, st.data_ready(int(t), d)) + st.W[t, d] for d in range(st.n_devices)
                             if st.eligible[t, d] and st.busy_until[d] <= st.now), default=np.inf)
            assert mask[t] == (best_idle <= min(fin) + 1e-9), (t, best_idle, min(fin))
            seen_busy |= not mask[t]
        assert mask.any() and not mask[st.n_tasks:].any()
        assert obs["x"].shape[1] == 18
        t = int(rng.choice(np.flatnonzero(mask)))
        assert obs["action_device_node"][t] == e.max_tasks + e.dispatch_device(t)
        obs, r, term, trunc, info = env.step(t)
        total += r
        done = term or trunc
    assert seen_busy  # the workload exercises the look-ahead
    jct = info["metrics"]["mean_jct"] * inst.n_jobs
    assert -total * e.reward_scale == pytest.approx(jct, rel=1e-9)
    validate(inst, info["solution"])


def test_job_features_of_dispatch_la():
    inst = load_instance(ONLINE)
    env = make_env(inst, action_mode="dispatch_la")
    obs, info = env.reset(seed=0)
    e = env.unwrapped
    for _ in range(6):
        obs, _, term, _, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
    st = e.state
    t = int(np.flatnonzero(info["action_mask"])[0])
    job = inst.task_job[t]
    running = (st.device >= 0) & (st.end > st.now) & (inst.task_job == job)
    assert obs["x"][t, 16] == pytest.approx(running.sum() / inst.n_devices)
    unassigned = (st.device < 0) & (inst.task_job == job)
    assert obs["x"][t, 17] == pytest.approx(e._rank_up[unassigned].max() / e.time_scale, rel=1e-6)


def test_mode_and_rule_mismatches_are_refused():
    inst = load_instance(ONLINE)
    env = make_env(inst, action_mode="dispatch_la")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="dag_fair_la"):
        DagDispatchPolicy("fair").reset(env)
    env = make_env(inst, action_mode="dispatch")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="no wait action"):
        DagDispatchPolicy("fair", lookahead=True).reset(env)


def test_dispatch_la_passes_check_env_and_is_deterministic():
    gen = OnlineGenerator(TopcuogluGenerator(n_tasks=8, n_procs=3), n_jobs=3, load=0.8)
    env = gym.make("schedgym/GPUDag-v0", action_mode="dispatch_la", generator=gen)
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


def test_objective_metric_and_best_of_k_ranks_by_mean_jct_online():
    from schedgym.agents.trained import load_trained_agent
    from schedgym.envs.gpudag.metrics import metrics

    assert make_env(load_instance("topcuoglu-example"), action_mode="task").unwrapped.objective_metric == "makespan"
    inst = load_instance(ONLINE)
    env = make_env(inst, action_mode="dispatch_la", reward="jct")
    env.reset(seed=0)
    assert env.unwrapped.objective_metric == "mean_jct"
    greedy, _, _ = _run(env, load_trained_agent("gpudag_online_gnn", domain="gpudag"))
    best = load_trained_agent("gpudag_online_gnn", samples=8, domain="gpudag").solve(inst)
    validate(inst, best)
    # sample 0 is the greedy episode: ranking by mean JCT can only improve on it
    assert metrics(inst, best)["mean_jct"] <= greedy["metrics"]["mean_jct"] + 1e-9


def test_randomised_rule_variants_are_seeded_valid_and_differ_from_the_rule():
    """noise/explore variants (self-labeling label candidates): same seed, same schedules; they
    explore other orders than the deterministic rule; every schedule passes the validator."""
    inst = load_instance("online-topcuoglu-v20-ccr1-a1-b0.5-j8-load0.9-s2")
    env = make_env(inst, action_mode="dispatch_la")
    rule, _, _ = _run(env, DagDispatchPolicy("srpt", lookahead=True))
    starts = []
    for seed in (1, 1, 2):
        pol = DagDispatchPolicy("srpt", lookahead=True, noise=0.3, explore=0.2, seed=seed)
        runs = [_run(env, pol)[0] for _ in range(2)]  # the generator draws on across episodes
        for info in runs:
            validate(inst, info["solution"])
        starts.append([info["solution"].start for info in runs])
    assert all(np.array_equal(a, b) for a, b in zip(starts[0], starts[1], strict=True))
    assert not np.array_equal(starts[0][0], starts[0][1])
    assert not np.array_equal(starts[0][0], starts[2][0])
    assert any(not np.array_equal(s, rule["solution"].start) for run in starts for s in run)
    assert DagDispatchPolicy("srpt", lookahead=True, noise=0.0, explore=0.0, seed=5).name == "dag_srpt_la"
    with pytest.raises(ValueError, match="noise must be >= 0 and explore in"):
        DagDispatchPolicy("srpt", explore=1.5)


def test_topcuoglu_mixture_draws_jobs_and_load_per_workload():
    from schedgym.envs.gpudag.generator import TopcuogluMixture

    mix = TopcuogluMixture(n_tasks=6, n_procs=3, n_jobs=[3, 5], load=[0.5, 1.0])
    rng = np.random.default_rng(0)
    insts = [mix(rng) for _ in range(12)]
    assert {i.n_jobs for i in insts} == {3, 5}
    assert {i.name.split("-load")[1].split("-")[0] for i in insts} == {"0.5", "1"}
    assert mix.size_bounds()[0] == 30
    # one value: the same workloads as before lists were accepted (no extra draw)
    a = TopcuogluMixture(n_tasks=6, n_procs=3, n_jobs=4, load=0.8)(np.random.default_rng(3))
    b = OnlineGenerator(TopcuogluMixture(n_tasks=6, n_procs=3), 4, 0.8)(np.random.default_rng(3))
    assert np.array_equal(a.job_arrival, b.job_arrival) and np.array_equal(a.exec_time, b.exec_time)
    with pytest.raises(ValueError, match="load must be > 0"):
        TopcuogluMixture(n_jobs=2, load=[])
