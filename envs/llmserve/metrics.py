"""Serving metrics recomputed from a solution (no simulator needed).

Per request: TTFT = first token - arrival; end-to-end = completion - arrival; TPOT = (completion -
first token) / (output - 1) (requests with one output token have none); time between tokens (TBT)
= gaps between consecutive emissions. A request meets its SLO when TTFT <= its class's TTFT SLO and
TPOT <= its TPOT SLO; rejected requests never do. ``goodput_rps`` (overall and per class) divides the
requests that met their SLO by the *arrival span* (:func:`goodput_span_s`: last arrival - first arrival,
seconds): the window over which the workload offered them, which no decision can change, so shedding
requests cannot raise goodput by ending the run earlier (with the completion span it could: a policy
that rejected every long batch request finished sooner and scored a higher goodput while serving fewer
requests in time). ``throughput_rps`` and ``token_throughput_tps`` measure the processing rate and divide
by the *completion span* (:func:`completion_span_s`: first arrival to last completion). No metric is NaN: with no inter-token gap (every served request has one
output token) TPOT and TBT percentiles are 0; with no request served (possible only when a router
sends every request to a replica too small for it) TTFT and end-to-end latencies are +inf and the
rates 0. Standard names (DESIGN.md): ``ttft_p50_s``, ``ttft_p90_s``, ``ttft_p99_s``,
``tpot_p50_s``, ``tpot_p90_s``, ``tpot_p99_s``, ``slo_attainment``, ``goodput_rps``, ``throughput_rps``.

A disaggregated cluster (``instance.pd``) adds: ``kv_transfer_s_mean`` / ``kv_transfer_s_p99`` (transfer
start to KV usable on the decode replica: bytes / bandwidth + latency), ``kv_handoff_s_mean`` /
``kv_handoff_s_p99`` (first token to KV usable on the decode replica: waiting for decode-side blocks
and for the link, plus the transfer), ``kv_transfer_gb`` (GB moved, 1e9 bytes) and ``kv_transfers``.

``rejected_rate`` is the fraction of requests not served, by admission control or because they can
never fit a replica (``rejected`` counts them). A run with admission control adds
``admission_rejected`` (requests its decisions rejected, expired deferrals included) and
``deferred`` (requests deferred at least once). A workload with several SLO classes adds, per class
``<c>`` (its name in ``instance.class_names``): ``slo_attainment_<c>``, ``goodput_rps_<c>`` (over the
whole workload's arrival span, as ``goodput_rps``: the classes' goodputs add up to it), ``rejected_rate_<c>``, ``ttft_p99_s_<c>`` and ``tpot_p99_s_<c>``.
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.llmserve.types import LLMServeInstance, LLMServeSolution
from schedgym.envs.llmserve.validate import replay


def _pct(x: np.ndarray, q: float, empty: float) -> float:
    """The q-th percentile of the finite values of ``x``; ``empty`` when there are none."""
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if len(x) else float(empty)


def completion_span_s(instance: LLMServeInstance, sol: LLMServeSolution) -> float:
    """Seconds from the first arrival to the last completion of a served request (0.0 when none is
    served): the denominator of the processing rates ``throughput_rps`` and ``token_throughput_tps``."""
    served = ~sol.rejected
    if not served.any() or instance.n_requests == 0:
        return 0.0
    return float(np.nanmax(sol.completion[served]) - instance.arrival.min())


def goodput_span_s(instance: LLMServeInstance, sol: LLMServeSolution) -> float:
    """The denominator of ``goodput_rps`` (overall and per class), seconds: the arrival span, last
    arrival - first arrival, which depends on the workload only. When it is zero (one request, or every
    request arriving at once: an offline batch, where there is no offered rate) it falls back to the
    completion span (:func:`completion_span_s`); 0.0 when that is zero too (goodput is then 0)."""
    if instance.n_requests == 0:
        return 0.0
    span = float(instance.arrival.max() - instance.arrival.min())
    return span if span > 0 else completion_span_s(instance, sol)


def rate(count: float, span_s: float) -> float:
    """``count / span_s`` (per second), 0.0 for a span that is not positive."""
    return float(count / span_s) if span_s > 0 else 0.0


def slo_rates(instance: LLMServeInstance, sol: LLMServeSolution, pr: dict[str, np.ndarray]) -> dict[str, float]:
    """``slo_attainment`` (fraction of all requests), ``goodput_rps`` (SLO-met requests / arrival span,
    requests/s), ``throughput_rps`` (served requests / completion span, requests/s) and ``rejected_rate``
    (fraction), plus the per-class metrics with several classes: the one definition that
    :func:`metrics` and :func:`schedgym.envs.llmserve.env.slo_metrics` share."""
    served = ~sol.rejected
    n = max(instance.n_requests, 1)
    good = goodput_span_s(instance, sol)
    m = {"slo_attainment": float(pr["slo_ok"].sum() / n),
         "goodput_rps": rate(pr["slo_ok"].sum(), good),
         "throughput_rps": rate(served.sum(), completion_span_s(instance, sol)),
         "rejected_rate": float(sol.rejected.sum() / n)}
    if len(instance.class_names) > 1:
        m.update(class_metrics(instance, sol, pr, good))
    return m


def per_request(instance: LLMServeInstance, sol: LLMServeSolution) -> dict[str, np.ndarray]:
    """(N,) arrays: ttft_s, e2e_s, tpot_s (nan for one-token outputs and rejected), slo_ok (bool)."""
    served = ~sol.rejected
    ttft = np.where(served, sol.first_token - instance.arrival, np.nan)
    e2e = np.where(served, sol.completion - instance.arrival, np.nan)
    steps = instance.output - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(served & (steps > 0), (sol.completion - sol.first_token) / np.maximum(steps, 1), np.nan)
    slo_t = instance.slo_ttft[instance.klass]
    slo_p = instance.slo_tpot[instance.klass]
    ok = served & (ttft <= slo_t) & (np.nan_to_num(tpot, nan=0.0) <= slo_p)
    return {"ttft_s": ttft, "e2e_s": e2e, "tpot_s": tpot, "slo_ok": ok}


def metrics(instance: LLMServeInstance, solution: LLMServeSolution, tbt: bool = True) -> dict[str, float]:
    """All metrics of a solution (see the module docstring)."""
    inst, sol = instance, solution
    pr = per_request(inst, sol)
    served = ~sol.rejected
    m: dict[str, float] = {}
    for name, key, empty in (("ttft", "ttft_s", np.inf), ("tpot", "tpot_s", 0.0), ("e2e", "e2e_s", np.inf)):
        for q in (50, 90, 99):
            m[f"{name}_p{q}_s"] = _pct(pr[key], q, empty)
    m["ttft_mean_s"] = float(np.nanmean(pr["ttft_s"])) if served.any() else float("inf")
    rates = slo_rates(inst, sol, pr)
    m["slo_attainment"] = rates.pop("slo_attainment")
    m["goodput_rps"] = rates.pop("goodput_rps")
    m["throughput_rps"] = rates.pop("throughput_rps")
    m["token_throughput_tps"] = rate(inst.output[served].sum(), completion_span_s(inst, sol))
    m["rejected"] = float(sol.rejected.sum())
    m["rejected_rate"] = rates.pop("rejected_rate")
    if sol.shed is not None:
        m["admission_rejected"] = float(sol.shed.sum())
        m["deferred"] = float(len(np.unique(sol.adm_req[sol.adm_kind == 1])))
    m.update(rates)  # the per-class metrics, with several classes
    m["preemptions"] = float(sol.preemptions.sum())
    m["iterations"] = float(sol.n_iterations)
    m["mean_batch_size"] = float(len(sol.it_req) / max(sol.n_iterations, 1))
    rp = replay(inst, sol, check=False, want_token_times=tbt)
    kv = rp["kv_blocks"].astype(float)
    if sol.n_iterations:
        cap = sol.num_blocks[sol.it_replica].astype(float)
        dur = sol.it_end - sol.it_start
        m["kv_util_mean"] = float(np.sum(kv / cap * dur) / max(np.sum(dur), 1e-12))
        m["kv_util_peak"] = float(np.max(kv / cap))
    else:
        m["kv_util_mean"] = m["kv_util_peak"] = 0.0
    if tbt:
        gaps = [np.diff(t) for t in rp["token_times"] if len(t) > 1]
        g = np.concatenate(gaps) if gaps else np.zeros(0)
        m["tbt_p50_s"] = _pct(g, 50, 0.0)
        m["tbt_p99_s"] = _pct(g, 99, 0.0)
    if inst.pd is not None:
        m.update(transfer_metrics(sol))
    return m


def class_metrics(inst: LLMServeInstance, sol: LLMServeSolution, pr: dict[str, np.ndarray],
                  span: float) -> dict[str, float]:
    """Per-class SLO attainment, goodput (requests/s over ``span``, the whole workload's arrival span
    from :func:`goodput_span_s`), rejected rate and p99 latencies (see the module docstring)."""
    out: dict[str, float] = {}
    for c, name in enumerate(inst.class_names):
        sel = inst.klass == c
        k = int(sel.sum())
        ok = int(pr["slo_ok"][sel].sum())
        out[f"slo_attainment_{name}"] = float(ok / k) if k else 0.0
        out[f"goodput_rps_{name}"] = rate(ok, span)
        out[f"rejected_rate_{name}"] = float(sol.rejected[sel].sum() / k) if k else 0.0
        out[f"ttft_p99_s_{name}"] = _pct(pr["ttft_s"][sel], 99, np.inf)
        out[f"tpot_p99_s_{name}"] = _pct(pr["tpot_s"][sel], 99, 0.0)
    return out


def transfer_metrics(sol: LLMServeSolution) -> dict[str, float]:
    """KV-transfer metrics of a disaggregated run (see the module docstring)."""
    x = sol.n_transfers
    dur = sol.tx_end - sol.tx_start
    hand = sol.tx_end - sol.tx_ready
    return {"kv_transfer_s_mean": float(dur.mean()) if x else 0.0, "kv_transfer_s_p99": _pct(dur, 99, 0.0),
            "kv_handoff_s_mean": float(hand.mean()) if x else 0.0, "kv_handoff_s_p99": _pct(hand, 99, 0.0),
            "kv_transfer_gb": float(sol.tx_bytes.sum() / 1e9), "kv_transfers": float(x)}
