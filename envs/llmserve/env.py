"""Gymnasium adapters of the serving simulator: ``schedgym/LLMRouting-v0`` and ``schedgym/LLMQueue-v0``.

## Description
A cluster of LLM replicas (continuous batching, paged KV cache; :mod:`schedgym.envs.llmserve.replica`)
serves a request stream replayed from a trace. ``LLMRouting-v0``: at each arrival the agent picks
the replica. ``LLMQueue-v0``: at each iteration boundary of a replica with admissible waiting
requests the agent picks which one to admit next, or to run the batch as is; this is where SRPT,
EDF and fairness policies live. Everything else (batch formation, preemption, the other decision)
follows the cluster's rules (``router`` / ``queue_order`` arguments). A workload may disaggregate
prefill and decode (``pd=2+2``: :mod:`schedgym.envs.llmserve.disagg`): routing then picks among the
prefill replicas (numbered first; the decode replicas are masked) and the KV hand-off to a decode
replica follows the workload's ``pd_router``; queue decisions arise on both kinds of replica.

## Action Space
* Routing: ``Discrete(max_replicas)``, the replica index.
* Queue: ``Discrete(max_queue + 1)``: ``k < max_queue`` admits the k-th waiting request of the
  observation (the replica's queue in arrival order, first ``max_queue``), ``max_queue`` runs the
  batch as is (masked when the replica would otherwise idle).
Use :meth:`action_masks` (also ``info["action_mask"]``). Invalid actions are no-ops with
``info["invalid_action"] = True`` and ``invalid_action_penalty`` as reward.

Admission control (``admission``; :mod:`schedgym.envs.llmserve.sim`): ``none`` (the default, every
arrival is admitted: spaces and results as without it), a rule name of
:mod:`schedgym.baselines.llm_admission` (``slo``, ``kv``, ``queue_len``; the rule decides inline
with ``admission_kwargs``, the agent keeps its routing or queue decisions) or ``agent``: the agent
decides, with two more actions, *defer* and *reject*:

* Routing: ``Discrete(max_replicas + 2)``: ``k < max_replicas`` admits the request to replica k,
  ``max_replicas`` defers it, ``max_replicas + 1`` rejects it. Deferred requests come back as route
  decisions (``info["candidates"]["deferred"]``) at the next iteration end that completes a request,
  until admitted, rejected, or rejected automatically at their deadline (arrival + ``max_defer_s``,
  default the class's TTFT SLO).
* Queue: ``Discrete(max_queue + 3)``; besides the admit decisions above, each arrival (routed by
  ``router``) and each deferred request coming back is a *gate* decision
  (``info["decision"] == "gate"``): row 0 holds the request, action 0 admits it to the replica's
  queue, ``max_queue + 1`` defers it, ``max_queue + 2`` rejects it (the other rows show the replica's
  queue, not admissible). The defer and reject actions are masked at the other decisions, defer
  also once the deadline has come.

A rejected request is never served; it counts as missing its SLO (reward, ``slo_attainment``,
``goodput_rps``) and in ``rejected_rate``.

## Observation Space
The padded graph of :mod:`schedgym.envs.core.graph_obs`. Routing: one node per replica then the
arriving request's node; edges request -> each replica it may be routed to (all, or the prefill
replicas of a disaggregated cluster) with (blocks the prompt needs / free blocks, accepts flag).
Queue: waiting requests (``max_queue`` rows), then running requests (``max_running`` rows), then
the replica node; edges from every request node to the replica node. Node features (times in
seconds, lengths in thousands of tokens): 0 waiting flag, 1 running flag, 2 replica flag, 3 prompt,
4 generated so far, 5 output length as revealed (0 hidden, true value with ``reveal="oracle"``, a
log-normal noisy prediction with ``reveal="noisy"``, a prediction with Spearman correlation
``predictor_rho`` to the truth with ``reveal="rank"``: :mod:`schedgym.envs.llmserve.predict`), 6 waiting time, 7 slack to the TTFT
deadline, 8 admissible flag, 9 tenant's share of running requests, 10 KV blocks held / replica
blocks, 11 queued requests (replica), 12 running requests (replica), 13 KV in use (replica),
14 busy flag (replica). With ``admission="agent"`` three more: 15 the request being admitted
(gate), 16 deferred before, 17 seconds left until its deferral deadline, 18 defer-action node,
19 reject-action node, 20 predicted TTFT / TTFT SLO, 21 predicted TPOT / TPOT SLO, 22 prefill share
of the replica's time (:mod:`schedgym.envs.llmserve.admission_features`: what SLO-aware admission
judges on; on a replica node for the request decided now if admitted there, on the request node
the minimum over the replicas it may go to, capped at 10), 23 the request's own prefill time / its
TTFT SLO, 24 its class's TTFT SLO (s), 25 its class's TPOT SLO (s) x 10. The defer and reject
actions point at two nodes of their own (flags 18 and 19, a copy of the request's features, an edge
to the request node), so a pointer policy can tell them apart. ``globals``: time / horizon, requests arrived / N, finished / N, SLO met
so far / N, mean KV in use, plus (queue env) batch size and tokens so far.

## Rewards
At each step: (requests finished since the last step that met both SLOs - those that missed,
including rejected ones) / N, so an episode's rewards sum to ``2 * slo_attainment - 1``.

## Starting State
A workload from ``reset(options={"instance": ...})`` (a workload name such as
``azure_conv:rate=3:n=500:seed=0``, or an :class:`LLMServeInstance`), else the env's ``instance``,
else one built from ``default_workload`` with a seed drawn from the env's generator. With
``window`` the episode is a random window of that many consecutive requests.

## Episode End
Terminates when every request has finished (or was rejected); then ``info["solution"]`` (an
:class:`LLMServeSolution`) and ``info["metrics"]`` (``ttft_p99_s``, ``slo_attainment``,
``goodput_rps``, ...) are set. Truncates after ``10 * N + 100`` invalid actions.
Once the episode has ended (terminated or truncated), ``step()`` raises
:class:`~schedgym.envs.core.errors.ResetNeededError` until the next ``reset()``, as before the first
``reset()`` and after one that raised (:mod:`schedgym.envs.core.base_env`).

## Arguments
``instance``, ``default_workload``, ``window``, ``router`` (queue env), ``queue_order`` (routing
env: ``fcfs`` or a baseline key name), ``reveal`` (``none``/``oracle``/``noisy``/``rank``), ``predictor_sigma``,
``predictor_rho``,
``max_replicas``, ``max_queue``, ``max_running``, ``invalid_action_penalty``, ``render_mode``,
``admission`` (``none``/``agent``/a rule name), ``admission_kwargs`` (the rule's options),
``max_defer_s`` (longest deferral in seconds; None: the class's TTFT SLO), ``generator`` (a callable
drawing a workload, name or instance, from the env's random generator when no instance is given),
``mode`` (``routing``/``queue``: checked against the env, lets the domain's kwargs build it),
``episode_metrics`` (``full``, or ``slo``: only the SLO metrics of :func:`slo_metrics`, for training).

## Version History
* v0: initial release; prefill/decode disaggregation added as a workload option (off by default, so
  colocated workloads behave exactly as before); admission control (admit / defer / reject) added
  as an option (off by default, same guarantee).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.core.base_env import SchedEnv, StepOutcome
from schedgym.envs.core.graph_obs import padded_graph_space
from schedgym.envs.llmserve.metrics import metrics
from schedgym.envs.llmserve.sim import ADMIT, DEFER, REJECT, ROUTE_DEFER, ROUTE_REJECT, Decision, Simulator
from schedgym.envs.llmserve.types import LLMServeInstance, LLMServeSolution
from schedgym.envs.llmserve.workload import build_workload

N_NODE_FEATURES = 15
N_ADMISSION_FEATURES = 11  # extra node features with admission="agent"
N_EDGE_FEATURES = 2
N_GLOBALS = 7
REVEAL = ("none", "oracle", "noisy", "rank")


def slo_metrics(instance: LLMServeInstance, solution: LLMServeSolution) -> dict[str, float]:
    """The SLO metrics of :func:`~schedgym.envs.llmserve.metrics.metrics` only (``slo_attainment``,
    ``goodput_rps``, ``throughput_rps``, ``rejected_rate``, per class with several classes; the same
    definitions, :func:`~schedgym.envs.llmserve.metrics.slo_rates`), without its replay of the
    iterations (latency percentiles, KV and TBT): what training needs, 20x cheaper."""
    from schedgym.envs.llmserve.metrics import per_request, slo_rates

    return slo_rates(instance, solution, per_request(instance, solution))


def load_workload(spec: str | LLMServeInstance) -> LLMServeInstance:
    if isinstance(spec, LLMServeInstance):
        return spec
    return build_workload(str(spec))


class _LLMServeEnv(SchedEnv):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}
    agent_routes = False
    agent_admits = False
    default_workload = "azure_conv:rate=3:n=200"

    def __init__(self, instance: str | LLMServeInstance | None = None, default_workload: str | None = None,
                 window: int | None = None, router: str = "round_robin", queue_order: str = "fcfs",
                 reveal: str = "none", predictor_sigma: float = 0.5, predictor_rho: float = 0.8,
                 max_replicas: int = 8, max_queue: int = 32,
                 max_running: int = 64, invalid_action_penalty: float = -0.01, render_mode: str | None = None,
                 admission: str = "none", admission_kwargs: dict | None = None, max_defer_s: float | None = None,
                 generator: Callable[[np.random.Generator], str | LLMServeInstance] | None = None,
                 mode: str | None = None, episode_metrics: str = "full"):
        if mode is not None and mode != self.mode:
            raise ValueError(f"{type(self).__name__} is mode {self.mode!r} of the llmserve domain, got mode={mode!r}")
        if episode_metrics not in ("full", "slo"):
            raise ValueError(f"episode_metrics must be 'full' or 'slo', got {episode_metrics!r}")
        self.episode_metrics = episode_metrics
        if reveal not in REVEAL:
            raise ValueError(f"reveal must be one of {REVEAL}, got {reveal!r}")
        if admission not in ("none", "agent"):
            from schedgym.baselines.llm_admission import make_rule

            make_rule(admission, **(admission_kwargs or {}))  # fails early on a bad name or option
        self.admission = admission
        self.admission_kwargs = dict(admission_kwargs or {})
        self.max_defer_s = max_defer_s
        self.gates = admission == "agent"
        self.n_node_features = N_NODE_FEATURES + (N_ADMISSION_FEATURES if self.gates else 0)
        super().__init__(render_mode)
        self.instance_arg = load_workload(instance) if instance is not None else None
        self.default_workload_name = default_workload or self.default_workload
        self.generator = generator
        self.window = window
        self.router = router
        self.queue_order = queue_order
        self.reveal = reveal
        self.predictor_sigma = float(predictor_sigma)
        self.predictor_rho = float(predictor_rho)
        if not -1.0 <= self.predictor_rho <= 1.0:
            raise ValueError(f"predictor_rho (Spearman correlation to the truth) must be in [-1, 1], got {predictor_rho}")
        self.max_replicas = int(max_replicas)
        self.max_queue = int(max_queue)
        self.max_running = int(max_running)
        self.invalid_action_penalty = float(invalid_action_penalty)
        self._build_spaces()
        self.sim: Simulator | None = None
        self.instance: LLMServeInstance | None = None

    # ------------------------------------------------------------------------------------------
    def _pick_instance(self, options: dict) -> LLMServeInstance:
        if options.get("instance") is not None:
            inst = load_workload(options["instance"])
        elif self.instance_arg is not None:
            inst = self.instance_arg
        elif self.generator is not None:
            inst = load_workload(self.generator(self.np_random))
        else:
            seed = int(self.np_random.integers(1_000_000))
            inst = build_workload(f"{self.default_workload_name}:seed={seed}")
        if self.window is not None and inst.n_requests > self.window:
            start = int(self.np_random.integers(inst.n_requests - self.window + 1))
            inst = inst.window(start, self.window)
        return inst

    def _start_episode(self, options: dict[str, Any]) -> None:
        inst = self._pick_instance(options)
        if inst.n_replicas > self.max_replicas:
            raise ValueError(f"workload {inst.name} has {inst.n_replicas} replicas; build the env with "
                             f"max_replicas >= {inst.n_replicas}")
        self.instance = inst
        qkey = None
        if self.queue_order != "fcfs" and not self.agent_admits:
            from schedgym.baselines.llm_queue import queue_key

            qkey = queue_key(self.queue_order, seed=int(self.np_random.integers(1 << 30)))
        rule = None
        if self.admission not in ("none", "agent"):
            from schedgym.baselines.llm_admission import make_rule

            rule = make_rule(self.admission, **self.admission_kwargs)
        self.sim = Simulator(inst, router=self.router, queue_key=qkey, agent_routes=self.agent_routes,
                             agent_admits=self.agent_admits, seed=int(self.np_random.integers(1 << 30)),
                             admission=rule, agent_gates=self.gates, max_defer_s=self.max_defer_s)
        n = inst.n_requests
        self._noise = np.exp(self.np_random.normal(0.0, self.predictor_sigma, n)) if self.reveal == "noisy" else None
        self._pred = None
        if self.reveal == "rank":
            from schedgym.envs.llmserve.predict import predict_lengths

            self._pred = predict_lengths(inst.output, "rank", rho=self.predictor_rho,
                                         seed=int(self.np_random.integers(1 << 30)))
        self._gen = self.sim.decisions()
        self._good = 0
        self._counted = np.zeros(n, bool)
        self._n_invalid = 0
        self._seen_entries = 0
        self._seen_rejects = 0
        self._tracker = None
        if self.gates:
            from schedgym.envs.llmserve.admission_features import LoadTracker

            self._tracker = LoadTracker()
        self._decision = self._advance(None)

    def _advance(self, choice) -> Decision | None:
        try:
            return next(self._gen) if choice is None else self._gen.send(choice)
        except StopIteration:
            return None

    def _reward(self) -> float:
        """(newly finished requests meeting SLOs - those missing them) / N."""
        st, inst = self.sim.st, self.instance
        newly = []
        rej = self.sim.rejected
        done = self.sim.done_log
        for r in done[self._seen_entries:]:
            if not self._counted[r]:
                self._counted[r] = True
                newly.append(r)
        self._seen_entries = len(done)
        rlog = self.sim.reject_log
        for r in rlog[self._seen_rejects:]:
            if not self._counted[r]:
                self._counted[r] = True
                newly.append(r)
        self._seen_rejects = len(rlog)
        if not newly:
            return 0.0
        idx = np.array(newly)
        ft = np.array([st.first_token[r] for r in newly])
        ct = np.array([st.completion[r] for r in newly])
        rj = np.array([rej[r] for r in newly])
        out = inst.output[idx]
        ttft = ft - inst.arrival[idx]
        tpot = np.where(out > 1, (ct - ft) / np.maximum(out - 1, 1), 0.0)
        ok = ~rj & (ttft <= inst.slo_ttft[inst.klass[idx]]) & (tpot <= inst.slo_tpot[inst.klass[idx]])
        self._good += int(ok.sum())
        return float((ok.sum() - (~ok).sum()) / inst.n_requests)

    def _apply(self, action) -> StepOutcome:
        if self._decision is None:  # an episode without any decision: the one valid action ends it
            return StepOutcome(0.0, True, False, invalid=False)
        mask = self._mask()
        a = int(action)
        if not (0 <= a < len(mask)) or not mask[a]:
            self._n_invalid += 1
            trunc = self._n_invalid > 10 * self.instance.n_requests + 100
            return StepOutcome(self.invalid_action_penalty, False, trunc, invalid=True)
        self._decision = self._advance(self._choice(a))
        r = self._reward()
        terminated = self._decision is None
        return StepOutcome(r, terminated, False, invalid=False)

    def _action_mask(self) -> np.ndarray:
        return self._mask()

    # ------------------------------------------------------------------------------------------
    def _revealed(self, rid: int) -> float:
        if self.reveal == "oracle":
            return float(self.instance.output[rid])
        if self.reveal == "noisy":
            return float(self.instance.output[rid] * self._noise[rid])
        if self.reveal == "rank":
            return float(self._pred[rid])
        return 0.0

    def _req_features(self, x: np.ndarray, row: int, rid: int, rep, waiting: bool, admissible: bool) -> None:
        st, inst, now = self.sim.st, self.instance, self.sim.now
        x[row, 0] = waiting
        x[row, 1] = not waiting
        x[row, 3] = st.prompt[rid] / 1e3
        x[row, 4] = st.gen[rid] / 1e3
        x[row, 5] = self._revealed(rid) / 1e3
        x[row, 6] = now - st.arrival[rid]
        if st.gen[rid] == 0:
            x[row, 7] = st.arrival[rid] + inst.slo_ttft[inst.klass[rid]] - now
        x[row, 8] = admissible
        x[row, 10] = st.blocks[rid] / max(rep.num_blocks, 1)

    def _gate_features(self, x: np.ndarray, row: int, d: Decision) -> None:
        """Admission features (``admission="agent"``) of the request a route/gate decision is about."""
        x[row, 15] = 1.0
        x[row, 16] = d.deferred
        x[row, 17] = max(self.sim.defer_limit(d.rid) - self.sim.now, 0.0)

    def _load_features(self, x: np.ndarray, row: int, rid: int, replicas: list[int]) -> None:
        """Features 20-22 of ``row``: predicted TTFT and TPOT ratios and prefill share of ``rid`` on
        ``replicas`` (their minimum when several)."""
        preds = np.array([self._tracker.ratios(self.sim, rid, k) for k in replicas])
        x[row, 20:23] = preds.min(axis=0)

    def _class_features(self, x: np.ndarray, row: int, rid: int) -> None:
        """Features 23-25 of ``row``: ``rid``'s own prefill time / TTFT SLO and its class's SLOs."""
        from schedgym.envs.llmserve.admission_features import RATIO_CAP

        inst, rep = self.instance, self.sim.replicas[0]
        c = int(inst.klass[rid])
        own = self._tracker.predict_prefill_s(self.sim, rid, rep)
        x[row, 23] = min(own / float(inst.slo_ttft[c]), RATIO_CAP)
        x[row, 24] = float(inst.slo_ttft[c])
        x[row, 25] = float(inst.slo_tpot[c]) * 10.0

    def _action_nodes(self, x: np.ndarray, ei: np.ndarray, em: np.ndarray, nm: np.ndarray, req_row: int,
                      first_node: int, first_edge: int) -> None:
        """The defer and reject action nodes (``first_node``, ``first_node + 1``): a copy of the request
        row with flag 18 or 19, and an edge from each to the request node."""
        for j in range(2):
            row = first_node + j
            x[row] = x[req_row]
            x[row, 18 + j] = 1.0
            nm[row] = 1
            ei[:, first_edge + j] = (row, req_row)
            em[first_edge + j] = 1

    def _rep_features(self, x: np.ndarray, row: int, rep) -> None:
        x[row, 2] = 1.0
        x[row, 11] = (len(rep.waiting) + len(rep.swapped)) / 100.0
        x[row, 12] = rep.n_resident / 100.0
        x[row, 13] = rep.used / max(rep.num_blocks, 1)
        x[row, 14] = rep.busy

    def _globals(self, extra: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        inst, sim = self.instance, self.sim
        n = max(inst.n_requests, 1)
        horizon = float(inst.arrival[-1]) + 1.0 if inst.n_requests else 1.0
        kv = np.mean([r.used / max(r.num_blocks, 1) for r in sim.replicas])
        return np.array([sim.now / horizon, sim.next_arrival / n, sim.n_done / n, self._good / n, kv, *extra],
                        dtype=np.float32)

    def _domain_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"time": self.sim.now}
        d = self._decision
        if d is not None:
            info["decision"] = d.kind
            info["candidates"] = self._candidate_info()
            if self.gates and d.kind != "admit":
                info["candidates"].update(deferred=d.deferred, defer_limit=self.sim.defer_limit(d.rid))
        return info

    def _may_defer(self, d: Decision) -> bool:
        return d.time < self.sim.defer_limit(d.rid)

    def _final_solution(self) -> LLMServeSolution | None:
        return self.sim.solution() if self._decision is None else None

    def _metrics(self, solution: LLMServeSolution) -> dict[str, float]:
        if self.episode_metrics == "slo":
            return slo_metrics(self.instance, solution)
        return metrics(self.instance, solution)

    def _render_rgb(self) -> np.ndarray:
        from schedgym.envs.llmserve.viewer import render_rgb

        return render_rgb(self.instance, self.sim.solution(), now=self.sim.now)


class LLMRoutingEnv(_LLMServeEnv):
    """``schedgym/LLMRouting-v0``: route each arriving request to a replica (see module docstring)."""

    agent_routes = True
    mode = "routing"
    default_workload = "azure_conv:rate=10:n=200:replicas=4"

    def _build_spaces(self) -> None:
        # with admission="agent": two more nodes and edges, the defer and reject action nodes
        self.n_nodes = self.max_replicas + 1 + (2 if self.gates else 0)
        self.n_edges = self.max_replicas + (2 if self.gates else 0)
        self.n_actions = self.max_replicas + (2 if self.gates else 0)
        self.action_space = gym.spaces.Discrete(self.n_actions)
        self.observation_space = padded_graph_space(self.n_nodes, self.n_node_features, self.n_edges,
                                                    N_EDGE_FEATURES, self.n_actions, N_GLOBALS)

    def _mask(self) -> np.ndarray:
        m = np.zeros(self.n_actions, bool)
        d = self._decision
        if d is None:
            m[0] = True  # nothing to route: any action ends the episode (see LLMQueueEnv._mask)
            return m
        R = self.sim.n_route  # all replicas, or the prefill replicas of a disaggregated cluster
        fits = [self.sim.accepts(rep, d.rid) for rep in self.sim.replicas[:R]]
        m[:R] = fits if any(fits) else True
        if self.gates:
            m[self.max_replicas] = self._may_defer(d)
            m[self.max_replicas + 1] = True
        return m

    def _choice(self, a: int) -> int:
        if self.gates and a >= self.max_replicas:
            return ROUTE_DEFER if a == self.max_replicas else ROUTE_REJECT
        return a

    def _candidate_info(self) -> dict[str, Any]:
        d = self._decision
        sim = self.sim
        return {"rid": d.rid, "prompt": sim.st.prompt[d.rid],
                "queued": list(sim.view.queued), "running": list(sim.view.running),
                "kv_used": list(sim.view.kv_used), "kv_total": list(sim.view.kv_total),
                "pending_blocks": [sum(-(-sim.st.P[w] // rep.bs) for w in rep.waiting)
                                   for rep in sim.replicas[:sim.n_route]],
                "cached_prefix": sim.cached_prefix(d.rid)}

    def _observation(self) -> dict[str, np.ndarray]:
        R, M = self.instance.n_replicas, self.max_replicas
        x = np.zeros((self.n_nodes, self.n_node_features), np.float32)
        ei = np.zeros((2, self.n_edges), np.int64)
        ea = np.zeros((self.n_edges, N_EDGE_FEATURES), np.float32)
        em = np.zeros(self.n_edges, np.int8)
        nm = np.zeros(self.n_nodes, np.int8)
        for i, rep in enumerate(self.sim.replicas):
            self._rep_features(x, i, rep)
        nm[:R] = 1
        d = self._decision
        if d is not None:
            rid = d.rid
            x[M, 0] = 1.0
            self._req_features(x, M, rid, self.sim.replicas[0], True, True)
            x[M, 10] = 0.0
            nm[M] = 1
            for i, rep in enumerate(self.sim.replicas[:self.sim.n_route]):
                ei[:, i] = (M, i)
                need = -(-self.sim.st.prompt[rid] // rep.bs)
                ea[i, 0] = need / max(rep.num_blocks - rep.used, 1)
                ea[i, 1] = self.sim.accepts(rep, rid)
                em[i] = 1
                if self.gates:
                    self._load_features(x, i, rid, [i])
            if self.gates:
                self._gate_features(x, M, d)
                x[M, 20:23] = x[:self.sim.n_route, 20:23].min(axis=0)  # the best replica's
                self._class_features(x, M, rid)
                self._action_nodes(x, ei, em, nm, M, M + 1, M)
        mask = self._mask()
        an = np.arange(self.n_actions, dtype=np.int64)
        if self.gates:
            an[M:] = (M + 1, M + 2)  # defer / reject: their own nodes
        return {"x": x, "edge_index": ei, "edge_attr": ea, "edge_mask": em, "node_mask": nm,
                "action_mask": mask.astype(np.int8), "action_node": an, "globals": self._globals()}


class LLMQueueEnv(_LLMServeEnv):
    """``schedgym/LLMQueue-v0``: choose which waiting request a replica admits next (see module docstring)."""

    agent_admits = True
    mode = "queue"
    default_workload = "azure_conv:rate=3.5:n=200"

    def _build_spaces(self) -> None:
        # with admission="agent": two more nodes and edges, the defer and reject action nodes
        self.n_nodes = self.max_queue + self.max_running + 1 + (2 if self.gates else 0)
        self.n_edges = self.max_queue + self.max_running + (2 if self.gates else 0)
        self.n_actions = self.max_queue + (3 if self.gates else 1)
        self.action_space = gym.spaces.Discrete(self.n_actions)
        self.observation_space = padded_graph_space(self.n_nodes, self.n_node_features, self.n_edges,
                                                    N_EDGE_FEATURES, self.n_actions, N_GLOBALS)

    def _visible_waiting(self) -> list[int]:
        d = self._decision
        if d is None:
            return []
        if d.kind == "gate":  # the request to admit first, then the replica's queue
            return [d.rid] + self.sim.replicas[d.replica].waiting[: self.max_queue - 1]
        return self.sim.replicas[d.replica].waiting[: self.max_queue]

    @staticmethod
    def _candidates(d: Decision) -> set[int]:
        return {d.rid} if d.kind == "gate" else set(d.candidates)

    def _mask(self) -> np.ndarray:
        m = np.zeros(self.n_actions, bool)
        d = self._decision
        if d is None:
            # nothing to decide (an episode that needs no decision, e.g. every request rejected):
            # the "admit nothing" action stays valid, and stepping it ends the episode
            m[self.max_queue] = True
            return m
        if d.kind == "gate":
            m[0] = True
            m[self.max_queue + 1] = self._may_defer(d)
            m[self.max_queue + 2] = True
            return m
        cands = set(d.candidates)
        vis = self._visible_waiting()
        for k, r in enumerate(vis):
            m[k] = r in cands
        m[self.max_queue] = not d.must_admit or not m[: self.max_queue].any()
        return m

    def _choice(self, a: int) -> int:
        if self._decision.kind == "gate":
            return {0: ADMIT, self.max_queue + 1: DEFER, self.max_queue + 2: REJECT}[a]
        if a == self.max_queue:
            return -1
        return self._visible_waiting()[a]

    def _candidate_info(self) -> dict[str, Any]:
        d = self._decision
        sim = self.sim
        st = sim.st
        vis = self._visible_waiting()
        inst = self.instance
        rep = sim.replicas[d.replica]
        running_tenants = np.bincount([inst.tenant[r] for r in rep.running + rep.batch],
                                      minlength=max(inst.n_tenants, 1))
        cands = self._candidates(d)
        return {"replica": d.replica, "rid": list(vis), "admissible": [r in cands for r in vis],
                "prompt": [st.prompt[r] for r in vis], "arrival": [st.arrival[r] for r in vis],
                "generated": [st.gen[r] for r in vis], "tenant": [int(inst.tenant[r]) for r in vis],
                "ttft_deadline": [st.arrival[r] + float(inst.slo_ttft[inst.klass[r]]) for r in vis],
                "predicted_output": [self._revealed(r) for r in vis], "running_tenants": running_tenants.tolist(),
                "must_admit": d.must_admit, "gate": d.kind == "gate"}

    def _observation(self) -> dict[str, np.ndarray]:
        Q, U = self.max_queue, self.max_running
        x = np.zeros((self.n_nodes, self.n_node_features), np.float32)
        ei = np.zeros((2, self.n_edges), np.int64)
        ea = np.zeros((self.n_edges, N_EDGE_FEATURES), np.float32)
        em = np.zeros(self.n_edges, np.int8)
        nm = np.zeros(self.n_nodes, np.int8)
        d = self._decision
        rep_row = Q + U
        extra = (0.0, 0.0)
        if d is not None:
            rep = self.sim.replicas[d.replica]
            cands = self._candidates(d)
            inst = self.instance
            run = (rep.running + rep.batch)[:U]
            ten = np.bincount([inst.tenant[r] for r in run], minlength=max(inst.n_tenants, 1)) / max(len(run), 1)
            for k, r in enumerate(self._visible_waiting()):
                self._req_features(x, k, r, rep, True, r in cands)
                x[k, 9] = ten[inst.tenant[r]]
                nm[k] = 1
                ei[:, k] = (k, rep_row)
                ea[k, 0] = -(-self.sim.st.P[r] // rep.bs) / max(rep.num_blocks, 1)
                em[k] = 1
            if d.kind == "gate":
                self._gate_features(x, 0, d)
                self._load_features(x, 0, d.rid, [d.replica])
                self._class_features(x, 0, d.rid)
                self._action_nodes(x, ei, em, nm, 0, rep_row + 1, Q + U)
            for k, r in enumerate(run):
                row = Q + k
                self._req_features(x, row, r, rep, False, False)
                x[row, 9] = ten[inst.tenant[r]]
                x[row, 8] = r in rep.batch
                nm[row] = 1
                ei[:, row] = (row, rep_row)
                ea[row, 1] = 1.0
                em[row] = 1
            self._rep_features(x, rep_row, rep)
            if d.kind == "gate":
                x[rep_row, 20:23] = x[0, 20:23]
            nm[rep_row] = 1
            extra = (len(rep.batch) / 100.0, rep._ntok / 1e3)
        an = np.arange(self.n_actions, dtype=np.int64)
        an[Q] = rep_row
        if self.gates:
            an[Q + 1:] = (rep_row + 1, rep_row + 2)  # defer / reject: their own nodes
        return {"x": x, "edge_index": ei, "edge_attr": ea, "edge_mask": em, "node_mask": nm,
                "action_mask": self._mask().astype(np.int8), "action_node": an, "globals": self._globals(extra)}
