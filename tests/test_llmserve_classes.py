"""SLO classes: mixed interactive/batch workloads, per-class metrics, EDF and least-laxity order
across classes, priority-aware preemption and class-protecting admission."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.baselines.llm_admission import AdmissionPolicy, make_rule
from schedgym.baselines.llm_queue import QueueOrderPolicy, queue_key
from schedgym.envs.core.errors import InstanceFormatError
from schedgym.envs.llmserve.metrics import metrics
from schedgym.envs.llmserve.sim import Simulator, simulate
from schedgym.envs.llmserve.validate import validate
from schedgym.envs.llmserve.workload import build_workload

MIX = "azure_conv:rate=12:n=300:replicas=2:ttft=0.5:tpot=0.05:batch_share=0.3:seed=2"


def test_mixed_workload_keeps_the_interactive_requests():
    mix, base = build_workload(MIX), build_workload(MIX.replace(":batch_share=0.3", ""))
    inter = mix.klass == 0
    assert mix.class_names == ("interactive", "batch") and 0.2 < mix.klass.mean() < 0.4
    np.testing.assert_array_equal(mix.arrival, base.arrival)
    np.testing.assert_array_equal(mix.prompt[inter], base.prompt[inter])
    np.testing.assert_array_equal(mix.slo_ttft, [0.5, 15.0])
    np.testing.assert_array_equal(mix.slo_tpot, [0.05, 0.15])
    assert mix.prompt[~inter].mean() > 2 * mix.prompt[inter].mean()  # arXiv prompts are long
    own = build_workload(MIX + ":batch_ttft=30:batch_tpot=0.2")
    np.testing.assert_array_equal(own.slo_ttft, [0.5, 30.0])


@pytest.mark.parametrize("bad, msg", [(":batch_share=1.5", "batch_share=1.5 is out of range"),
                                      (":batch_ttft=3", "batch_ttft only applies to a mixed workload"),
                                      (":batch_share=0.2:batch_trace=nope", "nope")])
def test_bad_class_options_are_named(bad, msg):
    base = "azure_conv:rate=12:n=30" + bad
    with pytest.raises((InstanceFormatError, Exception), match=msg):
        build_workload(base)


def test_per_class_metrics_add_up():
    inst = build_workload(MIX)
    sol = simulate(inst, router="least_outstanding", admission=make_rule("slo"))
    validate(inst, sol)
    m = metrics(inst, sol)
    share = np.bincount(inst.klass, minlength=2) / inst.n_requests
    assert m["slo_attainment"] == pytest.approx(share[0] * m["slo_attainment_interactive"]
                                                + share[1] * m["slo_attainment_batch"])
    assert m["goodput_rps"] == pytest.approx(m["goodput_rps_interactive"] + m["goodput_rps_batch"])
    assert m["rejected_rate"] == pytest.approx(share @ [m["rejected_rate_interactive"], m["rejected_rate_batch"]])
    assert np.isfinite(m["ttft_p99_s_batch"]) and "tpot_p99_s_interactive" in m


def test_edf_and_llf_order_across_classes():
    inst = build_workload(MIX)
    sim = Simulator(inst)
    rep = sim.replicas[0]
    b = int(np.flatnonzero(inst.klass == 1)[0])
    i = int(np.flatnonzero((inst.klass == 0) & (inst.arrival > inst.arrival[b]))[0])
    edf, llf, prio = queue_key("edf"), queue_key("llf"), queue_key("priority")
    # the batch request arrived first, but the interactive one's TTFT deadline is 14.5 s tighter
    assert edf(sim, rep, i) < edf(sim, rep, b) and llf(sim, rep, i) < llf(sim, rep, b)
    assert prio(sim, rep, i) < prio(sim, rep, b)
    # laxity = deadline - the profile's prefill time of the prompt
    assert llf(sim, rep, b) < edf(sim, rep, b) - 0.01


@pytest.mark.parametrize("rule", ["llf", "priority", "edf"])
def test_class_rules_in_env_equal_inline(rule):
    inst = build_workload(MIX)
    env = gym.make("schedgym/LLMQueue-v0", instance=MIX, router="least_outstanding").unwrapped
    obs, info = env.reset(seed=0)
    pol = QueueOrderPolicy(rule)
    pol.reset(env)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(pol.act(obs, info))
        done = term or trunc
    ref = simulate(inst, router="least_outstanding", queue_key=queue_key(rule))
    np.testing.assert_allclose(info["solution"].completion, ref.completion)
    validate(inst, info["solution"])
    assert "slo_attainment_batch" in info["metrics"]


def test_priority_preemption_spares_the_interactive_class():
    name = "azure_conv:rate=14:n=250:replicas=1:ttft=0.5:tpot=0.05:batch_share=0.4:seed=0:num_blocks=1500"
    lifo, prio = build_workload(name), build_workload(name + ":preempt_order=priority")
    s_lifo, s_prio = simulate(lifo), simulate(prio)
    validate(prio, s_prio)
    hit = lambda inst, sol: np.bincount(inst.klass[sol.ev_req], minlength=2)  # noqa: E731
    assert s_lifo.preemptions.sum() > 0
    h_l, h_p = hit(lifo, s_lifo), hit(prio, s_prio)
    # priority preemption takes its victims from the batch class far more often
    assert h_p[0] / max(h_p.sum(), 1) < 0.5 * h_l[0] / max(h_l.sum(), 1)
    with pytest.raises(InstanceFormatError, match="preempt_order"):
        build_workload(name + ":preempt_order=random")


def test_protecting_admission_defers_batch_requests_under_overload():
    name = "azure_conv:rate=20:n=400:replicas=2:ttft=0.5:tpot=0.05:batch_share=0.2:seed=0"
    inst = build_workload(name)
    own_sol = simulate(inst, router="least_outstanding", admission=make_rule("slo"))
    tight_sol = simulate(inst, router="least_outstanding", admission=make_rule("slo", protect="tightest"))
    validate(inst, tight_sol)
    own, tight = metrics(inst, own_sol, tbt=False), metrics(inst, tight_sol, tbt=False)
    deferred_batch = [int(inst.klass[np.unique(s.adm_req[s.adm_kind == 1])].sum()) for s in (own_sol, tight_sol)]
    assert deferred_batch[1] > 2 * deferred_batch[0]  # batch requests wait for room...
    assert tight["slo_attainment_interactive"] > own["slo_attainment_interactive"] + 0.2  # ...interactive ones gain
    assert tight["slo_attainment_batch"] >= 0.95
    env = gym.make("schedgym/LLMRouting-v0", instance=name, admission="agent", queue_order="priority")
    obs, info = env.reset(seed=0)
    pol = AdmissionPolicy("slo", protect="tightest")
    pol.reset(env)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(pol.act(obs, info))
        done = term or trunc
    validate(inst, info["solution"])


@pytest.mark.parametrize("env_id", ["schedgym/LLMRouting-v0", "schedgym/LLMQueue-v0"])
def test_check_env_on_a_mixed_workload_with_admission(env_id):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(env_id, admission="agent", reveal="rank",
                   default_workload="azure_conv:rate=12:n=60:replicas=2:ttft=0.5:tpot=0.05:batch_share=0.3")
    check_env(env.unwrapped, skip_render_check=True)
