"""Derive the GPU-DAG operator and link tables from Vidur's raw profiles (run once; output is shipped).

Reads the staged Vidur files (``--src``, default ``../shared/data/llmserve/vidur-7d47513``) and writes

* ``envs/data/gpudag/operator_times.csv``: ``model, device, op, num_tokens, time_ms, source``, one row
  per transformer-layer operator, device type (a100, h100, a40) and token count, tensor parallelism 1.
  Measured rows (``source=vidur:mlp.csv``) are the CUDA-event medians of Vidur's ``mlp.csv``.
  ``attn`` rows (``source=derived:...``) are not measured: Vidur's attention profiles are not in
  the store, so the causal prefill attention time is estimated as its FLOPs (2 * S^2 * d_model for
  S tokens of one sequence) at the GEMM throughput measured for ``mlp_up_proj`` at the same S on
  the same device, floored at the measured time of the element-wise ``mlp_act`` kernel at the same S
  (kernel launch overhead dominates small S).
* ``envs/data/gpudag/links.csv``: ``link, scope, latency_ms, bandwidth_gb_s, source``: latency = the
  median send/recv time at sizes <= 64 KiB, bandwidth = 1 / slope of a least-squares line through the
  sizes >= max/4 (sizes read as bytes), from Vidur's ``send_recv.csv``; ``scope`` is ``intra`` for
  ``devices_per_node == 2`` (both ranks on one node) and ``inter`` for ``devices_per_node == 1``.
* ``envs/data/gpudag/models.csv``: the model shapes read from the same rows.

Usage: ``python scripts/derive_gpudag_profiles.py [--src DIR]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

OPS = ("emb", "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
       "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
MODELS = {"llama2_7b": "Llama-2-7b-hf", "llama2_70b": "Llama-2-70b-hf"}
DEVICES = ("a100", "h100", "a40")
TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
LINKS = {"a100": "a100_dgx", "h100": "h100_dgx", "a40": "a40_pairwise_nvlink"}


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(root.parent / "shared/data/llmserve/vidur-7d47513"))
    ap.add_argument("--out", default=str(root / "envs/data/gpudag"))
    args = ap.parse_args()
    src, out = Path(args.src), Path(args.out)
    rows, models = [], []
    for key, hf in MODELS.items():
        for dev in DEVICES:
            f = src / f"data/profiling/compute/{dev}/meta-llama/{hf}/mlp.csv"
            d = pd.read_csv(f)
            d = d[d.num_tensor_parallel_workers == 1].drop_duplicates("num_tokens").set_index("num_tokens")
            r0 = d.iloc[0]
            if dev == DEVICES[0]:
                models.append({"model": key, "hf_name": f"meta-llama/{hf}", "n_embd": int(r0.n_embd),
                               "n_head": int(r0.n_head), "n_kv_head": int(r0.n_kv_head),
                               "n_expanded_embd": int(r0.n_expanded_embd), "vocab_size": int(r0.vocab_size),
                               "use_gated_mlp": bool(r0.use_gated_mlp)})
            for t in TOKENS:
                r = d.loc[t]
                for op in OPS:
                    rows.append({"model": key, "device": dev, "op": op, "num_tokens": t,
                                 "time_ms": round(float(r[f"time_stats.{op}.median"]), 6),
                                 "source": f"vidur:{dev}/{hf}/mlp.csv"})
                n_embd, ffn = float(r.n_embd), float(r.n_expanded_embd)
                up_flops = 2.0 * t * n_embd * ffn * (2 if r.use_gated_mlp else 1)
                rate = up_flops / float(r["time_stats.mlp_up_proj.median"])  # FLOP per ms
                # floor: an element-wise kernel's measured time at the same S (launch overhead)
                attn = max(2.0 * t * t * n_embd / rate, float(r["time_stats.mlp_act.median"]))
                rows.append({"model": key, "device": dev, "op": "attn", "num_tokens": t,
                             "time_ms": round(attn, 6),
                             "source": "derived:max(2*S^2*d_model FLOPs at the measured mlp_up_proj FLOP rate; measured mlp_act time)"})
    pd.DataFrame(rows).to_csv(out / "operator_times.csv", index=False)
    pd.DataFrame(models).to_csv(out / "models.csv", index=False)
    links = []
    for dev, name in LINKS.items():
        d = pd.read_csv(src / f"data/profiling/network/{name}/send_recv.csv")
        for dpn, g in d.groupby("devices_per_node"):
            x = g["size"].to_numpy(float)
            y = g["time_stats.send_recv.median"].to_numpy(float)
            big = x >= x.max() / 4
            slope, _ = np.polyfit(x[big], y[big], 1)
            links.append({"link": dev, "scope": "intra" if dpn == 2 else "inter",
                          "latency_ms": round(float(np.median(y[x <= 65536])), 6),
                          "bandwidth_gb_s": round(1.0 / slope / 1e6, 3),
                          "source": f"vidur:network/{name}/send_recv.csv devices_per_node={dpn}"})
    pd.DataFrame(links).to_csv(out / "links.csv", index=False)
    print(f"wrote {len(rows)} operator rows, {len(links)} link rows to {out}")


if __name__ == "__main__":
    main()
