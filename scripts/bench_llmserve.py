"""Fidelity and speed of the LLM-serving simulator against Vidur (a benchmark, not a test).

    python scripts/bench_llmserve.py              # fidelity table, speed, capacity knee
    python scripts/bench_llmserve.py --no-knee    # skip the capacity search
    python scripts/bench_llmserve.py --no-knee --overload   # + 4-replica knee, goodput under overload
                                                            #   per admission rule, decisions per CPU-s
    python scripts/bench_llmserve.py --only-overload        # only that section
    python scripts/bench_llmserve.py --only-overload --plot outputs/bench   # + goodput-against-load figures
    python scripts/bench_llmserve.py --only-prefix          # prefix caching: hit rate, TTFT, routers

The overload, SLO-class and prefix sections run the default scheduler (``vllm_v1``); the capacity
knee of the overload section is the highest total rate on 4 replicas with TTFT p90 <= 2 s and TBT p99
<= 200 ms under FCFS and round robin (9 bisection steps over 1..10 req/s per replica, 1,000 requests,
seed 0); ``conf/workload/azure_conv_overload.yaml`` and ``mixed_overload.yaml`` hold 1.0x-2.0x of it.

Vidur's figures, its commit, the command and the workload names that rebuild its inputs here are read
from one file, ``envs/data/llmserve/vidur_reference.json`` (a local run of Vidur, not the paper's
numbers). Setup (identical inputs to those Vidur runs): Llama-2-7B on A100 (Vidur's ``mlp.csv``
and the surrogate attention table, shipped as ``a100__llama2-7b__tp1``), vLLM v0 scheduler (pinned
with ``scheduler=vllm_v0``: the engine Vidur simulates; the speed section repeats the same requests
under the default ``vllm_v1``, with no Vidur figure to compare), batch cap 128, at most 4,096 tokens per batch, blocks of 16, Vidur's KV planner (10 % memory margin,
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


VIDUR_KNEE = "azure_conv:rate={rate:.4f}:n={n}:seed=42:arrival=vidur:max_tokens=4096:kv_capacity=vidur:scheduler=vllm_v0"
#: the default leaderboard's LLM setup (conf/workload/azure_conv.yaml) at a given total rate
CLUSTER4 = "azure_conv:rate={rate:.4f}:n={n}:replicas=4:ttft=0.5:tpot=0.05:seed=0"


def knee(n: int = 2000, lo: float = 1.0, hi: float = 10.0, steps: int = 9, criterion: str = "slo",
         template: str = VIDUR_KNEE, replicas: int = 1) -> tuple[float, list]:
    """Highest rate per replica under the criterion (bisection): ``slo`` = TTFT p90 <= 2 s and TBT p99
    <= 200 ms (the paper's); ``delay`` = scheduling delay p99 <= 5 s (the criterion of Vidur's
    ``capacity_search.py``; 5 s is our reading of its default). ``template`` is the workload name
    with ``{rate}`` (the total rate: per replica x ``replicas``) and ``{n}``; FCFS, round robin."""
    from schedgym.envs.llmserve.metrics import metrics
    from schedgym.envs.llmserve.sim import simulate
    from schedgym.envs.llmserve.workload import build_workload

    probes = []

    def ok(rate: float) -> bool:
        inst = build_workload(template.format(rate=rate * replicas, n=n))
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


#: load multiples of the overload section (x the 4-replica knee) and its policies: (label, router, rule, options)
LOAD_MULTIPLES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
OVERLOAD_POLICIES = (("fcfs + round robin", "round_robin", None, {}),
                     ("least outstanding", "least_outstanding", None, {}),
                     ("adm_slo", "least_outstanding", "slo", {}),
                     ("adm_kv", "least_outstanding", "kv", {}),
                     ("adm_queue_len", "least_outstanding", "queue_len", {}))


class _TimedRule:
    """An admission rule that adds up the CPU time of its calls (seconds)."""

    def __init__(self, rule):
        self.rule, self.cpu, self.calls = rule, 0.0, 0

    def __call__(self, sim, rid, k):
        t = time.process_time()
        out = self.rule(sim, rid, k)
        self.cpu += time.process_time() - t
        self.calls += 1
        return out


def _row(instance_set: str, inst, policy: str, m: dict) -> dict:
    """One episode as a leaderboard-style row for :func:`schedgym.evaluation.plots.llmserve_goodput_vs_load`."""
    return {"domain": "llmserve", "instance_set": instance_set, "instance": inst.name, "policy": policy,
            "metrics": {"goodput_rps": m["goodput_rps"]}}


def overload(seeds: tuple[int, ...] = (0, 1, 2), n: int = 1000, validate_runs: bool = True,
             rows: list[dict] | None = None) -> None:
    """The 4-replica knee, goodput per load multiple for each admission rule (mean over ``seeds``),
    the bars of issue 13 and the decision rates (inline rules, and the envs with their graph
    observation). Each episode is appended to ``rows`` (for the goodput-against-load figure)."""
    from schedgym.baselines.llm_admission import make_rule
    from schedgym.envs.llmserve.metrics import metrics
    from schedgym.envs.llmserve.sim import Simulator
    from schedgym.envs.llmserve.validate import validate
    from schedgym.envs.llmserve.workload import build_workload

    k, probes = knee(n=n, lo=1.0, hi=10.0, steps=9, template=CLUSTER4, replicas=4)
    print("\nCapacity knee, 4 replicas (the leaderboard's setup: " + CLUSTER4.format(rate=0, n=n).replace(
        "rate=0.0000:", "") + "; FCFS, round robin;\nTTFT p90 <= 2 s and TBT p99 <= 200 ms; bisection over the rate "
          "per replica)")
    for rate, t90, tbt, _delay, good in probes:
        print(f"  {rate * 4:7.3f} req/s: TTFT p90 {t90:6.3f} s, TBT p99 {tbt * 1e3:6.1f} ms  {'ok' if good else 'violated'}")
    knee_rps = round(4 * k, 1)
    print(f"  knee: {knee_rps:.1f} req/s ({k:.2f} per replica)")
    print(f"\nGoodput (req/s meeting both SLOs) against load, mean of seeds {list(seeds)}, {n} requests each; "
          f"admission rules route by least outstanding\n")
    hdr = f"{'policy':20}" + "".join(f"{m:>7.2f}x" for m in LOAD_MULTIPLES)
    print(hdr + "   (x the knee; rejected rate at 2x)")
    table: dict[str, list[float]] = {}
    rej2: dict[str, float] = {}
    speed: dict[str, list[float]] = {}
    for label, router, rule, opts in OVERLOAD_POLICIES:
        row = []
        for mult in LOAD_MULTIPLES:
            g, rj = [], []
            for seed in seeds:
                inst = build_workload(CLUSTER4.format(rate=knee_rps * mult, n=n).replace("seed=0", f"seed={seed}"))
                timed = _TimedRule(make_rule(rule, **opts)) if rule else None
                sim = Simulator(inst, router=router, admission=timed)
                c0 = time.process_time()
                sol = sim.run()
                cpu = time.process_time() - c0
                if validate_runs:
                    validate(inst, sol)
                m = metrics(inst, sol)
                g.append(m["goodput_rps"])
                rj.append(m["rejected_rate"])
                if rows is not None:
                    rows.append(_row("azure_conv_overload_bench", inst, label, m))
                if timed is not None:
                    sp = speed.setdefault(label, [0.0, 0.0, 0.0, 0.0])
                    sp[0] += timed.calls
                    sp[1] += timed.cpu
                    sp[2] += len(sim.adm_req) + sim.iterations
                    sp[3] += cpu
            row.append(float(np.mean(g)))
            if mult == LOAD_MULTIPLES[-1]:
                rej2[label] = float(np.mean(rj))
        table[label] = row
        print(f"{label:20}" + "".join(f"{v:8.2f}" for v in row) + f"   {rej2[label]:.3f}")
    peak = max(max(r) for r in table.values())
    fcfs_peak = max(table[OVERLOAD_POLICIES[0][0]])
    i15, i20 = LOAD_MULTIPLES.index(1.5), LOAD_MULTIPLES.index(2.0)
    adm = [lab for lab, _, rule, _ in OVERLOAD_POLICIES if rule]
    best15 = max(adm, key=lambda lab: table[lab][i15])
    best20 = max(adm, key=lambda lab: table[lab][i20])
    print(f"\npeak goodput (any policy, any load): {peak:.2f} req/s; FCFS's own peak {fcfs_peak:.2f}")
    for mult, best, i, bar in ((1.5, best15, i15, 0.8), (2.0, best20, i20, 0.7)):
        ratio = table[best][i] / peak
        print(f"  bar at {mult}x: best admission rule {best} keeps {table[best][i]:.2f} = {ratio * 100:.0f} % of the "
              f"peak (bar {bar * 100:.0f} %: {'met' if ratio >= bar else 'NOT met'}); {table[best][i] / fcfs_peak * 100:.0f} % "
              f"of FCFS's peak; FCFS itself {table[OVERLOAD_POLICIES[0][0]][i] / peak * 100:.0f} %")
    print("\nDecisions per CPU-second (bar: >= 20,000 with rules)")
    for label, (calls, rcpu, dec, cpu) in speed.items():
        print(f"  {label:14} rule alone: {calls / max(rcpu, 1e-12):10,.0f} admission decisions per CPU-s of the rule; "
              f"simulator with the rule inline: {dec / cpu:8,.0f} decisions (admission decisions + batch formations) per CPU-s")
    env_rates(knee_rps * 1.5)


#: the mixed interactive/batch scenario (conf/workload/mixed_overload.yaml) and its policies:
#: (label, router, queue rule, admission rule, options)
MIXED = "azure_conv:rate={rate:.4f}:n={n}:replicas=4:ttft=0.5:tpot=0.05:batch_share=0.2:seed={seed}"
MIXED_POLICIES = (("fcfs + round robin", "round_robin", None, None, {}),
                  ("edf", "least_outstanding", "edf", None, {}),
                  ("llf", "least_outstanding", "llf", None, {}),
                  ("adm_slo", "least_outstanding", None, "slo", {}),
                  ("adm_slo_classes", "least_outstanding", "priority", "slo", {"protect": "tightest"}))


def mixed_classes(seeds: tuple[int, ...] = (0, 1, 2), n: int = 1000, rows: list[dict] | None = None) -> None:
    """Goodput and per-class SLO attainment on the mixed scenario at 1.0x .. 2.0x its knee (each
    episode appended to ``rows``)."""
    from schedgym.baselines.llm_admission import make_rule
    from schedgym.baselines.llm_queue import queue_key
    from schedgym.envs.llmserve.metrics import metrics
    from schedgym.envs.llmserve.sim import simulate
    from schedgym.envs.llmserve.workload import build_workload

    k, _ = knee(n=n, lo=1.0, hi=10.0, steps=9, template=MIXED.replace("{seed}", "0"), replicas=4)
    knee_rps = round(4 * k, 1)
    print(f"\nSLO classes: 80 % interactive (TTFT 0.5 s, TPOT 50 ms), 20 % batch from arXiv (15 s, 150 ms), "
          f"4 replicas;\nknee {knee_rps:.1f} req/s (same criterion); goodput req/s [interactive / batch SLO "
          f"attainment], mean of seeds {list(seeds)}\n")
    mults = (1.0, 1.25, 1.5, 1.75, 2.0)
    print(f"{'policy':20}" + "".join(f"{m:>22.2f}x" for m in mults))
    for label, router, q, rule, opts in MIXED_POLICIES:
        cells = []
        for mult in mults:
            g, a0, a1 = [], [], []
            for seed in seeds:
                inst = build_workload(MIXED.format(rate=knee_rps * mult, n=n, seed=seed))
                sol = simulate(inst, router=router, queue_key=queue_key(q) if q else None,
                               admission=make_rule(rule, **opts) if rule else None)
                m = metrics(inst, sol, tbt=False)
                g.append(m["goodput_rps"])
                if rows is not None:
                    rows.append(_row("mixed_overload_bench", inst, label, m))
                a0.append(m["slo_attainment_interactive"])
                a1.append(m["slo_attainment_batch"])
            cells.append(f"{np.mean(g):6.2f} [{np.mean(a0):.2f} / {np.mean(a1):.2f}]")
        print(f"{label:20}" + "".join(f"{c:>23}" for c in cells))


def env_rates(rate: float, n: int = 1000) -> None:
    """Steps per CPU-second of the envs with ``admission="agent"`` driven by the SLO rule, and without
    admission driven by least-outstanding routing / FCFS (each step builds the graph observation)."""
    import gymnasium as gym

    import schedgym  # noqa: F401
    from schedgym.baselines.llm_admission import AdmissionPolicy
    from schedgym.baselines.llm_queue import QueueOrderPolicy
    from schedgym.baselines.llm_routing import RoutingPolicy

    name = CLUSTER4.format(rate=rate, n=n)
    for env_id, adm in (("schedgym/LLMRouting-v0", "agent"), ("schedgym/LLMQueue-v0", "agent"),
                        ("schedgym/LLMRouting-v0", "none"), ("schedgym/LLMQueue-v0", "none")):
        env = gym.make(env_id, instance=name, admission=adm, router="least_outstanding").unwrapped
        if adm == "agent":
            pol = AdmissionPolicy("slo", router="least_outstanding")
        else:
            pol = RoutingPolicy("least_outstanding") if "Routing" in env_id else QueueOrderPolicy("fcfs")
        obs, info = env.reset(seed=0)
        pol.reset(env)
        steps, done, c0 = 0, False, time.process_time()
        while not done:
            obs, _, term, trunc, info = env.step(pol.act(obs, info))
            steps += 1
            done = term or trunc
        cpu = time.process_time() - c0
        what = "admission=agent, adm_slo" if adm == "agent" else f"no admission, {pol.name}"
        print(f"  {env_id} ({what}, graph observation, {rate:.1f} req/s): {steps} steps in "
              f"{cpu:.2f} CPU-s = {steps / cpu:,.0f} steps per CPU-s")


#: the prefix-caching workloads (conf/workload/multiturn_prefix.yaml, system_prompt_prefix.yaml)
PREFIX_WORKLOADS = (
    "sharegpt:rate=8:n=400:prefix=multiturn:replicas=4:scheduler=vllm_v1:chunk_size=2048:prefix_caching=1:"
    "model=llama3.1-8b:device=rtxpro6000:seed=0",
    "azure_conv:rate=8:n=400:prefix=system:system_tokens=1024:tenants=4:replicas=4:scheduler=vllm_v1:"
    "chunk_size=2048:prefix_caching=1:model=llama3.1-8b:device=rtxpro6000:seed=0")


def prefix_caching() -> None:
    """Prefix hit rate and TTFT with and without prefix caching, round robin vs prefix affinity."""
    import dataclasses

    from schedgym.envs.llmserve.sim import simulate
    from schedgym.envs.llmserve.validate import validate
    from schedgym.envs.llmserve.validate_prefix import prefix_hit_rate
    from schedgym.envs.llmserve.workload import build_workload

    print("\nPrefix caching (vLLM v1 scheduler, 4 replicas, Llama-3.1-8B on RTX PRO 6000)")
    print(f"{'workload':10} {'caching':8} {'router':16} {'hit rate':>9} {'TTFT p50 s':>11} {'TTFT p90 s':>11}")
    for w in PREFIX_WORKLOADS:
        inst = build_workload(w)
        off = inst.with_replicas(tuple(dataclasses.replace(s, prefix_caching=False) for s in inst.replicas))
        for label, case, router in (("off", off, "round_robin"), ("on", inst, "round_robin"),
                                    ("on", inst, "prefix_affinity")):
            sol = simulate(case, router=router)
            validate(case, sol)
            ttft = sol.first_token - case.arrival
            kind = dict(o.split("=", 1) for o in w.split(":")[1:])["prefix"]
            print(f"{kind:10} {label:8} {router:16} {prefix_hit_rate(case, sol):9.3f} "
                  f"{np.median(ttft):11.3f} {np.percentile(ttft, 90):11.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-knee", action="store_true")
    ap.add_argument("--overload", action="store_true", help="add the 4-replica knee and overload section")
    ap.add_argument("--only-overload", action="store_true", help="run only the overload section")
    ap.add_argument("--only-prefix", action="store_true", help="run only the prefix-caching section")
    ap.add_argument("--plot", metavar="DIR", help="with --only-overload: write the goodput-against-load figures "
                    "(one per scenario, evaluation/plots.py::llmserve_goodput_vs_load) to DIR")
    args = ap.parse_args()
    if args.only_prefix:
        prefix_caching()
        return
    if args.only_overload:
        rows: list[dict] = []
        overload(rows=rows)
        mixed_classes(rows=rows)
        if args.plot:
            from schedgym.evaluation.plots import llmserve_goodput_vs_load

            Path(args.plot).mkdir(parents=True, exist_ok=True)
            for path in llmserve_goodput_vs_load(rows, [], Path(args.plot)):
                print(f"wrote {path}")
        return
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
    for setting in vidur_reference()["settings"].values():  # the same requests under the default scheduler
        r = run_config(setting["workload"].replace(":scheduler=vllm_v0", "") + ":scheduler=vllm_v1")
        print(f"  {setting['label']:26} {r['iters']:6d} iterations (vllm_v1) in {r['cpu']:.2f} CPU-s "
              f"({r['wall']:.2f} s wall): {r['iters'] / r['cpu']:,.0f} iterations per CPU-second; TTFT p50/p99 "
              f"{r['ttft'][0]:.3f} / {r['ttft'][2]:.3f} s, TPOT p50/p99 {r['tpot'][0]:.1f} / {r['tpot'][2]:.1f} ms")
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
    if args.overload:
        overload()
        mixed_classes()


if __name__ == "__main__":
    main()
