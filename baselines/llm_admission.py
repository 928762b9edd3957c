"""Admission-control baselines for LLM serving: admit, defer or reject each arriving request.

Each rule is a callable ``rule(sim, rid, replica) -> ADMIT | DEFER | REJECT`` (the simulator's
:data:`schedgym.envs.llmserve.sim.AdmissionRule`), judged on the replica the router chose, with its
own state for one episode (:func:`make_rule` builds a fresh one). The same rules run inline (the
simulator's fast path, ``LLMRouting-v0``/``LLMQueue-v0`` with ``admission=<rule>``) and as a policy
on the envs with ``admission="agent"`` (:class:`AdmissionPolicy`, which composes a rule with a
routing rule of :mod:`schedgym.baselines.llm_routing` or a queue order of
:mod:`schedgym.baselines.llm_queue`).

* ``slo`` (SLO-aware admission): predicts, from the replica's state and its latency profile, the
  request's TTFT (time waited so far + the rest of the iteration in flight + the prefill of the
  prompts queued ahead and its own, in batches of the replica's token budget) and the TPOT its
  admission implies (the decode iteration of every resident and queued request plus this one,
  stretched by the share of the replica's time that prefills take: the prefills admitted to it
  in the last ``window_s`` seconds plus this one). Rejects when the TTFT exceeds the class's TTFT
  SLO x ``ttft_margin``; defers (until the deferral deadline, then rejects) when the TPOT exceeds
  the class's TPOT SLO x ``tpot_margin``.
* ``kv`` (memory-aware, after the Past-Future scheduler, Gong et al. 2024): predicts the peak KV of
  the replica's resident, swapped and queued requests plus this one if none were admitted later:
  every request holds its tokens and grows by one per decode step until its predicted remaining
  output runs out, so the peak over time is ``max_j sum_{i: rem_i >= rem_j} (tokens_i + rem_j)``.
  Remaining outputs come from the history of completed requests (the ``quantile`` of the output
  lengths longer than what the request generated so far; ``prior_output`` tokens before
  ``min_history`` completions), with ``predictor="oracle"`` from the truth, with ``noisy`` or
  ``rank`` from the stand-in predictors of :mod:`schedgym.envs.llmserve.predict` (``sigma``, ``rho``). Admits when the
  peak fits the replica's blocks (less the watermark) x ``headroom``, else defers.
* ``queue_len`` (load shedding): rejects when the replica already holds ``max_outstanding``
  requests (queued, resident and swapped), or ``max_waiting`` queued ones.

Times are in seconds, lengths in tokens, KV in blocks.
"""

from __future__ import annotations

import math
from bisect import insort
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.llmserve.admission_features import predicted_tpot_s
from schedgym.envs.llmserve.predict import predict_lengths
from schedgym.envs.llmserve.sim import ADMIT, DEFER, REJECT

RULES = ("slo", "kv", "queue_len")


def _prefill_ms(lat, tokens: int, budget: int) -> float:
    """Time (ms) to prefill ``tokens`` prompt tokens in iterations of at most ``budget`` tokens."""
    ms = 0.0
    while tokens > 0:
        k = min(tokens, budget)
        ms += lat.base(k) + lat.seq(1) + lat.prefill([k], [0])
        tokens -= k
    return ms


class SLOAdmission:
    """SLO-aware admission (see the module docstring).

    Args:
        ttft_margin: multiple of the TTFT SLO a predicted TTFT may reach.
        tpot_margin: multiple of the TPOT SLO a predicted TPOT may reach.
        window_s: seconds of admitted prefill work counted in the prefill share.
        protect: ``own`` (judge the TPOT against the request's own class's SLO) or ``tightest``
            (against the tightest TPOT SLO of any class: a loose-SLO request is not admitted when it
            would push tight-SLO requests past theirs).
    """

    name = "slo"

    def __init__(self, ttft_margin: float = 1.0, tpot_margin: float = 1.0, window_s: float = 5.0,
                 protect: str = "own"):
        if protect not in ("own", "tightest"):
            raise ValueError(f"slo admission: protect must be 'own' or 'tightest', got {protect!r}")
        self.protect = protect
        for key, v in (("ttft_margin", ttft_margin), ("tpot_margin", tpot_margin), ("window_s", window_s)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"slo admission: {key} must be a finite number > 0, got {v!r}")
        self.ttft_margin = float(ttft_margin)
        self.tpot_margin = float(tpot_margin)
        self.window_s = float(window_s)
        self._hist: dict[int, deque] = {}  # replica -> (admit time, prefill ms) of recent admissions
        self._load: dict[int, float] = {}  # replica -> sum of the prefill ms in its deque

    def __call__(self, sim, rid: int, k: int) -> int:
        rep = sim.replicas[k]
        st, inst, now = sim.st, sim.inst, sim.now
        lat = rep.lat
        c = int(inst.klass[rid])
        budget = rep.spec.chunk_size if rep.kind in ("sarathi", "vllm_v1") else rep.spec.max_tokens_in_batch
        P, proc = st.P, st.proc
        ahead = st.prompt[rid]
        for w in rep.waiting:
            ahead += P[w] - proc[w]
        rest = rep.t_end - now if rep.busy else 0.0
        own_ms = _prefill_ms(lat, st.prompt[rid], budget)
        ttft = (now - st.arrival[rid]) + rest + _prefill_ms(lat, ahead, budget) * 1e-3
        if ttft > inst.slo_ttft[c] * self.ttft_margin:
            return REJECT
        hist = self._hist.setdefault(k, deque())
        load = self._load.get(k, 0.0)
        while hist and hist[0][0] < now - self.window_s:
            load -= hist.popleft()[1]
        rho = (load + own_ms) / (self.window_s * 1e3)
        tpot = predicted_tpot_s(rep, proc, ahead, rho)
        bound = inst.slo_tpot[c] if self.protect == "own" else inst.slo_tpot.min()
        if tpot > bound * self.tpot_margin:
            self._load[k] = load
            return DEFER
        hist.append((now, own_ms))
        self._load[k] = load + own_ms
        return ADMIT


class KVAdmission:
    """Memory-aware admission after Past-Future (see the module docstring).

    Args:
        quantile: quantile of the conditional output-length history used as a request's length.
        headroom: fraction of the usable blocks the predicted peak may fill.
        predictor: ``history`` (completed requests so far), ``oracle`` (true output lengths), ``noisy``
            (log-normal error ``sigma``) or ``rank`` (Spearman correlation ``rho`` to the truth).
        sigma, rho, seed: options of the ``noisy`` and ``rank`` predictors.
        prior_output: output length assumed before ``min_history`` completions, tokens.
        min_history: completions needed before the history is used.
        refresh: completions between rebuilds of the history array.
    """

    name = "kv"

    def __init__(self, quantile: float = 0.7, headroom: float = 1.0, predictor: str = "history",
                 prior_output: int = 512, min_history: int = 20, refresh: int = 10, sigma: float = 0.5,
                 rho: float = 0.8, seed: int = 0):
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"kv admission: quantile must be in [0, 1], got {quantile!r}")
        if not (math.isfinite(headroom) and headroom > 0):
            raise ValueError(f"kv admission: headroom must be a finite number > 0, got {headroom!r}")
        if predictor not in ("history", "oracle", "noisy", "rank"):
            raise ValueError(f"kv admission: predictor must be history, oracle, noisy or rank, got {predictor!r}")
        self.sigma, self.rho, self.seed = float(sigma), float(rho), int(seed)
        self._pred: np.ndarray | None = None
        if prior_output < 1 or min_history < 1 or refresh < 1:
            raise ValueError("kv admission: prior_output, min_history and refresh must be >= 1")
        self.quantile = float(quantile)
        self.headroom = float(headroom)
        self.predictor = predictor
        self.prior_output = int(prior_output)
        self.min_history = int(min_history)
        self.refresh = int(refresh)
        self._sorted: list[int] = []
        self._tab: np.ndarray | None = None
        self._seen = 0
        self._built = 0

    def _table(self, sim) -> np.ndarray | None:
        """Predicted remaining output by tokens generated so far (index g; the last entry serves
        every longer g), rebuilt every ``refresh`` completions; None before ``min_history``."""
        log = sim.done_log
        if len(log) > self._seen:
            out = sim.st.output
            for r in log[self._seen:]:
                insort(self._sorted, out[r])
            self._seen = len(log)
        if len(self._sorted) >= self.min_history and len(self._sorted) - self._built >= self.refresh:
            h = np.array(self._sorted, np.int64)
            g = np.arange(int(h[-1]) + 1)
            idx = np.searchsorted(h, g, side="right")
            tail = len(h) - idx
            pos = np.minimum(idx + (self.quantile * np.maximum(tail - 1, 0)).astype(np.int64), len(h) - 1)
            self._tab = np.append(np.where(tail > 0, np.maximum(h[pos] - g, 1), 1), 1)
            self._built = len(self._sorted)
        return self._tab

    def remaining(self, sim, rids: list[int], gen: np.ndarray | None = None) -> np.ndarray:
        """Predicted remaining output tokens of ``rids`` (at least 1 each); ``gen``: their generated
        tokens (read from the simulator when None)."""
        st = sim.st
        if gen is None:
            g = st.gen
            gen = np.fromiter((g[r] for r in rids), np.int64, len(rids))
        if self.predictor == "oracle":
            out = st.output
            return np.maximum(np.fromiter((out[r] for r in rids), np.int64, len(rids)) - gen, 1)
        if self.predictor in ("noisy", "rank"):
            if self._pred is None:
                self._pred = predict_lengths(sim.inst.output, self.predictor, rho=self.rho, sigma=self.sigma,
                                             seed=self.seed)
            return np.maximum(self._pred[rids] - gen, 1)
        tab = self._table(sim)
        if tab is None:
            return np.maximum(self.prior_output - gen, 1)
        return tab[np.minimum(gen, len(tab) - 1)]

    def __call__(self, sim, rid: int, k: int) -> int:
        rep = sim.replicas[k]
        st = sim.st
        cap = (rep.num_blocks - rep.watermark) * self.headroom
        if self.predictor == "history":
            self._table(sim)  # keep the history current whatever the outcome
        if rep.used + -(-st.P[rid] // rep.bs) > cap:  # blocks held now plus its prompt: a lower bound of the peak
            return DEFER
        rids = rep.running + rep.batch + rep.swapped + rep.waiting
        rids.append(rid)
        n = len(rids)
        P, proc, pdone, g = st.P, st.proc, st.pdone, st.gen
        held = np.fromiter((proc[r] if pdone[r] else P[r] for r in rids), np.int64, n)
        rem = self.remaining(sim, rids, np.fromiter((g[r] for r in rids), np.int64, n))
        if (held.sum() + rem.sum()) / rep.bs + n <= cap:  # every request at its own peak at once fits
            return ADMIT
        order = np.argsort(rem, kind="stable")
        r_s = rem[order]
        suffix = np.cumsum(held[order][::-1])[::-1]
        alive = n - np.arange(n)
        peak_blocks = np.max((suffix + r_s * alive) / rep.bs + alive)
        return ADMIT if peak_blocks <= cap else DEFER


class QueueLengthAdmission:
    """Queue-length load shedding (see the module docstring).

    Args:
        max_outstanding: requests a replica may hold (queued + resident + swapped) before rejecting.
        max_waiting: queued requests a replica may hold before rejecting (None: no limit).
    """

    name = "queue_len"

    def __init__(self, max_outstanding: int | None = 48, max_waiting: int | None = None):
        for key, v in (("max_outstanding", max_outstanding), ("max_waiting", max_waiting)):
            if v is not None and not (isinstance(v, int) and v >= 1):
                raise ValueError(f"queue_len admission: {key} must be an integer >= 1 or null, got {v!r}")
        self.max_outstanding = max_outstanding
        self.max_waiting = max_waiting

    def __call__(self, sim, rid: int, k: int) -> int:
        rep = sim.replicas[k]
        if self.max_waiting is not None and len(rep.waiting) >= self.max_waiting:
            return REJECT
        if self.max_outstanding is not None and rep.outstanding() >= self.max_outstanding:
            return REJECT
        return ADMIT


_CLASSES = {"slo": SLOAdmission, "kv": KVAdmission, "queue_len": QueueLengthAdmission}


def make_rule(name: str, **kwargs: Any):
    """A fresh admission rule (one per episode: rules keep state). Raises ValueError naming the
    rule and option when either is unknown."""
    if name not in _CLASSES:
        raise ValueError(f"admission rule must be one of {RULES}, got {name!r}")
    try:
        return _CLASSES[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"admission rule {name!r}: {exc} (see baselines/llm_admission.py)") from exc


class AdmissionPolicy:
    """An admission rule composed with a routing rule (``LLMRouting-v0``) or a queue order
    (``LLMQueue-v0``), acting on an env built with ``admission="agent"``.

    Args:
        rule: one of :data:`RULES`.
        router: routing rule for ``LLMRouting-v0`` (see :data:`schedgym.envs.llmserve.cluster.ROUTERS`).
        queue: queue order for ``LLMQueue-v0`` (see :data:`schedgym.baselines.llm_queue.RULES`).
        seed: seed of the routing or queue rule.
        **options: the rule's options (see its class).
    """

    domains = ("llmserve",)

    def __init__(self, rule: str = "slo", router: str = "least_outstanding", queue: str = "fcfs", seed: int = 0,
                 **options: Any):
        from schedgym.baselines.llm_queue import QueueOrderPolicy
        from schedgym.baselines.llm_routing import RoutingPolicy

        make_rule(rule, **options)  # check the name and options now
        self.rule_name = rule
        self.options = dict(options)
        self.routing = RoutingPolicy(router, seed=seed)
        self.queue = QueueOrderPolicy(queue, seed=seed)
        self.name = f"adm_{rule}"
        self.rule = None
        self.env = None

    def reset_seed(self, seed: int) -> None:
        self.routing.reset_seed(seed)
        self.queue.reset_seed(seed)

    def reset(self, env: gym.Env) -> None:
        self.env = env.unwrapped
        if getattr(self.env, "admission", "none") != "agent":
            raise ValueError(f"policy {self.name} needs the env built with admission='agent' (env.kwargs.admission: "
                             f"agent), got admission={getattr(self.env, 'admission', None)!r}")
        self.rule = make_rule(self.rule_name, **self.options)
        self.routing.reset(env)
        self.queue.reset(env)

    def act(self, obs: Any, info: dict) -> int:
        env = self.env
        d = env._decision
        mask = info["action_mask"]
        if d is None:
            return int(np.flatnonzero(mask)[0])
        if d.kind == "admit":
            return self.queue.act(obs, info)
        if d.kind == "gate":  # queue env: the router already chose d.replica
            outcome = self.rule(env.sim, d.rid, d.replica)
            q = env.max_queue
            a = {ADMIT: 0, DEFER: q + 1, REJECT: q + 2}[outcome]
        else:  # routing env: route, then judge the chosen replica
            target = self.routing.act(obs, info)
            outcome = self.rule(env.sim, d.rid, target)
            m = env.max_replicas
            a = {ADMIT: target, DEFER: m, REJECT: m + 1}[outcome]
        if not mask[a]:  # deferral no longer allowed: the simulator would reject
            a = len(mask) - 1
        return int(a)
