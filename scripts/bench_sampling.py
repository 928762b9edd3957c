"""Sampling-cost benchmark of a job-shop policy (default: the shipped one): best of 128 on one CPU thread (a benchmark, not a test).

    python scripts/bench_sampling.py                        # ta01 15x15, ta21 20x20, ta41 30x20, ta61 50x20, ta71 100x20
    python scripts/bench_sampling.py --sizes 15x15,20x20 --samples 128
    python scripts/bench_sampling.py --checkpoint <run>/best_policy.pt   # another checkpoint (e.g. a candidate-attention one)

For one Taillard instance per size, runs ``SampledPolicySolver`` (what ``policy=ppo_gnn
policy.samples=128`` builds: one greedy and 127 sampled episodes in lock-step, by the vectorised
:mod:`schedgym.agents.batched_sampler`; ``--generic``: the loop over gymnasium envs) and prints the wall
seconds, the CPU seconds of this process (user + sys), the CPU seconds spent in the network's
forward passes, the number of forward passes and the best makespan, then the exponent of a
power-law fit of CPU seconds against the operation count. One torch thread. Wall times on a shared
machine are inflated by other processes; CPU seconds are the cost of the work.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from typing import Any

#: one Taillard instance per size
INSTANCES = {"15x15": "ta01", "20x20": "ta21", "30x20": "ta41", "50x20": "ta61", "100x20": "ta71"}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bench_row(size: str, samples: int = 128, seed: int = 0, batched: bool = True,
              checkpoint: str | None = None) -> dict[str, Any]:
    """Best of ``samples`` episodes of the job-shop policy ``checkpoint`` (default: the shipped one) on
    the ``size`` Taillard instance (``batched=False``: the generic loop over gymnasium envs instead of
    the vectorised sampler)."""
    import schedgym.agents.trained as trained
    from schedgym.agents.batched_sampler import BatchedJobShopSampler
    from schedgym.envs.jobshop.instances import load_instance
    from schedgym.envs.jobshop.metrics import metrics
    from schedgym.envs.jobshop.validate import validate

    inst = load_instance(INSTANCES[size])
    solver = trained.SampledPolicySolver(checkpoint, samples=samples, seed=seed, domain="jobshop", batched=batched)
    fwd = {"cpu_s": 0.0, "calls": 0}
    real = trained.masked_logits

    def timed(*args: Any, **kwargs: Any):
        c = _cpu_s()
        out = real(*args, **kwargs)
        fwd["cpu_s"] += _cpu_s() - c
        fwd["calls"] += 1
        return out

    real_batched = BatchedJobShopSampler.logits

    def timed_batched(*args: Any, **kwargs: Any):
        c = _cpu_s()
        out = real_batched(*args, **kwargs)
        fwd["cpu_s"] += _cpu_s() - c
        fwd["calls"] += 1
        return out

    trained.masked_logits = timed
    BatchedJobShopSampler.logits = timed_batched
    try:
        solver.solve(load_instance("ft06"))  # load the checkpoint and warm up outside the timing
        fwd.update(cpu_s=0.0, calls=0)
        t0, c0 = time.perf_counter(), _cpu_s()
        sol = solver.solve(inst)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    finally:
        trained.masked_logits = real
        BatchedJobShopSampler.logits = real_batched
    validate(inst, sol)
    return {"size": size, "instance": inst.name, "ops": inst.n_ops, "samples": sol.meta["samples"], "wall_s": wall,
            "cpu_s": cpu, "forward_cpu_s": fwd["cpu_s"], "forwards": fwd["calls"],
            "makespan": int(metrics(inst, sol)["makespan"])}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(INSTANCES), help=f"comma-separated subset of {list(INSTANCES)}")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--generic", action="store_true",
                    help="the generic loop over gymnasium envs instead of the vectorised batched sampler")
    ap.add_argument("--checkpoint", default=None, help="job-shop checkpoint (default: the shipped jobshop_gnn.pt)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s not in INSTANCES]
    if bad:
        ap.error(f"unknown size(s) {bad}; choose from {list(INSTANCES)}")
    print(f"{'size':7s} {'inst':5s} {'ops':>5s} {'samples':>7s} {'wall_s':>8s} {'cpu_s':>8s} {'fwd_cpu_s':>9s} "
          f"{'forwards':>8s} {'cpu_ms/op':>9s} {'makespan':>8s}", flush=True)
    rows = []
    for size in sizes:
        r = bench_row(size, args.samples, batched=not args.generic, checkpoint=args.checkpoint)
        rows.append(r)
        print(f"{r['size']:7s} {r['instance']:5s} {r['ops']:5d} {r['samples']:7d} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} "
              f"{r['forward_cpu_s']:9.2f} {r['forwards']:8d} {1e3 * r['cpu_s'] / r['ops']:9.2f} {r['makespan']:8d}",
              flush=True)
    if len(rows) >= 2:
        print(f"fitted exponent: CPU seconds ~ ops^{fitted_exponent(rows):.2f}")


def fitted_exponent(rows: list[dict[str, Any]]) -> float:
    """Least-squares slope of log(CPU seconds) against log(operation count) over the rows."""
    import numpy as np

    x = np.log([r["ops"] for r in rows])
    y = np.log([r["cpu_s"] for r in rows])
    return float(np.polyfit(x, y, 1)[0])


if __name__ == "__main__":
    main()
