"""Prefill/decode disaggregation: hand-computed transfers (link time, link queueing, decode-side memory
back-pressure), validator invariants over random small workloads (hypothesis), corrupted transfer
traces, colocated results unchanged, workload options, and the envs on a disaggregated cluster."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

import schedgym  # noqa: F401
from schedgym.baselines.llm_queue import QueueOrderPolicy
from schedgym.baselines.llm_routing import RoutingPolicy
from schedgym.envs.core.errors import InfeasibleSolution, InstanceFormatError
from schedgym.envs.llmserve.configs import load_model
from schedgym.envs.llmserve.metrics import metrics
from schedgym.envs.llmserve.profiles import ProfileTables
from schedgym.envs.llmserve.sim import Simulator, simulate
from schedgym.envs.llmserve.types import ROUTERS, PDSpec, ReplicaSpec
from schedgym.envs.llmserve.validate import validate
from schedgym.envs.llmserve.workload import build_workload, make_instance

# tiny-llama: 2 (K, V) x 8 layers x 4 KV heads x 64 head dim x 4 bytes = 16,384 bytes of KV per token,
# so a 0.016384 GB/s link moves one token per millisecond
MS_PER_TOKEN_GBPS = 0.016384


@pytest.fixture(scope="module")
def flat_profile(tmp_path_factory):
    """Per layer: token ops 1 ms, decode attention 0.5 ms, prefill attention 2 ms, whatever the size:
    with tiny-llama's 8 layers a prefill iteration takes 24 ms and a decode iteration 12 ms."""
    p = tmp_path_factory.mktemp("prof") / "flat.npz"
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    ProfileTables(tokens=i64(1, 4096), token_ms=np.array([1.0, 1.0]), kv_save_tokens=i64(1),
                  kv_save_ms=np.array([0.0]), decode_bs=i64(1, 256), decode_kv=i64(0, 4096),
                  decode_ms=np.full((2, 2), 0.5), prefill_chunk=i64(1, 4096), prefill_kv=i64(0, 4096),
                  prefill_ms=np.full((2, 2), 2.0), meta={"tp": 1, "attention_source": "test"}).save(p)
    return str(p)


def _pd_instance(flat_profile, arrival, prompt, output, decode_blocks=100):
    assert load_model("tiny-llama").kv_bytes_per_token(1, 1) == 16384
    spec = ReplicaSpec(model="tiny-llama", device="cpu", profile=flat_profile, num_blocks=100, scheduler="vllm_v0")
    dspec = dataclasses.replace(spec, num_blocks=decode_blocks)
    pd = PDSpec(1, 1, link_gbps=MS_PER_TOKEN_GBPS, link_latency_s=0.001)
    return make_instance(arrival, prompt, output, replicas=(spec, dspec), pd=pd)


def test_hand_computed_two_requests(flat_profile):
    # A (prompt 10, 3 tokens) at 0, B (prompt 20, 2 tokens) at 0.010; replica 0 prefills, replica 1 decodes.
    # P: A prefill [0, .024] (A's first token); B prefill [.024, .048].
    # A's KV (10 tokens, 10 ms on the link) + 1 ms latency: [.024, .035]; D: A decode [.035, .047], [.047, .059].
    # B's KV (20 tokens): [.048, .069]; D: B decode [.069, .081].
    inst = _pd_instance(flat_profile, [0.0, 0.010], [10, 20], [3, 2])
    sol = simulate(inst)
    validate(inst, sol)
    np.testing.assert_allclose(sol.first_token, [0.024, 0.048])
    np.testing.assert_allclose(sol.completion, [0.059, 0.081])
    assert list(sol.replica) == [0, 0] and list(sol.decode_replica) == [1, 1]
    assert list(sol.tx_req) == [0, 1] and list(sol.tx_tokens) == [10, 20]
    np.testing.assert_allclose(sol.tx_bytes, [10 * 16384, 20 * 16384])
    np.testing.assert_allclose(sol.tx_ready, [0.024, 0.048])
    np.testing.assert_allclose(sol.tx_start, [0.024, 0.048])
    np.testing.assert_allclose(sol.tx_end, [0.035, 0.069])
    np.testing.assert_allclose(sol.it_start, [0.0, 0.035, 0.024, 0.047, 0.069])  # logged in order of their ends
    np.testing.assert_allclose(sol.it_end, [0.024, 0.047, 0.048, 0.059, 0.081])
    assert list(sol.it_replica) == [0, 1, 0, 1, 1]
    m = metrics(inst, sol)
    assert m["ttft_p50_s"] == pytest.approx((0.024 + 0.038) / 2)
    assert m["kv_transfer_s_mean"] == pytest.approx((0.011 + 0.021) / 2)
    assert m["kv_handoff_s_mean"] == pytest.approx((0.011 + 0.021) / 2)
    assert m["kv_transfers"] == 2 and m["kv_transfer_gb"] == pytest.approx(30 * 16384 / 1e9)
    # TPOT: A (0.059 - 0.024) / 2, B (0.081 - 0.048) / 1; the transfer delays the first decode step
    pr_tpot = sorted([(0.059 - 0.024) / 2, 0.081 - 0.048])
    assert m["tpot_p50_s"] == pytest.approx(sum(pr_tpot) / 2)


def test_link_queueing_and_decode_memory_backpressure(flat_profile):
    # C (prompt 5, one token) runs alone [0, .024] and finishes there; A (prompt 40, 3 tokens) and B (prompt
    # 20, 2 tokens) arrive meanwhile and share the next prefill [.024, .048]. The link carries A's 40 tokens
    # over [.048, .088] (+1 ms: usable at .089), then B's 20 tokens over [.088, .108] (usable at .109).
    inst = _pd_instance(flat_profile, [0.0, 0.001, 0.002], [5, 40, 20], [1, 3, 2])
    sol = simulate(inst)
    validate(inst, sol)
    assert list(sol.tx_req) == [1, 2]
    np.testing.assert_allclose(sol.first_token, [0.024, 0.048, 0.048])
    np.testing.assert_allclose(sol.tx_start, [0.048, 0.088])
    np.testing.assert_allclose(sol.tx_end, [0.089, 0.109])
    # D: A [.089, .101], A [.101, .113] (done); B joined at .109: B [.113, .125]
    np.testing.assert_allclose(sol.completion, [0.024, 0.113, 0.125])
    # A decode replica with 4 blocks holds A (3 blocks) but not also B (2 blocks): B's transfer waits for
    # A to finish at .113, then takes 21 ms; B's prefill blocks stay on the prefill replica meanwhile.
    inst2 = _pd_instance(flat_profile, [0.0, 0.001, 0.002], [5, 40, 20], [1, 3, 2], decode_blocks=4)
    sol2 = simulate(inst2)
    validate(inst2, sol2)
    np.testing.assert_allclose(sol2.tx_start, [0.048, 0.113])
    np.testing.assert_allclose(sol2.tx_end, [0.089, 0.134])
    np.testing.assert_allclose(sol2.completion, [0.024, 0.113, 0.146])
    assert metrics(inst2, sol2)["kv_handoff_s_mean"] == pytest.approx((0.041 + 0.086) / 2)
    assert sol2.kv_peak_blocks[1] <= 4


def test_lone_request_filling_the_decode_cache_is_not_stranded(flat_profile):
    # B's 2 blocks fill a 2-block decode replica: its decode step finds no free block and preempts it
    # (recompute); the replica must admit it again at once instead of idling forever.
    inst = _pd_instance(flat_profile, [0.0, 0.001, 0.002], [5, 10, 20], [1, 3, 2], decode_blocks=2)
    sol = simulate(inst)
    validate(inst, sol)
    assert np.isfinite(sol.completion).all() and sol.preemptions[2] >= 1


def test_one_token_outputs_finish_on_the_prefill_replica(flat_profile):
    inst = _pd_instance(flat_profile, [0.0, 0.001], [10, 20], [1, 2])
    sol = simulate(inst)
    validate(inst, sol)
    assert list(sol.tx_req) == [1] and list(sol.decode_replica) == [-1, 1]
    assert sol.completion[0] == pytest.approx(0.024)


SCHED = [(s, p) for s in ("vllm_v0", "sarathi", "orca") for p in ("recompute", "swap")] + [("vllm_v1", "recompute")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=hst.integers(0, 10_000), sp=hst.sampled_from(SCHED), blocks=hst.integers(60, 400),
       split=hst.sampled_from([(1, 1), (1, 2), (2, 1), (2, 2)]), gbps=hst.sampled_from([0.05, 0.5, 5.0, 50.0]),
       lat_us=hst.sampled_from([0, 10, 2000]), drouter=hst.sampled_from(ROUTERS),
       router=hst.sampled_from(["round_robin", "least_kv", "power_of_two"]))
def test_invariants_random_disaggregated_workloads(seed, sp, blocks, split, gbps, lat_us, drouter, router):
    sched, pre = sp
    inst = build_workload(f"synthetic:prompt_mean=150:output_mean=200:rate=12:n=40:seed={seed}:max_tokens=900:"
                          f"scheduler={sched}:preemption={pre}:num_blocks={blocks}:chunk_size=256:"
                          f"pd={split[0]}+{split[1]}:link_gbps={gbps}:link_latency_us={lat_us}:pd_router={drouter}")
    sol = Simulator(inst, router=router, seed=seed).run()
    # token conservation across the two replicas, KV <= capacity on both sides, transfer >= bytes / bandwidth
    # + latency, no overlap on a link, decode only after the transfer ends, TTFT <= end-to-end
    validate(inst, sol)
    served = ~sol.rejected
    assert np.all(sol.first_token[served] <= sol.completion[served])
    assert np.all(sol.kv_peak_blocks <= sol.num_blocks)
    assert np.all(sol.replica[served] < split[0])
    multi = served & (inst.output > 1)
    assert np.all(sol.decode_replica[multi] >= split[0]) and sol.n_transfers == multi.sum()
    least = sol.tx_bytes / (gbps * 1e9) + lat_us * 1e-6
    assert np.all(sol.tx_end - sol.tx_start >= least - 1e-12)
    assert np.all(sol.tx_ready == sol.first_token[sol.tx_req])
    m = metrics(inst, sol)
    assert m["kv_transfers"] == multi.sum() and m["kv_transfer_s_mean"] >= 0


def _corrupt(sol, **kw):
    return dataclasses.replace(sol, **kw)


def test_validator_rejects_corrupted_transfers():
    inst = build_workload("azure_conv:rate=10:n=60:seed=3:pd=1+1:link_gbps=5")
    sol = simulate(inst)
    validate(inst, sol)
    x = 5
    r = int(sol.tx_req[x])
    end = sol.tx_end.copy()
    end[x] = sol.tx_start[x] + 0.5 * (end[x] - sol.tx_start[x])
    with pytest.raises(InfeasibleSolution, match="less than bytes / bandwidth"):
        validate(inst, _corrupt(sol, tx_end=end))
    # decode starting before the KV arrives: move the transfer later, past the first decode iteration
    first_dec = sol.it_start[[i for i in range(sol.n_iterations) if sol.it_replica[i] == 1
                              and r in sol.it_req[sol.it_ptr[i]:sol.it_ptr[i + 1]]][0]]
    start, end = sol.tx_start.copy(), sol.tx_end.copy()
    shift = first_dec - end[x] + 0.01
    start[x] += shift
    end[x] += shift
    with pytest.raises(InfeasibleSolution, match="KV|transfer"):
        validate(inst, _corrupt(sol, tx_start=start, tx_end=end))
    nbytes = sol.tx_bytes.copy()
    nbytes[x] /= 2
    with pytest.raises(InfeasibleSolution, match="bytes"):
        validate(inst, _corrupt(sol, tx_bytes=nbytes))
    # two transfers on the same link at once
    start = sol.tx_start.copy()
    start[x + 1] = start[x]
    with pytest.raises(InfeasibleSolution, match="overlap|transfer"):
        validate(inst, _corrupt(sol, tx_start=start))
    with pytest.raises(InfeasibleSolution, match="KV transfers"):
        validate(inst, _corrupt(sol, tx_req=sol.tx_req[:-1], tx_src=sol.tx_src[:-1], tx_dst=sol.tx_dst[:-1],
                                tx_tokens=sol.tx_tokens[:-1], tx_bytes=sol.tx_bytes[:-1], tx_ready=sol.tx_ready[:-1],
                                tx_start=sol.tx_start[:-1], tx_end=sol.tx_end[:-1]))
    small = sol.num_blocks.copy()
    small[1] = max(int(sol.tx_tokens.max()) // 16, 1)
    with pytest.raises(InfeasibleSolution, match="blocks"):
        validate(inst, _corrupt(sol, num_blocks=small))
    colocated = dataclasses.replace(inst, pd=None)
    with pytest.raises(InfeasibleSolution):
        validate(colocated, sol)


# Colocated results recorded before disaggregation was added, under the vLLM v0 scheduler of that day
# (same code path must give the same trace):
# (workload, router, iterations, tokens processed, sum of completion times rounded to 1e-6 s)
COLOCATED_BEFORE = [
    ("azure_conv:rate=18:n=400:replicas=4:ttft=0.5:tpot=0.05:seed=0:scheduler=vllm_v0", "round_robin", 6010, 527176,
     6912.601653),
    ("azure_code:rate=10:n=300:replicas=3:seed=2:scheduler=vllm_v0", "power_of_two", 3295, 553698, 4487.74518),
    ("synthetic:prompt_mean=200:output_mean=800:rate=8:n=120:seed=1:num_blocks=300:preemption=swap:replicas=2:"
     "scheduler=vllm_v0",
     "least_outstanding", 18998, 99325, 5599.213512),
]


@pytest.mark.parametrize("name,router,iters,tokens,completion_sum", COLOCATED_BEFORE)
def test_disaggregation_off_gives_identical_results(name, router, iters, tokens, completion_sum):
    inst = build_workload(name)
    assert inst.pd is None
    sol = Simulator(inst, router=router, seed=7).run()
    assert sol.n_iterations == iters and int(sol.it_tokens.sum()) == tokens
    assert round(float(np.nansum(sol.completion)), 6) == pytest.approx(completion_sum, abs=2e-6)
    assert sol.n_transfers == 0 and sol.decode_replica is None
    assert not any(k.startswith("kv_transfer") or k.startswith("kv_handoff") for k in metrics(inst, sol))


def test_workload_options():
    inst = build_workload("azure_conv:rate=5:n=20:pd=3+1:link_gbps=12.5:link_latency_us=40:pd_router=round_robin")
    assert inst.n_replicas == 4 and inst.pd == PDSpec(3, 1, 12.5, 40e-6, "round_robin")
    assert build_workload("azure_conv:rate=5:n=20").pd is None
    assert build_workload("azure_conv:rate=5:n=20:arrival=vidur:pd=1+2").n_replicas == 3
    assert inst.window(2, 5).pd == inst.pd
    for bad, msg in (("pd=2x2", "prefill"), ("pd=0+2", "prefill"), ("link_gbps=5", "pd="),
                     ("pd=2+2:replicas=3", "contradicts"), ("pd=1+1:link_gbps=0", "link_gbps")):
        with pytest.raises(InstanceFormatError, match=msg):
            build_workload(f"azure_conv:rate=5:n=20:{bad}")
    with pytest.raises(KeyError, match="least_kv"):
        build_workload("azure_conv:rate=5:n=20:pd=1+1:pd_router=least_kvv")


def _run(env, policy, instance):
    obs, info = env.reset(seed=0, options={"instance": instance})
    policy.reset(env)
    done = False
    while not done:
        assert env.observation_space.contains(obs)
        obs, r, term, trunc, info = env.step(policy.act(obs, info))
        done = term or trunc
    return info


def test_envs_on_a_disaggregated_cluster():
    name = "azure_conv:rate=10:n=60:seed=1:pd=2+1"
    inst = build_workload(name)
    env = gym.make("schedgym/LLMRouting-v0")
    env.reset(seed=0, options={"instance": name})
    mask = env.unwrapped.action_masks()
    assert mask[:2].all() and not mask[2:].any()  # decode replica 2 takes no arrivals
    for rule in ("least_kv", "round_robin"):
        info = _run(gym.make("schedgym/LLMRouting-v0"), RoutingPolicy(rule), name)
        validate(inst, info["solution"])
        ref = simulate(inst, router=rule)
        np.testing.assert_allclose(info["solution"].completion, ref.completion)
        assert "kv_transfer_s_mean" in info["metrics"]
    info = _run(gym.make("schedgym/LLMQueue-v0"), QueueOrderPolicy("srpt"), name)
    validate(inst, info["solution"])
    assert info["solution"].n_transfers == int((inst.output > 1).sum())
