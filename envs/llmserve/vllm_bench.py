"""Real vLLM v1 runs as instances: LLMServingSim's ``bench/examples/<GPU>/<model>/vllm/`` files.

``meta.json`` holds the engine kwargs of the run (``tensor_parallel_size``, ``data_parallel_size``,
``enable_expert_parallel``, ``max_num_seqs``, ``max_num_batched_tokens``) and, when present,
``kv_cache`` (``num_gpu_blocks``, ``block_size``); ``requests.jsonl`` holds one request per line
(``input_toks``, ``output_toks`` and the engine's monotonic timestamps ``queued_ts``,
``first_token_ts``, ``last_token_ts`` in seconds). A run becomes a cluster of ``data_parallel_size``
replicas (``scheduler=vllm_v1``, ``batch_cap`` = max_num_seqs, ``chunk_size`` =
max_num_batched_tokens, expert parallel over the data-parallel ranks when enabled) and arrivals at
the queued timestamps (seconds from the first). The real metrics use the same definitions as the
simulator's: TTFT = first token - queued, E2E = last token - queued, TPOT = (last - first token) /
(output tokens - 1).

The shipped copies (``envs/data/llmserve/vllm_bench/<GPU>/<model>/``) are byte copies of the three
calibration runs (MIT, LLMServingSim; see ATTRIBUTION.md); ``calibration.json`` there holds the
per-step CPU overhead fitted on them (``scripts/fidelity_vllm.py --fit``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schedgym.envs.core.errors import InstanceFormatError, UnknownNameError
from schedgym.envs.llmserve.configs import DATA_DIR, _catalogue, load_device, load_model
from schedgym.envs.llmserve.types import LLMServeInstance, ReplicaSpec

BENCH_DIR = DATA_DIR / "vllm_bench"
CALIBRATION = BENCH_DIR / "calibration.json"
#: the calibration sets (name -> directory under BENCH_DIR)
SETS = {"rtx4090-llama3.1-8b": "RTX4090/Llama-3_1-8B",
        "rtxpro6000-qwen3-32b": "RTXPRO6000/Qwen3-32B",
        "rtxpro6000-qwen3-30b-a3b": "RTXPRO6000/Qwen3-30B-A3B-Instruct-2507"}
STATS = ("mean", "p50", "p90", "p99")
BAR_STATS = ("p50", "p90", "p99")  # the fidelity bar's statistics
ACTIVATION_RESERVE_GB = 2.0  # memory vLLM keeps for activations / CUDA graphs when meta.json lacks kv_cache


@dataclass(frozen=True)
class BenchRun:
    """One real run: the instance to simulate and the measured per-request metrics (seconds)."""

    name: str
    instance: LLMServeInstance
    ttft: np.ndarray
    tpot: np.ndarray
    e2e: np.ndarray


def _model_by_hf(hf: str, src: str) -> str:
    for name, path in _catalogue("models").items():
        m = load_model(str(path))
        if m.hf_name == hf:
            return name
    raise InstanceFormatError(src, f"field 'model' = {hf!r} matches no shipped model config (hf_name)",
                              fix="add envs/data/llmserve/models/<name>.yaml with that hf_name")


def _get(d: dict, key: str, src: str, kind=int, allow_none: bool = False):
    if key not in d:
        raise InstanceFormatError(src, f"missing field {key!r}", fix="write the engine kwargs of the run")
    v = d[key]
    if v is None and allow_none:
        return None
    try:
        if kind is bool:
            if not isinstance(v, bool):
                raise TypeError
            return v
        out = kind(v)
        if kind is int and out != v:
            raise ValueError
        return out
    except (TypeError, ValueError) as exc:
        raise InstanceFormatError(src, f"field {key!r} = {v!r} is not a valid {kind.__name__}") from exc


def read_meta(path: str | Path) -> dict:
    """``meta.json`` as a dict with the fields the replay needs (clear errors on bad/missing ones)."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise InstanceFormatError(src, "file not found", fix="point at a vllm/ folder with meta.json")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InstanceFormatError(src, f"not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("engine_kwargs"), dict):
        raise InstanceFormatError(src, "missing field 'engine_kwargs' (a mapping)",
                                  fix="LLMServingSim's bench writes the vLLM engine kwargs there")
    ek = meta["engine_kwargs"]
    esrc = f"{src}: engine_kwargs"
    out = {"model": _model_by_hf(str(_get(ek, "model", esrc, str)), esrc),
           "tp": _get(ek, "tensor_parallel_size", esrc), "dp": _get(ek, "data_parallel_size", esrc),
           "ep": bool(ek.get("enable_expert_parallel", False)),
           "max_num_seqs": _get(ek, "max_num_seqs", esrc),
           "max_num_batched_tokens": _get(ek, "max_num_batched_tokens", esrc)}
    for k in ("tp", "dp", "max_num_seqs", "max_num_batched_tokens"):
        if out[k] < 1:
            raise InstanceFormatError(esrc, f"field {k!r} = {out[k]} must be >= 1")
    kv = meta.get("kv_cache") or {}
    ksrc = f"{src}: kv_cache"
    out["block_size"] = _get(kv, "block_size", ksrc) if "block_size" in kv else 16
    out["num_gpu_blocks"] = _get(kv, "num_gpu_blocks", ksrc, allow_none=True) if "num_gpu_blocks" in kv else None
    out["gpu_memory_utilization"] = float(kv.get("gpu_memory_utilization") or 0.9)
    # vLLM v1 enables prefix caching by default
    pc = kv.get("enable_prefix_caching", ek.get("enable_prefix_caching", True))
    if not isinstance(pc, bool):
        raise InstanceFormatError(ksrc, f"field 'enable_prefix_caching' = {pc!r} is not a boolean")
    out["prefix_caching"] = pc
    return out


def read_requests(path: str | Path) -> dict[str, np.ndarray]:
    """``requests.jsonl`` columns (float64 seconds / int64 tokens), in queued order."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise InstanceFormatError(src, "file not found", fix="point at a vllm/ folder with requests.jsonl")
    keys = ("input_toks", "output_toks", "queued_ts", "first_token_ts", "last_token_ts")
    cols: dict[str, list] = {k: [] for k in keys}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InstanceFormatError(f"{src}:{i}", f"not valid JSON: {exc}") from exc
        for k in keys:
            v = row.get(k)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise InstanceFormatError(f"{src}:{i}", f"field {k!r} = {v!r} missing or not a finite number")
            cols[k].append(v)
        if cols["input_toks"][-1] < 1 or cols["output_toks"][-1] < 1:
            raise InstanceFormatError(f"{src}:{i}", "fields 'input_toks' and 'output_toks' must be >= 1")
        if not cols["queued_ts"][-1] <= cols["first_token_ts"][-1] <= cols["last_token_ts"][-1]:
            raise InstanceFormatError(f"{src}:{i}", "needs queued_ts <= first_token_ts <= last_token_ts")
    if not cols["queued_ts"]:
        raise InstanceFormatError(src, "no request lines")
    out = {k: np.asarray(v, np.float64) for k, v in cols.items()}
    order = np.argsort(out["queued_ts"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def load_calibration(path: str | Path = CALIBRATION) -> dict:
    """The fitted per-step overheads, keyed by ``<device>__<model>__tp<N>``."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InstanceFormatError(str(path), f"not valid JSON: {exc}") from exc


def _num_blocks(meta: dict, device: str, ep: int) -> int:
    """KV blocks of one replica: ``num_gpu_blocks`` when the run logged it, else (memory x
    utilisation - weights on one device - activation reserve) / KV bytes of a block."""
    if meta["num_gpu_blocks"] is not None:
        return int(meta["num_gpu_blocks"])
    m, d = load_model(meta["model"]), load_device(device)
    weights = m.params_per_device(meta["tp"]) * m.dtype_bytes
    if m.is_moe and ep > 1:  # experts split over the EP ranks
        mats = 3 if m.use_gated_mlp else 2
        experts = mats * m.embedding_dim * m.num_experts * m.expert_mlp_dim * m.num_layers * m.dtype_bytes
        weights -= experts * (1 - 1 / ep) / meta["tp"]
    free = d.memory_gb * 1024 ** 3 * meta["gpu_memory_utilization"] - weights - ACTIVATION_RESERVE_GB * 1024 ** 3
    per_block = m.kv_bytes_per_token(meta["tp"]) * meta["block_size"]
    if free < per_block:
        raise InstanceFormatError(f"{device} x {meta['model']}", "no memory left for the KV cache")
    return int(free // per_block)


def replica_spec(meta: dict, device: str, calib: dict | None = None) -> ReplicaSpec:
    """The replica of a run (one data-parallel rank)."""
    ep = meta["dp"] if meta["ep"] else 1
    key = f"{device}__{meta['model']}__tp{meta['tp']}"
    c = (calib if calib is not None else load_calibration()).get(key, {})
    from schedgym.envs.llmserve.profiles import load_profile, profile_name

    # the mixed-batch skew coefficient the profile measured (LLMServingSim's skew_fit alpha_default)
    alpha = float(load_profile(profile_name(device, meta["model"], meta["tp"])).meta.get("skew_alpha_default", 0.0))
    return ReplicaSpec(model=meta["model"], device=device, tp=meta["tp"], scheduler="vllm_v1",
                       batch_cap=meta["max_num_seqs"], chunk_size=meta["max_num_batched_tokens"],
                       max_tokens_in_batch=meta["max_num_batched_tokens"], block_size=meta["block_size"],
                       num_blocks=_num_blocks(meta, device, ep), ep=ep, prefix_caching=meta["prefix_caching"],
                       cpu_overhead_ms=float(c.get("cpu_overhead_ms", 0.0)),
                       cpu_overhead_per_seq_ms=float(c.get("cpu_overhead_per_seq_ms", 0.0)),
                       cpu_overhead_per_token_ms=float(c.get("cpu_overhead_per_token_ms", 0.0)),
                       skew_alpha=float(c.get("skew_alpha", alpha)), moe_skew=float(c.get("moe_skew", 0.0)))


def load_run(folder: str | Path, device: str | None = None, calib: dict | None = None,
             name: str | None = None) -> BenchRun:
    """A run from ``<...>/<GPU>/<model>/vllm/`` (or its parent); ``device`` defaults to the GPU folder
    name in lower case."""
    folder = Path(folder)
    if (folder / "vllm").is_dir():
        folder = folder / "vllm"
    device = device or folder.parent.parent.name.lower()
    meta = read_meta(folder / "meta.json")
    req = read_requests(folder / "requests.jsonl")
    spec = replica_spec(meta, device, calib)
    from schedgym.envs.llmserve.workload import make_instance

    q = req["queued_ts"]
    arrival = q - q[0]
    n_rep = meta["dp"]
    inst = make_instance(arrival, req["input_toks"].astype(np.int64), req["output_toks"].astype(np.int64),
                         replicas=(spec,) * n_rep, name=name or f"vllm:{folder.parent.parent.name}/{folder.parent.name}")
    out = req["output_toks"]
    return BenchRun(name=inst.name, instance=inst, ttft=req["first_token_ts"] - q, e2e=req["last_token_ts"] - q,
                    tpot=(req["last_token_ts"] - req["first_token_ts"]) / np.maximum(out - 1, 1))


def load_set(name: str, calib: dict | None = None) -> BenchRun:
    """A shipped calibration run by name (see :data:`SETS`)."""
    if name not in SETS:
        raise UnknownNameError("vLLM bench set", name, list(SETS))
    return load_run(BENCH_DIR / SETS[name], calib=calib, name=name)


def _stats(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, float) * 1e3
    return {"mean": float(x.mean()), "p50": float(np.percentile(x, 50)), "p90": float(np.percentile(x, 90)),
            "p99": float(np.percentile(x, 99))}


def compare(run: BenchRun, router: str = "least_outstanding") -> dict:
    """Simulate a run; returns per metric (``TTFT``, ``TPOT``, ``E2E``) and statistic (:data:`STATS`)
    the tuple (real ms, simulated ms, % error), ``iterations`` and ``worst`` (the largest |% error|
    over the three metrics at p50/p90/p99)."""
    from schedgym.envs.llmserve.sim import simulate

    sol = simulate(run.instance, router=router)
    inst = run.instance
    ttft = sol.first_token - inst.arrival
    e2e = sol.completion - inst.arrival
    tpot = (sol.completion - sol.first_token) / np.maximum(inst.output - 1, 1)
    res: dict = {"iterations": int(sol.n_iterations)}
    for k, real, sim in (("TTFT", run.ttft, ttft), ("TPOT", run.tpot, tpot), ("E2E", run.e2e, e2e)):
        r, s = _stats(real), _stats(sim)
        res[k] = {st: (r[st], s[st], 100 * (s[st] - r[st]) / r[st]) for st in STATS}
    res["worst"] = max(abs(res[k][st][2]) for k in ("TTFT", "TPOT", "E2E") for st in BAR_STATS)
    return res
