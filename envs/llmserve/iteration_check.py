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
  tokens in all; Orca has no token budget.

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
        # KV bytes of one block on one device (its shard of the layers and KV heads), over the host link
        block_bytes = (2 * self.layers * -(-m.num_kv_heads // s.tp) * (m.embedding_dim // m.num_q_heads)
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
        return ms + self.spec.cpu_overhead_ms

    def decode_ms(self, kv_lengths: list[int]) -> float:
        """Decode attention of sequences with these KV lengths (each counting the token it feeds)."""
        b = len(kv_lengths)
        kv = -(-(sum(kv_lengths) // b) // KV_STEP) * KV_STEP
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
        ms = self.token_part_ms(sum(tokens))
        if self.per_seq is not None:
            ms += _line(len(tokens), *self.per_seq)
        if decode_kv:
            ms += self.decode_ms(decode_kv)
        if chunks:
            ms += self.prefill_ms(chunks, cached)
        return ms

    # -- checks -------------------------------------------------------------------------------------
    def check_limits(self, i: int, rp: int, tokens: list[int], chunks: list[int]) -> None:
        """Batch cap and token budget of iteration ``i`` on replica ``rp``."""
        s = self.spec
        if len(tokens) > s.batch_cap:
            raise InfeasibleSolution(f"iteration {i} on replica {rp}: a batch of {len(tokens)} requests, over its "
                                     f"batch cap of {s.batch_cap}")
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
