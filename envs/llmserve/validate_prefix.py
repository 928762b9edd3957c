"""The validator's own check of prefix caching (replicas with ``prefix_caching``).

Written from the rules (:class:`schedgym.envs.llmserve.types.ReplicaSpec` ``prefix_caching`` and
:func:`schedgym.envs.llmserve.types.block_key`), not from the simulator's cache: it replays the
iteration log per replica and checks that

* a prefix hit of request ``r`` on replica ``p`` covers only blocks whose content (their
  :func:`block_key`) some request wrote in full on ``p`` in an iteration that ended no later
  than the hit, and that ``r``'s replica is ``p``;
* the KV blocks resident requests hold on ``p`` — each distinct content key of a full block once,
  plus each request's partial last block — never exceed its ``num_blocks`` (shared blocks count once).

It does not replay the cache's LRU eviction: a hit on a block that an exact LRU would have evicted
earlier is not detected (the capacity check bounds what can stay resident).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.llmserve.types import LLMServeInstance, LLMServeSolution, block_key

EPS = 1e-9


def check_prefix(inst: LLMServeInstance, sol: LLMServeSolution) -> None:
    """Raise :class:`InfeasibleSolution` on a hit from a block never written on that replica, a hit on
    a replica without prefix caching, or more distinct resident blocks than a replica holds."""
    on = [s.prefix_caching for s in inst.replicas]
    if len(sol.hit_req) and not (len(sol.hit_time) == len(sol.hit_req) == len(sol.hit_tokens)):
        raise InfeasibleSolution("solution.hit_req / hit_time / hit_tokens differ in length")
    rep_of = sol.replica.tolist()
    for r in sol.hit_req.tolist():
        if not on[rep_of[r]]:
            raise InfeasibleSolution(f"request {r} has a prefix-cache hit on replica {rep_of[r]}, which has no "
                                     "prefix caching")
    if not any(on):
        return
    n = inst.n_requests
    bs = int(sol.block_size)
    stream = inst.prefix_stream.tolist() if inst.prefix_stream is not None else [-1] * n
    shared = inst.prefix_shared.tolist() if inst.prefix_shared is not None else [0] * n
    prompt, output = inst.prompt.tolist(), inst.output.tolist()

    def key(r: int, b: int):
        return block_key(r, b, stream[r], shared[r], bs)

    # time-ordered stream (time, order, kind, payload): iteration ends (order 0) before the restarts
    # and hits of a batch formed at that same time (order 1)
    events = []
    for r, t, k in zip(sol.ev_req.tolist(), sol.ev_time.tolist(), sol.ev_kind.tolist()):
        if k == 0:
            events.append((t, 1, 0, r, 0))
    for r, t, k in zip(sol.hit_req.tolist(), sol.hit_time.tolist(), sol.hit_tokens.tolist()):
        events.append((t, 1, 1, r, k))
    for i, e in enumerate(sol.it_end.tolist()):
        events.append((e, 0, 2, i, 0))
    events.sort()
    ctx = [0] * n
    gen = [0] * n
    written: list[set] = [set() for _ in inst.replicas]  # keys written in full on each replica
    refs: list[Counter] = [Counter() for _ in inst.replicas]  # full-block keys held by resident requests
    partial = [0] * len(inst.replicas)  # resident requests with a partial last block
    ptr, req, tok = sol.it_ptr.tolist(), sol.it_req.tolist(), sol.it_tokens.tolist()
    rep_it = sol.it_replica.tolist()
    cap = sol.num_blocks.tolist()

    def drop(r: int) -> None:
        p = rep_of[r]
        for b in range(ctx[r] // bs):
            k = key(r, b)
            refs[p][k] -= 1
            if refs[p][k] == 0:
                del refs[p][k]
        if ctx[r] % bs:
            partial[p] -= 1
        ctx[r] = 0

    for t, _, kind, a, k in events:
        if kind == 0:
            if on[rep_of[a]]:
                drop(a)
        elif kind == 1:
            p = rep_of[a]
            missing = [b for b in range(k // bs) if key(a, b) not in written[p]]
            if missing:
                raise InfeasibleSolution(f"request {a}: prefix-cache hit of {k} tokens on replica {p} at {t:.6f}, but "
                                         f"block {missing[0]} (key {key(a, missing[0])}) was never written there")
            for b in range(k // bs):
                refs[p][key(a, b)] += 1
            ctx[a] = k
        else:
            p = rep_it[a]
            if not on[p]:
                continue
            for j in range(ptr[a], ptr[a + 1]):
                r, x = req[j], tok[j]
                old = ctx[r]
                new = old + x
                for b in range(old // bs, new // bs):
                    kk = key(r, b)
                    refs[p][kk] += 1
                    written[p].add(kk)
                partial[p] += (1 if new % bs else 0) - (1 if old % bs else 0)
                ctx[r] = new
                if new >= prompt[r] + gen[r]:
                    gen[r] += 1
                    if gen[r] >= output[r]:
                        drop(r)
            if len(refs[p]) + partial[p] > cap[p]:
                raise InfeasibleSolution(f"iteration {a} on replica {p} (t={t:.6f}): resident requests hold "
                                         f"{len(refs[p])} distinct full blocks + {partial[p]} partial ones, over "
                                         f"its {cap[p]} KV blocks")


def prefix_hit_rate(inst: LLMServeInstance, sol: LLMServeSolution) -> float:
    """Prompt tokens served from the prefix cache over all prompt tokens of served requests (hits on
    re-admissions after a preemption count too)."""
    served = ~sol.rejected
    total = float(np.sum(inst.prompt[served]))
    return float(np.sum(sol.hit_tokens)) / total if total > 0 else 0.0
