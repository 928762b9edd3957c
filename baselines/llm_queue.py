"""Queue-ordering baselines for LLM serving (``schedgym/LLMQueue-v0``).

Every rule orders a replica's waiting queue by a key and admits from the head while the batch has
room, stopping at the first request that does not fit (vLLM's head-of-line behaviour); with the key
``fcfs`` this is exactly vLLM's default. The same keys serve the simulator inline
(:func:`queue_key`, used by ``LLMRouting-v0``'s ``queue_order`` and by benchmarks).

* ``fcfs``: arrival time (vLLM default).
* ``srpt``: fewest remaining output tokens, oracle lengths.
* ``srpt_noisy``: remaining output tokens from a predictor with log-normal error
  (``sigma``: standard deviation of the log of the ratio prediction / truth).
* ``spf``: shortest prompt first.
* ``edf``: earliest TTFT deadline (arrival + the class's TTFT SLO).
* ``fair``: the tenant with the fewest running requests on the replica first (ties: arrival).
* ``llf``: least laxity first: the TTFT deadline less the time to prefill what remains of the
  request's context on this replica (its latency profile, one iteration of the replica's token
  budget at a time); a request that already has its first token (back after a preemption) counts
  its deadline as arrival + TTFT SLO + TPOT SLO x tokens generated.
* ``priority``: SLO class first (class 0 highest), then arrival.
* ``srpt_rank``: fewest remaining output tokens by a predictor with Spearman rank correlation
  ``rho`` to the truth (a Gaussian copula: :func:`schedgym.envs.llmserve.predict.predict_lengths`).
* ``laps``: LAPS-style separate queues for short and long prompts: prompts of at most
  ``threshold`` tokens first, then long ones, FCFS within each; a long prompt that has waited
  ``max_wait_s`` seconds joins the short queue (no starvation).

With several SLO classes (``batch_share`` workloads) ``edf`` and ``llf`` order across classes by each
class's own SLOs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.llmserve.predict import predict_lengths

RULES = ("fcfs", "srpt", "srpt_noisy", "spf", "edf", "fair", "llf", "priority", "srpt_rank", "laps")


def laps_key(prompt: int, arrival: float, now: float, threshold: int, max_wait_s: float) -> tuple[int, float]:
    """(queue, arrival): queue 0 for short prompts and long ones that waited ``max_wait_s``, else 1."""
    return (0 if prompt <= threshold or now - arrival >= max_wait_s else 1, arrival)


def laxity(sim, rep, rid: int) -> float:
    """Deadline of ``rid`` less the time (s) ``rep`` needs to prefill the rest of its context
    (see ``llf`` in the module docstring)."""
    from schedgym.baselines.llm_admission import _prefill_ms

    st, inst = sim.st, sim.inst
    c = inst.klass[rid]
    deadline = st.arrival[rid] + float(inst.slo_ttft[c]) + float(inst.slo_tpot[c]) * st.gen[rid]
    budget = rep.spec.chunk_size if rep.kind in ("sarathi", "vllm_v1") else rep.spec.max_tokens_in_batch
    return deadline - _prefill_ms(rep.lat, st.P[rid] - st.proc[rid], budget) * 1e-3


def queue_key(rule: str, seed: int = 0, sigma: float = 0.5, rho: float = 0.8, threshold: int = 1024,
              max_wait_s: float = 1.0):
    """``key(sim, replica, rid)`` for :class:`schedgym.envs.llmserve.sim.Simulator` (smaller first)."""
    if rule not in RULES:
        raise ValueError(f"queue rule must be one of {RULES}, got {rule!r}")
    noise: dict[int, float] = {}
    rng = np.random.default_rng(seed)
    pred: list = []

    def key(sim, rep, rid):
        st, inst = sim.st, sim.inst
        if rule == "fcfs":
            return st.arrival[rid]
        if rule == "srpt_rank":
            if not pred:
                pred.append(predict_lengths(inst.output, "rank", rho=rho, seed=seed))
            return pred[0][rid] - st.gen[rid]
        if rule == "laps":
            return laps_key(st.prompt[rid], st.arrival[rid], sim.now, threshold, max_wait_s)
        if rule == "srpt":
            return st.output[rid] - st.gen[rid]
        if rule == "srpt_noisy":
            if rid not in noise:
                noise[rid] = float(np.exp(rng.normal(0.0, sigma)))
            return st.output[rid] * noise[rid] - st.gen[rid]
        if rule == "spf":
            return st.prompt[rid]
        if rule == "edf":
            return st.arrival[rid] + float(inst.slo_ttft[inst.klass[rid]])
        if rule == "llf":
            return laxity(sim, rep, rid)
        if rule == "priority":
            return (int(inst.klass[rid]), st.arrival[rid])
        counts: dict[int, int] = {}
        for r in rep.running + rep.batch:
            t = int(inst.tenant[r])
            counts[t] = counts.get(t, 0) + 1
        return (counts.get(int(inst.tenant[rid]), 0), st.arrival[rid])

    return key


class QueueOrderPolicy:
    """A queue-ordering rule acting on ``schedgym/LLMQueue-v0`` (see the module docstring).

    Args:
        rule: one of :data:`RULES`.
        sigma: predictor error of ``srpt_noisy``.
        seed: seed of the predictor noise.
        rho: Spearman correlation of the ``srpt_rank`` predictor to the truth.
        threshold: longest short prompt of ``laps``, tokens.
        max_wait_s: seconds after which ``laps`` moves a long prompt to the short queue.
    """

    domains = ("llmserve",)

    def __init__(self, rule: str = "fcfs", sigma: float = 0.5, seed: int = 0, rho: float = 0.8, threshold: int = 1024,
                 max_wait_s: float = 1.0):
        if rule not in RULES:
            raise ValueError(f"queue rule must be one of {RULES}, got {rule!r}")
        self.rule = rule
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.rho = float(rho)
        self.threshold = int(threshold)
        self.max_wait_s = float(max_wait_s)
        self._pred_seed = self.seed
        self._pred = None
        self.name = {"fcfs": "llm_fcfs", "srpt": "srpt", "srpt_noisy": "srpt_noisy", "spf": "spf", "edf": "edf",
                     "fair": "fair_share", "llf": "llf", "priority": "class_priority", "srpt_rank": "srpt_rank",
                     "laps": "laps"}[rule]
        self.env = None
        self._noise: dict[int, float] = {}
        self.rng = np.random.default_rng(seed)

    def reset_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(self.seed + seed)
        self._pred_seed = self.seed + seed

    def reset(self, env: gym.Env) -> None:
        self.env = env.unwrapped
        self._noise = {}
        self._pred = None
        if self.rule == "srpt_rank":
            self._pred = predict_lengths(self.env.instance.output, "rank", rho=self.rho, seed=self._pred_seed)

    def _keys(self, c: dict[str, Any]) -> list:
        env = self.env
        inst = env.instance
        rids = c["rid"]
        r = self.rule
        if r == "fcfs":
            return list(c["arrival"])
        if r == "srpt":
            return [int(inst.output[x]) - g for x, g in zip(rids, c["generated"])]
        if r == "srpt_noisy":
            out = []
            for x, g in zip(rids, c["generated"]):
                if x not in self._noise:
                    self._noise[x] = float(np.exp(self.rng.normal(0.0, self.sigma)))
                out.append(int(inst.output[x]) * self._noise[x] - g)
            return out
        if r == "spf":
            return list(c["prompt"])
        if r == "edf":
            return list(c["ttft_deadline"])
        if r == "llf":
            rep = env.sim.replicas[c["replica"]]
            return [laxity(env.sim, rep, x) for x in rids]
        if r == "priority":
            return [(int(inst.klass[x]), a) for x, a in zip(rids, c["arrival"])]
        if r == "srpt_rank":
            return [self._pred[x] - g for x, g in zip(rids, c["generated"])]
        if r == "laps":
            now = env.sim.now
            return [laps_key(p, a, now, self.threshold, self.max_wait_s) for p, a in zip(c["prompt"], c["arrival"])]
        share = c["running_tenants"]
        return [(share[t] if t < len(share) else 0, a) for t, a in zip(c["tenant"], c["arrival"])]

    def act(self, obs: Any, info: dict) -> int:
        mask = info["action_mask"]
        c = info.get("candidates")
        run = getattr(self.env, "max_queue", len(mask) - 1)  # "run the batch" (defer/reject follow it)
        if not c or not c["rid"]:
            return run if mask[run] else int(np.flatnonzero(mask)[0])
        keys = self._keys(c)
        best = min(range(len(keys)), key=lambda k: (keys[k], k))
        if mask[best]:
            return best
        if mask[run]:
            return run
        ok = [k for k in range(len(keys)) if mask[k]]
        return min(ok, key=lambda k: (keys[k], k))
