"""schedgym/GPUDag-v0: API, determinism, event semantics, rewards, replay of static plans, online mode."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import schedgym  # noqa: F401
from schedgym.baselines.dag_online import DagDispatchPolicy
from schedgym.baselines.heft import ListSchedulingSolver, PlanReplayPolicy
from schedgym.envs.gpudag.env import GPUDagEnv
from schedgym.envs.gpudag.generator import TileDagGenerator, build_instance
from schedgym.envs.gpudag.instances import load_instance
from schedgym.envs.gpudag.metrics import metrics
from schedgym.envs.gpudag.state import GPUDagState
from schedgym.envs.gpudag.validate import validate

ID = "schedgym/GPUDag-v0"


def _run(env, policy, seed=0, options=None):
    obs, info = env.reset(seed=seed, options=options)
    policy.reset(env)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, r, term, trunc, info = env.step(policy.act(obs, info))
        total += r
        steps += 1
        done = term or trunc
    return total, steps, info


class _Random:
    name = "rand"

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def reset(self, env):
        self.env = env

    def act(self, obs, info):
        return int(self.rng.choice(np.flatnonzero(info["action_mask"])))


def test_make_without_arguments_and_check_env():
    env = gym.make(ID)
    check_env(env.unwrapped)
    env2 = gym.make(ID, instance="online-cholesky-T3-c2g1-j3-load0.7-s0", render_mode="rgb_array")
    check_env(env2.unwrapped)


def test_same_seed_same_trajectory():
    def trace(seed):
        env = gym.make(ID)
        pol = _Random(5)
        obs, info = env.reset(seed=seed)
        pol.reset(env)
        out = [float(obs["x"].sum())]
        done = False
        while not done:
            a = pol.act(obs, info)
            obs, r, te, tr, info = env.step(a)
            out.append((a, round(r, 12), float(obs["x"].sum())))
            done = te or tr
        return out

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


@pytest.mark.parametrize("name", ["topcuoglu-example", "topcuoglu-v30-ccr5-a1-b0.5-s2", "cholesky-T5-c4g2-s0",
                                  "transformer-llama2_7b-L1-mb3-t512-training-ch100x2_a100x2_a40x2-s0",
                                  "online-topcuoglu-v20-ccr1-a1-b0.5-j6-load0.8-s1"])
@pytest.mark.parametrize("alg", ["heft", "cpop", "peft", "minmin"])
def test_replayed_plan_reproduces_static_schedule(name, alg):
    env = gym.make(ID, instance=name)
    _, _, info = _run(env, PlanReplayPolicy(alg))
    inst = env.unwrapped.instance
    plan = ListSchedulingSolver(alg).solve(inst)
    validate(inst, info["solution"])
    assert info["metrics"]["makespan"] == pytest.approx(plan.makespan(inst), rel=1e-12)
    assert np.allclose(info["solution"].start, plan.start)


def test_rewards_sum_to_minus_makespan():
    env = gym.make(ID, instance="topcuoglu-v30-ccr1-a1-b0.5-s0")
    total, _, info = _run(env, _Random(0))
    assert total * env.unwrapped.reward_scale == pytest.approx(-info["metrics"]["makespan"])


def test_online_rewards_sum_to_minus_total_jct():
    env = gym.make(ID, instance="online-topcuoglu-v15-ccr1-a1-b0.5-j8-load0.9-s2")
    for pol in (_Random(1), DagDispatchPolicy("fifo"), DagDispatchPolicy("sjf"), DagDispatchPolicy("fair")):
        total, _, info = _run(env, pol)
        inst = env.unwrapped.instance
        validate(inst, info["solution"])
        m = info["metrics"]
        assert total * env.unwrapped.reward_scale == pytest.approx(-m["mean_jct"] * inst.n_jobs)


def test_event_semantics_and_wait():
    # one fast and one slow device; task 1 depends on task 0; task 2 independent
    inst = build_instance("w", np.array([[1.0, 10.0], [1.0, 10.0], [1.0, 10.0]]), [(0, 1, 0.0)],
                          device_type=np.array([0, 1]))
    st = GPUDagState(inst)
    assert st.now == 0 and st.ready_tasks().tolist() == [0, 2]
    st.assign(0, 0)
    assert st.now == 0 and st.pair_mask()[2].tolist() == [False, True]  # only the slow device is idle
    assert st.can_wait()
    st.wait()  # keep task 2 for the fast device
    assert st.now == 1.0 and st.ready_tasks().tolist() == [1, 2]
    st.assign(2, 0)
    st.assign(1, 1)
    assert st.done
    sol = st.solution()
    validate(inst, sol)
    assert sol.makespan(inst) == 11.0


def test_invalid_actions_are_penalised_noops():
    env = gym.make(ID, instance="topcuoglu-example", invalid_action_penalty=-2.0)
    obs, info = env.reset(seed=0)
    mask = info["action_mask"]
    bad = int(np.flatnonzero(~mask)[0])
    obs2, r, te, tr, info2 = env.step(bad)
    assert info2["invalid_action"] and r == -2.0 and not te
    assert np.array_equal(obs["x"], obs2["x"])
    obs3, r, te, tr, info3 = env.step(env.action_space.n + 5)
    assert info3["invalid_action"]
    # the wait action is invalid at time 0 of a static DAG with nothing running
    assert not mask[env.unwrapped.wait_action]


def test_action_encoding_and_pointer_nodes():
    env = gym.make(ID, instance="cholesky-T4-c2g1-s0")
    obs, info = env.reset(seed=0)
    u = env.unwrapped
    a = int(np.flatnonzero(info["action_mask"])[0])
    t, d = u.decode_action(a)
    assert u.encode_action(t, d) == a
    assert obs["action_node"][a] == t and obs["action_device_node"][a] == u.max_tasks + d
    assert obs["x"][t, 13] == 1 and obs["x"][u.max_tasks + d, 13] == 1
    assert obs["x"][u.max_tasks + d, 10] == 1


def test_padding_and_fit_errors():
    env = GPUDagEnv(instance="topcuoglu-example", max_tasks=20, max_devices=4, max_edges=30)
    obs, _ = env.reset(seed=0)
    assert obs["x"].shape == (24, 14) and obs["node_mask"].sum() == 13
    with pytest.raises(ValueError, match="does not fit"):
        env.reset(options={"instance": "topcuoglu-v50-ccr1-a1-b0.5-s0"})


def test_generator_env_and_render():
    env = GPUDagEnv(generator=TileDagGenerator("qr", 3, 2, 1), render_mode="rgb_array")
    _, _, info = _run(env, DagDispatchPolicy("rank"))
    img = env.render()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    assert set(info["metrics"]) >= {"makespan", "slr", "speedup", "mean_jct", "p95_jct"}


def test_metrics_definitions():
    inst = load_instance("topcuoglu-example")
    sol = ListSchedulingSolver("heft").solve(inst)
    m = metrics(inst, sol)
    # CP_MIN: n1 n2 n9 n10... critical path at minimum times = 41 for this example
    assert m["slr"] == pytest.approx(80 / 41)
    assert m["speedup"] == pytest.approx(127 / 80)  # P1..P3 sequential: 127, 140, 143
