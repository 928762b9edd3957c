"""Serving metrics recomputed from a solution (no simulator needed).

Per request: TTFT = first token - arrival; end-to-end = completion - arrival; TPOT = (completion -
first token) / (output - 1) (requests with one output token have none); time between tokens (TBT)
= gaps between consecutive emissions. A request meets its SLO when TTFT <= its class's TTFT SLO and
TPOT <= its TPOT SLO; rejected requests never do. Rates divide by the span from the first arrival
to the last completion. No metric is NaN: with no inter-token gap (every served request has one
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
whole run's span), ``rejected_rate_<c>``, ``ttft_p99_s_<c>`` and ``tpot_p99_s_<c>``.
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.llmserve.types import LLMServeInstance, LLMServeSolution
from schedgym.envs.llmserve.validate import replay


def _pct(x: np.ndarray, q: float, empty: float) -> float:
    """The q-th percentile of the finite values of ``x``; ``empty`` when there are none."""
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if len(x) else float(empty)


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
    n = inst.n_requests
    done_t = sol.completion[served]
    span = float(np.nanmax(done_t) - inst.arrival.min()) if served.any() else float("nan")
    m: dict[str, float] = {}
    for name, key, empty in (("ttft", "ttft_s", np.inf), ("tpot", "tpot_s", 0.0), ("e2e", "e2e_s", np.inf)):
        for q in (50, 90, 99):
            m[f"{name}_p{q}_s"] = _pct(pr[key], q, empty)
    m["ttft_mean_s"] = float(np.nanmean(pr["ttft_s"])) if served.any() else float("inf")
    m["slo_attainment"] = float(pr["slo_ok"].sum() / max(n, 1))
    m["goodput_rps"] = float(pr["slo_ok"].sum() / span) if span and span > 0 else 0.0
    m["throughput_rps"] = float(served.sum() / span) if span and span > 0 else 0.0
    m["token_throughput_tps"] = float(inst.output[served].sum() / span) if span and span > 0 else 0.0
    m["rejected"] = float(sol.rejected.sum())
    m["rejected_rate"] = float(sol.rejected.sum() / max(n, 1))
    if sol.shed is not None:
        m["admission_rejected"] = float(sol.shed.sum())
        m["deferred"] = float(len(np.unique(sol.adm_req[sol.adm_kind == 1])))
    if len(inst.class_names) > 1:
        m.update(class_metrics(inst, sol, pr, span))
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
    """Per-class SLO attainment, goodput (requests/s over the run's span), rejected rate and p99
    latencies (see the module docstring)."""
    out: dict[str, float] = {}
    for c, name in enumerate(inst.class_names):
        sel = inst.klass == c
        k = int(sel.sum())
        ok = int(pr["slo_ok"][sel].sum())
        out[f"slo_attainment_{name}"] = float(ok / k) if k else 0.0
        out[f"goodput_rps_{name}"] = float(ok / span) if span and span > 0 else 0.0
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
