"""Simulator and validator: a hand-computed example, conservation / KV / causality under every
scheduler and preemption mode (hypothesis), determinism, rejections, and corrupted traces."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from schedgym.envs.core.errors import InfeasibleSolution, InstanceFormatError
from schedgym.envs.llmserve.metrics import metrics
from schedgym.envs.llmserve.profiles import ProfileTables
from schedgym.envs.llmserve.sim import Simulator, simulate
from schedgym.envs.llmserve.types import ReplicaSpec
from schedgym.envs.llmserve.validate import validate
from schedgym.envs.llmserve.workload import build_workload, make_instance


@pytest.fixture(scope="module")
def flat_profile(tmp_path_factory):
    """Per layer: token ops 1 ms, decode attention 0.5 ms, prefill attention 2 ms, whatever the size."""
    p = tmp_path_factory.mktemp("prof") / "flat.npz"
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    ProfileTables(tokens=i64(1, 4096), token_ms=np.array([1.0, 1.0]), kv_save_tokens=i64(1),
                  kv_save_ms=np.array([0.0]), decode_bs=i64(1, 256), decode_kv=i64(0, 4096),
                  decode_ms=np.full((2, 2), 0.5), prefill_chunk=i64(1, 4096), prefill_kv=i64(0, 4096),
                  prefill_ms=np.full((2, 2), 2.0), meta={"tp": 1, "attention_source": "test"}).save(p)
    return str(p)


def test_hand_computed_two_requests(flat_profile):
    # tiny-llama has 8 layers: prefill iteration 8 x (1 + 2) = 24 ms, decode iteration 8 x (1 + 0.5) = 12 ms
    spec = ReplicaSpec(model="tiny-llama", device="cpu", profile=flat_profile, num_blocks=100, scheduler="vllm_v0")
    inst = make_instance([0.0, 0.010], [10, 20], [3, 2], replicas=(spec,))
    sol = simulate(inst)
    validate(inst, sol)
    # A prefill [0, .024]; B prefill [.024, .048] (v0 prefers prefills); decode A+B [.048, .060] (B done);
    # decode A [.060, .072] (A done)
    np.testing.assert_allclose(sol.it_start, [0.0, 0.024, 0.048, 0.060])
    np.testing.assert_allclose(sol.it_end, [0.024, 0.048, 0.060, 0.072])
    np.testing.assert_allclose(sol.first_token, [0.024, 0.048])
    np.testing.assert_allclose(sol.completion, [0.072, 0.060])
    m = metrics(inst, sol)
    assert m["ttft_p50_s"] == pytest.approx((0.024 + 0.038) / 2)
    assert m["tpot_p99_s"] == pytest.approx(0.012 + 0.99 * (0.024 - 0.012))  # TPOTs 24 and 12 ms
    assert m["throughput_rps"] == pytest.approx(2 / 0.072)
    # Sarathi mixes B's prefill with A's decode: [.024, .048] holds A decode + B prefill
    sar = simulate(dataclasses.replace(inst, replicas=(dataclasses.replace(spec, scheduler="sarathi"),)))
    assert list(sar.it_req[sar.it_ptr[1]:sar.it_ptr[2]]) == [0, 1]


SCHED = [(s, p) for s in ("vllm_v0", "sarathi", "orca") for p in ("recompute", "swap")] + [("vllm_v1", "recompute")]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=hst.integers(0, 10_000), sp=hst.sampled_from(SCHED), blocks=hst.integers(60, 400),
       replicas=hst.integers(1, 3), router=hst.sampled_from(["round_robin", "least_kv", "power_of_two"]))
def test_invariants_under_pressure(seed, sp, blocks, replicas, router):
    sched, pre = sp
    inst = build_workload(f"synthetic:prompt_mean=150:output_mean=300:rate=12:n=40:seed={seed}:max_tokens=900:"
                          f"scheduler={sched}:preemption={pre}:num_blocks={blocks}:replicas={replicas}:chunk_size=256")
    sol = Simulator(inst, router=router, seed=seed).run()
    validate(inst, sol)  # token conservation, KV <= capacity, causality, TTFT <= e2e
    served = ~sol.rejected
    assert np.all(sol.first_token[served] <= sol.completion[served])
    assert np.all(sol.kv_peak_blocks <= sol.num_blocks)
    assert np.array_equal(sol.rejected, _never_fits(inst, blocks))  # rejected exactly when it can never fit


def _never_fits(inst, blocks: int) -> np.ndarray:
    """Requests no replica of ``inst`` (all alike, ``blocks`` KV blocks of 16 tokens) can ever serve:
    more blocks than the replica has above its watermark (vLLM v0 also: more tokens than the batch
    budget); Orca reserves the longest request of the workload for every request, so it rejects all
    of them when that reservation exceeds the blocks."""
    spec = inst.replicas[0]
    total = inst.prompt + inst.output
    if spec.scheduler == "orca":
        reserve = -(-int(total.max()) // 16)
        return np.full(inst.n_requests, reserve > blocks)
    never = np.ceil(total / 16) > blocks - int(spec.watermark_fraction * blocks)  # v1: no watermark
    if spec.scheduler == "vllm_v0":
        never |= total > spec.max_tokens_in_batch
    return never


def test_preemption_happens_and_validates():
    for pre in ("recompute", "swap"):
        inst = build_workload(f"synthetic:prompt_mean=200:output_mean=800:rate=8:n=60:seed=1:num_blocks=300:preemption={pre}:"
                              "scheduler=vllm_v0")
        sol = simulate(inst)
        validate(inst, sol)
        assert sol.preemptions.sum() > 0
        assert set(np.unique(sol.ev_kind)) == ({0} if pre == "recompute" else {1, 2})


def test_deterministic_per_seed():
    a = simulate(build_workload("azure_code:rate=8:n=150:seed=4:replicas=2"), router="random", seed=3)
    b = simulate(build_workload("azure_code:rate=8:n=150:seed=4:replicas=2"), router="random", seed=3)
    np.testing.assert_array_equal(a.completion, b.completion)
    np.testing.assert_array_equal(a.replica, b.replica)
    c = simulate(build_workload("azure_code:rate=8:n=150:seed=5:replicas=2"), router="random", seed=3)
    assert not np.array_equal(a.completion, c.completion)


def test_too_long_request_rejected_and_counted():
    spec = ReplicaSpec(num_blocks=100)
    inst = make_instance([0.0, 0.1, 0.2], [100, 3000, 50], [10, 10, 5], replicas=(spec,))
    sol = simulate(inst)
    validate(inst, sol)
    assert list(sol.rejected) == [False, True, False]
    m = metrics(inst, sol)
    assert m["rejected"] == 1 and m["slo_attainment"] <= 2 / 3


def _corrupt(sol, **kw):
    return dataclasses.replace(sol, **kw)


def test_validator_rejects_corrupted_traces():
    inst = build_workload("azure_conv:rate=4:n=60:seed=2")
    sol = simulate(inst)
    validate(inst, sol)
    toks = sol.it_tokens.copy()
    k = int(np.flatnonzero(toks == 1)[-1])
    toks[k] = 0
    with pytest.raises(InfeasibleSolution, match="feeds 0 tokens"):
        validate(inst, _corrupt(sol, it_tokens=toks))
    ft = sol.first_token.copy()
    ft[3] += 0.5
    with pytest.raises(InfeasibleSolution, match="first_token"):
        validate(inst, _corrupt(sol, first_token=ft))
    start = sol.it_start.copy()
    start[0] = -1.0
    with pytest.raises(InfeasibleSolution):
        validate(inst, _corrupt(sol, it_start=start))
    with pytest.raises(InfeasibleSolution, match="KV"):
        validate(inst, _corrupt(sol, num_blocks=np.array([20])))
    with pytest.raises(InfeasibleSolution, match="device memory"):
        validate(inst, _corrupt(sol, num_blocks=sol.num_blocks * 100))
    rep = sol.replica.copy()
    rep[5] = 1
    with pytest.raises(InfeasibleSolution):
        validate(inst, _corrupt(sol, replica=rep))


def test_bad_workloads_give_clear_errors(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,5\n1,-3,5\n")
    with pytest.raises(InstanceFormatError, match=r"t\.csv, line 3.*num_prefill_tokens"):
        build_workload(f"{f}:rate=1:n=2")
    f.write_text("arrived_at,num_prefill_tokens\n0,10\n")
    with pytest.raises(InstanceFormatError, match="num_decode_tokens"):
        build_workload(f"{f}:rate=1:n=2")
    with pytest.raises(KeyError, match="rat"):
        build_workload("azure_conv:rat=3")
    with pytest.raises(InstanceFormatError, match="llama2-70b.*no room"):
        simulate(build_workload("azure_conv:rate=1:n=5:model=llama2-70b:device=a40"))


def test_recompute_of_a_partial_prefill_keeps_the_whole_context():
    # Sarathi preempting (recompute) a request in the middle of a chunked re-prefill used to shrink its
    # prefill target to the chunk done so far, so it emitted tokens without their context (validator: KV)
    inst = build_workload("synthetic:prompt_mean=150:output_mean=300:rate=12:n=40:seed=0:max_tokens=900:"
                          "scheduler=sarathi:preemption=recompute:num_blocks=60:replicas=1:chunk_size=256")
    sol = simulate(inst)
    validate(inst, sol)
    assert sol.preemptions.sum() > 0


def test_orca_rejects_when_its_reservation_does_not_fit():
    # Orca reserves the longest request (here 57 blocks) for every request: with 40 blocks it could
    # serve nothing, which is an error at load time; with 57 blocks every request is served
    name = "synthetic:prompt_mean=150:output_mean=200:rate=5:n=30:seed=271699:max_tokens=900:scheduler=orca"
    with pytest.raises(InstanceFormatError, match=r"Orca reserves 57 blocks.*num_blocks=40.*num_blocks >= 57"):
        build_workload(f"{name}:num_blocks=40")
    inst = build_workload(f"{name}:num_blocks=57")
    sol = simulate(inst)
    validate(inst, sol)
    assert not sol.rejected.any()


def test_orca_rejects_per_replica_when_routed_to_a_small_one():
    # a heterogeneous cluster: replica 1 cannot hold Orca's reservation, so what is routed there is rejected
    small, big = ReplicaSpec(scheduler="orca", num_blocks=30), ReplicaSpec(scheduler="orca", num_blocks=400)
    inst = make_instance([0.0, 0.1, 0.2, 0.3], [300, 200, 100, 50], [200, 100, 20, 10], replicas=(big, small))
    sol = simulate(inst, router="round_robin")
    validate(inst, sol)
    assert list(sol.rejected) == [False, True, False, True]
