"""Latency profiles: exact interpolation at profiled points, loaders of both public formats, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from schedgym.envs.core.errors import InstanceFormatError
from schedgym.envs.llmserve.configs import load_model
from schedgym.envs.llmserve.profiles import (
    TOKEN_OPS,
    LatencyModel,
    ProfileTables,
    load_llmservingsim,
    load_profile,
    load_vidur,
    shipped_profiles,
)

MODEL = load_model("llama2-7b")


def _vidur_files(tmp_path, hole=False, drop_col=None, negative=False):
    toks = [1, 8, 64, 512, 4096]
    rows = []
    for n in toks:
        r = {"n_head": 32, "n_kv_head": 32, "n_embd": 4096, "n_expanded_embd": 11008, "vocab_size": 32768,
             "use_gated_mlp": True, "num_tokens": n, "num_tensor_parallel_workers": 1}
        for i, op in enumerate(TOKEN_OPS):
            r[f"time_stats.{op}.median"] = 0.01 * (i + 1) + 0.001 * n
        rows.append(r)
    mlp = pd.DataFrame(rows)
    if drop_col:
        mlp = mlp.drop(columns=[drop_col])
    if negative:
        mlp.loc[2, "time_stats.mlp_act.median"] = -1.0
    mlp.to_csv(tmp_path / "mlp.csv", index=False)
    att = []
    base = {"n_embd": 4096, "n_q_head": 32, "n_kv_head": 32, "block_size": 16, "num_tensor_parallel_workers": 1,
            "time_stats.attn_kv_cache_save.median": 0.002}
    for b in (1, 2, 4, 8):
        for kv in (0, 1024, 4096):
            if hole and b == 4 and kv == 1024:
                continue
            att.append({**base, "batch_size": b, "prefill_chunk_size": 0, "kv_cache_size": kv, "is_prefill": False,
                        "time_stats.attn_decode.median": 0.01 * b + 1e-5 * kv * b})
    for c in (64, 512, 2048):
        for kv in (0, 512, 2048):
            if c + kv <= 4096:
                att.append({**base, "batch_size": 1, "prefill_chunk_size": c, "kv_cache_size": kv, "is_prefill": True,
                            "time_stats.attn_prefill.median": 1e-4 * c + 1e-6 * c * kv})
    pd.DataFrame(att).to_csv(tmp_path / "attention.csv", index=False)
    return tmp_path / "mlp.csv", tmp_path / "attention.csv"


def test_interpolation_exact_at_profiled_points(tmp_path):
    mlp, att = _vidur_files(tmp_path)
    t = load_vidur(mlp, att, MODEL)
    lm = LatencyModel(t, MODEL)
    L = MODEL.num_layers
    # token-level: 8, 64, 512, 4096 are multiples of 8 (Vidur rounds the token count up to 8)
    for n, ms in zip(t.tokens, t.token_ms):
        if n % 8 == 0:
            assert lm.base(int(n)) == pytest.approx(L * (ms + 0.002), rel=1e-12)
    for i, b in enumerate(t.decode_bs):
        for j, kv in enumerate(t.decode_kv):
            assert lm.decode(int(b), int(b * kv)) == pytest.approx(L * t.decode_ms[i, j], rel=1e-12)
    for i, c in enumerate(t.prefill_chunk):
        for j, kv in enumerate(t.prefill_kv):
            if not np.isnan(t.prefill_ms[i, j]):
                assert lm.prefill([int(c)], [int(kv)]) == pytest.approx(L * t.prefill_ms[i, j], rel=1e-12)
    # piecewise linear between points
    mid = lm.decode(3, 3 * 1024)
    assert lm.decode(2, 2 * 1024) < mid < lm.decode(4, 4 * 1024)


def test_shipped_profile_exact_at_grid():
    t = load_profile("a100__llama2-7b__tp1")
    lm = LatencyModel(t, MODEL)
    for i in (0, 10, 127):
        for j in (0, 5, 40):
            b, kv = int(t.decode_bs[i]), int(t.decode_kv[j])
            if kv % 64 == 0:
                assert lm.decode(b, b * kv) == pytest.approx(32 * t.decode_ms[i, j], rel=1e-9)


def test_errors_name_file_and_column(tmp_path):
    mlp, att = _vidur_files(tmp_path, drop_col="time_stats.mlp_up_proj.median")
    with pytest.raises(InstanceFormatError, match=r"mlp\.csv.*mlp_up_proj"):
        load_vidur(mlp, att, MODEL)
    mlp, att = _vidur_files(tmp_path, hole=True)
    with pytest.raises(InstanceFormatError, match=r"attention\.csv.*hole.*batch_size=4"):
        load_vidur(mlp, att, MODEL)
    mlp, att = _vidur_files(tmp_path, negative=True)
    with pytest.raises(InstanceFormatError, match="negative"):
        load_vidur(mlp, att, MODEL)
    with pytest.raises(InstanceFormatError, match="no rows for model llama2-70b"):
        mlp, att = _vidur_files(tmp_path)
        load_vidur(mlp, att, load_model("llama2-70b"))


def test_llmservingsim_loader(tmp_path):
    m = load_model("llama3.1-8b")
    rows = [(op, n, 1.0 + 0.01 * n) for op in ("qkv_proj", "o_proj", "gate_up_proj", "act_fn", "down_proj",
                                                 "rotary_emb", "layernorm", "embedding") for n in (1, 16, 256)]
    pd.DataFrame(rows, columns=["layer", "tokens", "time_us"]).to_csv(tmp_path / "dense.csv", index=False)
    att = []
    for nd in (1, 4):
        for kv in (16, 1024):
            att.append((0, 0, nd, kv, 5.0 * nd + 0.01 * kv))
    for c in (16, 256):
        for kv in (0, 1024):
            att.append((c, kv, 0, 0, 3.0 + 0.1 * c + 0.001 * kv))
    pd.DataFrame(att, columns=["prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us"]).to_csv(
        tmp_path / "attention.csv", index=False)
    t = load_llmservingsim(tmp_path, m)
    lm = LatencyModel(t, m)
    assert lm.decode(4, 4 * 1024) == pytest.approx(32 * (20 + 10.24) * 1e-3)
    assert lm.prefill([256], [0]) == pytest.approx(32 * (3 + 25.6) * 1e-3)
    # 7 operators per layer (layernorm twice), embedding once per iteration
    assert lm.base(16) == pytest.approx((32 * 8 * (1.16) + 1.16) * 1e-3)
    (tmp_path / "dense.csv").write_text("layer,tokens\nqkv_proj,1\n")
    with pytest.raises(InstanceFormatError, match=r"dense\.csv.*time_us"):
        load_llmservingsim(tmp_path, m)


@pytest.mark.parametrize("name", shipped_profiles())
def test_every_shipped_profile_loads(name):
    dev, model, tp = name.split("__")
    m = load_model(model)
    t = load_profile(name)
    assert t.meta.get("attention_source")
    lm = LatencyModel(t, m)
    d1, d8 = lm.decode(1, 512), lm.decode(8, 8 * 512)
    assert 0 < d1 <= d8
    assert lm.base(512) + lm.prefill([512], [0]) > lm.base(1) + d1 > 0


def test_profile_roundtrip(tmp_path):
    t = load_profile("rtxpro6000__llama3.1-8b__tp1")
    t.save(tmp_path / "p.npz")
    t2 = ProfileTables.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(t.decode_ms, t2.decode_ms)
    assert t2.meta == t.meta


def test_model_beyond_its_cached_tables_is_the_same_formula():
    """Token counts, batch sizes and KV lengths past the precomputed arrays follow the same
    piecewise-linear model (not a different extrapolation): a model with larger caches agrees."""
    tables = load_profile("a100__llama2-7b__tp1")
    small = LatencyModel(tables, MODEL, max_tokens=1024, max_batch=64, max_kv=1024)
    big = LatencyModel(tables, MODEL, max_tokens=40000, max_batch=1024, max_kv=8192)
    for n in (1025, 1031, 5000, 20001, 39999):
        assert small.base(n) == pytest.approx(big.base(n), rel=1e-12)
    for batch, kv_sum in ((65, 65 * 100), (600, 600 * 3000), (10, 10 * 5000), (800, 800 * 7000)):
        assert small.decode(batch, kv_sum) == pytest.approx(big.decode(batch, kv_sum), rel=1e-12)
    assert small.seq(600) == pytest.approx(big.seq(600), rel=1e-12)
