"""Admission control (admit / defer / reject) in the simulator, the envs, the validator and the
admission baselines."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import schedgym  # noqa: F401
from schedgym.baselines.base import RandomMaskedPolicy
from schedgym.baselines.llm_admission import AdmissionPolicy, KVAdmission, QueueLengthAdmission, make_rule
from schedgym.baselines.llm_queue import queue_key
from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.llmserve.metrics import metrics
from schedgym.envs.llmserve.sim import ADMIT, DEFER, EXPIRE, REJECT, simulate
from schedgym.envs.llmserve.validate import validate
from schedgym.envs.llmserve.workload import build_workload

IDS = ["schedgym/LLMRouting-v0", "schedgym/LLMQueue-v0"]
OVER = "azure_conv:rate=26:n=160:replicas=2:ttft=0.5:tpot=0.05:seed=1"


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


@pytest.fixture(scope="module")
def shed_episode():
    """An overloaded run of the SLO rule with admits, defers and rejections."""
    inst = build_workload(OVER)
    sol = simulate(inst, router="least_outstanding", admission=make_rule("slo"))
    validate(inst, sol)
    kinds = np.bincount(sol.adm_kind, minlength=4)
    assert kinds[ADMIT] and kinds[DEFER] and kinds[REJECT] + kinds[EXPIRE]
    return inst, sol


def test_always_admit_rule_leaves_the_trace_unchanged():
    inst = build_workload("azure_conv:rate=16:n=200:replicas=4:ttft=0.5:tpot=0.05:seed=0")
    ref = simulate(inst, router="least_outstanding")
    got = simulate(inst, router="least_outstanding", admission=lambda sim, rid, k: ADMIT)
    np.testing.assert_array_equal(ref.completion, got.completion)
    np.testing.assert_array_equal(ref.it_end, got.it_end)
    assert ref.shed is None and not got.shed.any() and (got.adm_kind == ADMIT).all()
    m_ref, m_got = metrics(inst, ref), metrics(inst, got)
    assert m_ref["slo_attainment"] == m_got["slo_attainment"] and m_got["rejected_rate"] == 0.0
    validate(inst, got)


def test_rejections_count_against_slo_and_goodput(shed_episode):
    inst, sol = shed_episode
    m = metrics(inst, sol)
    assert m["rejected_rate"] == pytest.approx(sol.rejected.mean()) and m["rejected_rate"] > 0
    assert m["admission_rejected"] == sol.shed.sum() and m["deferred"] > 0
    assert m["slo_attainment"] <= 1 - m["rejected_rate"] + 1e-12
    assert np.isnan(sol.first_token[sol.shed]).all() and (sol.replica[sol.shed] == -1).all()


def test_always_defer_expires_at_the_deadline():
    inst = build_workload("azure_conv:rate=5:n=30:seed=0")
    sol = simulate(inst, admission=lambda sim, rid, k: DEFER, max_defer_s=0.2)
    validate(inst, sol)
    assert sol.shed.all() and sol.n_iterations == 0
    exp = sol.adm_kind == EXPIRE
    np.testing.assert_allclose(sol.adm_time[exp], inst.arrival[sol.adm_req[exp]] + 0.2)
    none = simulate(inst, admission=lambda sim, rid, k: DEFER, max_defer_s=0.0)  # no deferral allowed
    assert none.shed.all() and (none.adm_kind == REJECT).all()


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("admission", ["agent", "slo"])
def test_check_env_with_admission(env_id, admission):
    env = gym.make(env_id, admission=admission)
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", IDS)
def test_agent_admission_same_seed_same_trajectory(env_id):
    runs = [_run(gym.make(env_id, admission="agent"), RandomMaskedPolicy(seed=3), seed=4, instance=OVER)
            for _ in range(2)]
    assert runs[0][0] == runs[1][0]
    sol = runs[0][1]["solution"]
    np.testing.assert_array_equal(sol.completion, runs[1][1]["solution"].completion)
    np.testing.assert_array_equal(sol.adm_kind, runs[1][1]["solution"].adm_kind)
    validate(build_workload(OVER), sol)
    assert sol.shed.any() and (sol.adm_kind == DEFER).any()
    assert sum(runs[0][0]) == pytest.approx(2 * runs[0][1]["metrics"]["slo_attainment"] - 1)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("rule", ["slo", "kv", "queue_len"])
def test_policy_in_env_equals_inline_rule(env_id, rule):
    inst = build_workload(OVER)
    opts = {"max_outstanding": 12} if rule == "queue_len" else {}
    env = gym.make(env_id, instance=OVER, admission="agent", router="least_outstanding")
    _, info = _run(env, AdmissionPolicy(rule, router="least_outstanding", **opts))
    # FCFS by arrival time (a deferred request admitted later keeps its place by arrival)
    qkey = queue_key("fcfs") if "Queue" in env_id else None
    ref = simulate(inst, router="least_outstanding", queue_key=qkey, admission=make_rule(rule, **opts))
    sol = info["solution"]
    np.testing.assert_array_equal(ref.shed, sol.shed)
    np.testing.assert_array_equal(ref.adm_kind, sol.adm_kind)
    np.testing.assert_allclose(np.nan_to_num(ref.completion), np.nan_to_num(sol.completion))
    validate(inst, sol)
    # the same rule inline in the env (admission=<rule>), the agent keeping only its own decision
    env2 = gym.make(env_id, instance=OVER, admission=rule, admission_kwargs=opts, router="least_outstanding",
                    queue_order="fcfs")
    from schedgym.baselines.llm_queue import QueueOrderPolicy
    from schedgym.baselines.llm_routing import RoutingPolicy

    pol = RoutingPolicy("least_outstanding") if "Routing" in env_id else QueueOrderPolicy("fcfs")
    _, info2 = _run(env2, pol)
    np.testing.assert_array_equal(ref.shed, info2["solution"].shed)


def test_bad_admission_options_are_named():
    with pytest.raises(ValueError, match="admission rule must be one of"):
        gym.make("schedgym/LLMQueue-v0", admission="bogus")
    with pytest.raises(ValueError, match="queue_len.*max_outstanding"):
        make_rule("queue_len", max_outstanding=0)
    with pytest.raises(ValueError, match="'slo'.*unexpected keyword"):
        make_rule("slo", nonsense=1)
    env = gym.make("schedgym/LLMRouting-v0")
    with pytest.raises(ValueError, match="admission='agent'"):
        AdmissionPolicy("slo").reset(env)


def test_rules_decide_from_the_replica_state():
    inst = build_workload("azure_conv:rate=40:n=120:replicas=1:ttft=0.5:tpot=0.05:seed=0")
    shed = simulate(inst, admission=QueueLengthAdmission(max_outstanding=5))
    validate(inst, shed)
    assert shed.shed.any() and (shed.adm_kind[shed.adm_kind != ADMIT] == REJECT).all()
    # a KV cache of 200 blocks cannot hold many requests at their predicted peak: deferrals
    small = build_workload("azure_conv:rate=8:n=60:seed=0:num_blocks=400:max_tokens=1024")
    sol = simulate(small, admission=KVAdmission(predictor="oracle"))
    validate(small, sol)
    assert (sol.adm_kind == DEFER).any() and sol.preemptions.sum() <= simulate(small).preemptions.sum()
    # an impossible TTFT SLO: the SLO rule rejects everything
    tight = build_workload("azure_conv:rate=4:n=30:seed=0:ttft=0.001")
    sol = simulate(tight, admission=make_rule("slo"))
    assert sol.shed.all()


# --- the validator's admission checks: planted violations --------------------------------------

def _first_with(sol, kind):
    return int(np.flatnonzero(sol.adm_kind == kind)[0])


def test_planted_rejected_request_served(shed_episode):
    inst, sol = shed_episode
    served = int(np.flatnonzero(~sol.rejected)[0])
    i = int(np.flatnonzero(sol.adm_req == served)[-1])
    kind, shed, rej = sol.adm_kind.copy(), sol.shed.copy(), sol.rejected.copy()
    kind[i] = REJECT
    shed[served] = rej[served] = True
    with pytest.raises(InfeasibleSolution, match=rf"request {served} was rejected by admission but is routed"):
        validate(inst, dataclasses.replace(sol, adm_kind=kind, shed=shed, rejected=rej))


def test_planted_deferral_past_its_deadline(shed_episode):
    inst, sol = shed_episode
    i = _first_with(sol, DEFER)
    r = int(sol.adm_req[i])
    nxt = int(np.flatnonzero(sol.adm_req == r)[np.flatnonzero(np.flatnonzero(sol.adm_req == r) == i)[0] + 1])
    dl = sol.adm_deadline.copy()
    dl[sol.adm_req == r] = sol.adm_time[i] + 0.5 * (sol.adm_time[nxt] - sol.adm_time[i])
    if sol.adm_time[nxt] == sol.adm_time[i]:
        pytest.skip("re-decided at the same instant")
    with pytest.raises(InfeasibleSolution, match="decided again only after that deadline|expires only at"):
        validate(inst, dataclasses.replace(sol, adm_deadline=dl))


def test_planted_expiry_before_the_deadline(shed_episode):
    inst, sol = shed_episode
    if not (sol.adm_kind == EXPIRE).any():
        pytest.skip("no expiry in this run")
    i = _first_with(sol, EXPIRE)
    dl = sol.adm_deadline.copy()
    dl[(sol.adm_req == sol.adm_req[i]) & (sol.adm_kind == DEFER)] += 1e-3
    with pytest.raises(InfeasibleSolution, match="expires only at the deadline"):
        validate(inst, dataclasses.replace(sol, adm_deadline=dl))


def test_planted_missing_and_late_first_decision(shed_episode):
    inst, sol = shed_episode
    r = int(sol.adm_req[0])
    keep = sol.adm_req != r
    cut = dataclasses.replace(sol, adm_req=sol.adm_req[keep], adm_time=sol.adm_time[keep],
                              adm_kind=sol.adm_kind[keep], adm_deadline=sol.adm_deadline[keep])
    with pytest.raises(InfeasibleSolution, match=f"request {r} has no admission decision"):
        validate(inst, cut)
    t = sol.adm_time.copy()
    t[0] += 1e-4
    with pytest.raises(InfeasibleSolution, match="first decision on a request is taken at its arrival"):
        validate(inst, dataclasses.replace(sol, adm_time=t))


def test_planted_processing_before_admission(shed_episode):
    inst, sol = shed_episode
    # a request deferred, then admitted: claim its first iteration started before the admission
    late = [i for i in np.flatnonzero(sol.adm_kind == ADMIT) if sol.adm_time[i] > inst.arrival[sol.adm_req[i]]]
    assert late
    i = late[0]
    r = int(sol.adm_req[i])
    k = int(np.repeat(np.arange(sol.n_iterations), np.diff(sol.it_ptr))[sol.it_req == r].min())  # its first
    start = sol.it_start.copy()
    start[k] = sol.adm_time[i] - 1e-4
    with pytest.raises(InfeasibleSolution, match=rf"request {r} is processed at .* before it was admitted"):
        validate(inst, dataclasses.replace(sol, it_start=start))


def test_planted_decision_after_the_final_one(shed_episode):
    inst, sol = shed_episode
    r = int(sol.adm_req[_first_with(sol, REJECT)])
    add = lambda a, v: np.append(a, v)  # noqa: E731
    bad = dataclasses.replace(sol, adm_req=add(sol.adm_req, r), adm_time=add(sol.adm_time, sol.adm_time[-1]),
                              adm_kind=add(sol.adm_kind, ADMIT), adm_deadline=add(sol.adm_deadline, np.nan))
    with pytest.raises(InfeasibleSolution, match=f"request {r} was already rejected"):
        validate(inst, bad)


def test_admission_on_a_disaggregated_cluster():
    name = "azure_conv:rate=30:n=150:pd=2+2:ttft=0.5:tpot=0.05:seed=0"
    inst = build_workload(name)
    sol = simulate(inst, router="least_outstanding", admission=make_rule("slo"))
    validate(inst, sol)
    assert sol.shed.any() and not np.isin(sol.tx_req, np.flatnonzero(sol.shed)).any()
    env = gym.make("schedgym/LLMRouting-v0", instance=name, admission="agent")
    _, info = _run(env, RandomMaskedPolicy(seed=0))
    validate(inst, info["solution"])
    assert (info["solution"].replica[~info["solution"].shed] < 2).all()  # routed to prefill replicas only
