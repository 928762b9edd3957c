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
  blocks do not exceed what the device memory allows;
* rejections: only requests that can never fit the replica are rejected.
"""

from __future__ import annotations

import math

import numpy as np

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.llmserve.types import LLMServeInstance, LLMServeSolution

EPS = 1e-9


def _max_blocks(inst: LLMServeInstance, r: int) -> int:
    """KV blocks the memory allows replica ``r`` (the problem's definition of capacity)."""
    from schedgym.envs.llmserve.configs import load_device, load_model

    s = inst.replicas[r]
    if s.num_blocks is not None:
        return int(s.num_blocks)
    m, d = load_model(s.model), load_device(s.device)
    head = m.embedding_dim // m.num_q_heads
    kv_heads = -(-m.num_kv_heads // s.tp)
    per_tok = 2 * (m.num_layers // s.pp) * kv_heads * head * m.dtype_bytes
    q = m.num_q_heads // s.tp
    w_layer = m.embedding_dim * head * (2 * q + 2 * kv_heads) + (3 if m.use_gated_mlp else 2) * m.embedding_dim * m.mlp_hidden_dim // s.tp
    weights = m.dtype_bytes * w_layer * (m.num_layers // s.pp)
    free = d.memory_gb * 1024 ** 3 * s.memory_utilization - weights
    return int(free // per_tok) // s.block_size


def replay(instance: LLMServeInstance, sol: LLMServeSolution, check: bool = True,
           want_token_times: bool = False) -> dict:
    """Replay the iteration log. Returns ``gen`` (N,), ``first`` (N,), ``last`` (N,), per-replica KV
    block usage at each iteration end (``kv_blocks`` (I,)), and optionally ``token_times`` (a list
    of per-request emission-time lists). Raises :class:`InfeasibleSolution` when ``check``."""
    inst = instance
    n = inst.n_requests
    prompt = inst.prompt.tolist()
    output = inst.output.tolist()
    arrival = inst.arrival.tolist()
    rep_of = sol.replica.tolist()
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
    it_rep = sol.it_replica.tolist()
    it_s = sol.it_start.tolist()
    it_e = sol.it_end.tolist()
    ptr = sol.it_ptr.tolist()
    req = sol.it_req.tolist()
    tok = sol.it_tokens.tolist()
    kv_trace = np.zeros(len(it_s), np.int64)

    def fail(msg: str):
        if check:
            raise InfeasibleSolution(msg)

    for i in range(len(it_s)):
        s, e, rp = it_s[i], it_e[i], it_rep[i]
        while ei < ne and ev_t[ei] <= s + EPS:
            r, k = ev_r[ei], ev_k[ei]
            ei += 1
            if k in (0, 1):
                if resident[r]:
                    kv_used[rep_of[r]] -= -(-ctx[r] // bs)
                    resident[r] = False
                if k == 0:
                    ctx[r] = 0
            elif k == 2:
                if not resident[r] and rep_of[r] >= 0:
                    resident[r] = True
                    kv_used[rep_of[r]] += -(-ctx[r] // bs)
        if check:
            if not (0 <= rp < R):
                fail(f"iteration {i}: replica {rp} out of range 0..{R - 1}")
            if e < s - EPS or s < -EPS:
                fail(f"iteration {i}: ends at {e} before it starts at {s}")
            if s < last_end[rp] - 1e-7:
                fail(f"iteration {i} on replica {rp} starts at {s:.6f} before the previous one ends at {last_end[rp]:.6f}")
        last_end[rp] = e
        for j in range(ptr[i], ptr[i + 1]):
            r, k = req[j], tok[j]
            if check:
                if rep_of[r] != rp:
                    fail(f"request {r} processed on replica {rp} but routed to {rep_of[r]}")
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
            old = -(-ctx[r] // bs)
            ctx[r] += k
            kv_used[rp] += -(-ctx[r] // bs) - old
            started[r] = True
            if ctx[r] >= known:
                gen[r] += 1
                if gen[r] == 1:
                    first[r] = e
                if times is not None:
                    times[r].append(e)
                if gen[r] == output[r]:
                    last[r] = e
                    resident[r] = False
                    kv_used[rp] -= -(-ctx[r] // bs)
        kv_trace[i] = kv_used[rp]
        if check and kv_used[rp] > nblocks[rp]:
            fail(f"iteration {i} (t={e:.6f}) on replica {rp}: the resident requests' KV needs {kv_used[rp]} blocks "
                 f"of {bs} tokens, more than its {nblocks[rp]} blocks")
    return {"gen": np.array(gen), "first": np.array(first), "last": np.array(last), "kv_blocks": kv_trace,
            "token_times": times}


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
        cap = _max_blocks(inst, r)
        if sol.num_blocks[r] > cap:
            raise InfeasibleSolution(f"replica {r} claims {sol.num_blocks[r]} KV blocks but its device memory "
                                     f"allows at most {cap}")
    served = ~sol.rejected
    if np.any((sol.replica[served] < 0) | (sol.replica[served] >= R)):
        raise InfeasibleSolution("a served request has no valid replica")
    bs = sol.block_size
    for r in np.flatnonzero(sol.rejected):
        total = int(inst.prompt[r] + inst.output[r])
        rp = int(sol.replica[r]) if sol.replica[r] >= 0 else 0
        spec = inst.replicas[rp]
        wm = int(spec.watermark_fraction * sol.num_blocks[rp])
        too_long = (-(-total // bs) > sol.num_blocks[rp] - wm or
                    (spec.scheduler == "vllm_v0" and total > spec.max_tokens_in_batch))
        if not too_long:
            raise InfeasibleSolution(f"request {r} ({total} tokens) was rejected but fits replica {rp}")
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
