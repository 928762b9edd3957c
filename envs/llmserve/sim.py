"""The discrete-event loop of a serving cluster: arrivals, routing, iteration ends.

Events are the next arrival, each replica's end of iteration (no event heap: a cluster has few
replicas, a linear scan is faster) and, under prefill/decode disaggregation, the end of each KV
transfer (:mod:`schedgym.envs.llmserve.disagg`). At equal times arrivals are processed first, then
transfer ends, then iteration ends. A replica that finishes an iteration forms its next batch at
once; an idle replica starts one when a request reaches it (an arrival, or a KV transfer ending on a
decode replica) or when a transfer frees its blocks.

Decisions can be taken inline (a router callable and a queue-ordering key: the fast path used by
benchmarks and baselines) or handed out one at a time to an agent: :meth:`Simulator.decisions` is
a generator that yields :class:`Decision` objects and receives the agent's choice with ``send``.

Admission (off by default: every arrival is admitted, exactly as without it). With an ``admission``
rule or ``agent_gates``, every arriving request is *admitted* (routed and queued), *deferred* or
*rejected* (never served; it counts against SLO attainment and goodput). A deferred request waits
in the simulator's deferral pool and is decided again at the next iteration end that completes a
request (pooled requests are re-decided oldest first, stopping at the first one deferred again);
at its deadline (its arrival + ``max_defer_s``, by default its class's TTFT SLO) it is rejected
(``expire``). Every admission decision is logged (``adm_*`` arrays of the solution) for the
validator. At equal times arrivals come first, then transfer ends, then deadlines, then iteration
ends.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from schedgym.envs.core.errors import InstanceFormatError
from schedgym.envs.llmserve.cluster import Router, RouterView, kv_capacity_blocks
from schedgym.envs.llmserve.configs import load_model
from schedgym.envs.llmserve.disagg import KVTransfers
from schedgym.envs.llmserve.profiles import latency_model
from schedgym.envs.llmserve.replica import IterLog, Replica, ReqState
from schedgym.envs.llmserve.types import LLMServeInstance, LLMServeSolution

#: A queue-ordering key: ``key(sim, replica, rid)``; smaller first (stable: ties keep FCFS order).
QueueKey = Callable[["Simulator", Replica, int], float]
#: An admission rule: ``rule(sim, rid, replica) -> ADMIT | DEFER | REJECT`` (``replica``: the
#: replica the router chose for ``rid``; the rule reads the simulator's state and must not change it).
AdmissionRule = Callable[["Simulator", int, int], int]

#: admission outcomes (gate decisions; also the ``adm_kind`` codes of the log, plus EXPIRE)
ADMIT, DEFER, REJECT, EXPIRE = 0, 1, 2, 3
#: route choices of a gated route decision that do not pick a replica
ROUTE_DEFER, ROUTE_REJECT = -1, -2


@dataclass
class Decision:
    """A pending decision. ``kind`` is ``"route"`` (choose a replica for ``rid``; with ``gate`` also
    :data:`ROUTE_DEFER` or :data:`ROUTE_REJECT`), ``"gate"`` (admit :data:`ADMIT`, defer :data:`DEFER`
    or reject :data:`REJECT` request ``rid``, which the router sends to ``replica``) or ``"admit"``
    (choose a waiting request of ``replica`` from ``candidates`` to admit next, or -1 to run).
    ``deferred``: ``rid`` was deferred before; ``deadline``: the time it is rejected unless admitted
    (inf before its first deferral: it may be deferred until arrival + ``max_defer_s``)."""

    kind: str
    time: float
    rid: int = -1
    replica: int = -1
    candidates: tuple[int, ...] = ()
    must_admit: bool = False
    gate: bool = False
    deferred: bool = False
    deadline: float = math.inf


class Simulator:
    """Simulates ``instance`` on its cluster.

    Args:
        instance: the workload and cluster.
        router: ``"round_robin"`` etc. (see :data:`schedgym.envs.llmserve.cluster.ROUTERS`) or a
            callable ``router(sim, rid) -> replica``; ignored when ``agent_routes``. Under
            disaggregation it routes among the prefill replicas (``n_route`` of them, numbered first).
        queue_key: optional queue order for every replica (default FCFS with vLLM's head-of-line
            blocking); ignored when ``agent_admits``.
        agent_routes: yield a ``route`` decision at every arrival.
        agent_admits: yield ``admit`` decisions at iteration boundaries with admissible requests.
        seed: seed of the random router (the decode router of a disaggregated cluster uses ``seed + 1``).
        admission: an admission rule (:data:`AdmissionRule`) applied to every arrival after routing
            (also when the agent routes); None: admit everything (the default).
        agent_gates: the agent decides admission: a gated ``route`` decision when ``agent_routes``,
            else a ``gate`` decision after the inline router (overrides ``admission``).
        max_defer_s: longest deferral, seconds after arrival (None: the request's class's TTFT SLO).
    """

    def __init__(self, instance: LLMServeInstance, router: str | Callable = "round_robin",
                 queue_key: QueueKey | None = None, agent_routes: bool = False, agent_admits: bool = False,
                 seed: int = 0, admission: AdmissionRule | None = None, agent_gates: bool = False,
                 max_defer_s: float | None = None):
        self.inst = instance
        if instance.pd is not None and any(s.prefix_caching for s in instance.replicas):
            raise InstanceFormatError(instance.name, "prefix_caching is not modelled under prefill/decode "
                                                     "disaggregation (pd=...)", fix="drop prefix_caching or pd")
        self.st = ReqState.create(instance.arrival, instance.prompt, instance.output, instance.klass)
        n = instance.n_requests
        self.st.stream = instance.prefix_stream.tolist() if instance.prefix_stream is not None else [-1] * n
        self.st.shared = instance.prefix_shared.tolist() if instance.prefix_shared is not None else [0] * n
        self.log = IterLog()
        max_req = int(max(int((instance.prompt + instance.output).max(initial=1)), 1))
        self.replicas: list[Replica] = []
        for i, spec in enumerate(instance.replicas):
            lat = latency_model(spec.device, spec.model, spec.tp, spec.pp, spec.cpu_overhead_ms, spec.profile,
                                spec.cpu_overhead_per_seq_ms, spec.ep, spec.moe_skew, spec.skew_alpha,
                                spec.cpu_overhead_per_token_ms)
            nb = kv_capacity_blocks(spec, max_request_tokens=instance.meta.get("vidur_max_tokens"))
            max_len = load_model(spec.model).max_model_len
            self.replicas.append(Replica(i, spec, lat, nb, self.st, self.log, min(max_req, max_len)))
        #: replicas that receive arrivals: all, or the prefill replicas of a disaggregated cluster
        self.n_route = instance.pd.n_prefill if instance.pd is not None else len(self.replicas)
        self.view = RouterView(self.n_route, np.array([r.num_blocks for r in self.replicas[:self.n_route]]))
        self.pdx: KVTransfers | None = None
        if instance.pd is not None:
            self.pdx = KVTransfers(instance.pd, self.replicas, self.st, self.fits, self._update_view, seed + 1)
        self.router = Router(router, seed) if isinstance(router, str) else router
        self.queue_key = queue_key
        self.agent_routes = agent_routes
        self.agent_admits = agent_admits
        self.rejected = [False] * instance.n_requests
        #: requests not served (any reason), in the order they were rejected (rewards read it)
        self.reject_log: list[int] = []
        #: requests that completed, in completion order (admission rules read it)
        self.done_log: list[int] = []
        self.admission = admission
        self.agent_gates = bool(agent_gates)
        self.gated = self.agent_gates or admission is not None
        if max_defer_s is not None and not (max_defer_s >= 0 and math.isfinite(max_defer_s)):
            raise ValueError(f"max_defer_s must be a finite number >= 0 (seconds), got {max_defer_s}")
        self.max_defer_s = max_defer_s
        self.shed = [False] * instance.n_requests  # rejected by an admission decision
        self.deferred: list[int] = []  # the deferral pool, oldest first
        self.deadline = [math.inf] * instance.n_requests
        self._dl_heap: list[tuple[float, int]] = []
        self.adm_req: list[int] = []
        self.adm_time: list[float] = []
        self.adm_kind: list[int] = []
        self.adm_deadline: list[float] = []
        self._check_servable()
        self.now = 0.0
        self.next_arrival = 0
        self.n_done = 0
        self.done = False

    # ------------------------------------------------------------------------------------------
    def _check_servable(self) -> None:
        """Raise :class:`InstanceFormatError` when the cluster can serve no request of the instance
        (every request would be rejected at arrival), naming the limiting option and its valid range."""
        inst = self.inst
        routable = self.replicas[:self.n_route]
        if inst.n_requests == 0 or any(self.accepts(rep, r) for r in range(inst.n_requests) for rep in routable):
            return
        raise InstanceFormatError(inst.name, _capacity_problem(routable[0], inst), fix="valid: "
                                  + _capacity_fix(routable[0], inst))

    def fits(self, rep: Replica, rid: int) -> bool:
        """Whether request ``rid`` can ever be served by ``rep`` (else it is rejected)."""
        total = self.st.prompt[rid] + self.st.output[rid]
        if rep.kind == "orca":
            return total <= rep.max_blocks_seq * rep.bs and rep.max_blocks_seq <= rep.num_blocks
        if -(-total // rep.bs) > rep.num_blocks - rep.watermark:
            return False
        if rep.kind == "vllm_v0" and total > rep.spec.max_tokens_in_batch:
            return False
        return True

    def fits_prefill(self, rep: Replica, rid: int) -> bool:
        """Whether prefill replica ``rep`` can ever run the prompt of ``rid`` (disaggregation)."""
        p = self.st.prompt[rid]
        if rep.kind == "orca":
            return p <= rep.max_blocks_seq * rep.bs and rep.max_blocks_seq <= rep.num_blocks
        if -(-p // rep.bs) > rep.num_blocks - rep.watermark:
            return False
        if rep.kind == "vllm_v0" and p > rep.spec.max_tokens_in_batch:
            return False
        return True

    def accepts(self, rep: Replica, rid: int) -> bool:
        """Whether routing ``rid`` to ``rep`` lets it be served (else it is rejected at arrival).
        Disaggregated: the prompt fits the prefill replica and, unless it wants a single output
        token, the whole request fits some decode replica."""
        if self.pdx is None:
            return self.fits(rep, rid)
        if not self.fits_prefill(rep, rid):
            return False
        return self.st.output[rid] <= 1 or any(self.fits(d, rid) for d in self.pdx.decode)

    def _update_view(self, rep: Replica) -> None:
        v, i = self.view, rep.idx
        if i >= self.n_route:
            v, i = self.pdx.view, i - self.n_route
        v.queued[i] = len(rep.waiting) + len(rep.swapped) + len(rep.pending_in)
        v.running[i] = rep.n_resident + rep.n_held + rep.n_incoming
        v.kv_used[i] = rep.used

    def _route_inline(self, rid: int) -> int:
        r = self.router
        if isinstance(r, Router):
            if r.kind == "prefix_affinity":
                return r(self.view, self.st.prompt[rid], cached=self.cached_prefix(rid))
            if r.kind == "least_kv":
                pend = [sum(-(-self.st.P[w] // rep.bs) for w in rep.waiting) for rep in self.replicas[:self.n_route]]
                return r(self.view, self.st.prompt[rid], pend)
            return r(self.view, self.st.prompt[rid])
        return int(r(self, rid))

    def cached_prefix(self, rid: int) -> list[int]:
        """Tokens of ``rid``'s prompt each routable replica's prefix cache holds now (0 without caching)."""
        return [rep._lookup(rid)[0] * rep.bs if rep.pc else 0 for rep in self.replicas[:self.n_route]]

    def _form_inline(self, rep: Replica, t: float, retry: bool = False) -> None:
        rep.start_formation(t)
        W = rep.waiting
        if W:
            if self.queue_key is not None and len(W) > 1:
                key = self.queue_key
                W.sort(key=lambda r: key(self, rep, r))
            while W and rep.can_admit(W[0]):
                rep.admit(W[0])
        rep.finish_formation(t)
        if not rep.busy and (rep.waiting or rep.swapped) and not rep.n_resident and not retry:
            # the decode phase preempted every resident request (one request filling the KV cache
            # leaves no free block): nothing else would wake this replica, so admit again now
            return self._form_inline(rep, t, retry=True)
        self._update_view(rep)

    def _form_agent(self, rep: Replica, t: float, retry: bool = False) -> Generator[Decision, int, None]:
        rep.start_formation(t)
        while rep.waiting:
            cands = tuple(r for r in rep.waiting if rep.can_admit(r))
            if not cands:
                break
            must = not rep.batch and not rep.running
            choice = yield Decision("admit", t, replica=rep.idx, candidates=cands, must_admit=must)
            if choice is None or choice < 0 or choice not in cands:
                if must:
                    choice = cands[0]
                else:
                    break
            rep.admit(int(choice))
        rep.finish_formation(t)
        if not rep.busy and (rep.waiting or rep.swapped) and not rep.n_resident and not retry:
            yield from self._form_agent(rep, t, retry=True)  # as in _form_inline
            return
        self._update_view(rep)

    def _arrive(self, rid: int, target: int, t: float):
        rep = self.replicas[target]
        self.st.replica[rid] = target
        if not self.accepts(rep, rid):
            self.rejected[rid] = True
            self.reject_log.append(rid)
            self.n_done += 1
            return None
        rep.enqueue(rid)
        self._update_view(rep)
        return rep

    # ------------------------------------------------------------------------------------------
    # admission
    # ------------------------------------------------------------------------------------------
    def defer_limit(self, rid: int) -> float:
        """The latest time ``rid`` may stay deferred: its deadline once deferred, else arrival +
        ``max_defer_s`` (default: its class's TTFT SLO), seconds."""
        if self.deadline[rid] != math.inf:
            return self.deadline[rid]
        inst = self.inst
        d = self.max_defer_s if self.max_defer_s is not None else float(inst.slo_ttft[inst.klass[rid]])
        return self.st.arrival[rid] + d

    def _log_adm(self, rid: int, t: float, kind: int, deadline: float = math.nan) -> None:
        self.adm_req.append(rid)
        self.adm_time.append(t)
        self.adm_kind.append(kind)
        self.adm_deadline.append(deadline)

    def _shed(self, rid: int, t: float, kind: int) -> None:
        self._log_adm(rid, t, kind)
        self.rejected[rid] = True
        self.shed[rid] = True
        self.st.replica[rid] = -1
        self.reject_log.append(rid)
        self.n_done += 1

    def _gate(self, rid: int, t: float, deferred: bool) -> Generator[Decision, int, int]:
        """Route and admit, defer or reject ``rid`` at time ``t``; returns the outcome."""
        limit = self.defer_limit(rid)
        target = -1
        if self.agent_routes:
            choice = yield Decision("route", t, rid=rid, gate=self.agent_gates, deferred=deferred,
                                    deadline=self.deadline[rid])
            choice = int(choice) if choice is not None else 0
            if self.agent_gates and choice in (ROUTE_DEFER, ROUTE_REJECT):
                act = DEFER if choice == ROUTE_DEFER else REJECT
            else:
                target = choice if 0 <= choice < self.n_route else 0
                act = ADMIT if self.agent_gates else int(self.admission(self, rid, target))
        else:
            target = self._route_inline(rid)
            if self.agent_gates:
                act = yield Decision("gate", t, rid=rid, replica=target, deferred=deferred,
                                     deadline=self.deadline[rid])
                act = int(act) if act in (ADMIT, DEFER, REJECT) else ADMIT
            else:
                act = int(self.admission(self, rid, target))
        if act == DEFER and not t < limit:
            act = REJECT  # no deferral past the deadline
        if act == ADMIT:
            self._log_adm(rid, t, ADMIT)
            rep = self._arrive(rid, target, t)
            if rep is not None and not rep.busy:
                if self.agent_admits:
                    yield from self._form_agent(rep, t)
                else:
                    self._form_inline(rep, t)
        elif act == DEFER:
            self._log_adm(rid, t, DEFER, limit)
            if not deferred:
                self.deadline[rid] = limit
                self.deferred.append(rid)
                heapq.heappush(self._dl_heap, (limit, rid))
        else:
            self._shed(rid, t, REJECT)
        return act

    def _redecide(self, t: float) -> Generator[Decision, int, None]:
        """Offer the deferral pool again, oldest first, until a request is deferred again."""
        pool = self.deferred
        while pool:
            rid = pool[0]
            act = yield from self._gate(rid, t, deferred=True)
            if act == DEFER:
                return
            pool.remove(rid)  # admitted or rejected (the agent may have reordered nothing: it is pool[0])

    def _expire(self, t: float) -> None:
        """Reject the deferred requests whose deadline is ``t``."""
        h = self._dl_heap
        while h and h[0][0] <= t:
            _, rid = heapq.heappop(h)
            if rid in self.deferred:
                self.deferred.remove(rid)
                self._shed(rid, t, EXPIRE)

    # ------------------------------------------------------------------------------------------
    def decisions(self) -> Generator[Decision, int, None]:
        """Run the simulation, yielding decisions to the agent (none in inline mode)."""
        arr = self.st.arrival
        n = len(arr)
        reps = self.replicas
        inline_admit = not self.agent_admits
        pdx = self.pdx
        n_route = self.n_route
        while True:
            tmin, rmin = math.inf, None
            for rep in reps:
                if rep.t_end < tmin:
                    tmin, rmin = rep.t_end, rep
            ai = self.next_arrival
            ta = arr[ai] if ai < n else math.inf
            tx = pdx.next_end if pdx is not None else math.inf
            td = self._dl_heap[0][0] if self._dl_heap else math.inf
            if ta == math.inf and rmin is None and tx == math.inf and td == math.inf:
                break
            if ta <= tmin and ta <= tx and ta <= td:
                self.now = ta
                self.next_arrival = ai + 1
                if self.gated:
                    yield from self._gate(ai, ta, deferred=False)
                    continue
                if self.agent_routes:
                    target = yield Decision("route", ta, rid=ai)
                    target = int(target) if target is not None and 0 <= int(target) < n_route else 0
                else:
                    target = self._route_inline(ai)
                rep = self._arrive(ai, target, ta)
                if rep is not None and not rep.busy:
                    if inline_admit:
                        self._form_inline(rep, ta)
                    else:
                        yield from self._form_agent(rep, ta)
            elif td < tx and td <= tmin:
                self.now = td
                self._expire(td)
            elif tx <= tmin:
                self.now = tx
                _, src, dst = pdx.complete()
                for rep in (src, dst):
                    if not rep.busy:
                        if inline_admit:
                            self._form_inline(rep, tx)
                        else:
                            yield from self._form_agent(rep, tx)
                pdx.try_book(dst, tx)
            else:
                self.now = tmin
                done = rmin.end_batch()
                self.n_done += len(done)
                self.done_log.extend(done)
                if pdx is not None and rmin.handoff:
                    pdx.handoff(rmin, tmin)
                if inline_admit:
                    self._form_inline(rmin, tmin)
                else:
                    yield from self._form_agent(rmin, tmin)
                if pdx is not None and rmin.role == "decode":
                    pdx.try_book(rmin, tmin)
                if self.deferred and done:
                    yield from self._redecide(tmin)
        self.done = True

    def run(self) -> LLMServeSolution:
        """Run to the end with the inline router and queue order; returns the solution."""
        gen = self.decisions()
        for d in gen:  # only reached when an agent mode is on: fall back to the inline rules
            raise RuntimeError(f"agent decision {d.kind} requested in run(); use decisions() instead")
        return self.solution()

    # ------------------------------------------------------------------------------------------
    def solution(self) -> LLMServeSolution:
        st, log = self.st, self.log
        rej = np.array(self.rejected, bool)
        rep = np.array(st.replica, np.int64)
        return LLMServeSolution(
            replica=rep, rejected=rej, first_token=np.array(st.first_token), completion=np.array(st.completion),
            first_scheduled=np.array(st.first_sched), preemptions=np.array(st.preempt, np.int64),
            it_replica=np.array(log.replica, np.int64), it_start=np.array(log.start), it_end=np.array(log.end),
            it_ptr=np.array(log.ptr, np.int64), it_req=np.array(log.req, np.int64),
            it_tokens=np.array(log.tok, np.int64), it_swap_blocks=np.array(log.swap, np.int64),
            ev_req=np.array(log.ev_req, np.int64), ev_time=np.array(log.ev_time), ev_kind=np.array(log.ev_kind, np.int64),
            num_blocks=np.array([r.num_blocks for r in self.replicas], np.int64),
            block_size=self.replicas[0].bs if self.replicas else 16,
            kv_peak_blocks=np.array([r.peak for r in self.replicas], np.int64),
            hit_req=np.array(log.hit_req, np.int64), hit_time=np.array(log.hit_time),
            hit_tokens=np.array(log.hit_tok, np.int64),
            **(self.pdx.arrays() if self.pdx is not None else {}), **self._admission_arrays())

    def _admission_arrays(self) -> dict:
        if not self.gated:
            return {}
        return {"shed": np.array(self.shed, bool), "adm_req": np.array(self.adm_req, np.int64),
                "adm_time": np.array(self.adm_time), "adm_kind": np.array(self.adm_kind, np.int64),
                "adm_deadline": np.array(self.adm_deadline)}

    @property
    def iterations(self) -> int:
        return len(self.log.start)


def _shortest(inst: LLMServeInstance) -> int:
    return int((inst.prompt + inst.output).min())


def _capacity_problem(rep: Replica, inst: LLMServeInstance) -> str:
    """Why replica ``rep`` serves no request of ``inst`` (the first limit that binds)."""
    spec, least = rep.spec, _shortest(inst)
    blocks = f"num_blocks={rep.num_blocks}" if spec.num_blocks is not None else f"a KV cache of {rep.num_blocks} blocks"
    if rep.kind == "orca":
        return (f"the cluster can serve no request: Orca reserves {rep.max_blocks_seq} blocks of {rep.bs} tokens "
                f"(the longest request) for every request, more than {blocks}")
    if rep.kind == "vllm_v0" and least > spec.max_tokens_in_batch:
        return (f"the cluster can serve no request: max_tokens_in_batch={spec.max_tokens_in_batch} is below the "
                f"shortest request ({least} tokens)")
    return (f"the cluster can serve no request: {blocks} of {rep.bs} tokens (watermark {rep.watermark}) cannot "
            f"hold the shortest request ({least} tokens)")


def _capacity_fix(rep: Replica, inst: LLMServeInstance) -> str:
    spec, least = rep.spec, _shortest(inst)
    if rep.kind == "orca":
        return f"num_blocks >= {rep.max_blocks_seq}, or shorter requests (max_tokens)"
    if rep.kind == "vllm_v0" and least > spec.max_tokens_in_batch:
        return f"max_tokens_in_batch >= {least}"
    need = -(-least // rep.bs)
    nb = need
    while nb - int(spec.watermark_fraction * nb) < need:
        nb += 1
    return f"num_blocks >= {nb} (or a larger device, tp or pp when the blocks come from memory)"


def simulate(instance: LLMServeInstance, router: str | Callable = "round_robin", queue_key: QueueKey | None = None,
             seed: int = 0, admission: AdmissionRule | None = None, max_defer_s: float | None = None) -> LLMServeSolution:
    """Simulate ``instance`` with an inline router, queue order (FCFS by default) and admission rule
    (None: admit everything)."""
    return Simulator(instance, router=router, queue_key=queue_key, seed=seed, admission=admission,
                     max_defer_s=max_defer_s).run()
