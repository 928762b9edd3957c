"""Convert the staged public LLM-serving data into the package's compact files (run once by maintainers).

    python scripts/build_llmserve_data.py --src ../shared/data/llmserve

Writes ``envs/data/llmserve/profiles/<device>__<model>__tp<N>.npz`` (our profile format) and
``envs/data/llmserve/traces/<name>.npz`` (arrival seconds, prompt and output tokens).

Attention tables: Vidur's measured ``attention.csv`` files were not available; the A100 Llama-2-7B
table is the labelled surrogate fit in Vidur's format (``surrogate/``). For the other Vidur
(device, model, TP) profiles the attention grids are *derived* from it: decode attention scaled by
the model's KV bytes per worker and the device's measured memory-bound speed (the ratio of its
``mlp_up_proj`` time at 1 token to the A100's), prefill attention by the query heads per worker and
the measured compute-bound speed (ratio at 4,096 tokens). Every derived profile says so in its
``meta["attention_source"]``. The RTX PRO 6000 profile is LLMServingSim's measurement throughout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schedgym.envs.llmserve.configs import load_model  # noqa: E402
from schedgym.envs.llmserve.profiles import PROFILE_DIR, load_llmservingsim, load_vidur  # noqa: E402

VIDUR = "vidur-7d47513/data/profiling"
MODELS = {"llama2-7b": "Llama-2-7b-hf", "llama2-70b": "Llama-2-70b-hf", "llama3-8b": "Meta-Llama-3-8B",
          "llama3-70b": "Meta-Llama-3-70B"}
NETWORK = {"a100": "a100_pairwise_nvlink", "h100": "h100_pairwise_nvlink", "a40": "a40_pairwise_nvlink"}
TRACES = {
    "azure_conv": "vidur-7d47513/data/processed_traces/splitwise_conv.csv",
    "azure_code": "vidur-7d47513/data/processed_traces/splitwise_code.csv",
    "arxiv_sum": "vidur-7d47513/data/processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
    "sharegpt": "vidur-0.0.26-sdist/data/processed_traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
}


def _up_proj(mlp_csv: Path, model, n: int) -> float:
    df = pd.read_csv(mlp_csv)
    df = df[(df.num_tensor_parallel_workers == 1) & (df.n_embd == model.embedding_dim)]
    g = df.groupby("num_tokens")["time_stats.mlp_up_proj.median"].median()
    return float(np.interp(n, g.index.to_numpy(float), g.to_numpy()))


def build_profiles(src: Path, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    surrogate = src / "surrogate/attn_llama2_7b_a100.csv.gz"
    ref_model = load_model("llama2-7b")
    ref_mlp = src / VIDUR / "compute/a100/meta-llama/Llama-2-7b-hf/mlp.csv"
    ref_mem, ref_cmp = _up_proj(ref_mlp, ref_model, 1), _up_proj(ref_mlp, ref_model, 4096)
    for dev in ("a100", "h100", "a40"):
        for mname, folder in MODELS.items():
            mlp = src / VIDUR / f"compute/{dev}/meta-llama/{folder}/mlp.csv"
            if not mlp.is_file():
                continue
            model = load_model(mname)
            sr = src / VIDUR / f"network/{NETWORK[dev]}/send_recv.csv"
            tps = sorted(pd.read_csv(mlp).num_tensor_parallel_workers.unique())
            for tp in tps:
                tp = int(tp)
                ar = src / VIDUR / f"network/{NETWORK[dev] if tp <= 4 else dev + '_dgx'}/all_reduce.csv"
                if tp > 1 and not ar.is_file():
                    continue
                if model.num_q_heads % tp:
                    continue
                att_tp = tp if mname == "llama2-7b" else 1
                t_ref = load_vidur(ref_mlp, surrogate, ref_model, tp=att_tp)
                arc = ar if (tp > 1 and ar.is_file()) else None
                src_ = sr if sr.is_file() else None
                if mname == "llama2-7b":
                    t = load_vidur(mlp, surrogate, model, tp=tp, all_reduce_csv=arc, send_recv_csv=src_, device=dev)
                else:
                    t = _token_only(mlp, model, tp, arc, src_, dev, t_ref)
                is_measured_att = dev == "a100" and mname == "llama2-7b"
                if not is_measured_att:
                    dev_mlp = src / VIDUR / f"compute/{dev}/meta-llama/Llama-2-7b-hf/mlp.csv"
                    mem = _up_proj(dev_mlp, ref_model, 1) / ref_mem if dev_mlp.is_file() else 1.0
                    cmp_ = _up_proj(dev_mlp, ref_model, 4096) / ref_cmp if dev_mlp.is_file() else 1.0
                    kv_f = (-(-model.num_kv_heads // tp) * model.head_dim) / (
                        ref_model.num_kv_heads // att_tp * ref_model.head_dim)
                    q_f = (model.num_q_heads // tp * model.head_dim) / (
                        ref_model.num_q_heads // att_tp * ref_model.head_dim)
                    t.decode_ms = t_ref.decode_ms * kv_f * mem
                    t.prefill_ms = t_ref.prefill_ms * q_f * cmp_
                    t.kv_save_ms = t_ref.kv_save_ms * kv_f * mem
                    t.meta["attention_source"] = (
                        f"derived from the A100 Llama-2-7B surrogate (tp{att_tp}): decode x {kv_f:.3f} (KV bytes/worker)"
                        f" x {mem:.3f} (measured memory-bound speed), prefill x {q_f:.3f} (query heads/worker)"
                        f" x {cmp_:.3f} (measured compute-bound speed)")
                else:
                    t.meta["attention_source"] = "surrogate fit in Vidur's format (not a measurement; see ATTRIBUTION.md)"
                t.meta.update({"device": dev, "model": mname, "tp": tp,
                               "token_ops_source": f"Vidur {VIDUR}/compute/{dev}/meta-llama/{folder}/mlp.csv (measured)"})
                name = f"{dev}__{mname}__tp{tp}"
                t.save(out / f"{name}.npz")
                written.append(name)
    lss = src / "LLMServingSim-5daddb2/profiler/perf/RTXPRO6000/meta-llama/Llama-3.1-8B/bf16"
    for tp in (1, 2):
        d = lss / f"tp{tp}"
        if d.is_dir():
            t = load_llmservingsim(d, load_model("llama3.1-8b"), tp=tp, device="rtxpro6000")
            t.meta["attention_source"] = "LLMServingSim measured (vLLM 0.19 profiler); mixed batches additive"
            t.meta["token_ops_source"] = "LLMServingSim dense.csv / per_sequence.csv (measured)"
            name = f"rtxpro6000__llama3.1-8b__tp{tp}"
            t.save(out / f"{name}.npz")
            written.append(name)
    return written


def _token_only(mlp, model, tp, ar, sr, dev, t_ref):
    """Token-level tables of ``model`` from its mlp.csv; attention grids copied from ``t_ref``."""
    import tempfile

    from schedgym.envs.llmserve.profiles import ProfileTables

    # reuse load_vidur's token parsing by giving it an attention table in the model's own shape
    ref = t_ref
    rows = []
    for i, b in enumerate(ref.decode_bs):
        for j, k in enumerate(ref.decode_kv):
            rows.append((int(b), 0, int(k), False, ref.decode_ms[i, j], np.nan))
    for i, c in enumerate(ref.prefill_chunk):
        for j, k in enumerate(ref.prefill_kv):
            if not np.isnan(ref.prefill_ms[i, j]):
                rows.append((1, int(c), int(k), True, np.nan, ref.prefill_ms[i, j]))
    df = pd.DataFrame(rows, columns=["batch_size", "prefill_chunk_size", "kv_cache_size", "is_prefill",
                                     "time_stats.attn_decode.median", "time_stats.attn_prefill.median"])
    df["num_tensor_parallel_workers"] = tp
    df["n_embd"], df["n_q_head"], df["n_kv_head"] = model.embedding_dim, model.num_q_heads, model.num_kv_heads
    df["time_stats.attn_kv_cache_save.median"] = float(np.median(ref.kv_save_ms))
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        df.to_csv(f.name, index=False)
        t = load_vidur(mlp, f.name, model, tp=tp, all_reduce_csv=ar, send_recv_csv=sr, device=dev)
    Path(f.name).unlink()
    assert isinstance(t, ProfileTables)
    return t


def build_traces(src: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, rel in TRACES.items():
        df = pd.read_csv(src / rel)
        np.savez_compressed(out / f"{name}.npz", arrived_at=df.arrived_at.to_numpy(np.float64)
                            if "arrived_at" in df.columns else np.zeros(0),
                            prompt=df.num_prefill_tokens.to_numpy(np.int32),
                            output=df.num_decode_tokens.to_numpy(np.int32), source=np.array(rel))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(ROOT.parent / "shared/data/llmserve"))
    args = ap.parse_args()
    src = Path(args.src)
    names = build_profiles(src, PROFILE_DIR)
    build_traces(src, PROFILE_DIR.parent / "traces")
    print(f"wrote {len(names)} profiles: {', '.join(names)}")


if __name__ == "__main__":
    main()
