"""The validator's own reading of the iteration latency model and of a replica's batch limits.

Written from the model's definition (the docstring of :mod:`schedgym.envs.llmserve.profiles`), not
from the simulator's code: it reads the same profile tables (the data) and interpolates them itself,
point by point, where the simulator precomputes dense arrays. Used by
:func:`schedgym.envs.llmserve.validate.replay` to check, for every iteration of a trace:

* its duration: the profile's time of its batch plus the copy time of the KV blocks it swapped,
  within a relative 1e-9 (plus a few ulps of the clock);
* the batch cap: at most ``batch_cap`` requests in the batch;
* the token budget: vLLM v0 batches with prefills hold at most ``max_tokens_in_batch`` tokens as
  batch size x longest chunk; Sarathi batches with a prefill chunk hold at most ``chunk_size``
  tokens in all; Orca has no token budget; vLLM v1 batches hold at most ``chunk_size`` tokens in all
  (decodes included), and a prefill chunk shorter than the rest of its request's known context only
  in a batch that fills that budget exactly (chunking happens only at the budget's edge).

MoE models add, per layer, the measured MoE time at the batch's token count and the experts the rank
is expected to activate: expert ``e`` of ``E`` (popularity ~ ``e^-moe_skew``) is picked by a token
with probability ``min(1, top_k p_e)``, a rank holds ``E / ep`` of them and sees ``ep`` times its
tokens. Decode attention of uneven KV lengths is ``t(mean) + skew_alpha (t(max) - t(mean))``; the CPU
overhead is ``cpu_overhead_ms + cpu_overhead_per_seq_ms x requests + cpu_overhead_per_token_ms x tokens``.

Times are in milliseconds unless a name ends in ``_s``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.llmserve.configs import load_device, load_model
from schedgym.envs.llmserve.profiles import load_profile
from schedgym.envs.llmserve.types import ReplicaSpec

ROUND_TOKENS = 8  # the token-level operators see the token count rounded up to a multiple of 8
KV_STEP = 64  # attention sees KV lengths rounded up to a multiple of 64
REL_TOL = 1e-9


def _weight(x: float, xp: list[float], clamp: bool) -> tuple[int, float]:
    """(j, w) such that the value at ``x`` is ``(1 - w) f[j] + w f[j + 1]``: flat below ``xp[0]``,
    linear beyond ``xp[-1]`` (slope of the last segment) unless ``clamp`` (then flat too)."""
    n = len(xp)
    if n == 1 or x <= xp[0]:
        return 0, 0.0
    if x >= xp[-1]:
        if clamp:
            return n - 2, 1.0
        return n - 2, (x - xp[n - 2]) / (xp[n - 1] - xp[n - 2])
    j = bisect_right(xp, x) - 1
    return j, (x - xp[j]) / (xp[j + 1] - xp[j])


def _line(x: float, xp: list[float], fp: list[float]) -> float:
    """Piecewise linear through (xp, fp), flat below, linear beyond the last point."""
    j, w = _weight(x, xp, clamp=False)
    if len(xp) == 1:
        return fp[0]
    return (1.0 - w) * fp[j] + w * fp[j + 1]


def _grid(x: float, y: float, xs: list[float], ys: list[float], z: np.ndarray, clamp: bool) -> float:
    """Tensor-product linear interpolation of ``z`` (len(xs), len(ys)) at (x, y)."""
    i, wx = _weight(x, xs, clamp)
    j, wy = _weight(y, ys, clamp)
    i1, j1 = min(i + 1, len(xs) - 1), min(j + 1, len(ys) - 1)
    return float((1 - wx) * (1 - wy) * z[i, j] + wx * (1 - wy) * z[i1, j] + (1 - wx) * wy * z[i, j1]
                 + wx * wy * z[i1, j1])


def _fill_along_columns(z: np.ndarray, cols: list[float]) -> np.ndarray:
    """The prefill grid with each row's unmeasured (NaN) cells filled linearly along the KV axis,
    flat beyond its measured cells."""
    out = np.array(z, dtype=float)
    c = np.asarray(cols, float)
    for row in out:
        ok = ~np.isnan(row)
        if ok.any() and not ok.all():
            row[~ok] = np.interp(c[~ok], c[ok], row[ok])
    return out


def _table(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(x)]


@dataclass
class ReplicaTiming:
    """Iteration time and batch limits of one replica spec (see the module docstring).

    Args:
        spec: the replica.
    """

    spec: ReplicaSpec
    _decode_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        s = self.spec
        t = load_profile(s.profile or f"{s.device}__{s.model}__tp{s.tp}")
        m, d = load_model(s.model), load_device(s.device)
        self.layers = m.num_layers // s.pp
        self.tokens, self.token_ms = _table(t.tokens), _table(t.token_ms)
        self.kvs_tokens, self.kvs_ms = _table(t.kv_save_tokens), _table(t.kv_save_ms)
        tp = int(t.meta.get("tp", 1))
        self.allreduce = (_table(t.allreduce_tokens), _table(t.allreduce_ms)) \
            if tp > 1 and not t.meta.get("allreduce_in_ops") else None
        self.sendrecv = (_table(t.sendrecv_tokens), _table(t.sendrecv_ms)) if s.pp > 1 else None
        self.per_iter = (_table(t.iter_tokens), _table(t.iter_ms)) if len(t.iter_tokens) else None
        self.per_seq = (_table(t.seq_count), _table(t.seq_ms)) if len(t.seq_count) else None
        self.dec_bs, self.dec_kv, self.dec_ms = _table(t.decode_bs), _table(t.decode_kv), np.asarray(t.decode_ms, float)
        self.pf_chunk, self.pf_kv = _table(t.prefill_chunk), _table(t.prefill_kv)
        self.pf_ms = _fill_along_columns(t.prefill_ms, self.pf_kv)
        self.moe = None
        if m.num_experts:
            self.moe = (_table(t.moe_tokens), _table(t.moe_experts), np.asarray(t.moe_ms, float))
            self._moe_model = (m.num_experts, m.experts_per_token)
        self._moe_cache: dict[int, float] = {}
        head_dim = m.attn_head_dim if m.attn_head_dim else m.embedding_dim // m.num_q_heads
        # KV bytes of one block on one device (its shard of the layers and KV heads), over the host link
        if m.kv_lora_rank:  # MLA: the latent and the RoPE key, whole on every worker
            block_bytes = self.layers * (m.kv_lora_rank + m.qk_rope_head_dim) * m.dtype_bytes * s.block_size
        else:
            block_bytes = (2 * self.layers * -(-m.num_kv_heads // s.tp) * head_dim
                           * m.dtype_bytes * s.block_size)
        self.swap_s_per_block = block_bytes / (d.pcie_gbps * 1e9)

    # -- the profile's time of a batch --------------------------------------------------------------
    def token_part_ms(self, n_tokens: int) -> float:
        """Token-level operators, KV save, communication, per-iteration operators and CPU overhead."""
        n8 = -(-n_tokens // ROUND_TOKENS) * ROUND_TOKENS
        per_layer = _line(n8, self.tokens, self.token_ms) + _line(n_tokens, self.kvs_tokens, self.kvs_ms)
        if self.allreduce is not None:
            per_layer += 2 * _line(n8, *self.allreduce)
        ms = self.layers * per_layer
        if self.sendrecv is not None:
            ms += _line(n8, *self.sendrecv)
        if self.per_iter is not None:
            ms += _line(n_tokens, *self.per_iter)
        if self.moe is not None:
            ms += self.layers * self.moe_layer_ms(n_tokens)
        return ms + self.spec.cpu_overhead_ms + self.spec.cpu_overhead_per_token_ms * n_tokens

    def moe_layer_ms(self, n_tokens: int) -> float:
        """One MoE layer for ``n_tokens`` tokens on this rank (see the module docstring)."""
        if n_tokens in self._moe_cache:
            return self._moe_cache[n_tokens]
        E, k = self._moe_model
        ep, skew = self.spec.ep, self.spec.moe_skew
        weights = [1.0 / (e + 1) ** skew for e in range(E)]
        total = sum(weights)
        seen = n_tokens * ep
        active = 0.0
        for w in weights:
            q = min(1.0, k * w / total)
            active += 1.0 - (1.0 - q) ** seen if q < 1.0 else 1.0
        active /= ep
        toks, experts, grid = self.moe
        column = [_line(n_tokens, toks, list(grid[:, c])) for c in range(len(experts))]
        if active <= experts[0]:
            v = column[0]
        elif active >= experts[-1]:
            v = column[-1]
        else:
            v = _line(active, experts, column)
        self._moe_cache[n_tokens] = v
        return v

    def decode_ms(self, kv_lengths: list[int]) -> float:
        """Decode attention of sequences with these KV lengths (each counting the token it feeds)."""
        b = len(kv_lengths)
        mean_ms = self._uniform_decode_ms(b, sum(kv_lengths) // b)
        alpha = self.spec.skew_alpha
        if alpha and b > 1:
            return mean_ms + alpha * (self._uniform_decode_ms(b, max(kv_lengths)) - mean_ms)
        return mean_ms

    def _uniform_decode_ms(self, b: int, kv_each: int) -> float:
        kv = -(-kv_each // KV_STEP) * KV_STEP
        key = (b, kv)
        if key not in self._decode_cache:
            self._decode_cache[key] = self.layers * _grid(b, kv, self.dec_bs, self.dec_kv, self.dec_ms, clamp=False)
        return self._decode_cache[key]

    def prefill_ms(self, chunks: list[int], cached: list[int]) -> float:
        """Prefill attention of chunks with these already-cached KV lengths."""
        kv = sum(-(-c // KV_STEP) * KV_STEP for c in cached)
        size = chunks[0] if len(chunks) == 1 else round(math.sqrt(sum(c * c for c in chunks)))
        return self.layers * _grid(size, kv, self.pf_chunk, self.pf_kv, self.pf_ms, clamp=True)

    def batch_ms(self, tokens: list[int], decode_kv: list[int], chunks: list[int], cached: list[int]) -> float:
        """The profile's time of a batch: ``tokens`` per entry, the decodes' KV lengths, the prefill
        chunks and their cached KV lengths."""
        ms = self.token_part_ms(sum(tokens)) + self.spec.cpu_overhead_per_seq_ms * len(tokens)
        if self.per_seq is not None:
            ms += _line(len(tokens), *self.per_seq)
        if decode_kv:
            ms += self.decode_ms(decode_kv)
        if chunks:
            ms += self.prefill_ms(chunks, cached)
        return ms

    # -- checks -------------------------------------------------------------------------------------
    def check_limits(self, i: int, rp: int, tokens: list[int], chunks: list[int], cut_short: bool = False) -> None:
        """Batch cap and token budget of iteration ``i`` on replica ``rp``; ``cut_short``: a prefill
        chunk stops before the end of its request's known context."""
        s = self.spec
        if len(tokens) > s.batch_cap:
            raise InfeasibleSolution(f"iteration {i} on replica {rp}: a batch of {len(tokens)} requests, over its "
                                     f"batch cap of {s.batch_cap}")
        if s.scheduler == "vllm_v1":
            n = sum(tokens)
            if n > s.chunk_size:
                raise InfeasibleSolution(f"iteration {i} on replica {rp}: {n} tokens, over the vLLM v1 token budget "
                                         f"max_num_batched_tokens (chunk_size) = {s.chunk_size}")
            if cut_short and n != s.chunk_size:
                raise InfeasibleSolution(f"iteration {i} on replica {rp}: a prefill chunk is cut short with {n} of "
                                         f"the {s.chunk_size}-token budget used (vLLM v1 chunks only to fill it)")
            return
        if not chunks:
            return
        if s.scheduler == "vllm_v0" and len(tokens) * max(tokens) > s.max_tokens_in_batch:
            raise InfeasibleSolution(f"iteration {i} on replica {rp}: {len(tokens)} requests x longest prefill "
                                     f"{max(tokens)} tokens = {len(tokens) * max(tokens)} tokens, over the token budget "
                                     f"max_tokens_in_batch={s.max_tokens_in_batch}")
        if s.scheduler == "sarathi" and sum(tokens) > s.chunk_size:
            raise InfeasibleSolution(f"iteration {i} on replica {rp}: {sum(tokens)} tokens with a prefill chunk, over "
                                     f"the token budget chunk_size={s.chunk_size}")

    def check_duration(self, i: int, rp: int, start: float, end: float, batch_ms: float, swap_blocks: int) -> None:
        """The iteration lasts the profile's time of its batch plus its swap time (relative 1e-9)."""
        want = batch_ms * 1e-3 + swap_blocks * self.swap_s_per_block
        got = end - start
        slack = REL_TOL * want + 4 * float(np.spacing(max(abs(start), abs(end))))
        if not abs(got - want) <= slack:
            swap = f" + {swap_blocks} swapped blocks x {self.swap_s_per_block:.3e} s" if swap_blocks else ""
            raise InfeasibleSolution(f"iteration {i} on replica {rp} [{start:.9f}, {end:.9f}]: duration {got:.12f} s, "
                                     f"but the profile gives {batch_ms:.9f} ms for its batch{swap} = {want:.12f} s")
