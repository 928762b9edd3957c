"""Prefix caching (vLLM v1): block-hash cache per replica, LRU eviction, hits validated independently,
multi-turn and system-prompt workloads, prefix-affinity routing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.llmserve.sim import Simulator, simulate
from schedgym.envs.llmserve.types import ReplicaSpec
from schedgym.envs.llmserve.validate import validate
from schedgym.envs.llmserve.validate_prefix import prefix_hit_rate
from schedgym.envs.llmserve.workload import build_workload, make_instance

SPEC = ReplicaSpec(model="llama3.1-8b", device="rtxpro6000", scheduler="vllm_v1", chunk_size=2048,
                   prefix_caching=True, num_blocks=2000)
MULTITURN = ("sharegpt:rate=8:n=400:prefix=multiturn:replicas=4:scheduler=vllm_v1:chunk_size=2048:"
             "prefix_caching=1:model=llama3.1-8b:device=rtxpro6000")


def _with_prefix(inst, stream, shared):
    return dataclasses.replace(inst, prefix_stream=np.asarray(stream, np.int64),
                               prefix_shared=np.asarray(shared, np.int64))


def test_second_turn_hits_the_first_turns_blocks():
    # turn 2 (t=5 s) = turn 1's 1000-token prompt + 20 answer tokens + 100 new tokens
    inst = _with_prefix(make_instance([0.0, 5.0], [1000, 1120], [20, 10], replicas=(SPEC,)), [7, 7], [1020, 1130])
    sim = Simulator(inst)
    sol = sim.run()
    validate(inst, sol)
    assert sol.hit_req.tolist() == [1]
    assert sol.hit_tokens.tolist() == [1008]  # 63 full blocks of the 1019 written tokens (the last answer token is not fed)
    first = [int(sol.it_tokens[j]) for j in range(len(sol.it_req)) if sol.it_req[j] == 1][0]
    assert first == 1120 - 1008  # only the uncached tail is prefilled
    assert prefix_hit_rate(inst, sol) == pytest.approx(1008 / 2120)
    off = dataclasses.replace(inst, replicas=(dataclasses.replace(SPEC, prefix_caching=False),))
    sol_off = simulate(off)
    assert len(sol_off.hit_req) == 0
    assert (sol.first_token[1] - 5.0) < (sol_off.first_token[1] - 5.0)


def test_lru_evicts_unreferenced_blocks_first():
    spec = dataclasses.replace(SPEC, num_blocks=130)
    # A (64 blocks) then B (64 blocks) finish; C needs room and evicts A's blocks (freed first, tail
    # first); D repeats B's content and hits all of it, E repeats A's and finds at most A's head
    inst = _with_prefix(make_instance([0.0, 1.0, 2.0, 3.0, 4.0], [1024, 1024, 1024, 1024, 1024], [1, 1, 1, 1, 1],
                                      replicas=(spec,)), [0, 1, 2, 1, 0], [2000] * 5)
    sim = Simulator(inst)
    sol = sim.run()
    validate(inst, sol)
    hits = dict(zip(sol.hit_req.tolist(), sol.hit_tokens.tolist()))
    assert hits[3] == 1008 and hits.get(4, 0) <= 32
    rep = sim.replicas[0]
    assert rep.used == 0 and len(rep.evictable) <= rep.num_blocks


def test_validator_rejects_a_hit_on_blocks_never_written():
    inst = _with_prefix(make_instance([0.0, 5.0], [1000, 1120], [20, 10], replicas=(SPEC,)), [7, 7], [1020, 1130])
    sol = simulate(inst)
    validate(inst, sol)
    other = _with_prefix(inst, [7, 8], [1020, 1130])  # request 1 is a different conversation: nothing to hit
    with pytest.raises(InfeasibleSolution, match="never written"):
        validate(other, sol)


def test_multiturn_workload_hits_and_gains_ttft():
    inst = build_workload(MULTITURN)
    assert inst.prefix_stream is not None and (inst.prefix_stream >= 0).all()
    on = simulate(inst, router="round_robin")
    validate(inst, on)
    off_inst = inst.with_replicas(tuple(dataclasses.replace(s, prefix_caching=False) for s in inst.replicas))
    off = simulate(off_inst, router="round_robin")
    assert prefix_hit_rate(inst, on) > 0.1
    assert np.median(on.first_token - inst.arrival) < np.median(off.first_token - inst.arrival)


def test_prefix_affinity_beats_round_robin_on_ttft_p50():
    inst = build_workload(MULTITURN)
    rr = simulate(inst, router="round_robin")
    pa = simulate(inst, router="prefix_affinity")
    validate(inst, pa)
    assert prefix_hit_rate(inst, pa) > prefix_hit_rate(inst, rr)
    assert np.median(pa.first_token - inst.arrival) < np.median(rr.first_token - inst.arrival)


def test_system_prompt_workload_shares_the_tenant_prefix():
    inst = build_workload("azure_conv:rate=4:n=200:prefix=system:system_tokens=512:tenants=3:scheduler=vllm_v1:"
                          "chunk_size=2048:prefix_caching=1:model=llama3.1-8b:device=rtxpro6000")
    assert (inst.prefix_shared == 512).all() and set(inst.prefix_stream.tolist()) <= {0, 1, 2}
    sol = simulate(inst)
    validate(inst, sol)
    assert len(sol.hit_req) > 150 and set(sol.hit_tokens.tolist()) == {512}


def _run_env(env_id, policy, instance):
    import gymnasium as gym

    import schedgym  # noqa: F401

    env = gym.make(env_id)
    obs, info = env.reset(seed=0, options={"instance": instance})
    policy.reset(env)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(policy.act(obs, info))
        done = term or trunc
    return info


def test_env_paths_match_the_inline_simulator_with_v1_and_prefix_caching():
    from schedgym.baselines.llm_queue import QueueOrderPolicy
    from schedgym.baselines.llm_routing import RoutingPolicy

    name = MULTITURN.replace("n=400", "n=80")
    inst = build_workload(name)
    info = _run_env("schedgym/LLMRouting-v0", RoutingPolicy("prefix_affinity"), name)
    ref = simulate(inst, router="prefix_affinity")
    np.testing.assert_allclose(info["solution"].completion, ref.completion)
    validate(inst, info["solution"])
    info = _run_env("schedgym/LLMQueue-v0", QueueOrderPolicy("fcfs"), name)
    np.testing.assert_allclose(info["solution"].completion, simulate(inst).completion)
