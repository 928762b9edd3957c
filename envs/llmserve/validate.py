"""Independent check of a serving trace, written from the problem definition (not the simulator).

A request's model context is its prompt followed by the tokens it has generated. An iteration entry
``(request, k)`` feeds ``k`` more context tokens through the model, writing their KV; once the
request has fed its whole known context, the iteration emits one new output token. A recompute
preemption drops the request's KV (it feeds its context again later); a swap moves the KV to host
memory and back. From the iteration log alone this module recomputes every request's emission
times and checks:

* token conservation: every served request emits exactly ``output`` tokens, none after its last;
  no entry feeds tokens that are not known yet;
* causality: a request is processed only after its arrival, only on the replica it was routed to,
  iterations of one replica do not overlap, and first token <= completion (TTFT <= end-to-end);
* the reported first-token and completion times equal the recomputed ones;
* KV capacity: at the end of every iteration the blocks of the KV held by the requests resident on
  that replica (``ceil(KV tokens / block_size)`` each) do not exceed the replica's blocks, and those
  blocks do not exceed what the device memory allows (memory x utilisation - weights - activation
  reserve, by the replica's ``kv_capacity`` rule);
* what moves latencies (:mod:`schedgym.envs.llmserve.iteration_check`, which reads the profile
  tables and interpolates them itself, sharing no code with the simulator): every iteration lasts
  the profile's time of its batch plus the copy time of the KV blocks it swapped (relative 1e-9),
  swaps only what the swap events at its start can move, holds at most ``batch_cap`` requests and
  keeps the token budget (vLLM v0: batch size x longest prefill <= ``max_tokens_in_batch``;
  Sarathi: tokens <= ``chunk_size`` when a prefill chunk is in the batch);
* rejections: only requests that can never fit the replica are rejected, unless admission control
  rejected them (``shed``; its decisions are checked by :mod:`schedgym.envs.llmserve.validate_admission`).

Prefill/decode disaggregation (``instance.pd``): a request routed to a prefill replica runs its
prompt there and emits its first token there (TTFT ends on the prefill replica); then, if it wants
more tokens, its KV cache (``tx_tokens`` tokens) moves to a decode replica. The transfer is checked
against the problem: it carries exactly the context the prefill wrote (its first token emitted),
starts no earlier than that first token, takes at least ``bytes / bandwidth + latency`` with
``bytes = tokens x 2 x layers x KV heads x head dim x bytes per element`` (computed here from the
model config), and transfers of one prefill replica's link do not overlap in their
``bytes / bandwidth`` busy time. The request is processed on its prefill replica only before the
transfer starts and on the decode replica only after it ends (causality), never decodes on a
prefill replica, and token conservation holds across the two replicas. The KV check counts the copy
on the decode replica from the transfer's start and the copy on the prefill replica until its end,
so KV never exceeds capacity on either side.
"""

from __future__ import annotations

import math

import numpy as np

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.llmserve.iteration_check import ReplicaTiming
from schedgym.envs.llmserve.types import LLMServeInstance, LLMServeSolution
from schedgym.envs.llmserve.validate_admission import check_admission
from schedgym.envs.llmserve.validate_prefix import check_prefix

EPS = 1e-9


def _max_blocks(inst: LLMServeInstance, r: int) -> tuple[int, str]:
    """KV blocks the memory allows replica ``r`` (the problem's definition of capacity) and how.

    Device memory x utilisation, less the weights of the replica's shard and the activation reserve,
    divided by the KV bytes of one token (``memory`` rule) or, under Vidur's rule, into whole slots of
    the longest request (``kv_capacity=vidur``)."""
    from schedgym.envs.llmserve.configs import load_device, load_model

    s = inst.replicas[r]
    if s.num_blocks is not None:
        return int(s.num_blocks), f"num_blocks={s.num_blocks}"
    m, d = load_model(s.model), load_device(s.device)
    head = m.attn_head_dim or m.embedding_dim // m.num_q_heads
    kv_heads = -(-m.num_kv_heads // s.tp)
    q = m.num_q_heads // s.tp
    ffn = (m.num_experts * m.expert_mlp_dim + m.shared_expert_mlp_dim) if m.num_experts else m.mlp_hidden_dim
    w_layer = (m.embedding_dim * head * (2 * q + 2 * kv_heads) + (3 if m.use_gated_mlp else 2) * m.embedding_dim * ffn // s.tp
               + m.embedding_dim * m.num_experts)
    weights = m.dtype_bytes * w_layer * (m.num_layers // s.pp)
    reserve = s.activation_reserve_gb * 1024 ** 3
    free = d.memory_gb * 1024 ** 3 * s.memory_utilization - weights - reserve
    how = (f"{d.memory_gb} GiB x {s.memory_utilization} - {weights / 1024 ** 3:.2f} GiB of weights - activation "
           f"reserve {s.activation_reserve_gb} GiB")
    if s.kv_capacity == "vidur":
        max_len = int(inst.meta.get("vidur_max_tokens") or m.max_model_len)
        slot = _kv_token_bytes(m, kv_heads, head, m.num_layers) * max_len
        return int(free // slot) * s.pp * (max_len // s.block_size), how + f" in slots of {max_len} tokens"
    per_tok = _kv_token_bytes(m, kv_heads, head, m.num_layers // s.pp)
    return int(free // per_tok) // s.block_size, how


def kv_bytes_per_token(inst: LLMServeInstance, r: int) -> int:
    """Bytes of KV cache of one token of the whole model of replica ``r``: 2 (K and V) x layers x KV
    heads x head dim x bytes per element (the problem's definition of what a transfer carries)."""
    from schedgym.envs.llmserve.configs import load_model

    m = load_model(inst.replicas[r].model)
    return _kv_token_bytes(m, m.num_kv_heads, m.attn_head_dim or m.embedding_dim // m.num_q_heads, m.num_layers)


def _kv_token_bytes(m, kv_heads: int, head: int, layers: int) -> int:
    """KV bytes of one token over ``layers`` layers: K and V of ``kv_heads`` heads, or with MLA the
    latent (``kv_lora_rank``) and the RoPE key (``qk_rope_head_dim``) of every layer."""
    if m.kv_lora_rank:
        return layers * (m.kv_lora_rank + m.qk_rope_head_dim) * m.dtype_bytes
    return 2 * layers * kv_heads * head * m.dtype_bytes


def replay(instance: LLMServeInstance, sol: LLMServeSolution, check: bool = True,
           want_token_times: bool = False) -> dict:
    """Replay the iteration log (in order of iteration ends). Returns ``gen`` (N,), ``first`` (N,),
    ``last`` (N,), per-replica KV block usage at each iteration end (``kv_blocks`` (I,)), and
    optionally ``token_times`` (a list of per-request emission-time lists). Raises
    :class:`InfeasibleSolution` when ``check``."""
    inst = instance
    n = inst.n_requests
    prompt = inst.prompt.tolist()
    output = inst.output.tolist()
    arrival = inst.arrival.tolist()
    rep_of = sol.replica.tolist()
    loc = list(rep_of)  # the replica holding each request's KV (changes when a KV transfer ends)
    bs = int(sol.block_size)
    R = inst.n_replicas
    nblocks = sol.num_blocks.tolist()
    ctx = [0] * n  # KV tokens written since the last restart
    gen = [0] * n
    first = [math.nan] * n
    last = [math.nan] * n
    resident = [False] * n
    started = [False] * n
    kv_used = [0] * R
    last_end = [-math.inf] * R
    times: list[list[float]] | None = [[] for _ in range(n)] if want_token_times else None
    ev_order = np.argsort(sol.ev_time, kind="stable")
    ev_t = sol.ev_time[ev_order].tolist()
    ev_r = sol.ev_req[ev_order].tolist()
    ev_k = sol.ev_kind[ev_order].tolist()
    ne, ei = len(ev_t), 0
    # prefix-cache hits: the request starts with that many tokens of KV already written
    h_order = np.argsort(sol.hit_time, kind="stable")
    hit_t, hit_r = sol.hit_time[h_order].tolist(), sol.hit_req[h_order].tolist()
    hit_k = sol.hit_tokens[h_order].tolist()
    nh, hi = len(hit_t), 0
    shared_kv = [s.prefix_caching for s in inst.replicas]  # distinct blocks checked by validate_prefix
    it_rep = sol.it_replica.tolist()
    it_s = sol.it_start.tolist()
    it_e = sol.it_end.tolist()
    ptr = sol.it_ptr.tolist()
    req = sol.it_req.tolist()
    tok = sol.it_tokens.tolist()
    kv_trace = np.zeros(len(it_s), np.int64)
    swaps = sol.it_swap_blocks.tolist() if sol.it_swap_blocks is not None else [0] * len(it_s)
    if check and len(swaps) != len(it_s):
        raise InfeasibleSolution(f"solution.it_swap_blocks has {len(swaps)} entries, expected {len(it_s)} (one per iteration)")
    timing: dict = {}  # ReplicaSpec -> ReplicaTiming (the validator's own reading of the profile)
    swap_bound: dict[tuple[int, float], int] = {}  # (replica, time) -> most blocks its swap events can move
    decoding = [False] * n  # the request has fed its whole known context (its next entry is a decode)
    # KV transfers (disaggregation): per request its transfer; a time-ordered stream of transfer
    # starts (kind 0: the copy appears on the decode replica) and ends (kind 1: the request moves
    # there, the prefill replica's copy is freed)
    n_prefill = inst.pd.n_prefill if inst.pd is not None else 0  # replicas that must not decode
    tx_req = sol.tx_req.tolist()
    tx_src, tx_dst, tx_tok = sol.tx_src.tolist(), sol.tx_dst.tolist(), sol.tx_tokens.tolist()
    tx_s, tx_e = sol.tx_start.tolist(), sol.tx_end.tolist()
    tx_of: dict[int, int] = {}
    for x, r in enumerate(tx_req):
        tx_of.setdefault(r, x)
    txev = sorted([(tx_s[x], 0, x) for x in range(len(tx_req))] + [(tx_e[x], 1, x) for x in range(len(tx_req))])
    nt, ti = len(txev), 0

    def fail(msg: str):
        if check:
            raise InfeasibleSolution(msg)

    def transfers_until(t: float) -> None:
        nonlocal ti
        while ti < nt and txev[ti][0] <= t:
            _, kind, x = txev[ti]
            ti += 1
            r, src, dst, tk = tx_req[x], tx_src[x], tx_dst[x], tx_tok[x]
            if not (0 <= src < R and 0 <= dst < R):
                fail(f"transfer {x} of request {r}: replicas {src} -> {dst} out of range 0..{R - 1}")
                continue
            if kind == 0:
                kv_used[dst] += -(-tk // bs)
                if check and kv_used[dst] > nblocks[dst]:
                    fail(f"transfer {x} of request {r} starting at {tx_s[x]:.6f}: the KV on decode replica {dst} "
                         f"needs {kv_used[dst]} blocks, more than its {nblocks[dst]} blocks")
                continue
            if check:
                if loc[r] != src:
                    fail(f"transfer {x}: request {r}'s KV is on replica {loc[r]}, not on the source {src}")
                if ctx[r] != tk or gen[r] < 1:
                    fail(f"transfer {x}: request {r} moves {tk} tokens of KV but its prefill wrote {ctx[r]} "
                         f"and emitted {gen[r]} tokens (the whole prompt and the first token must be done)")
            if resident[r]:
                kv_used[src] -= -(-ctx[r] // bs)
            ctx[r] = tk
            resident[r] = True
            loc[r] = dst

    order = np.argsort(np.asarray(sol.it_end), kind="stable").tolist()
    for i in order:
        s, e, rp = it_s[i], it_e[i], it_rep[i]
        if nt:
            transfers_until(s + EPS)
        while ei < ne and ev_t[ei] <= s + EPS:
            r, k = ev_r[ei], ev_k[ei]
            ei += 1
            if k in (1, 2) and loc[r] >= 0:  # a swap copies at most the blocks of the whole known context
                key = (loc[r], ev_t[ei - 1])
                swap_bound[key] = swap_bound.get(key, 0) + -(-(prompt[r] + gen[r]) // bs)
            if k == 0:
                decoding[r] = False
            if k in (0, 1):
                if resident[r]:
                    kv_used[loc[r]] -= -(-ctx[r] // bs)
                    resident[r] = False
                if k == 0:
                    ctx[r] = 0
            elif k == 2:
                if not resident[r] and loc[r] >= 0:
                    resident[r] = True
                    kv_used[loc[r]] += -(-ctx[r] // bs)
        while hi < nh and hit_t[hi] <= s + EPS:
            r, k = hit_r[hi], hit_k[hi]
            hi += 1
            if check and (resident[r] or ctx[r] != 0 or k % bs or not 0 < k < prompt[r] + gen[r]):
                fail(f"request {r}: a prefix-cache hit of {k} tokens at {hit_t[hi - 1]:.6f} needs a request "
                     f"with no KV (it has {ctx[r]} tokens) and whole blocks short of its {prompt[r] + gen[r]} "
                     f"known tokens")
            ctx[r] = k
            resident[r] = True
            if loc[r] >= 0:
                kv_used[loc[r]] += -(-k // bs)
        if check:
            if not (0 <= rp < R):
                fail(f"iteration {i}: replica {rp} out of range 0..{R - 1}")
            if e < s - EPS or s < -EPS:
                fail(f"iteration {i}: ends at {e} before it starts at {s}")
            if s < last_end[rp] - 1e-7:
                fail(f"iteration {i} on replica {rp} starts at {s:.6f} before the previous one ends at {last_end[rp]:.6f}")
        last_end[rp] = e
        toks: list[int] = []
        dec_kv: list[int] = []
        chunks: list[int] = []
        cached: list[int] = []
        cut_short = False
        if check and ptr[i + 1] <= ptr[i]:
            fail(f"iteration {i} on replica {rp} processes no request")
        for j in range(ptr[i], ptr[i + 1]):
            r, k = req[j], tok[j]
            if check:
                if loc[r] != rp:
                    if r in tx_of:
                        x = tx_of[r]
                        fail(f"request {r} processed on replica {rp} in iteration {i} [{s:.6f}, {e:.6f}] but its KV "
                             f"moves from replica {tx_src[x]} to {tx_dst[x]} over [{tx_s[x]:.6f}, {tx_e[x]:.6f}]")
                    fail(f"request {r} processed on replica {rp} but routed to {rep_of[r]}")
                if r in tx_of:
                    x = tx_of[r]
                    if rp == tx_src[x] and e > tx_s[x] + EPS:
                        fail(f"request {r} processed on its prefill replica {rp} until {e:.6f}, after its KV transfer "
                             f"started at {tx_s[x]:.6f}")
                    if rp == tx_dst[x] and s < tx_e[x] - EPS:
                        fail(f"request {r} processed on decode replica {rp} at {s:.6f} before its KV arrived at "
                             f"{tx_e[x]:.6f}")
                if rp < n_prefill and gen[r] >= 1:
                    fail(f"request {r} decodes on prefill replica {rp} (iteration {i})")
                if s < arrival[r] - EPS:
                    fail(f"request {r} processed at {s:.6f} before its arrival at {arrival[r]:.6f}")
                if gen[r] >= output[r]:
                    fail(f"request {r} processed at {s:.6f} after emitting all {output[r]} tokens")
                if k < 1:
                    fail(f"request {r}: iteration {i} feeds {k} tokens")
            known = prompt[r] + gen[r]
            if not resident[r]:
                resident[r] = True
                kv_used[rp] += -(-ctx[r] // bs)
            if check and ctx[r] + k > known:
                fail(f"request {r}: iteration {i} feeds {k} tokens but only {known - ctx[r]} are known "
                     f"(prompt {prompt[r]}, generated {gen[r]}, fed {ctx[r]})")
            if check:
                toks.append(k)
                if decoding[r]:
                    dec_kv.append(ctx[r] + k)
                else:
                    chunks.append(k)
                    cached.append(ctx[r])
                    cut_short = cut_short or ctx[r] + k < known
            old = -(-ctx[r] // bs)
            ctx[r] += k
            kv_used[rp] += -(-ctx[r] // bs) - old
            started[r] = True
            if ctx[r] >= known:
                decoding[r] = True
                gen[r] += 1
                if gen[r] == 1:
                    first[r] = e
                if times is not None:
                    times[r].append(e)
                if gen[r] == output[r]:
                    last[r] = e
                    resident[r] = False
                    kv_used[rp] -= -(-ctx[r] // bs)
        if check and toks and 0 <= rp < R:
            _check_iteration(inst, timing, i, rp, s, e, toks, dec_kv, chunks, cached, swaps[i],
                             swap_bound.get((rp, s), 0), cut_short)
        if nt:
            transfers_until(e)
        kv_trace[i] = kv_used[rp]
        if check and kv_used[rp] > nblocks[rp] and not shared_kv[rp]:
            fail(f"iteration {i} (t={e:.6f}) on replica {rp}: the resident requests' KV needs {kv_used[rp]} blocks "
                 f"of {bs} tokens, more than its {nblocks[rp]} blocks")
    return {"gen": np.array(gen), "first": np.array(first), "last": np.array(last), "kv_blocks": kv_trace,
            "token_times": times}


def _check_iteration(inst: LLMServeInstance, timing: dict, i: int, rp: int, s: float, e: float, toks: list[int],
                     dec_kv: list[int], chunks: list[int], cached: list[int], swap_blocks: int, swap_bound: int,
                     cut_short: bool = False) -> None:
    """Batch cap, token budget, swapped blocks and duration of iteration ``i`` (see iteration_check)."""
    spec = inst.replicas[rp]
    if spec not in timing:
        timing[spec] = ReplicaTiming(spec)
    tm = timing[spec]
    tm.check_limits(i, rp, toks, chunks, cut_short)
    if not 0 <= swap_blocks <= swap_bound:
        raise InfeasibleSolution(f"iteration {i} on replica {rp}: {swap_blocks} swapped KV blocks, but the swap "
                                 f"events at its start ({s:.9f}) move at most {swap_bound}")
    tm.check_duration(i, rp, s, e, tm.batch_ms(toks, dec_kv, chunks, cached), swap_blocks)


def validate(instance: LLMServeInstance, solution: LLMServeSolution) -> None:
    """Raise :class:`InfeasibleSolution` if ``solution`` is not a feasible trace of ``instance``."""
    inst, sol = instance, solution
    n, R = inst.n_requests, inst.n_replicas
    for name in ("replica", "rejected", "first_token", "completion", "preemptions"):
        a = getattr(sol, name)
        if a.shape != (n,):
            raise InfeasibleSolution(f"solution.{name} has shape {a.shape}, expected ({n},)")
    if sol.num_blocks.shape != (R,):
        raise InfeasibleSolution(f"solution.num_blocks has shape {sol.num_blocks.shape}, expected ({R},)")
    if len(sol.it_ptr) != len(sol.it_start) + 1 or sol.it_ptr[-1] != len(sol.it_req):
        raise InfeasibleSolution("iteration log pointers are inconsistent with the entries")
    if sol.block_size != inst.replicas[0].block_size:
        raise InfeasibleSolution(f"block size {sol.block_size} differs from the instance's {inst.replicas[0].block_size}")
    for r in range(R):
        cap, how = _max_blocks(inst, r)
        if sol.num_blocks[r] > cap:
            raise InfeasibleSolution(f"replica {r} claims {sol.num_blocks[r]} KV blocks but its device memory "
                                     f"allows at most {cap} ({how})")
    served = ~sol.rejected
    if np.any((sol.replica[served] < 0) | (sol.replica[served] >= R)):
        raise InfeasibleSolution("a served request has no valid replica")
    bs = sol.block_size

    longest = int((inst.prompt + inst.output).max(initial=1))

    def too_long(tokens: int, rp: int) -> bool:
        spec = inst.replicas[rp]
        if spec.scheduler == "orca":  # Orca reserves the longest possible request for every request
            from schedgym.envs.llmserve.configs import load_model

            reserve = -(-min(longest, load_model(spec.model).max_model_len) // bs)
            return tokens > reserve * bs or reserve > sol.num_blocks[rp]
        wm = 0 if spec.scheduler == "vllm_v1" else int(spec.watermark_fraction * sol.num_blocks[rp])
        return (-(-tokens // bs) > sol.num_blocks[rp] - wm or
                (spec.scheduler == "vllm_v0" and tokens > spec.max_tokens_in_batch))

    check_admission(inst, sol)
    check_prefix(inst, sol)
    shed = sol.shed if sol.shed is not None else np.zeros(n, bool)
    pd = inst.pd
    for r in np.flatnonzero(sol.rejected & ~shed):
        total = int(inst.prompt[r] + inst.output[r])
        rp = int(sol.replica[r]) if sol.replica[r] >= 0 else 0
        if pd is None:
            if not too_long(total, rp):
                raise InfeasibleSolution(f"request {r} ({total} tokens) was rejected but fits replica {rp}")
        elif not (too_long(int(inst.prompt[r]), rp) or
                  (inst.output[r] > 1 and all(too_long(total, d) for d in range(pd.n_prefill, R)))):
            raise InfeasibleSolution(f"request {r} (prompt {inst.prompt[r]}, {total} tokens) was rejected but its "
                                     f"prompt fits prefill replica {rp} and the request fits a decode replica")
    if pd is not None:
        _check_transfers(inst, sol)
    elif sol.n_transfers:
        raise InfeasibleSolution(f"the solution has {sol.n_transfers} KV transfers but the cluster is not "
                                 f"disaggregated (instance.pd is None)")
    rp = replay(inst, sol, check=True)
    gen = rp["gen"]
    bad = np.flatnonzero(served & (gen != inst.output))
    if len(bad):
        r = int(bad[0])
        raise InfeasibleSolution(f"request {r} emitted {gen[r]} tokens, expected {inst.output[r]} "
                                 f"({len(bad)} requests wrong)")
    for name, mine in (("first_token", rp["first"]), ("completion", rp["last"])):
        given = getattr(sol, name)
        diff = np.abs(given[served] - mine[served])
        if np.any(~np.isfinite(diff)) or np.any(diff > 1e-6):
            k = int(np.flatnonzero(served)[int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf)))])
            raise InfeasibleSolution(f"request {k}: reported {name} {given[k]} but the log gives {mine[k]}")
    if np.any(sol.first_token[served] > sol.completion[served] + EPS):
        raise InfeasibleSolution("a request's first token comes after its completion (TTFT > end-to-end)")
    if np.any(sol.first_token[served] < inst.arrival[served] - EPS):
        raise InfeasibleSolution("a request's first token comes before its arrival")
    if sol.n_transfers:
        first = rp["first"][sol.tx_req]
        bad = np.flatnonzero(~(sol.tx_start >= first - EPS))
        if len(bad):
            x = int(bad[0])
            raise InfeasibleSolution(f"transfer {x} of request {sol.tx_req[x]} starts at {sol.tx_start[x]:.6f}, before "
                                     f"its prefill emitted the first token at {first[x]:.6f}")


def _check_transfers(inst: LLMServeInstance, sol: LLMServeSolution) -> None:
    """The disaggregation checks that need no replay (see the module docstring)."""
    pd = inst.pd
    n, R, P = inst.n_requests, inst.n_replicas, pd.n_prefill
    if pd.n_replicas != R:
        raise InfeasibleSolution(f"pd={pd.n_prefill}+{pd.n_decode} but the instance has {R} replicas")
    if sol.decode_replica is None or sol.decode_replica.shape != (n,):
        shape = None if sol.decode_replica is None else sol.decode_replica.shape
        raise InfeasibleSolution(f"solution.decode_replica has shape {shape}, expected ({n},)")
    X = sol.n_transfers
    for name in ("tx_src", "tx_dst", "tx_tokens", "tx_bytes", "tx_ready", "tx_start", "tx_end"):
        if getattr(sol, name).shape != (X,):
            raise InfeasibleSolution(f"solution.{name} has shape {getattr(sol, name).shape}, expected ({X},)")
    served = ~sol.rejected
    bad = np.flatnonzero(served & (sol.replica >= P))
    if len(bad):
        raise InfeasibleSolution(f"request {bad[0]} was routed to replica {sol.replica[bad[0]]}, a decode replica "
                                 f"(prefill replicas are 0..{P - 1})")
    req = sol.tx_req
    if np.any((req < 0) | (req >= n)):
        raise InfeasibleSolution("a KV transfer names a request out of range")
    counts = np.bincount(req, minlength=n)
    need = served & (inst.output > 1)
    wrong = np.flatnonzero(counts != need.astype(np.int64))
    if len(wrong):
        r = int(wrong[0])
        raise InfeasibleSolution(f"request {r} has {counts[r]} KV transfers; every served request with more than one "
                                 f"output token needs exactly one (prefill replica -> decode replica)")
    has_dec = np.zeros(n, bool)
    has_dec[req] = True
    if np.any(sol.decode_replica[~has_dec] != -1):
        r = int(np.flatnonzero(sol.decode_replica[~has_dec] != -1)[0])
        raise InfeasibleSolution(f"request {np.flatnonzero(~has_dec)[r]} has a decode replica but no KV transfer")
    bw = pd.link_gbps * 1e9
    for x in range(X):
        r, src, dst = int(req[x]), int(sol.tx_src[x]), int(sol.tx_dst[x])
        if src != sol.replica[r] or not 0 <= src < P:
            raise InfeasibleSolution(f"transfer {x} of request {r} leaves replica {src}, not its prefill replica "
                                     f"{sol.replica[r]}")
        if dst != sol.decode_replica[r] or not P <= dst < R:
            raise InfeasibleSolution(f"transfer {x} of request {r} goes to replica {dst}, not a decode replica "
                                     f"{P}..{R - 1} equal to its decode_replica {sol.decode_replica[r]}")
        if inst.replicas[src].model != inst.replicas[dst].model:
            raise InfeasibleSolution(f"transfer {x}: KV of model {inst.replicas[src].model} sent to a replica of "
                                     f"{inst.replicas[dst].model}")
        tok = int(sol.tx_tokens[x])
        nbytes = tok * kv_bytes_per_token(inst, src)
        if tok < 1 or abs(float(sol.tx_bytes[x]) - nbytes) > 1e-6 * nbytes:
            raise InfeasibleSolution(f"transfer {x} of request {r}: {sol.tx_bytes[x]} bytes for {tok} tokens, expected "
                                     f"{nbytes} ({kv_bytes_per_token(inst, src)} bytes of KV per token)")
        least = nbytes / bw + pd.link_latency_s
        dur = float(sol.tx_end[x] - sol.tx_start[x])
        if not dur >= least * (1 - 1e-9) - EPS:
            raise InfeasibleSolution(f"transfer {x} of request {r} takes {dur:.9f} s, less than bytes / bandwidth + "
                                     f"latency = {nbytes} / {bw:g} + {pd.link_latency_s:g} = {least:.9f} s")
        if not sol.tx_start[x] >= sol.tx_ready[x] - EPS:
            raise InfeasibleSolution(f"transfer {x} of request {r} starts at {sol.tx_start[x]:.6f} before it was ready "
                                     f"at {sol.tx_ready[x]:.6f}")
    for src in range(P):
        sel = np.flatnonzero(sol.tx_src == src)
        if len(sel) < 2:
            continue
        o = sel[np.argsort(sol.tx_start[sel], kind="stable")]
        busy_end = sol.tx_start[o] + sol.tx_bytes[o] / bw
        k = np.flatnonzero(sol.tx_start[o[1:]] < busy_end[:-1] - 1e-9 * np.maximum(busy_end[:-1], 1.0))
        if len(k):
            a, b = int(o[k[0]]), int(o[k[0] + 1])
            raise InfeasibleSolution(f"transfers {a} and {b} overlap on the link of prefill replica {src}: {b} starts at "
                                     f"{sol.tx_start[b]:.9f} while {a} occupies it until {busy_end[k[0]]:.9f}")
