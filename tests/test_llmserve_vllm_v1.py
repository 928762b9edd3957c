"""vLLM v1 scheduler, the real-vLLM replay loader, MoE timing and the fidelity bar on the shipped runs."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from schedgym.envs.core.errors import InfeasibleSolution, InstanceFormatError
from schedgym.envs.llmserve.profiles import active_experts, latency_model
from schedgym.envs.llmserve.sim import Simulator, simulate
from schedgym.envs.llmserve.types import ReplicaSpec
from schedgym.envs.llmserve.validate import validate
from schedgym.envs.llmserve.vllm_bench import BENCH_DIR, SETS, compare, load_run, load_set
from schedgym.envs.llmserve.workload import make_instance

#: worst |error| (%) over TTFT/TPOT/E2E at p50/p90/p99 reached on each calibration set
#: (python scripts/fidelity_vllm.py: 4.3, 1.6, 4.4); the issue's bar is 10 %
BAR = {"rtx4090-llama3.1-8b": 5.0, "rtxpro6000-qwen3-32b": 2.5, "rtxpro6000-qwen3-30b-a3b": 5.0}


def _small(spec: ReplicaSpec, n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.uniform(0, 2.0, n))
    return make_instance(arrival, rng.integers(50, 1500, n), rng.integers(2, 200, n), replicas=(spec,))


def test_loader_reads_the_shipped_runs():
    r = load_set("rtx4090-llama3.1-8b")
    inst = r.instance
    assert inst.n_requests == 300 and inst.arrival[0] == 0.0 and np.all(np.diff(inst.arrival) >= 0)
    s = inst.replicas[0]
    assert (s.scheduler, s.batch_cap, s.chunk_size, s.num_blocks, s.block_size, s.tp) == ("vllm_v1", 256, 2048, 2588, 16, 1)
    assert np.all(r.ttft > 0) and np.all(r.e2e >= r.ttft) and np.all(r.tpot > 0)
    moe = load_set("rtxpro6000-qwen3-30b-a3b").instance
    assert moe.n_replicas == 2 and moe.replicas[0].ep == 2 and moe.replicas[0].model == "qwen3-30b-a3b"
    q = load_set("rtxpro6000-qwen3-32b").instance
    assert q.replicas[0].tp == 2 and q.replicas[0].batch_cap == 128
    # the real metrics use the jsonl's timestamps: first request of the 4090 run
    row = json.loads((BENCH_DIR / SETS["rtx4090-llama3.1-8b"] / "vllm/requests.jsonl").read_text().splitlines()[0])
    assert r.ttft[0] == pytest.approx(row["first_token_ts"] - row["queued_ts"])


def test_loader_names_the_bad_file_and_field(tmp_path):
    src = BENCH_DIR / SETS["rtxpro6000-qwen3-32b"] / "vllm"
    d = tmp_path / "GPU" / "model" / "vllm"
    shutil.copytree(src, d)
    meta = json.loads((d / "meta.json").read_text())
    del meta["engine_kwargs"]["max_num_batched_tokens"]
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InstanceFormatError, match="max_num_batched_tokens"):
        load_run(d, device="rtxpro6000")
    shutil.copy(src / "meta.json", d / "meta.json")
    lines = (d / "requests.jsonl").read_text().splitlines()
    lines[3] = lines[3].replace('"output_toks"', '"out"')
    (d / "requests.jsonl").write_text("\n".join(lines))
    with pytest.raises(InstanceFormatError, match=r"requests.jsonl:4.*output_toks"):
        load_run(d, device="rtxpro6000")
    (d / "requests.jsonl").unlink()
    with pytest.raises(InstanceFormatError, match="requests.jsonl"):
        load_run(d, device="rtxpro6000")


def test_v1_token_budget_and_preemption_pass_the_validator():
    spec = ReplicaSpec(model="llama3.1-8b", device="rtx4090", scheduler="vllm_v1", batch_cap=16, chunk_size=512,
                       num_blocks=120)
    inst = _small(spec)
    sim = Simulator(inst)
    sol = sim.run()
    validate(inst, sol)
    assert sim.replicas[0].n_preemptions > 0  # 120 blocks of 16 tokens: KV runs out
    tok = np.add.reduceat(sol.it_tokens, sol.it_ptr[:-1])
    assert tok.max() == 512  # the budget is filled, never exceeded
    assert np.all(np.isfinite(sol.completion))
    # the same trace against a smaller budget breaks the validator's v1 rule
    tight = dataclasses.replace(inst, replicas=(dataclasses.replace(spec, chunk_size=500),))
    with pytest.raises(InfeasibleSolution, match="token budget"):
        validate(tight, sol)
    # and a larger budget breaks the chunking rule (a chunk cut short with budget left)
    loose = dataclasses.replace(inst, replicas=(dataclasses.replace(spec, chunk_size=600),))
    with pytest.raises(InfeasibleSolution, match="cut short"):
        validate(loose, sol)


def test_v1_allocates_per_chunk_and_respects_max_num_seqs():
    spec = ReplicaSpec(model="llama3.1-8b", device="rtx4090", scheduler="vllm_v1", batch_cap=3, chunk_size=256,
                       num_blocks=4000)
    inst = make_instance([0.0, 0.0, 0.0, 0.0], [1000, 10, 10, 10], [5, 5, 5, 5], replicas=(spec,))
    sim = Simulator(inst)
    sol = sim.run()
    validate(inst, sol)
    first = sol.it_req[sol.it_ptr[0]:sol.it_ptr[1]].tolist()
    assert first == [0]  # the 1000-token prompt takes the whole 256-token budget
    sizes = np.diff(sol.it_ptr)
    assert sizes.max() <= 3


def test_v1_is_deterministic():
    spec = ReplicaSpec(model="llama3.1-8b", device="rtx4090", scheduler="vllm_v1", batch_cap=8, chunk_size=256,
                       num_blocks=200)
    a, b = simulate(_small(spec, seed=3)), simulate(_small(spec, seed=3))
    for k in ("it_start", "it_end", "it_req", "it_tokens", "first_token", "completion"):
        assert np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True)


def test_moe_active_experts_and_timing():
    n = np.array([1.0, 4.0, 64.0, 2048.0])
    uni = active_experts(n, 128, 8)
    assert uni[0] == pytest.approx(8.0, rel=1e-6)
    assert np.all(np.diff(uni) > 0) and uni[-1] == pytest.approx(128.0, rel=1e-3)
    assert np.all(active_experts(n, 128, 8, skew=1.0)[1:] < uni[1:])  # skewed routing activates fewer experts
    ep2 = active_experts(n, 128, 8, ep=2)
    assert np.all(ep2 <= 64.0 + 1e-9) and ep2[-1] == pytest.approx(64.0, rel=1e-3)
    lat = latency_model("rtxpro6000", "qwen3-30b-a3b", 1)
    assert lat.base(2048) > lat.base(64) > lat.base(1) > 0
    skewed = latency_model("rtxpro6000", "qwen3-30b-a3b", 1, moe_skew=1.5)
    assert skewed.base(64) < lat.base(64)
    spec = ReplicaSpec(model="qwen3-30b-a3b", device="rtxpro6000", scheduler="vllm_v1", ep=2, moe_skew=0.5,
                       skew_alpha=0.2, cpu_overhead_per_seq_ms=0.1, chunk_size=512, num_blocks=3000)
    inst = _small(spec)
    validate(inst, simulate(inst))


@pytest.mark.parametrize("name", sorted(SETS))
def test_fidelity_bar_on_the_calibration_sets(name):
    res = compare(load_set(name))
    assert res["worst"] <= BAR[name], res


def test_mla_kv_arithmetic_and_capacity(tmp_path):
    from schedgym.envs.llmserve.cluster import kv_capacity_blocks
    from schedgym.envs.llmserve.configs import load_model
    from schedgym.envs.llmserve.validate import _max_blocks

    y = tmp_path / "mla.yaml"
    y.write_text("name: mla-test\nnum_layers: 27\nnum_q_heads: 16\nnum_kv_heads: 16\nembedding_dim: 2048\n"
                 "mlp_hidden_dim: 10944\nvocab_size: 102400\nkv_lora_rank: 512\nqk_rope_head_dim: 64\n"
                 "max_model_len: 8192\n")
    m = load_model(str(y))
    assert m.kv_bytes_per_token() == m.kv_bytes_per_token(tp=2) == 27 * (512 + 64) * 2  # latent, not split by TP
    spec = ReplicaSpec(model=str(y), device="rtxpro6000", scheduler="vllm_v1", chunk_size=1024,
                       profile="rtxpro6000__llama3.1-8b__tp1")
    inst = _small(spec)
    assert kv_capacity_blocks(spec) == _max_blocks(inst, 0)[0]
    validate(inst, simulate(inst))


def test_vllm_v1_is_the_default_with_vllms_own_defaults():
    s = ReplicaSpec()
    assert (s.scheduler, s.chunk_size, s.batch_cap, s.watermark_fraction, s.preemption) == (
        "vllm_v1", 2048, 256, 0.0, "recompute")
    v0 = ReplicaSpec(scheduler="vllm_v0")  # the Vidur comparison's engine keeps its defaults
    assert (v0.chunk_size, v0.batch_cap, v0.watermark_fraction) == (512, 128, 0.01)
    assert ReplicaSpec(scheduler="sarathi").chunk_size == 512
    given = ReplicaSpec(batch_cap=64, chunk_size=1024)  # explicit values are kept
    assert (given.batch_cap, given.chunk_size) == (64, 1024)
    assert ReplicaSpec(scheduler="vllm_v0", watermark_fraction=0.0).watermark_fraction == 0.0
    from schedgym.envs.llmserve.workload import build_workload

    inst = build_workload("azure_conv:rate=5:n=10")
    assert inst.replicas[0] == ReplicaSpec()


def test_vllm_v1_defaults_follow_vllms_device_rule():
    """vLLM's OpenAI server: 8,192 tokens / 1,024 sequences on GPUs of >= 70 GiB other than A100."""
    from schedgym.envs.llmserve.types import vllm_v1_batch_defaults

    assert vllm_v1_batch_defaults("a100") == (256, 2048)  # 80 GiB, but vLLM excludes A100
    assert vllm_v1_batch_defaults("rtx4090") == vllm_v1_batch_defaults("a40") == (256, 2048)
    assert vllm_v1_batch_defaults("h100") == vllm_v1_batch_defaults("rtxpro6000") == (1024, 8192)
    assert vllm_v1_batch_defaults("no-such-gpu") == (256, 2048)
    s = ReplicaSpec(device="h100")
    assert (s.batch_cap, s.chunk_size) == (1024, 8192)
    assert (ReplicaSpec(device="h100", scheduler="vllm_v0").batch_cap, ReplicaSpec(device="h100").watermark_fraction) == (
        128, 0.0)
    assert ReplicaSpec(device="h100", chunk_size=2048).chunk_size == 2048  # explicit values are kept


def test_invalid_combinations_with_the_default_scheduler_name_the_fix():
    from schedgym.envs.llmserve.workload import build_workload

    with pytest.raises(ValueError, match=r"vllm_v1 \(the default\) preempts by recompute only.*scheduler='vllm_v0'"):
        ReplicaSpec(preemption="swap")
    with pytest.raises(InstanceFormatError, match=r"azure_conv:rate=5:n=10:preemption=swap.*scheduler='vllm_v0'"):
        build_workload("azure_conv:rate=5:n=10:preemption=swap")
    assert build_workload("azure_conv:rate=5:n=10:preemption=swap:scheduler=vllm_v0").replicas[0].preemption == "swap"
    with pytest.raises(ValueError, match=r"no admission watermark, got watermark_fraction=0.05"):
        ReplicaSpec(watermark_fraction=0.05)
    with pytest.raises(ValueError, match=r"prefix_caching needs scheduler='vllm_v1'"):
        ReplicaSpec(scheduler="sarathi", prefix_caching=True)


def test_shipped_llm_workloads_run_v1_except_the_vidur_comparison():
    from pathlib import Path

    from omegaconf import OmegaConf

    from schedgym.conf import __file__ as conf_init
    from schedgym.envs.llmserve.workload import parse_name

    llm = 0
    for f in sorted((Path(conf_init).parent / "workload").glob("*.yaml")):
        cfg = OmegaConf.load(f)
        for spec in cfg.spec:
            trace, opts = parse_name(str(spec))
            if trace not in ("azure_conv", "azure_code", "arxiv_sum", "sharegpt", "synthetic"):
                break  # a GPU-DAG set
            llm += 1
            want = "vllm_v0" if f.stem.startswith("vidur_fidelity") else "vllm_v1"
            assert opts.get("scheduler", "vllm_v1") == want, (f.name, spec)
    assert llm >= 20
