"""One model replica: continuous batching at iteration level with a paged KV cache.

Request accounting follows Vidur (so results are comparable): a request has ``P`` prefill tokens
(the prompt; after a recompute preemption, the prompt plus the tokens generated so far) and its
``processed`` count; completing the prefill yields the first output token (``processed = P + 1``);
each decode iteration adds one token; the request completes when ``processed = prompt + output``.
The KV cache is paged in blocks of ``block_size`` tokens: a new request is admitted with
``ceil(P / block_size)`` blocks if at least ``watermark`` blocks stay free; a running request takes one
more block whenever its processed tokens exceed its blocks, and every running request needs at
least one free block to be scheduled, else the latest-arrived running request is preempted (with
``preempt_order="priority"``: running requests are ordered by SLO class, then arrival, so the
latest-arrived request of the lowest-priority class goes first).

Batch formation per scheduler (``ReplicaSpec.scheduler``):

* ``vllm_v0``: waiting requests first (queue order, head-of-line blocking): admit while the blocks
  (watermark), the token budget (batch size x longest prompt <= ``max_tokens_in_batch``) and the
  batch cap allow; a batch with admissions is prefill-only. Otherwise a decode-only batch of the
  running requests in arrival order. Swapped-out requests return before any new admission.
* ``sarathi`` (Sarathi-Serve): every running decode (1 token each), then running partial prefills, then
  new requests, chunked to fill ``chunk_size`` tokens.
* ``vllm_v1`` (vLLM >= 0.8): one token budget per step (``chunk_size`` = max_num_batched_tokens):
  running requests in order (decodes 1 token, partial prefills chunked), each allocating the blocks
  its new tokens need (no watermark; on exhaustion the newest running request is preempted by
  recompute and no new request is admitted in that step), then waiting requests chunked into the
  budget left while ``batch_cap`` (max_num_seqs) allows and their first chunk's blocks are free.
* ``orca``: running requests (decodes and whole prompts) plus new requests, each reserving blocks
  for the model length at admission; no preemption.

Under prefill/decode disaggregation (:mod:`schedgym.envs.llmserve.disagg`) a prefill replica has a
``handoff`` list: a request whose prefill completes with more tokens to generate goes there instead
of back to the running set, keeping its blocks (counted in ``n_held``) until its KV transfer ends; a
decode replica counts the transfers it has reserved blocks for in ``n_incoming`` and keeps those
still waiting for room in ``pending_in``.

The simulator (:mod:`schedgym.envs.llmserve.sim`) drives replicas; the admission step is exposed
(:meth:`Replica.can_admit`, :meth:`Replica.admit`) so an agent or a queue policy can choose the order.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from schedgym.envs.llmserve.configs import load_device, load_model
from schedgym.envs.llmserve.profiles import LatencyModel
from schedgym.envs.llmserve.types import ReplicaSpec


@dataclass
class ReqState:
    """Mutable per-request state shared by the replicas (Python lists: fast scalar access)."""

    arrival: list[float]
    prompt: list[int]
    output: list[int]
    P: list[int] = field(default_factory=list)  # current prefill target (prompt + generated after restarts)
    proc: list[int] = field(default_factory=list)  # processed tokens (Vidur's num_processed_tokens)
    pdone: list[bool] = field(default_factory=list)  # prefill complete
    blocks: list[int] = field(default_factory=list)  # KV blocks held on the device
    gen: list[int] = field(default_factory=list)  # output tokens generated
    first_token: list[float] = field(default_factory=list)
    completion: list[float] = field(default_factory=list)
    first_sched: list[float] = field(default_factory=list)
    preempt: list[int] = field(default_factory=list)
    replica: list[int] = field(default_factory=list)
    klass: list[int] = field(default_factory=list)  # SLO class (0: highest priority)
    stream: list[int] | None = None  # prefix caching: content stream of each request (-1: its own)
    shared: list[int] | None = None  # prefix caching: tokens shared with the stream

    @classmethod
    def create(cls, arrival, prompt, output, klass=None) -> ReqState:
        n = len(arrival)
        nan = float("nan")
        p = [int(x) for x in prompt]
        return cls(arrival=[float(x) for x in arrival], prompt=p, output=[int(x) for x in output], P=list(p),
                   proc=[0] * n, pdone=[False] * n, blocks=[0] * n, gen=[0] * n, first_token=[nan] * n,
                   completion=[nan] * n, first_sched=[nan] * n, preempt=[0] * n, replica=[-1] * n,
                   klass=[int(x) for x in klass] if klass is not None else [0] * n)


class IterLog:
    """Append-only iteration log (becomes the solution's CSR arrays)."""

    def __init__(self):
        self.replica: list[int] = []
        self.start: list[float] = []
        self.end: list[float] = []
        self.ptr: list[int] = [0]
        self.req: list[int] = []
        self.tok: list[int] = []
        self.swap: list[int] = []
        self.ev_req: list[int] = []
        self.ev_time: list[float] = []
        self.ev_kind: list[int] = []
        self.hit_req: list[int] = []
        self.hit_time: list[float] = []
        self.hit_tok: list[int] = []

    def add(self, replica: int, start: float, end: float, rids: list[int], toks: list[int], swap_blocks: int = 0) -> None:
        self.replica.append(replica)
        self.swap.append(swap_blocks)
        self.start.append(start)
        self.end.append(end)
        self.req.extend(rids)
        self.tok.extend(toks)
        self.ptr.append(len(self.req))

    def event(self, rid: int, t: float, kind: int) -> None:
        self.ev_req.append(rid)
        self.ev_time.append(t)
        self.ev_kind.append(kind)


class Replica:
    """A replica's queues, KV cache and batch in flight (see the module docstring).

    Args:
        idx: replica index in the cluster.
        spec: its configuration.
        lat: its latency model.
        num_blocks: KV blocks.
        st: the shared request state.
        log: the shared iteration log.
        max_request_tokens: longest request (Orca reserves this many tokens per request).
    """

    def __init__(self, idx: int, spec: ReplicaSpec, lat: LatencyModel, num_blocks: int, st: ReqState, log: IterLog,
                 max_request_tokens: int):
        self.idx = idx
        self.spec = spec
        self.lat = lat
        self.st = st
        self.log = log
        self.num_blocks = int(num_blocks)
        self.bs = spec.block_size
        # vLLM v1 allocates blocks per chunk and keeps no watermark
        self.watermark = 0 if spec.scheduler == "vllm_v1" else int(spec.watermark_fraction * self.num_blocks)
        self._v1_preempted = False  # vLLM v1: a preemption in this step stops admissions
        # prefix caching (vLLM v1): content key -> holders; cached blocks no request holds, least
        # recently freed first; the keys each request holds (its leading full blocks)
        self.pc = spec.prefix_caching
        self.cache_ref: dict[tuple[int, int], int] = {}
        self.evictable: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.held: dict[int, list[tuple[int, int]]] = {}
        self.hit_tokens = 0
        self.lookup_tokens = 0
        self.cap = spec.batch_cap  # one micro-batch in flight (no pipelining across stages)
        self.kind = spec.scheduler
        self.prio = spec.preempt_order == "priority"
        self.max_blocks_seq = -(-max_request_tokens // self.bs)
        model, dev = load_model(spec.model), load_device(spec.device)
        self.swap_s_per_block = (model.kv_bytes_per_token(spec.tp, spec.pp) * self.bs) / (dev.pcie_gbps * 1e9)
        self.waiting: list[int] = []
        self.running: list[int] = []  # resident requests not in the batch in flight
        self.swapped: list[int] = []
        self.used = 0
        self.peak = 0
        self.busy = False
        self.t_end = math.inf
        self.batch: list[int] = []
        self.btok: list[int] = []
        self.t_start = 0.0
        self.iterations = 0
        self.n_preemptions = 0
        # batch under construction
        self._ntok = 0
        self._maxtok = 0
        self._admitted = 0
        self._extra_s = 0.0  # KV swap time of the batch under construction, seconds
        self._swap_blocks = 0  # blocks it moves over the host link (out and in)
        self._carry = (math.nan, 0.0, 0)  # (time, seconds, blocks) of swaps of a formation that launched nothing
        self.b_swap = 0  # swap blocks of the batch in flight
        # prefill/decode disaggregation (unused in a colocated cluster)
        self.role = "both"  # "prefill" | "decode" | "both"
        self.handoff: list[int] | None = None  # prefill role: prefills completed in the last iteration
        self.n_held = 0  # prefill role: handed-off requests still holding KV here (transfer not done)
        self.n_incoming = 0  # decode role: transfers with blocks reserved here, not arrived yet
        self.pending_in: list[int] = []  # decode role: handed-off requests waiting for room here

    # ------------------------------------------------------------------------------------------
    @property
    def n_resident(self) -> int:
        return len(self.running) + len(self.batch)

    def outstanding(self) -> int:
        return len(self.waiting) + len(self.running) + len(self.batch) + len(self.swapped)

    def enqueue(self, rid: int) -> None:
        self.waiting.append(rid)

    def _alloc(self, rid: int, n: int) -> None:
        self.st.blocks[rid] += n
        self.used += n
        if self.used > self.peak:
            self.peak = self.used
        if self.pc:
            self._evict()

    def _free(self, rid: int) -> None:
        if self.pc:
            return self._free_cached(rid)
        self.used -= self.st.blocks[rid]
        self.st.blocks[rid] = 0

    # -- prefix caching ------------------------------------------------------------------------
    def _key(self, rid: int, b: int) -> tuple[int, int]:
        s = self.st.stream[rid]
        if s >= 0 and (b + 1) * self.bs <= self.st.shared[rid]:
            return (s, b)
        return (-1 - rid, b)

    def _evict(self) -> None:
        """Drop the least recently freed cached blocks until they fit in the free blocks."""
        ev, ref = self.evictable, self.cache_ref
        room = self.num_blocks - self.used
        while len(ev) > room:
            k, _ = ev.popitem(last=False)
            del ref[k]

    def _lookup(self, rid: int) -> tuple[int, int]:
        """(cached leading blocks of ``rid``'s context, how many of them no request holds); the
        last token is never taken from the cache (it must be computed to sample)."""
        ref, ev = self.cache_ref, self.evictable
        hits = free = 0
        for b in range((self.st.P[rid] - 1) // self.bs):
            k = self._key(rid, b)
            if k not in ref:
                break
            hits += 1
            if k in ev:
                free += 1
        return hits, free

    def _take_hits(self, rid: int, t: float) -> None:
        st = self.st
        hits, _ = self._lookup(rid)
        self.lookup_tokens += st.P[rid]
        h = self.held.setdefault(rid, [])
        ref, ev = self.cache_ref, self.evictable
        for b in range(hits):
            k = self._key(rid, b)
            if ref[k] == 0:
                del ev[k]
                self.used += 1
            ref[k] += 1
            h.append(k)
        if hits:
            st.blocks[rid] += hits
            st.proc[rid] = hits * self.bs
            self.hit_tokens += hits * self.bs
            log = self.log
            log.hit_req.append(rid)
            log.hit_time.append(t)
            log.hit_tok.append(hits * self.bs)
            if self.used > self.peak:
                self.peak = self.used

    def _register(self, rid: int) -> None:
        """Cache the full blocks ``rid`` has written (after an iteration)."""
        st = self.st
        written = st.proc[rid] - (1 if st.pdone[rid] else 0)
        full = written // self.bs
        h = self.held.setdefault(rid, [])
        ref, ev = self.cache_ref, self.evictable
        while len(h) < full:
            k = self._key(rid, len(h))
            c = ref.get(k)
            if c is None:
                ref[k] = 1
            else:  # the same content was computed elsewhere meanwhile: share that block, drop ours
                if c == 0:
                    del ev[k]
                    self.used += 1
                ref[k] = c + 1
                self.used -= 1
            h.append(k)

    def _free_cached(self, rid: int) -> None:
        st = self.st
        h = self.held.pop(rid, [])
        ref, ev = self.cache_ref, self.evictable
        released = st.blocks[rid] - len(h)
        for k in reversed(h):  # the tail first: evicted before the prefix it extends
            c = ref[k] - 1
            ref[k] = c
            if c == 0:
                ev[k] = None
                released += 1
        self.used -= released
        st.blocks[rid] = 0

    def _preempt(self, rid: int, t: float) -> None:
        st = self.st
        st.preempt[rid] += 1
        self.n_preemptions += 1
        if self.spec.preemption == "swap":
            self._extra_s += st.blocks[rid] * self.swap_s_per_block
            self._swap_blocks += st.blocks[rid]
            self._free(rid)
            self.swapped.append(rid)
            self.log.event(rid, t, 1)
        else:
            self._free(rid)
            st.P[rid] = st.prompt[rid] + st.gen[rid]  # the whole known context (a partial prefill keeps its target)
            st.proc[rid] = 0
            st.pdone[rid] = False
            self.waiting.insert(0, rid)
            self.log.event(rid, t, 0)

    # ------------------------------------------------------------------------------------------
    # batch formation
    # ------------------------------------------------------------------------------------------
    def start_formation(self, t: float) -> None:
        """The part of batch formation that does not depend on the queue order."""
        st = self.st
        self.batch = []
        self.btok = []
        self._ntok = 0
        self._maxtok = 0
        self._admitted = 0
        # swaps of a formation at this same time that launched nothing (it preempted every resident
        # request) still take their time: charge them to this batch
        _, self._extra_s, self._swap_blocks = self._carry if self._carry[0] == t else (t, 0.0, 0)
        self._carry = (math.nan, 0.0, 0)
        self._t = t
        if self.swapped:
            self._swap_in(t)
        kind = self.kind
        if kind == "vllm_v0":
            return
        R = self.running
        self._order(R)
        if kind == "vllm_v1":
            self._running_v1(R, t)
            return
        cap = self.cap
        if kind == "orca":
            n = min(len(R), cap)
            for r in R[:n]:
                k = 1 if st.pdone[r] else st.P[r] - st.proc[r]
                self.batch.append(r)
                self.btok.append(k)
                self._ntok += k
            self.running = R[n:]
            return
        # sarathi
        bt, bk = self.batch, self.btok
        prefills = []
        i, j = 0, len(R)
        ntok = 0
        total = self.num_blocks
        while i < j and len(bt) < cap:
            r = R[i]
            i += 1
            if not st.pdone[r]:
                prefills.append(r)
                continue
            ok = True
            while total - self.used < 1:
                if i < j:
                    j -= 1
                    v = R[j]
                    if v in prefills:
                        prefills.remove(v)
                    self._preempt(v, t)
                else:
                    self._preempt(r, t)
                    ok = False
                    break
            if ok:
                if st.proc[r] > st.blocks[r] * self.bs:
                    self._alloc(r, 1)
                bt.append(r)
                bk.append(1)
                ntok += 1
        leftover = R[i:j]
        skipped = []
        chunk = self.spec.chunk_size
        for r in prefills:
            k = min(st.P[r] - st.proc[r], chunk - ntok)
            if k <= 0:
                skipped.append(r)
                continue
            bt.append(r)
            bk.append(k)
            ntok += k
        self.running = skipped + leftover
        self._ntok = ntok

    def _running_v1(self, R: list[int], t: float) -> None:
        """vLLM v1, running requests in order within the step's token budget (``chunk_size``): a
        decode takes 1 token, a partial prefill the rest of its prompt up to the budget left; each
        takes the KV blocks its new tokens need; when they are not free the newest running request
        not yet scheduled is preempted (recompute), or the request itself when none is left."""
        st = self.st
        bt, bk = self.batch, self.btok
        bs = self.bs
        total = self.num_blocks
        P, proc, pdone, blocks = st.P, st.proc, st.pdone, st.blocks
        budget = self.spec.chunk_size
        self._v1_preempted = False
        i, j = 0, len(R)
        while i < j and budget > 0:
            r = R[i]
            i += 1
            if pdone[r]:
                k = 1
                need = -(-proc[r] // bs) - blocks[r]
            else:
                k = P[r] - proc[r]
                if k > budget:
                    k = budget
                need = -(-(proc[r] + k) // bs) - blocks[r]
            if need > 0:
                if total - self.used < need:
                    self._v1_preempted = True
                    while total - self.used < need and i < j:
                        j -= 1
                        self._preempt(R[j], t)
                    if total - self.used < need:
                        self._preempt(r, t)
                        continue
                self._alloc(r, need)
            bt.append(r)
            bk.append(k)
            budget -= k
        self.running = R[i:j]
        self._ntok = self.spec.chunk_size - budget

    def _swap_in(self, t: float) -> None:
        st = self.st
        keep = []
        for r in sorted(self.swapped):
            need = -(-st.proc[r] // self.bs) if st.pdone[r] else -(-st.P[r] // self.bs)
            if (keep or self.num_blocks - self.used - need < self.watermark
                    or self.n_resident + self.n_incoming >= self.cap):
                keep.append(r)
                continue
            self._alloc(r, need)
            self._extra_s += need * self.swap_s_per_block
            self._swap_blocks += need
            self.running.append(r)
            self.log.event(r, t, 2)
        self.swapped = keep

    def next_tokens(self, rid: int) -> int:
        """Tokens ``rid`` would process if admitted now (0: does not fit the token budget)."""
        st = self.st
        if self.kind == "sarathi" or self.kind == "vllm_v1":
            return max(0, min(st.P[rid] - st.proc[rid], self.spec.chunk_size - self._ntok))
        return st.P[rid]

    def can_admit(self, rid: int) -> bool:
        """Whether waiting request ``rid`` can join the batch under construction."""
        st = self.st
        if self.swapped and self.kind != "orca":
            return False
        if len(self.batch) >= self.cap or self.n_resident + self.n_incoming >= self.cap:
            return False
        if self.kind == "orca":
            return self.num_blocks - self.used >= self.max_blocks_seq
        if self.kind == "vllm_v1":
            if self._v1_preempted:
                return False
            if self.pc and st.proc[rid] == 0:
                hits, free = self._lookup(rid)
                k = min(st.P[rid] - hits * self.bs, self.spec.chunk_size - self._ntok)
                return k > 0 and self.num_blocks - self.used >= -(-(hits * self.bs + k) // self.bs) - hits + free
            k = self.next_tokens(rid)
            return k > 0 and self.num_blocks - self.used >= -(-(st.proc[rid] + k) // self.bs) - st.blocks[rid]
        if self.num_blocks - self.used - (-(-st.P[rid] // self.bs)) < self.watermark:
            return False
        if self.kind == "vllm_v0":
            if self.batch and self._admitted == 0:
                return False
            nt = st.P[rid]
            return (len(self.batch) + 1) * max(self._maxtok, nt) <= self.spec.max_tokens_in_batch
        return self.next_tokens(rid) > 0

    def admit(self, rid: int) -> None:
        """Move waiting request ``rid`` into the batch under construction (caller checked can_admit)."""
        st = self.st
        self.waiting.remove(rid) if self.waiting[0] != rid else self.waiting.pop(0)
        if self.kind == "orca":
            self._alloc(rid, self.max_blocks_seq)
            k = st.P[rid] - st.proc[rid]
        elif self.kind == "vllm_v1":
            if self.pc and st.proc[rid] == 0:
                self._take_hits(rid, self._t)
            k = self.next_tokens(rid)
            self._alloc(rid, -(-(st.proc[rid] + k) // self.bs) - st.blocks[rid])
        else:
            self._alloc(rid, -(-st.P[rid] // self.bs))
            k = self.next_tokens(rid)
        self.batch.append(rid)
        self.btok.append(k)
        self._ntok += k
        if k > self._maxtok:
            self._maxtok = k
        self._admitted += 1

    def finish_formation(self, t: float) -> bool:
        """Complete the batch (vLLM v0 decode phase when nothing was admitted) and launch it.
        Returns False (replica idle) when there is nothing to run."""
        if self.kind == "vllm_v0" and self._admitted == 0:
            self._decode_batch_v0(t)
        if not self.batch:
            self.busy = False
            self.t_end = math.inf
            self._carry = (t, self._extra_s, self._swap_blocks)
            return False
        self._launch(t)
        return True

    def _order(self, R: list[int]) -> None:
        """Serve order of the running requests (preemption victims come from the end): arrival, or
        class then arrival with ``preempt_order="priority"``."""
        if self.prio:
            k = self.st.klass
            R.sort(key=lambda r: (k[r], r))
        else:
            R.sort()

    def _decode_batch_v0(self, t: float) -> None:
        st = self.st
        R = self.running
        self._order(R)
        bt, bk = self.batch, self.btok
        i, j = 0, len(R)
        cap = self.cap
        total = self.num_blocks
        bsz = self.bs
        blocks, proc = st.blocks, st.proc
        while i < j and len(bt) < cap:
            r = R[i]
            i += 1
            if total - self.used < 1:
                ok = True
                while total - self.used < 1:
                    if i < j:
                        j -= 1
                        self._preempt(R[j], t)
                    else:
                        self._preempt(r, t)
                        ok = False
                        break
                if not ok:
                    break
            if proc[r] > blocks[r] * bsz:
                blocks[r] += 1
                self.used += 1
                if self.used > self.peak:
                    self.peak = self.used
            bt.append(r)
        bk.extend([1] * len(bt))
        self._ntok = len(bt)
        self.running = R[i:j]

    def _launch(self, t: float) -> None:
        st = self.st
        bt, bk = self.batch, self.btok
        lat = self.lat
        nd = 0
        kvsum = 0
        kvmax = 0
        chunks: list[int] = []
        ckv: list[int] = []
        fs = st.first_sched
        for r, k in zip(bt, bk):
            if st.pdone[r]:
                nd += 1
                p = st.proc[r]
                kvsum += p
                if p > kvmax:
                    kvmax = p
            else:
                chunks.append(k)
                ckv.append(st.proc[r])
                if fs[r] != fs[r]:  # nan: first time scheduled
                    fs[r] = t
        ms = lat.base(self._ntok) + lat.seq(len(bt))
        if nd:
            ms += lat.decode_skewed(nd, kvsum, kvmax) if lat.skew_alpha else lat.decode(nd, kvsum)
        if chunks:
            ms += lat.prefill(chunks, ckv)
        self.t_start = t
        self.t_end = t + ms * 1e-3 + self._extra_s
        self.b_swap = self._swap_blocks
        self.busy = True

    # ------------------------------------------------------------------------------------------
    def end_batch(self) -> list[int]:
        """Apply the batch in flight at its end time; returns the requests that completed."""
        st = self.st
        t = self.t_end
        self.log.add(self.idx, self.t_start, t, self.batch, self.btok, self.b_swap)
        self.iterations += 1
        P, proc, pdone, gen, out = st.P, st.proc, st.pdone, st.gen, st.output
        done = []
        keep = self.running
        handoff = self.handoff
        pc = self.pc
        for r, k in zip(self.batch, self.btok):
            if pdone[r]:
                proc[r] += 1
                gen[r] += 1
            else:
                proc[r] += k
                if proc[r] == P[r]:
                    pdone[r] = True
                    proc[r] += 1
                    gen[r] += 1
                    if gen[r] == 1:
                        st.first_token[r] = t
                    if handoff is not None and gen[r] < out[r]:
                        handoff.append(r)  # keeps its blocks until its KV transfer ends
                        continue
            if pc:
                self._register(r)
            if gen[r] >= out[r]:
                st.completion[r] = t
                if pc:
                    self._free_cached(r)
                else:
                    self.used -= st.blocks[r]
                    st.blocks[r] = 0
                done.append(r)
            else:
                keep.append(r)
        self.batch = []
        self.btok = []
        self.busy = False
        self.t_end = math.inf
        return done
