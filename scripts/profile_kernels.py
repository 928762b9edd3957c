"""Measure a Llama-style model's operators with torch and write a latency profile in our format.

    python scripts/profile_kernels.py --model tiny-llama --device-name cpu            # CPU, ships as `cpu`
    python scripts/profile_kernels.py --model llama2-7b --device-name mygpu --dtype float16   # on CUDA

The same operators as Vidur, per layer, random weights (times are what matter): token-level
(QKV projection, output projection, gated MLP up, activation, down, two RMSNorms, rotary
embedding, residual add) over a grid of token counts; decode attention over (batch size, KV length);
prefill attention over (chunk, cached KV length); the KV-cache write by tokens. Each point is the
median of ``--repeats`` timings (CUDA events on a GPU, ``perf_counter`` on the CPU) after warm-up.
Output: ``envs/data/llmserve/profiles/<device-name>__<model>__tp1.npz`` (or ``--out``).
"""

# ruff: noqa: B023  (the timed closures run inside their loop iteration)
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _timer(device: str):
    import torch

    if device == "cuda":
        def run(fn, repeats):
            for _ in range(3):
                fn()
            out = []
            for _ in range(repeats):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                torch.cuda.synchronize()
                out.append(a.elapsed_time(b))
            return float(np.median(out))
    else:
        def run(fn, repeats):
            for _ in range(2):
                fn()
            out = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) * 1e3)
            return float(np.median(out))
    return run


def profile(model_name: str, device: str, dtype: str, repeats: int, threads: int, quick: bool = False):
    import torch
    import torch.nn.functional as F

    from schedgym.envs.llmserve.configs import load_model
    from schedgym.envs.llmserve.profiles import ProfileTables

    torch.manual_seed(0)
    if device == "cpu":
        torch.set_num_threads(threads)
    m = load_model(model_name)
    dt = getattr(torch, dtype)
    kw = {"device": device, "dtype": dt}
    h, hd, H, KV, I = m.embedding_dim, m.head_dim, m.num_q_heads, m.num_kv_heads, m.mlp_hidden_dim
    timeit = _timer(device)
    w_qkv = torch.randn(h, (H + 2 * KV) * hd, **kw) * 0.02
    w_o = torch.randn(H * hd, h, **kw) * 0.02
    w_up = torch.randn(h, 2 * I, **kw) * 0.02
    w_down = torch.randn(I, h, **kw) * 0.02
    g = torch.ones(h, **kw)
    maxlen = m.max_model_len
    tok_grid = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    if quick:
        tok_grid = [1, 8, 64, 512]
    tok_grid = [t for t in tok_grid if t <= maxlen]

    def rms(x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * g

    token_ms, kvsave_ms = [], []
    cache = torch.zeros(2, maxlen * 4, KV, hd, **kw)
    for n in tok_grid:
        x = torch.randn(n, h, **kw)
        q = torch.randn(n, H, hd, **kw)
        cos, sin = torch.randn(n, 1, hd // 2, **kw), torch.randn(n, 1, hd // 2, **kw)
        a = torch.randn(n, I, **kw)
        gate = torch.randn(n, I, **kw)

        def rope():
            x1, x2 = q[..., : hd // 2], q[..., hd // 2:]
            return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

        ops = [lambda: x @ w_qkv, lambda: (x @ w_o if H * hd == h else None), lambda: x @ w_up,
               lambda: F.silu(gate) * a, lambda: a @ w_down, lambda: rms(x), lambda: rms(x), rope, lambda: x + x]
        token_ms.append(sum(timeit(op, repeats) for op in ops))
        kv_new = torch.randn(2, n, KV, hd, **kw)
        idx = torch.arange(n, device=device)
        kvsave_ms.append(timeit(lambda: cache.index_copy_(1, idx, kv_new), repeats))

    def attn(qb, kb, vb, causal_offset=None):
        kb = kb.repeat_interleave(H // KV, dim=1)
        vb = vb.repeat_interleave(H // KV, dim=1)
        if causal_offset is None:
            return F.scaled_dot_product_attention(qb, kb, vb)
        c, total = qb.shape[2], kb.shape[2]
        mask = torch.ones(c, total, dtype=torch.bool, device=device).tril(total - c)
        return F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask)

    bs_grid = [1, 2, 4, 8, 16, 32, 64] if not quick else [1, 4, 16]
    kv_grid = [0, 16, 64, 256, 1024, 2048] if not quick else [0, 64, 512]
    kv_grid = [k for k in kv_grid if k <= maxlen]
    dec = np.zeros((len(bs_grid), len(kv_grid)))
    for i, b in enumerate(bs_grid):
        for j, kv in enumerate(kv_grid):
            qb = torch.randn(b, H, 1, hd, **kw)
            kb = torch.randn(b, KV, max(kv, 1), hd, **kw)
            vb = torch.randn(b, KV, max(kv, 1), hd, **kw)
            dec[i, j] = timeit(lambda: attn(qb, kb, vb), repeats)
    ch_grid = [16, 64, 256, 512, 1024, 2048] if not quick else [16, 256]
    ch_grid = [c for c in ch_grid if c <= maxlen]
    pkv_grid = [0, 256, 1024] if not quick else [0, 256]
    pre = np.full((len(ch_grid), len(pkv_grid)), np.nan)
    for i, c in enumerate(ch_grid):
        for j, kv in enumerate(pkv_grid):
            if c + kv > maxlen:
                continue
            qb = torch.randn(1, H, c, hd, **kw)
            kb = torch.randn(1, KV, kv + c, hd, **kw)
            vb = torch.randn(1, KV, kv + c, hd, **kw)
            pre[i, j] = timeit(lambda: attn(qb, kb, vb, causal_offset=kv), repeats)
    meta = {"format": "schedgym", "device": "cpu" if device == "cpu" else torch.cuda.get_device_name(),
            "model": model_name, "tp": 1, "dtype": dtype, "threads": threads if device == "cpu" else None,
            "torch": torch.__version__, "host": platform.processor() or platform.machine(),
            "attention_source": f"measured with torch {torch.__version__} scaled_dot_product_attention on {device}",
            "token_ops_source": "measured (scripts/profile_kernels.py)", "repeats": repeats,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    i64 = np.asarray
    return ProfileTables(tokens=i64(tok_grid, np.int64), token_ms=np.array(token_ms),
                         kv_save_tokens=i64(tok_grid, np.int64), kv_save_ms=np.array(kvsave_ms),
                         decode_bs=i64(bs_grid, np.int64), decode_kv=i64(kv_grid, np.int64), decode_ms=dec,
                         prefill_chunk=i64(ch_grid, np.int64), prefill_kv=i64(pkv_grid, np.int64), prefill_ms=pre,
                         meta=meta)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--device-name", default=None, help="profile device name (default: cpu or cuda)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (one simulated device)")
    ap.add_argument("--quick", action="store_true", help="a coarse grid (smoke test)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = args.device_name or device
    t0 = time.perf_counter()
    tables = profile(args.model, device, args.dtype, args.repeats, args.threads, quick=args.quick)
    from schedgym.envs.llmserve.profiles import PROFILE_DIR

    out = Path(args.out) if args.out else PROFILE_DIR / f"{name}__{args.model}__tp1.npz"
    tables.save(out)
    print(f"profiled {args.model} on {device} in {time.perf_counter() - t0:.1f} s -> {out}")
    print(f"  token ops (ms/layer) at {list(tables.tokens)}: {np.round(tables.token_ms, 4).tolist()}")
    print(f"  decode attention bs {list(tables.decode_bs)} x kv {list(tables.decode_kv)}:\n{np.round(tables.decode_ms, 4)}")


if __name__ == "__main__":
    main()
