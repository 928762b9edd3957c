"""Bad LLM-serving inputs are rejected at load time, naming the file or key and the valid range;
no metric of an episode is NaN."""

from __future__ import annotations

import numpy as np
import pytest

from schedgym.envs.core.errors import InstanceFormatError
from schedgym.envs.llmserve.metrics import metrics
from schedgym.envs.llmserve.profiles import ProfileTables
from schedgym.envs.llmserve.sim import simulate
from schedgym.envs.llmserve.types import ReplicaSpec
from schedgym.envs.llmserve.workload import build_workload, make_instance

I64 = lambda *v: np.array(v, np.int64)  # noqa: E731
W = "azure_conv:rate=3:n=40:seed=0"


def _tables(**over) -> ProfileTables:
    kw = dict(tokens=I64(1, 64, 4096), token_ms=np.array([1.0, 1.5, 9.0]), kv_save_tokens=I64(1),
              kv_save_ms=np.array([0.0]), decode_bs=I64(1, 256), decode_kv=I64(0, 4096),
              decode_ms=np.full((2, 2), 0.5), prefill_chunk=I64(1, 4096), prefill_kv=I64(0, 4096),
              prefill_ms=np.full((2, 2), 2.0), meta={"tp": 1})
    kw.update(over)
    return ProfileTables(**kw)


def test_profile_with_negative_latency(tmp_path):
    f = tmp_path / "neg.npz"
    _tables(token_ms=np.array([1.0, -1.5, 9.0])).save(f)
    with pytest.raises(InstanceFormatError, match=r"neg\.npz: array 'token_ms' holds a negative.*valid: finite times >= 0"):
        ProfileTables.load(f)
    with pytest.raises(InstanceFormatError, match=r"neg\.npz: array 'token_ms'"):
        simulate(make_instance([0.0], [10], [2], replicas=(ReplicaSpec(model="tiny-llama", device="cpu",
                                                                      profile=str(f), num_blocks=50),)))


def test_profile_with_unsorted_token_axis(tmp_path):
    f = tmp_path / "unsorted.npz"
    _tables(tokens=I64(1, 4096, 64)).save(f)
    with pytest.raises(InstanceFormatError, match=r"unsorted\.npz: array 'tokens' \(an axis\).*strictly increasing"):
        ProfileTables.load(f)


def test_profile_with_unsorted_kv_axis(tmp_path):
    f = tmp_path / "kv.npz"
    _tables(decode_kv=I64(4096, 0)).save(f)
    with pytest.raises(InstanceFormatError, match=r"kv\.npz: array 'decode_kv' \(an axis\)"):
        ProfileTables.load(f)


def test_negative_cpu_overhead():
    with pytest.raises(InstanceFormatError, match=r"cpu_overhead_ms=-1\.0 is out of range \(valid: >= 0"):
        build_workload(f"{W}:cpu_overhead_ms=-1")
    with pytest.raises(InstanceFormatError, match=r"cpu_overhead_ms=-0\.5 is out of range"):
        ReplicaSpec(cpu_overhead_ms=-0.5)


def test_batch_cap_zero():
    with pytest.raises(InstanceFormatError, match=r"batch_cap=0 is out of range \(valid: an integer >= 1"):
        build_workload(f"{W}:batch_cap=0")


def test_one_kv_block_serves_nothing():
    with pytest.raises(InstanceFormatError, match=r"can serve no request: num_blocks=1 .*shortest request.*"
                                                  r"valid: num_blocks >= \d+"):
        build_workload(f"{W}:num_blocks=1")


def test_token_budget_of_one_serves_nothing():
    with pytest.raises(InstanceFormatError, match=r"max_tokens_in_batch=1 is below the shortest request.*"
                                                  r"valid: max_tokens_in_batch >= \d+"):
        build_workload(f"{W}:max_tokens_in_batch=1:scheduler=vllm_v0")  # the v0 budget (v1 chunks prompts)


def test_cv_zero():
    with pytest.raises(InstanceFormatError, match=r"cv=0\.0 is out of range \(valid: a finite cv > 0"):
        build_workload(f"{W}:arrival=gamma:cv=0")


def test_zero_replicas():
    with pytest.raises(InstanceFormatError, match=r"replicas=0 is out of range \(valid: replicas >= 1"):
        build_workload(f"{W}:replicas=0")


def test_rate_nan():
    with pytest.raises(InstanceFormatError, match=r"rate=nan is not a finite number \(valid: a finite rate > 0"):
        build_workload("azure_conv:rate=nan:n=40")


def test_unsorted_arrivals_with_arrival_trace(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,5\n2,12,5\n1,14,5\n3,9,4\n")
    with pytest.raises(InstanceFormatError, match=r"t\.csv, line 4: column 'arrived_at' decreases.*"
                                                  r"valid: non-decreasing"):
        build_workload(f"{f}:n=4:arrival=trace")
    build_workload(f"{f}:n=4:rate=2")  # lengths only: the arrival column is not used


def test_header_only_trace(tmp_path):
    f = tmp_path / "h.csv"
    f.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n")
    with pytest.raises(InstanceFormatError, match=r"h\.csv: the file has a header but no requests.*at least 1 row"):
        build_workload(f"{f}:n=4:rate=2")


def test_empty_trace(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("")
    with pytest.raises(InstanceFormatError, match=r"e\.csv: the file is empty"):
        build_workload(f"{f}:n=4:rate=2")


def test_metrics_defined_when_no_request_is_served():
    # replica 1 holds no request; a router sending everything there serves nothing
    inst = make_instance([0.0, 0.1, 0.2], [100, 200, 50], [10, 20, 5],
                         replicas=(ReplicaSpec(num_blocks=100), ReplicaSpec(num_blocks=2)))
    sol = simulate(inst, router=lambda sim, rid: 1)
    assert sol.rejected.all()
    m = metrics(inst, sol)
    assert not [k for k, v in m.items() if np.isnan(v)]
    assert m["ttft_p99_s"] == np.inf and m["slo_attainment"] == 0.0 and m["goodput_rps"] == 0.0
