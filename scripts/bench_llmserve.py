"""Fidelity and speed of the LLM-serving simulator against Vidur (a benchmark, not a test).

    python scripts/bench_llmserve.py              # fidelity table, speed, capacity knee
    python scripts/bench_llmserve.py --no-knee    # skip the capacity search

Vidur's figures, its commit, the command and the workload names that rebuild its inputs here are read
from one file, ``envs/data/llmserve/vidur_reference.json`` (a local run of Vidur, not the paper's
numbers). Setup (identical inputs to those Vidur runs): Llama-2-7B on A100 (Vidur's ``mlp.csv``
and the surrogate attention table, shipped as ``a100__llama2-7b__tp1``), vLLM v0 scheduler, batch
cap 128, at most 4,096 tokens per batch, blocks of 16, Vidur's KV planner (10 % memory margin,
4,096-token request slots), lengths from the Azure conversation trace capped at 4,096 tokens
(Vidur's proportional cap, shuffled with ``random_state=42``), Vidur's Poisson arrivals (Python
``random`` seeded 42, gaps capped at 3 / rate), 4,000 requests. TPOT here is Vidur's
``decode_time_execution_plus_preemption_normalized`` (decode time / output tokens); the
``tpot_*_s`` metric of the env divides by output tokens - 1. Throughput = requests / last completion.

Vidur (commit 7d47513) on this machine with these inputs: about 4,000 iterations/s, 19 s wall per
run after a 5 s warm start (minutes cold), 1 GB resident.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VIDUR_FILE = "envs/data/llmserve/vidur_reference.json"

def run_config(name: str):
    from schedgym.envs.llmserve.reference import fidelity_figures
    from schedgym.envs.llmserve.sim import Simulator
    from schedgym.envs.llmserve.workload import build_workload

    inst = build_workload(name)
    sim = Simulator(inst, router="round_robin")
    c0, w0 = time.process_time(), time.perf_counter()
    sol = sim.run()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    f = fidelity_figures(inst, sol)
    return {
        "ttft": [f[f"ttft_p{q}_s"] for q in (50, 90, 99)], "tpot": [f[f"tpot_p{q}_s"] * 1e3 for q in (50, 90, 99)],
        "thr": f["throughput_rps"], "iters": sim.iterations, "cpu": cpu, "wall": wall,
        "batch": len(sol.it_req) / max(sim.iterations, 1), "preempt": int(sol.preemptions.sum()), "inst": inst,
        "sol": sol,
    }


def knee(n: int = 2000, lo: float = 1.0, hi: float = 10.0, steps: int = 9, criterion: str = "slo") -> tuple[float, list]:
    """Highest rate per replica under the criterion (bisection): ``slo`` = TTFT p90 <= 2 s and TBT p99
    <= 200 ms (the paper's); ``delay`` = scheduling delay p99 <= 5 s (the criterion of Vidur's
    ``capacity_search.py``; 5 s is our reading of its default)."""
    from schedgym.envs.llmserve.metrics import metrics
    from schedgym.envs.llmserve.sim import simulate
    from schedgym.envs.llmserve.workload import build_workload

    probes = []

    def ok(rate: float) -> bool:
        inst = build_workload(f"azure_conv:rate={rate:.4f}:n={n}:seed=42:arrival=vidur:max_tokens=4096:kv_capacity=vidur")
        sol = simulate(inst)
        m = metrics(inst, sol)
        delay = float(np.percentile(sol.first_scheduled - inst.arrival, 99))
        good = (m["ttft_p90_s"] <= 2.0 and m["tbt_p99_s"] <= 0.2) if criterion == "slo" else delay <= 5.0
        probes.append((rate, m["ttft_p90_s"], m["tbt_p99_s"], delay, good))
        return good

    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, probes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-knee", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    from schedgym.envs.llmserve.profiles import latency_model
    from schedgym.envs.llmserve.reference import vidur_reference

    latency_model("a100", "llama2-7b", 1)
    ref = vidur_reference()
    startup = time.perf_counter() - t0
    rows = []
    print(f"Fidelity vs a local run of Vidur {ref['vidur_commit']} (Llama-2-7B, A100, vLLM v0, Azure conv, "
          f"4,000 requests; {VIDUR_FILE})\n")
    hdr = f"{'config':26} {'metric':10} {'p50':>18} {'p90':>18} {'p99':>18}"
    print(hdr)
    print("-" * len(hdr))
    speed = []
    for setting in ref["settings"].values():
        label, vm = setting["label"], setting["metrics"]
        r = run_config(setting["workload"])
        v = {"ttft": [vm[f"ttft_p{q}_s"] for q in (50, 90, 99)],
             "tpot": [vm[f"tpot_p{q}_s"] * 1e3 for q in (50, 90, 99)], "thr": vm["throughput_rps"]}
        for key, unit, scale in (("ttft", "s", 1.0), ("tpot", "ms", 1.0)):
            cells = []
            for ours, ref in zip(r[key], v[key]):
                cells.append(f"{ours * scale:7.3f} ({(ours - ref) / ref * 100:+5.1f}%)")
            print(f"{label:26} {key + ' ' + unit:10} " + " ".join(f"{c:>18}" for c in cells))
        print(f"{label:26} {'req/s':10} {r['thr']:7.3f} ({(r['thr'] - v['thr']) / v['thr'] * 100:+5.1f}%)   "
              f"iterations {r['iters']}, mean batch {r['batch']:.2f}, preemptions {r['preempt']}")
        speed.append((label, r["iters"], r["cpu"], r["wall"]))
        rows.append(r)
    print("\n(percentages: relative difference to Vidur's figure)")
    print("\nSpeed")
    for label, it, cpu, wall in speed:
        print(f"  {label:26} {it:6d} iterations in {cpu:.2f} CPU-s ({wall:.2f} s wall): {it / cpu:,.0f} iterations per CPU-second")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  start-up (import + profile load): {startup:.2f} s; peak resident memory of this process: {rss_mb:.0f} MB")
    print("  Vidur on this machine: ~4,000 iterations/s, 5 s warm start, ~1 GB resident")
    if not args.no_knee:
        for crit, title in (("slo", "TTFT p90 <= 2 s and TBT p99 <= 200 ms"),
                            ("delay", "scheduling delay p99 <= 5 s (Vidur capacity_search.py's criterion)")):
            k, probes = knee(criterion=crit)
            print(f"\nCapacity knee (1 replica; {title}; 2,000 requests per probe)")
            for rate, t90, tbt, delay, good in probes:
                print(f"  {rate:6.3f} req/s: TTFT p90 {t90:7.3f} s, TBT p99 {tbt * 1e3:7.1f} ms, scheduling delay p99 "
                      f"{delay:7.3f} s  {'ok' if good else 'violated'}")
            print(f"  knee: {k:.2f} req/s per replica (the issue quotes about 4.4 for Vidur's search)")


if __name__ == "__main__":
    main()
