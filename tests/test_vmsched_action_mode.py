"""VMReschedule-v0's ``vm`` action mode (the policy picks the VM, the env its best target),
:func:`schedgym.envs.vmsched.targets.best_targets` and the softmax-sampled greedy."""

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.baselines.vm_soft_greedy import VMSoftGreedyPolicy
from schedgym.envs.core.domain import get_domain
from schedgym.envs.core.episode import run_episode
from schedgym.envs.vmsched.instances import load_instance
from schedgym.envs.vmsched.state import VMState
from schedgym.envs.vmsched.targets import best_targets
from schedgym.envs.vmsched.validate import validate

ENV_ID = "schedgym/VMReschedule-v0"


def _brute_best(st: VMState, v: int):
    """(fragment-core change, free cores left, target) of v's best feasible target, by enumeration."""
    best = None
    for q in np.flatnonzero(st.target_mask(v).ravel()):
        p, n = divmod(int(q), 2)
        dF, _ = st.delta_frag(v, p, n)
        left = st.free_c[p].sum() - 2 * st.c[v] if st.span[v] == 2 else st.free_c[p, n] - st.c[v]
        key = (dF, int(left), int(q))
        best = key if best is None or key < best else best
    return best


@pytest.mark.parametrize("name", ["gen_s_medium_s7", "snap_s_evac", "snap_s_gpu", "gen_s_high_s1"])
def test_best_targets_match_enumeration(name):
    """After random moves, every VM's target is feasible and its fragment-core change and best-fit
    tie-break equal the best of all its feasible targets (anti-affinity, evacuations, GPUs)."""
    st = VMState(load_instance(name))
    rng = np.random.default_rng(0)
    for _ in range(12):
        target, gain = best_targets(st)
        vm_ok = st.vm_mask()
        for v in range(st.V):
            best = _brute_best(st, v) if vm_ok[v] else None
            if best is None:
                assert target[v] == -1 and gain[v] == 0
                continue
            p, n = divmod(int(target[v]), 2)
            assert st.can_move(v, p, n)
            dF, _ = st.delta_frag(v, p, n)
            assert dF == best[0] == -gain[v]
            left = st.free_c[p].sum() - 2 * st.c[v] if st.span[v] == 2 else st.free_c[p, n] - st.c[v]
            assert left == best[1], (v, target[v], best)
        v = int(rng.choice(np.flatnonzero(target >= 0)))
        st.move(v, *divmod(int(target[v]), 2))


def test_vm_mode_episode_is_one_decision_per_migration():
    env = gym.make(ENV_ID, instance="snap_s_evac", mnl=20, action_mode="vm").unwrapped
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    V, off = env.state.V, env.n_numa_nodes
    rewards, n_steps, done = [], 0, False
    while not done:
        assert info["phase"] == 0 and obs["globals"][0] == 0
        target, gain = best_targets(env.state)
        mask = info["action_mask"].astype(bool)
        assert np.array_equal(mask[:V], target >= 0) or env.state.n_pending  # evacuations restrict
        assert np.allclose(obs["x"][off: off + V, 10], np.where(target >= 0, gain / env.state.g, 0.0))
        assert np.all(obs["x"][:off, 10] == 0)
        vms = np.flatnonzero(mask[:V])
        v = int(vms[np.argmax(obs["x"][off + vms, 10])])
        expect = divmod(int(target[v]), 2)
        obs, r, term, trunc, info = env.step(v)
        assert tuple(env.state.moves[-1][1:]) == expect
        rewards.append(r)
        n_steps += 1
        done = term or trunc
    sol = info["solution"]
    assert n_steps == sol.n_moves == 20
    validate(env.instance, sol)
    m = info["metrics"]
    assert m["violations"] == 0
    assert sum(rewards) == pytest.approx(m["initial_fragment_rate"] - m["fragment_rate"])


def test_vm_mode_keeps_the_two_phase_observation_space_and_rejects_bad_modes():
    a = gym.make(ENV_ID, instance="gen_s_medium_s0").unwrapped
    b = gym.make(ENV_ID, instance="gen_s_medium_s0", action_mode="vm").unwrapped
    assert a.observation_space == b.observation_space and a.action_space == b.action_space
    with pytest.raises(ValueError, match="action_mode"):
        gym.make(ENV_ID, instance="gen_s_medium_s0", action_mode="target")


def test_soft_greedy_is_seeded_valid_and_beats_its_start():
    dom = get_domain("vmsched")
    inst = load_instance("gen_s_medium_s3")
    plans = [VMSoftGreedyPolicy(temperature=1.0, seed=4).solve_plan(inst) for _ in range(2)]
    assert np.array_equal(plans[0].moves, plans[1].moves) and plans[0].n_moves == inst.mnl
    res = run_episode(dom, inst, VMSoftGreedyPolicy(temperature=1.0, seed=4), seed=0,
                      env_kwargs={"action_mode": "vm"})
    assert res.status == "ok" and res.metrics["violations"] == 0 and res.metrics["migrations"] == inst.mnl
    assert res.metrics["fragment_rate"] < res.metrics["initial_fragment_rate"]
    with pytest.raises(ValueError, match="temperature"):
        VMSoftGreedyPolicy(temperature=0.0)


def test_soft_greedy_best_of_k_keeps_the_best_plan():
    from schedgym.baselines.vm_soft_greedy import VMSoftGreedySolver

    dom = get_domain("vmsched")
    inst = load_instance("gen_s_medium_s3")
    singles = [VMSoftGreedyPolicy(temperature=1.0, seed=s).solve_plan(inst) for s in range(3)]
    frs = [dom.metrics(inst, p)["fragment_rate"] for p in singles]
    res = run_episode(dom, inst, VMSoftGreedySolver(samples=3, temperature=1.0, seed=0), seed=0)
    assert res.status == "feasible" and res.metrics["violations"] == 0
    assert res.metrics["fragment_rate"] == pytest.approx(min(frs))
    with pytest.raises(ValueError, match="samples"):
        VMSoftGreedySolver(samples=0)
