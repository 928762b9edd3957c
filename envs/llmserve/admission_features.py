"""Load predictions behind the admission observation features (``admission="agent"``).

For a request and a replica, :class:`LoadTracker` predicts what SLO-aware admission
(:class:`schedgym.baselines.llm_admission.SLOAdmission`) judges on: the request's TTFT if admitted
there now (time waited so far + the rest of the iteration in flight + the prefill of the prompts
queued ahead and its own, in iterations of the replica's token budget) and the TPOT its admission
implies (the decode iteration of every resident and queued request plus this one, stretched by the
share of the replica's time that prefills take: the prefills admitted to it in the last
``window_s`` seconds plus this one). The observation gives them as ratios to the request's class
SLOs, so the rule's decision is a threshold on one feature.

The tracker only reads the simulator: it follows the admission log (``sim.adm_*``) to know which
prefills each replica took in the window. Times in seconds, prefill work in milliseconds.
"""

from __future__ import annotations

import math
from collections import deque

from schedgym.envs.llmserve.sim import ADMIT

#: cap of the predicted ratios in the observation (an overloaded replica predicts up to infinity)
RATIO_CAP = 10.0



def predicted_tpot_s(rep, proc, ahead: int, rho: float) -> float:
    """TPOT (seconds per output token) predicted for replica ``rep`` once one more request is admitted:
    one decode iteration of its resident, waiting and swapped requests plus the new one (at most the
    batch cap) over their KV tokens (``proc`` of the running and batched requests plus ``ahead``, the
    prompt tokens queued with the new one), stretched by ``1 / (1 - rho)`` for ``rho``, the share of
    time the replica spends on prefills; infinite when ``rho >= 1``. ``adm_slo`` thresholds it."""
    lat = rep.lat
    b = min(rep.n_resident + len(rep.waiting) + len(rep.swapped) + 1, rep.cap)
    kv = ahead
    for r in rep.running:
        kv += proc[r]
    for r in rep.batch:
        kv += proc[r]
    dec_ms = lat.base(b) + lat.seq(b) + lat.decode(b, kv)
    return math.inf if rho >= 1.0 else dec_ms * 1e-3 / (1.0 - rho)

class LoadTracker:
    """Per-replica recent prefill load and predicted TTFT/TPOT of a request (see the module docstring).

    Args:
        window_s: seconds of admitted prefill work counted in a replica's prefill share.
    """

    def __init__(self, window_s: float = 5.0):
        self.window_s = float(window_s)
        self._hist: dict[int, deque] = {}  # replica -> (admit time, prefill ms)
        self._load: dict[int, float] = {}
        self._seen = 0
        self._chunk_ms: dict[int, float] = {}  # replica -> ms of one full prefill iteration

    def prefill_ms(self, rep, tokens: int) -> float:
        """Milliseconds to prefill ``tokens`` prompt tokens on ``rep`` in iterations of its token
        budget (as :func:`schedgym.baselines.llm_admission._prefill_ms`, with the full iterations'
        cost computed once per replica)."""
        budget = self._budget(rep)
        full, rest = divmod(int(tokens), budget)
        ms = 0.0
        if full:
            c = self._chunk_ms.get(rep.idx)
            if c is None:
                lat = rep.lat
                c = self._chunk_ms[rep.idx] = lat.base(budget) + lat.seq(1) + lat.prefill([budget], [0])
            ms += full * c
        if rest:
            lat = rep.lat
            ms += lat.base(rest) + lat.seq(1) + lat.prefill([rest], [0])
        return ms

    def _sync(self, sim) -> None:
        """Take the admissions logged since the last call into the per-replica histories."""
        log_req, log_kind, log_time = sim.adm_req, sim.adm_kind, sim.adm_time
        st = sim.st
        for i in range(self._seen, len(log_req)):
            if log_kind[i] != ADMIT:
                continue
            rid = log_req[i]
            k = int(st.replica[rid])
            if k < 0:
                continue
            rep = sim.replicas[k]
            ms = self.prefill_ms(rep, st.prompt[rid])
            self._hist.setdefault(k, deque()).append((log_time[i], ms))
            self._load[k] = self._load.get(k, 0.0) + ms
        self._seen = len(log_req)

    @staticmethod
    def _budget(rep) -> int:
        return rep.spec.chunk_size if rep.kind in ("sarathi", "vllm_v1") else rep.spec.max_tokens_in_batch

    def prefill_share(self, sim, k: int) -> float:
        """Share of the last ``window_s`` seconds replica ``k`` spends on the prefills admitted to it."""
        self._sync(sim)
        hist = self._hist.get(k)
        if not hist:
            return 0.0
        load = self._load[k]
        while hist and hist[0][0] < sim.now - self.window_s:
            load -= hist.popleft()[1]
        self._load[k] = load
        return max(load, 0.0) / (self.window_s * 1e3)

    def predict(self, sim, rid: int, k: int) -> tuple[float, float, float]:
        """(predicted TTFT s, predicted TPOT s, prefill share with ``rid``) if ``rid`` is admitted to
        replica ``k`` now."""
        rep = sim.replicas[k]
        st, now = sim.st, sim.now
        P, proc = st.P, st.proc
        ahead = st.prompt[rid]
        for w in rep.waiting:
            ahead += P[w] - proc[w]
        rest = rep.t_end - now if rep.busy else 0.0
        ttft = (now - st.arrival[rid]) + rest + self.prefill_ms(rep, ahead) * 1e-3
        rho = self.prefill_share(sim, k) + self.prefill_ms(rep, st.prompt[rid]) / (self.window_s * 1e3)
        tpot = predicted_tpot_s(rep, proc, ahead, rho)
        return ttft, tpot, rho

    def predict_prefill_s(self, sim, rid: int, rep) -> float:
        """Seconds ``rep`` takes to prefill ``rid``'s prompt alone."""
        return self.prefill_ms(rep, sim.st.prompt[rid]) * 1e-3

    def ratios(self, sim, rid: int, k: int) -> tuple[float, float, float]:
        """:meth:`predict` as (TTFT / TTFT SLO, TPOT / TPOT SLO, prefill share), each capped at
        :data:`RATIO_CAP`."""
        inst = sim.inst
        c = int(inst.klass[rid])
        ttft, tpot, rho = self.predict(sim, rid, k)
        return (min(ttft / float(inst.slo_ttft[c]), RATIO_CAP), min(tpot / float(inst.slo_tpot[c]), RATIO_CAP),
                min(rho, RATIO_CAP))
