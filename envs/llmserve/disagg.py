"""Prefill/decode disaggregation: KV-cache hand-off from prefill to decode replicas over a link.

The rules (DistServe, OSDI 2024; Splitwise, ISCA 2024), given a :class:`PDSpec`:

1. Arrivals go to prefill replicas only (the cluster's router, over those replicas).
2. When a prefill replica finishes a request's prompt it emits the first token (TTFT ends there).
   A request with more tokens to generate is *handed off*: it keeps its KV blocks on the prefill
   replica, and a decode replica is chosen by ``PDSpec.decode_router`` (``least_kv`` by default:
   lowest fraction of blocks in use, counting the blocks of hand-offs already waiting for it) among
   the decode replicas that can ever hold the whole request.
3. The hand-off waits in that decode replica's FIFO ``pending_in`` queue until the replica can
   reserve ``ceil(prompt / block_size)`` blocks (Orca: the model-length reservation) above its
   watermark and has a batch slot, and has no preempted requests of its own waiting (those go first).
4. Then the transfer is booked on the prefill replica's link: it starts when the link is free,
   occupies it for ``bytes / (link_gbps x 1e9)`` seconds (bytes = KV tokens x the model's KV bytes
   per token, all layers and KV heads) and the cache is usable ``link_latency_s`` later.
5. At the transfer's end the prefill replica frees the request's blocks and the request joins the
   decode replica's running set with its first token generated, so its next decode iteration
   generates the second token. A later recompute preemption prefills again on the decode replica.

:class:`KVTransfers` keeps this state for :class:`schedgym.envs.llmserve.sim.Simulator` and the log
that becomes the solution's ``tx_*`` arrays.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import numpy as np

from schedgym.envs.llmserve.cluster import Router, RouterView
from schedgym.envs.llmserve.configs import load_model
from schedgym.envs.llmserve.replica import Replica, ReqState
from schedgym.envs.llmserve.types import PDSpec


class KVTransfers:
    """Hand-offs, decode-replica choice, link booking and transfer completion (see the module docstring).

    Args:
        pd: the disaggregation spec.
        replicas: all replicas (prefill ones first).
        st: the shared request state.
        fits: ``fits(replica, rid)``: whether a decode replica can ever hold request ``rid``.
        on_change: called with a replica whose load changed (keeps the router views current).
        seed: seed of a random decode router.
    """

    def __init__(self, pd: PDSpec, replicas: list[Replica], st: ReqState, fits: Callable[[Replica, int], bool],
                 on_change: Callable[[Replica], None], seed: int = 0):
        self.pd = pd
        self.st = st
        self.fits = fits
        self.on_change = on_change
        self.n_prefill = pd.n_prefill
        self.prefill = replicas[: pd.n_prefill]
        self.decode = replicas[pd.n_prefill:]
        for rep in self.prefill:
            rep.role = "prefill"
            rep.handoff = []
        for rep in self.decode:
            rep.role = "decode"
        self.bytes_per_s = pd.link_gbps * 1e9
        self.latency_s = pd.link_latency_s
        #: KV bytes of one token of the whole model (every layer and KV head), per replica
        self.kv_bytes = [load_model(rep.spec.model).kv_bytes_per_token(1, 1) for rep in replicas]
        self.link_free = [0.0] * pd.n_prefill
        self.view = RouterView(len(self.decode), np.array([r.num_blocks for r in self.decode]))
        self.router = Router(pd.decode_router, seed)
        self.heap: list[tuple[float, int, int]] = []  # (end time, transfer index, rid)
        self.decode_of = [-1] * len(st.arrival)
        self.held = {}  # rid -> blocks still held on its prefill replica
        self.ready = {}  # rid -> time its prefill finished
        # the transfer log
        self.req: list[int] = []
        self.src: list[int] = []
        self.dst: list[int] = []
        self.tokens: list[int] = []
        self.nbytes: list[float] = []
        self.t_ready: list[float] = []
        self.t_start: list[float] = []
        self.t_end: list[float] = []

    @property
    def next_end(self) -> float:
        """Time the next transfer completes (inf: none in flight)."""
        return self.heap[0][0] if self.heap else math.inf

    # ------------------------------------------------------------------------------------------
    def choose_decode(self, rid: int) -> Replica:
        """The decode replica for ``rid`` by the decode router, among those that can hold it."""
        ok = [self.fits(rep, rid) for rep in self.decode]
        bs = self.decode[0].bs
        pend = None
        if self.router.kind == "least_kv":
            pend = [sum(-(-self.st.P[w] // bs) for w in rep.pending_in) for rep in self.decode]
        k = int(self.router(self.view, self.st.prompt[rid], pend))
        if not ok[k]:
            k = ok.index(True)  # the simulator rejects at arrival a request no decode replica can hold
        return self.decode[k]

    def handoff(self, rep: Replica, t: float) -> None:
        """Take the prefills ``rep`` completed at ``t`` (its ``handoff`` list) and queue their transfers."""
        touched = []
        for rid in rep.handoff:
            d = self.choose_decode(rid)
            self.decode_of[rid] = d.idx
            self.held[rid] = self.st.blocks[rid]
            self.ready[rid] = t
            rep.n_held += 1
            d.pending_in.append(rid)
            self.on_change(d)
            if d not in touched:
                touched.append(d)
        rep.handoff.clear()
        self.on_change(rep)
        for d in touched:
            self.try_book(d, t)

    def _need(self, d: Replica, rid: int) -> int:
        return d.max_blocks_seq if d.kind == "orca" else -(-self.st.P[rid] // d.bs)

    def try_book(self, d: Replica, t: float) -> None:
        """Start the transfers waiting for decode replica ``d`` while it has room (FIFO)."""
        q = d.pending_in
        if not q or d.waiting or d.swapped:
            return
        st = self.st
        booked = False
        while q:
            rid = q[0]
            need = self._need(d, rid)
            if d.num_blocks - d.used - need < d.watermark or d.n_resident + d.n_incoming >= d.cap:
                break
            q.pop(0)
            booked = True
            src = st.replica[rid]
            st.blocks[rid] = 0  # from now on the request's blocks are counted on the decode replica
            d._alloc(rid, need)
            d.n_incoming += 1
            tokens = st.P[rid]
            nbytes = float(tokens * self.kv_bytes[src])
            busy = nbytes / self.bytes_per_s
            start = max(t, self.link_free[src])
            self.link_free[src] = start + busy
            end = start + busy + self.latency_s
            x = len(self.req)
            self.req.append(rid)
            self.src.append(src)
            self.dst.append(d.idx)
            self.tokens.append(tokens)
            self.nbytes.append(nbytes)
            self.t_ready.append(self.ready.pop(rid))
            self.t_start.append(start)
            self.t_end.append(end)
            heapq.heappush(self.heap, (end, x, rid))
        if booked:
            self.on_change(d)

    def complete(self) -> tuple[float, Replica, Replica]:
        """Finish the earliest transfer: (its end time, prefill replica, decode replica)."""
        t, x, rid = heapq.heappop(self.heap)
        src = self.prefill[self.src[x]]
        d = self.decode[self.dst[x] - self.n_prefill]
        src.used -= self.held.pop(rid)
        src.n_held -= 1
        d.n_incoming -= 1
        d.running.append(rid)
        self.on_change(src)
        self.on_change(d)
        return t, src, d

    def arrays(self) -> dict[str, np.ndarray]:
        """The transfer log as the solution's ``tx_*`` arrays and ``decode_replica``."""
        return {"decode_replica": np.array(self.decode_of, np.int64), "tx_req": np.array(self.req, np.int64),
                "tx_src": np.array(self.src, np.int64), "tx_dst": np.array(self.dst, np.int64),
                "tx_tokens": np.array(self.tokens, np.int64), "tx_bytes": np.array(self.nbytes, np.float64),
                "tx_ready": np.array(self.t_ready), "tx_start": np.array(self.t_start),
                "tx_end": np.array(self.t_end)}
