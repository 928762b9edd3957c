"""Iteration latency model from measured kernel profiles (Vidur's decomposition, no learned model).

The time of one iteration (one forward pass of a batch) on one replica is, in milliseconds::

    layers_per_stage * ( sum of token-level operators(round8(T))        # projections, MLP, norms, rope, add
                         + kv_cache_save(T)
                         + attn_decode(decode batch size, mean decode KV length rounded up to 64)
                         + attn_prefill(sum of prefill KV lengths, sqrt(sum of chunk^2))
                         + 2 * all_reduce(round8(T)) if tensor parallel )
    + send_recv(round8(T)) if pipeline parallel
    + per-iteration operators(T) + per-sequence operators(batch size) (+ CPU overhead)

where T is the number of tokens in the batch (0 ms for an empty batch). These are the conventions
of Vidur (MLSys 2024); Vidur fits a random forest to the same tables and expands it into a lookup
table, this module interpolates the measured medians directly. Precisely:

* every 1-D table (token-level, KV save, all-reduce, send/recv, per-iteration, per-sequence) is
  piecewise linear through its points, flat below the first and linear beyond the last (slope of
  the last segment);
* decode attention: the mean KV length is ``floor(sum of the decode KV lengths / decode batch
  size)`` rounded up to a multiple of 64, where a decode's KV length counts the token it feeds; the
  grid is interpolated as above along the KV axis of each measured batch size, then along the batch
  axis;
* prefill attention: the KV sum adds each chunk's cached KV length rounded up to 64; the chunk is
  the single chunk's size, or ``round(sqrt(sum of squared chunks))`` (ties to even) for several;
  the grid's unmeasured cells are filled along the KV axis (flat beyond the measured ones), and it
  is interpolated bilinearly, clamped at the grid's edges.

Arrays up to 16,384 tokens, batch size 512 and the model length are precomputed when a profile is
loaded (start-up takes milliseconds); beyond them the same formulas are evaluated on the fly.

Formats read: Vidur's ``mlp.csv`` / ``attention.csv`` / ``all_reduce.csv`` / ``send_recv.csv``
(times in ms per layer) and LLMServingSim's ``dense.csv`` / ``attention.csv`` / ``per_sequence.csv``
(times in microseconds, one layer). Our own format is one ``.npz`` per (device, model, TP degree);
:func:`load_profile` finds the shipped ones by name.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from schedgym.envs.core.errors import InstanceFormatError, UnknownNameError
from schedgym.envs.llmserve.configs import DATA_DIR, ModelConfig

PROFILE_DIR = DATA_DIR / "profiles"

#: Vidur's token-level operator names (per layer, by number of tokens).
TOKEN_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj", "mlp_act",
             "input_layernorm", "post_attention_layernorm", "attn_rope", "add")
KV_GRANULARITY = 64  # Vidur's kv_cache_prediction_granularity (tokens)
TOKEN_ROUNDING = 8   # Vidur rounds the batch token count up to a multiple of 8


@dataclass
class ProfileTables:
    """The raw measured tables of one profile (what the ``.npz`` stores). Times in milliseconds.

    Attributes:
        tokens: (T,) int64 token counts of the token-level rows, increasing.
        token_ms: (T,) float64 per-layer sum of the token-level operators.
        kv_save_tokens: (S,) int64, kv_save_ms: (S,) per-layer KV-cache write time.
        decode_bs: (B,) int64, decode_kv: (V,) int64, decode_ms: (B, V) per-layer decode attention
            for a batch of B sequences of KV length V each.
        prefill_chunk: (C,) int64, prefill_kv: (W,) int64, prefill_ms: (C, W) per-layer prefill
            attention of a chunk with W tokens already cached (NaN where not measured, e.g. beyond
            the model length; filled by interpolation along the KV axis at load).
        allreduce_tokens / allreduce_ms: (A,) tensor-parallel all-reduce per call (2 per layer), or empty.
        sendrecv_tokens / sendrecv_ms: (P,) pipeline send/recv per stage boundary, or empty.
        iter_tokens / iter_ms: (I,) per-iteration token operators (embedding, final norm), or empty.
        seq_count / seq_ms: (Q,) per-iteration per-sequence operators (LM head, sampler, CPU
            overhead) by batch size, or empty.
        moe_tokens: (M,) tokens entering an MoE layer, moe_experts: (X,) experts activated,
            moe_ms: (M, X) per-layer MoE time (routed experts' FFN; filled along the expert axis where
            not measured), or empty for a dense model.
        meta: provenance (device, model, tp, sources, notes).
    """

    tokens: np.ndarray
    token_ms: np.ndarray
    kv_save_tokens: np.ndarray
    kv_save_ms: np.ndarray
    decode_bs: np.ndarray
    decode_kv: np.ndarray
    decode_ms: np.ndarray
    prefill_chunk: np.ndarray
    prefill_kv: np.ndarray
    prefill_ms: np.ndarray
    allreduce_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    allreduce_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sendrecv_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sendrecv_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    iter_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    iter_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seq_count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    seq_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    moe_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    moe_experts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    moe_ms: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    meta: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Write the tables as a compressed ``.npz`` (our profile format)."""
        arrays = {k: np.asarray(getattr(self, k)) for k in self.__dataclass_fields__ if k != "meta"}
        np.savez_compressed(path, meta=np.array(json.dumps(self.meta)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> ProfileTables:
        path = Path(path)
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InstanceFormatError(str(path), f"not a readable profile .npz: {exc}") from exc
        required = ("tokens", "token_ms", "kv_save_tokens", "kv_save_ms", "decode_bs", "decode_kv",
                    "decode_ms", "prefill_chunk", "prefill_kv", "prefill_ms")
        for k in required:
            if k not in z.files:
                raise InstanceFormatError(str(path), f"missing array {k!r}",
                                          fix="write profiles with ProfileTables.save or scripts/profile_kernels.py")
        kw = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
        tables = cls(meta=meta, **kw)
        tables.check(str(path))
        return tables

    def check(self, source: str) -> None:
        """Raise :class:`InstanceFormatError` naming ``source`` and the array when an axis is empty,
        negative or not strictly increasing, or a time is negative, NaN (the prefill grid may have
        NaN holes) or infinite, or a table's shape does not match its axes."""
        for axis, values, optional in _TABLES + tuple((g, None, g == "moe_experts") for g in _GRIDS.values()):
            x = np.asarray(getattr(self, axis))
            if optional and x.size == 0:
                continue
            if x.ndim != 1 or x.size == 0:
                raise InstanceFormatError(source, f"array {axis!r} must be a non-empty 1-D axis, has shape {x.shape}")
            if not np.all(np.isfinite(x)) or np.any(x < 0) or np.any(np.diff(x) <= 0):
                raise InstanceFormatError(source, f"array {axis!r} (an axis) must be finite, >= 0 and strictly "
                                                  f"increasing, got {x.tolist()[:8]}{' ...' if x.size > 8 else ''}",
                                          fix="sort the measurements by that axis and merge duplicates")
            if values is None:
                continue
            y = np.asarray(getattr(self, values))
            shape = (x.size,) if values not in _GRIDS else (x.size, np.asarray(getattr(self, _GRIDS[values])).size)
            if y.shape != shape:
                raise InstanceFormatError(source, f"array {values!r} has shape {y.shape}, expected {shape} (its axes)")
            finite = y[~np.isnan(y)] if values == "prefill_ms" else y
            if np.isnan(finite).any() or not np.all(np.isfinite(finite)) or np.any(finite < 0):
                bad = finite[~(np.isfinite(finite) & (finite >= 0))]
                raise InstanceFormatError(source, f"array {values!r} holds a negative, NaN or infinite time "
                                                  f"({bad[0]!r} ms)", fix="valid: finite times >= 0 ms; re-profile")


#: (axis, values, optional) of every table; the 2-D grids' second axes in _GRIDS
_TABLES = (("tokens", "token_ms", False), ("kv_save_tokens", "kv_save_ms", False), ("decode_bs", "decode_ms", False),
           ("prefill_chunk", "prefill_ms", False), ("allreduce_tokens", "allreduce_ms", True),
           ("sendrecv_tokens", "sendrecv_ms", True), ("iter_tokens", "iter_ms", True), ("seq_count", "seq_ms", True),
           ("moe_tokens", "moe_ms", True))
_GRIDS = {"decode_ms": "decode_kv", "prefill_ms": "prefill_kv", "moe_ms": "moe_experts"}


# ----------------------------------------------------------------------------------------------
# interpolation helpers
# ----------------------------------------------------------------------------------------------
def _interp_extrap(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise linear through (xp, fp); flat below xp[0], linear extrapolation above xp[-1]."""
    y = np.interp(x, xp, fp)
    if len(xp) >= 2:
        hi = x > xp[-1]
        if np.any(hi):
            slope = (fp[-1] - fp[-2]) / max(xp[-1] - xp[-2], 1e-12)
            y[hi] = fp[-1] + slope * (x[hi] - xp[-1])
    return y


def _fill_rows(grid: np.ndarray, axis_vals: np.ndarray, source: str, what: str) -> np.ndarray:
    """Fill NaN holes of each row by linear interpolation along the columns (flat beyond the last
    measured column). A row with no measured value is an error."""
    out = grid.copy()
    for i in range(out.shape[0]):
        ok = ~np.isnan(out[i])
        if not ok.any():
            raise InstanceFormatError(source, f"{what}: row {i} of the grid has no measured value",
                                      fix="profile at least one KV length for every chunk size / batch size")
        if not ok.all():
            out[i, ~ok] = np.interp(axis_vals[~ok], axis_vals[ok], out[i, ok])
    return out


def bilinear(xs: np.ndarray, ys: np.ndarray, z: np.ndarray, x: float, y: float) -> float:
    """Bilinear interpolation of z (len(xs), len(ys)) at (x, y), clamped to the grid."""
    x = min(max(x, xs[0]), xs[-1])
    y = min(max(y, ys[0]), ys[-1])
    i = min(max(bisect_right(xs, x) - 1, 0), len(xs) - 2) if len(xs) > 1 else 0
    j = min(max(bisect_right(ys, y) - 1, 0), len(ys) - 2) if len(ys) > 1 else 0
    if len(xs) == 1:
        tx = 0.0
    else:
        tx = (x - xs[i]) / (xs[i + 1] - xs[i])
    if len(ys) == 1:
        ty = 0.0
    else:
        ty = (y - ys[j]) / (ys[j + 1] - ys[j])
    i1 = min(i + 1, len(xs) - 1)
    j1 = min(j + 1, len(ys) - 1)
    return float((1 - tx) * (1 - ty) * z[i, j] + tx * (1 - ty) * z[i1, j] + (1 - tx) * ty * z[i, j1]
                 + tx * ty * z[i1, j1])


# ----------------------------------------------------------------------------------------------
# the latency model
# ----------------------------------------------------------------------------------------------
class LatencyModel:
    """Iteration time of a batch on one replica, from a profile, a model and a parallel layout.

    All lookups are Python lists precomputed at construction (fast scalar indexing in the event
    loop) plus numpy copies for vectorised use. Times returned are in **seconds**.

    Args:
        tables: the measured tables.
        model: the model config (for the number of layers).
        pp: pipeline stages (layers are split evenly; one send/recv per iteration is added).
        max_tokens: largest batch token count to tabulate (more is extrapolated on the fly).
        max_batch: largest decode batch size to tabulate.
        max_kv: largest KV length to tabulate.
        cpu_overhead_ms: a constant per-iteration overhead, milliseconds.
        cpu_per_seq_ms: a per-iteration overhead per request in the batch, milliseconds.
        cpu_per_token_ms: a per-iteration overhead per token in the batch, milliseconds.
        ep: expert-parallel degree of an MoE model (each rank holds ``num_experts / ep`` experts and
            receives the tokens of ``ep`` ranks loaded like this one).
        moe_skew: routing skew of an MoE model: expert popularity ~ rank^-moe_skew (0: uniform).
        skew_alpha: decode attention of a batch with uneven KV lengths is ``t(mean) + skew_alpha *
            (t(max) - t(mean))`` where ``t(x)`` is the time of the batch with every KV length x
            (LLMServingSim's skew model; 0: the mean only, Vidur's rule).
    """

    def __init__(self, tables: ProfileTables, model: ModelConfig, pp: int = 1, max_tokens: int = 16384,
                 max_batch: int = 512, max_kv: int | None = None, cpu_overhead_ms: float = 0.0,
                 cpu_per_seq_ms: float = 0.0, ep: int = 1, moe_skew: float = 0.0, skew_alpha: float = 0.0,
                 cpu_per_token_ms: float = 0.0):
        tables.check(str(tables.meta.get("source", "profile tables")))
        self.tables = tables
        self.model = model
        self.cpu_per_seq_ms = float(cpu_per_seq_ms)
        self.cpu_per_token_ms = float(cpu_per_token_ms)
        self.ep = int(ep)
        self.moe_skew = float(moe_skew)
        self.skew_alpha = float(skew_alpha)
        if model.is_moe and len(tables.moe_tokens) == 0:
            raise InstanceFormatError(str(tables.meta.get("source", "profile")),
                                      f"model {model.name} is MoE but the profile has no MoE table (moe.csv)",
                                      fix="load a profile measured with moe.csv for this model")
        self.layers = model.num_layers // pp
        self.pp = pp
        self.tp = int(tables.meta.get("tp", 1))
        t = tables
        L = self.layers
        self.cpu_overhead_ms = float(cpu_overhead_ms)
        source = str(t.meta.get("source", "profile"))
        if self.tp > 1 and not t.meta.get("allreduce_in_ops") and len(t.allreduce_tokens) == 0:
            raise InstanceFormatError(source, f"tensor parallel degree {self.tp} but no all_reduce table",
                                      fix="load the profile with an all_reduce.csv")
        if pp > 1 and len(t.sendrecv_tokens) == 0:
            raise InstanceFormatError(source, f"{pp} pipeline stages but no send_recv table",
                                      fix="load the profile with a send_recv.csv")
        self.max_tokens = int(max_tokens)
        base = self._base_at(np.arange(self.max_tokens + 1, dtype=np.float64))
        self.base_ms = base  # (max_tokens+1,) ms by batch token count
        # decode attention: dense (batch size, kv/64) table, times L
        self.max_batch = int(max_batch)
        self.max_kv = int(max_kv or max(int(t.decode_kv.max()), int(t.prefill_kv.max()), model.max_model_len))
        kv_axis = np.arange(0, self.max_kv + KV_GRANULARITY, KV_GRANULARITY, dtype=np.float64)
        bs_axis = np.arange(self.max_batch + 1, dtype=np.float64)
        dec = self._decode_at(bs_axis, kv_axis)
        self.decode_ms = dec  # (max_batch+1, n_kv) ms, all layers
        self._decode_rows = [list(r) for r in self.decode_ms]
        self._base = list(base)
        seq = self._seq_at(bs_axis)
        self.seq_ms = seq
        self._seq = list(seq)
        pf = _fill_rows(t.prefill_ms.astype(float), t.prefill_kv.astype(float),
                        str(t.meta.get("source", "profile")), "prefill attention")
        self._pf_chunk = [float(v) for v in t.prefill_chunk]
        self._pf_kv = [float(v) for v in t.prefill_kv]
        self._pf = pf * L

    # -- the model at any point (the tables below cache it) ----------------------------------------
    def _base_at(self, n: np.ndarray) -> np.ndarray:
        """Token-level part in ms for token counts ``n`` (float array); 0 for no token."""
        t, L = self.tables, self.layers
        n8 = np.ceil(n / TOKEN_ROUNDING) * TOKEN_ROUNDING
        per_layer = (_interp_extrap(n8, t.tokens.astype(float), t.token_ms.astype(float))
                     + _interp_extrap(n, t.kv_save_tokens.astype(float), t.kv_save_ms.astype(float)))
        if self.tp > 1 and not t.meta.get("allreduce_in_ops"):
            per_layer = per_layer + 2 * _interp_extrap(n8, t.allreduce_tokens.astype(float), t.allreduce_ms)
        if self.model.is_moe:
            per_layer = per_layer + self._moe_at(n)
        base = L * per_layer
        if self.pp > 1:
            base = base + _interp_extrap(n8, t.sendrecv_tokens.astype(float), t.sendrecv_ms)
        if len(t.iter_tokens):
            base = base + _interp_extrap(n, t.iter_tokens.astype(float), t.iter_ms)
        base = base + self.cpu_overhead_ms + self.cpu_per_token_ms * n
        return np.where(n > 0, base, 0.0)

    def _moe_at(self, n: np.ndarray) -> np.ndarray:
        """Per-layer MoE time in ms for ``n`` tokens: the measured (tokens, activated experts) grid,
        linear along tokens (extrapolated beyond), then along experts at the expected number of
        experts this rank activates (:func:`active_experts`)."""
        t, m = self.tables, self.model
        act = active_experts(n, m.num_experts, m.experts_per_token, self.ep, self.moe_skew)
        cols = np.stack([_interp_extrap(n, t.moe_tokens.astype(float), t.moe_ms[:, j])
                         for j in range(len(t.moe_experts))], axis=1)
        xs = t.moe_experts.astype(float)
        a = np.clip(act, xs[0], xs[-1])
        j = np.clip(np.searchsorted(xs, a, side="right") - 1, 0, max(len(xs) - 2, 0))
        if len(xs) == 1:
            return cols[:, 0]
        w = (a - xs[j]) / (xs[j + 1] - xs[j])
        rows = np.arange(len(n))
        return (1 - w) * cols[rows, j] + w * cols[rows, j + 1]

    def _decode_at(self, bs: np.ndarray, kv: np.ndarray) -> np.ndarray:
        """Decode attention in ms, all layers, (len(bs), len(kv)): interpolated along the KV axis of
        each measured batch size, then along the batch axis; 0 for batch size 0."""
        t = self.tables
        rows = np.stack([_interp_extrap(kv, t.decode_kv.astype(float), t.decode_ms[i]) for i in range(len(t.decode_bs))])
        dec = np.stack([_interp_extrap(bs, t.decode_bs.astype(float), rows[:, j]) for j in range(len(kv))], axis=1)
        dec[bs <= 0, :] = 0.0
        return self.layers * dec

    def _seq_at(self, bs: np.ndarray) -> np.ndarray:
        """Per-sequence operators in ms by batch size; 0 for batch size 0 or without that table."""
        t = self.tables
        cpu = self.cpu_per_seq_ms * bs
        if not len(t.seq_count):
            return np.where(bs > 0, cpu, 0.0)
        return np.where(bs > 0, _interp_extrap(bs, t.seq_count.astype(float), t.seq_ms) + cpu, 0.0)

    # -- scalar API used by the simulator --------------------------------------------------------
    def base(self, n_tokens: int) -> float:
        """Token-level part (all layers, comm, per-iteration ops) in ms for ``n_tokens`` tokens."""
        if n_tokens <= self.max_tokens:
            return self._base[n_tokens]
        return float(self._base_at(np.array([float(n_tokens)]))[0])

    def decode(self, batch: int, kv_sum: int) -> float:
        """Decode attention (all layers) in ms for ``batch`` sequences holding ``kv_sum`` KV tokens
        (their mean KV length rounded up to a multiple of 64)."""
        if batch <= 0:
            return 0.0
        kv = kv_sum // batch
        k = (kv + KV_GRANULARITY - 1) // KV_GRANULARITY
        if batch <= self.max_batch and k < len(self._decode_rows[0]):
            return self._decode_rows[batch][k]
        return float(self._decode_at(np.array([float(batch)]), np.array([float(k * KV_GRANULARITY)]))[0, 0])

    def decode_skewed(self, batch: int, kv_sum: int, kv_max: int) -> float:
        """Decode attention (ms) with the skew model: ``t(mean) + skew_alpha * (t(max) - t(mean))``."""
        d = self.decode(batch, kv_sum)
        if self.skew_alpha == 0.0 or batch <= 1:
            return d
        return d + self.skew_alpha * (self.decode(batch, kv_max * batch) - d)

    def prefill(self, chunks: list[int], kvs: list[int]) -> float:
        """Prefill attention (all layers) in ms for chunks with the given cached KV lengths
        (Vidur's aggregation: sum of KV lengths rounded up to 64, root of the sum of squared chunks)."""
        if not chunks:
            return 0.0
        g = KV_GRANULARITY
        kv = sum((k + g - 1) // g * g for k in kvs)
        c = round(math.sqrt(sum(x * x for x in chunks))) if len(chunks) > 1 else chunks[0]
        return bilinear(self._pf_chunk, self._pf_kv, self._pf, float(c), float(kv))

    def seq(self, batch: int) -> float:
        """Per-sequence operators (LM head, sampler) in ms for a batch of ``batch`` sequences."""
        if batch <= self.max_batch:
            return self._seq[batch]
        return float(self._seq_at(np.array([float(batch)]))[0])

    def iteration_s(self, n_tokens: int, n_decode: int, decode_kv_sum: int, chunks: list[int],
                    chunk_kvs: list[int], batch: int) -> float:
        """Time in seconds of one iteration."""
        return (self.base(n_tokens) + self.decode(n_decode, decode_kv_sum) + self.prefill(chunks, chunk_kvs)
                + self.seq(batch)) * 1e-3

    def decode_run_ms(self, batch: int, kv_sums: np.ndarray) -> np.ndarray:
        """Vectorised time (ms) of consecutive decode-only iterations of ``batch`` sequences whose
        KV sums are ``kv_sums`` (one entry per iteration)."""
        kv = kv_sums // batch
        k = (kv + KV_GRANULARITY - 1) // KV_GRANULARITY
        ncol = self.decode_ms.shape[1]
        if batch <= self.max_batch and int(k.max(initial=0)) < ncol:
            dec = self.decode_ms[batch, k]
        else:
            dec = np.array([self.decode(batch, int(s)) for s in kv_sums])
        return self.base(batch) + self.seq(batch) + dec


# ----------------------------------------------------------------------------------------------
# loaders of the public formats
# ----------------------------------------------------------------------------------------------
def _read_csv(path: str | Path, required: list[str]):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InstanceFormatError(str(path), "file not found", fix="check the path")
    df = pd.read_csv(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InstanceFormatError(str(path), f"missing column(s) {missing}",
                                  fix=f"the file needs the columns {required}")
    for c in required:
        if c.startswith("time_stats") or c == "time_us":
            continue  # op columns may be empty for rows of another kind; checked per table
        col = pd.to_numeric(df[c], errors="coerce") if df[c].dtype == object and c not in ("collective", "layer") else df[c]
        if c in ("collective", "layer", "is_prefill"):
            continue
        bad = col.isna() | (col < 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InstanceFormatError(str(path), f"column {c!r} is empty, negative or not numeric", line=row + 2,
                                      fix="fill or remove that row")
    return df


def _median_by(df, key: str, col: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    g = df.groupby(key)[col].median().sort_index()
    if g.isna().any() or (g < 0).any():
        bad = g.index[(g.isna() | (g < 0)).to_numpy()][0]
        raise InstanceFormatError(source, f"column {col!r} is missing or negative at {key}={bad}",
                                  fix="re-profile that point or drop the row")
    return g.index.to_numpy(np.int64), g.to_numpy(np.float64)


def _grid(df, row: str, col: str, val: str, source: str, what: str, complete: bool):
    piv = df.pivot_table(index=row, columns=col, values=val, aggfunc="median").sort_index().sort_index(axis=1)
    z = piv.to_numpy(np.float64)
    if complete and np.isnan(z).any():
        i, j = np.argwhere(np.isnan(z))[0]
        n = int(np.isnan(z).sum())
        raise InstanceFormatError(source, f"{what}: the grid has {n} hole(s), e.g. {row}={piv.index[i]}, "
                                          f"{col}={piv.columns[j]} has no {val!r}",
                                  fix="profile every (row, column) pair of the grid")
    if (z[~np.isnan(z)] < 0).any():
        raise InstanceFormatError(source, f"{what}: negative times in column {val!r}", fix="re-profile")
    return piv.index.to_numpy(np.int64), piv.columns.to_numpy(np.int64), z


def load_vidur(mlp_csv: str | Path, attention_csv: str | Path, model: ModelConfig, tp: int = 1,
               all_reduce_csv: str | Path | None = None, send_recv_csv: str | Path | None = None,
               device: str = "", block_size: int = 16, notes: str = "") -> ProfileTables:
    """Read Vidur's profiling CSVs (times in ms per layer) for ``model`` at tensor parallel ``tp``.

    Rows are filtered by the model's shape columns as Vidur does (``n_head``, ``n_kv_head``,
    ``n_embd``, ``n_expanded_embd``, ``vocab_size``, ``num_tensor_parallel_workers``); duplicates
    are reduced to their median.
    """
    src = str(mlp_csv)
    shape = ["n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size", "num_tokens",
             "num_tensor_parallel_workers"]
    ops = [o for o in TOKEN_OPS if o != "post_attention_layernorm" or model.post_attn_norm]
    df = _read_csv(mlp_csv, shape + [f"time_stats.{o}.median" for o in ops])
    df = df[(df.n_head == model.num_q_heads) & (df.n_kv_head == model.num_kv_heads)
            & (df.n_embd == model.embedding_dim) & (df.n_expanded_embd == model.mlp_hidden_dim)
            & (df.vocab_size == model.vocab_size) & (df.num_tensor_parallel_workers == tp)]
    if len(df) == 0:
        raise InstanceFormatError(src, f"no rows for model {model.name} (heads {model.num_q_heads}/"
                                       f"{model.num_kv_heads}, hidden {model.embedding_dim}, "
                                       f"mlp {model.mlp_hidden_dim}, vocab {model.vocab_size}) at tp={tp}",
                                  fix="use the mlp.csv profiled for this model and TP degree")
    df = df.assign(_tok=sum(df[f"time_stats.{o}.median"].fillna(0.0) for o in ops))
    tokens, token_ms = _median_by(df, "num_tokens", "_tok", src)
    asrc = str(attention_csv)
    adf = _read_csv(attention_csv, ["batch_size", "prefill_chunk_size", "kv_cache_size", "is_prefill",
                                    "num_tensor_parallel_workers", "n_embd", "n_q_head", "n_kv_head",
                                    "time_stats.attn_decode.median", "time_stats.attn_prefill.median"])
    adf = adf[(adf.n_embd == model.embedding_dim) & (adf.n_q_head == model.num_q_heads)
              & (adf.n_kv_head == model.num_kv_heads) & (adf.num_tensor_parallel_workers == tp)]
    if "block_size" in adf.columns:
        adf = adf[adf.block_size == block_size]
    if len(adf) == 0:
        raise InstanceFormatError(asrc, f"no attention rows for model {model.name} at tp={tp}, block {block_size}",
                                  fix="use the attention.csv profiled for this model and TP degree")
    is_prefill = adf.prefill_chunk_size > 0
    dec = adf[~is_prefill]
    pre = adf[is_prefill]
    if len(dec) == 0 or len(pre) == 0:
        raise InstanceFormatError(asrc, "needs both decode rows (prefill_chunk_size 0) and prefill rows",
                                  fix="profile both attention phases")
    d_bs, d_kv, d_ms = _grid(dec, "batch_size", "kv_cache_size", "time_stats.attn_decode.median", asrc,
                             "decode attention", complete=True)
    p_c, p_kv, p_ms = _grid(pre, "prefill_chunk_size", "kv_cache_size", "time_stats.attn_prefill.median",
                            asrc, "prefill attention", complete=False)
    if "time_stats.attn_kv_cache_save.median" in adf.columns:
        kdf = adf.assign(num_tokens=np.maximum(adf.prefill_chunk_size, adf.batch_size),
                         _kv=adf["time_stats.attn_kv_cache_save.median"].fillna(0.0))
        ks_t, ks_ms = _median_by(kdf, "num_tokens", "_kv", asrc)
    else:
        ks_t, ks_ms = np.array([1], np.int64), np.array([0.0])
    t = ProfileTables(tokens=tokens, token_ms=token_ms, kv_save_tokens=ks_t, kv_save_ms=ks_ms,
                      decode_bs=d_bs, decode_kv=d_kv, decode_ms=d_ms, prefill_chunk=p_c, prefill_kv=p_kv,
                      prefill_ms=p_ms,
                      meta={"format": "vidur", "device": device, "model": model.name, "tp": tp,
                            "source": f"{mlp_csv}; {attention_csv}",
                            "attention_backend": str(adf.attention_backend.iloc[0])
                            if "attention_backend" in adf.columns else "", "notes": notes})
    if tp > 1 and all_reduce_csv is not None:
        rdf = _read_csv(all_reduce_csv, ["num_workers", "devices_per_node", "size", "collective",
                                         "time_stats.all_reduce.median"])
        rdf = rdf[(rdf.num_workers == tp) & (rdf.devices_per_node == tp) & (rdf.collective == "all_reduce")]
        if len(rdf) == 0:
            raise InstanceFormatError(str(all_reduce_csv), f"no all_reduce rows for {tp} workers on one node",
                                      fix="use a network profile with that many devices per node")
        rdf = rdf.assign(num_tokens=(rdf["size"] / model.embedding_dim / 2).round().astype(np.int64))
        t.allreduce_tokens, t.allreduce_ms = _median_by(rdf, "num_tokens", "time_stats.all_reduce.median",
                                                        str(all_reduce_csv))
        t.allreduce_ms = t.allreduce_ms + 0.02  # Vidur's nccl_cpu_launch_overhead_ms
    if send_recv_csv is not None:
        sdf = _read_csv(send_recv_csv, ["devices_per_node", "size", "collective", "time_stats.send_recv.median"])
        sdf = sdf[(sdf.collective == "send_recv") & (sdf.devices_per_node == 2)]
        if len(sdf):
            sdf = sdf.assign(num_tokens=(sdf["size"] / model.embedding_dim / 2).round().astype(np.int64))
            t.sendrecv_tokens, t.sendrecv_ms = _median_by(sdf, "num_tokens", "time_stats.send_recv.median",
                                                          str(send_recv_csv))
    return t


def load_llmservingsim(tp_dir: str | Path, model: ModelConfig, tp: int = 1, device: str = "",
                       notes: str = "") -> ProfileTables:
    """Read LLMServingSim's layer-wise profile directory (``dense.csv``, ``attention.csv``,
    ``per_sequence.csv``; times in microseconds for one layer, vLLM's profiler).

    Mixed prefill+decode attention is modelled as the sum of the prefill-only and decode-only
    parts; the prefill grid's unmeasured cells (it interleaves two sub-grids) are filled by linear
    interpolation along the KV axis.
    """
    tp_dir = Path(tp_dir)
    dsrc = str(tp_dir / "dense.csv")
    dense = _read_csv(tp_dir / "dense.csv", ["layer", "tokens", "time_us"])
    layer_ops = {"qkv_proj": 1, "o_proj": 1, "gate_up_proj": 1, "act_fn": 1, "down_proj": 1,
                 "rotary_emb": 1, "layernorm": 2 if model.post_attn_norm else 1}
    iter_ops = ("embedding", "final_layernorm")
    have = set(dense.layer.unique())
    if "qk_norm" in have:  # Qwen3: RMS norm of the queries and keys
        layer_ops["qk_norm"] = 1
    moe_csv = tp_dir / "moe.csv"
    if model.is_moe:  # the MLP is the MoE block (moe.csv), not dense projections
        for o in ("gate_up_proj", "act_fn", "down_proj"):
            layer_ops.pop(o)
        if not moe_csv.is_file():
            raise InstanceFormatError(str(moe_csv), f"model {model.name} is MoE ({model.num_experts} experts) "
                                                    "but the profile has no moe.csv",
                                      fix="profile the MoE layer (columns tokens, activated_experts, time_us)")
    missing = [o for o in layer_ops if o not in have]
    if missing:
        raise InstanceFormatError(dsrc, f"column 'layer' lacks operator(s) {missing}",
                                  fix=f"profile the operators {sorted(layer_ops)}")
    piv = dense.pivot_table(index="tokens", columns="layer", values="time_us", aggfunc="median").sort_index()
    if piv[list(layer_ops)].isna().any().any():
        raise InstanceFormatError(dsrc, "the token grid has holes (an operator lacks some token counts)",
                                  fix="profile every operator at every token count")
    tok_us = sum(piv[o] * k for o, k in layer_ops.items())
    it_cols = [o for o in iter_ops if o in piv.columns]
    it_us = piv[it_cols].fillna(0.0).sum(axis=1) if it_cols else None
    asrc = str(tp_dir / "attention.csv")
    att = _read_csv(tp_dir / "attention.csv", ["prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us"])
    dec = att[(att.prefill_chunk == 0) & (att.n_decode > 0)]
    pre = att[(att.prefill_chunk > 0) & (att.n_decode == 0)]
    if len(dec) == 0 or len(pre) == 0:
        raise InstanceFormatError(asrc, "needs decode-only rows (prefill_chunk 0) and prefill-only rows (n_decode 0)",
                                  fix="profile both attention phases")
    d_bs, d_kv, d_us = _grid(dec, "n_decode", "kv_decode", "time_us", asrc, "decode attention", complete=True)
    # the decode grid starts at kv 16; add kv 0 equal to the first column (flat)
    if d_kv[0] > 0:
        d_kv = np.concatenate([[0], d_kv])
        d_us = np.concatenate([d_us[:, :1], d_us], axis=1)
    p_c, p_kv, p_us = _grid(pre, "prefill_chunk", "kv_prefill", "time_us", asrc, "prefill attention",
                            complete=False)
    p_us = _fill_rows(p_us, p_kv.astype(float), asrc, "prefill attention")
    t = ProfileTables(tokens=piv.index.to_numpy(np.int64), token_ms=tok_us.to_numpy() * 1e-3,
                      kv_save_tokens=np.array([1], np.int64), kv_save_ms=np.array([0.0]),
                      decode_bs=d_bs, decode_kv=d_kv, decode_ms=d_us * 1e-3, prefill_chunk=p_c,
                      prefill_kv=p_kv, prefill_ms=p_us * 1e-3,
                      meta={"format": "llmservingsim", "device": device, "model": model.name, "tp": tp,
                            "source": str(tp_dir), "attention_backend": "vLLM (measured)", "notes": notes,
                            # vLLM's RowParallelLinear (o_proj, down_proj) runs the all-reduce inside the
                            # timed module, so the tp>1 tables already include it
                            "allreduce_in_ops": tp > 1})
    if it_us is not None:
        t.iter_tokens, t.iter_ms = piv.index.to_numpy(np.int64), it_us.to_numpy() * 1e-3
    if model.is_moe:
        msrc = str(moe_csv)
        mdf = _read_csv(moe_csv, ["tokens", "activated_experts", "time_us"])
        m_t, m_x, m_us = _grid(mdf, "tokens", "activated_experts", "time_us", msrc, "MoE layer", complete=False)
        # unmeasured cells are more experts than tokens x top-k can activate: flat beyond the last measured
        t.moe_tokens, t.moe_experts = m_t, m_x
        t.moe_ms = _fill_rows(m_us, m_x.astype(float), msrc, "MoE layer") * 1e-3
        t.meta["moe_source"] = msrc
    ps = tp_dir / "per_sequence.csv"
    if ps.is_file():
        sdf = _read_csv(ps, ["layer", "sequences", "time_us"])
        sp = sdf.pivot_table(index="sequences", columns="layer", values="time_us", aggfunc="median").sort_index()
        t.seq_count, t.seq_ms = sp.index.to_numpy(np.int64), sp.fillna(0.0).sum(axis=1).to_numpy() * 1e-3
    return t


# ----------------------------------------------------------------------------------------------
# shipped profiles
# ----------------------------------------------------------------------------------------------
def profile_name(device: str, model: str, tp: int = 1) -> str:
    return f"{device}__{model}__tp{tp}"


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.npz"))


@lru_cache(maxsize=64)
def load_profile(name_or_path: str) -> ProfileTables:
    """Profile tables by shipped name (``a100__llama2-7b__tp1``) or ``.npz`` path."""
    p = Path(str(name_or_path))
    if p.suffix == ".npz" and p.is_file():
        return ProfileTables.load(p)
    f = PROFILE_DIR / f"{name_or_path}.npz"
    if not f.is_file():
        raise UnknownNameError("latency profile (device__model__tpN)", str(name_or_path), shipped_profiles())
    return ProfileTables.load(f)


@lru_cache(maxsize=64)
def latency_model(device: str, model: str, tp: int = 1, pp: int = 1, cpu_overhead_ms: float = 0.0,
                  profile: str | None = None, cpu_per_seq_ms: float = 0.0, ep: int = 1, moe_skew: float = 0.0,
                  skew_alpha: float = 0.0, cpu_per_token_ms: float = 0.0) -> LatencyModel:
    """The :class:`LatencyModel` of a shipped (or given) profile; cached per configuration."""
    from schedgym.envs.llmserve.configs import load_model

    m = load_model(model)
    tables = load_profile(profile or profile_name(device, model, tp))
    return LatencyModel(tables, m, pp=pp, cpu_overhead_ms=cpu_overhead_ms, cpu_per_seq_ms=cpu_per_seq_ms, ep=ep,
                        moe_skew=moe_skew, skew_alpha=skew_alpha, cpu_per_token_ms=cpu_per_token_ms)


def active_experts(n: np.ndarray, num_experts: int, top_k: int, ep: int = 1, skew: float = 0.0) -> np.ndarray:
    """Expected experts one expert-parallel rank activates for ``n`` tokens per rank (float array).

    Expert ``e`` (popularity rank e = 1..E) is chosen by a token with probability ``q_e = min(1, k p_e)``
    where ``p_e ~ e^-skew`` (uniform for skew 0); a rank holds ``E / ep`` experts and sees the tokens
    of all ``ep`` ranks, so it activates on average ``(1 / ep) sum_e 1 - (1 - q_e)^(n ep)``."""
    p = np.arange(1, num_experts + 1, dtype=np.float64) ** -float(skew)
    q = np.minimum(1.0, top_k * p / p.sum())
    n = np.asarray(n, dtype=np.float64)
    miss = np.exp(np.outer(n * ep, np.log1p(-np.minimum(q, 1 - 1e-12))))
    return (1.0 - miss).sum(axis=1) / ep
