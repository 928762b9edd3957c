"""Benchmark of schedgym/VMReschedule-v0 and the VM rescheduling baselines (a benchmark, not a test).

    python scripts/bench_vmsched.py                 # timings + FR table on generated_m, LNS at 1/5/30 s
    python scripts/bench_vmsched.py --quick         # timings + FR table on 2 instances, LNS at 1/5 s

Timings at M size (279 PMs, about 2,090 VMs): env step time (mean over the phase-0 and phase-1 steps
of random masked episodes, episode-end metrics included), reset time (an instance already loaded;
the first reset of an instance object also builds its static tables, reported separately), and
the joint greedy's time per move. Issue targets: at most 0.2 ms per step, 5 ms per reset, 50 ms per
joint-greedy move (VMR2L's env measured here: 2.0 ms per step, 26 ms per reset).

FR table: final fragment rate per baseline on M instances at MNL 50, with migrations used and wall
time per instance (every plan checked by the independent validator).

``bench_rows()`` returns the timing rows (for ``scripts/bench_envs.py``), ``quality_rows()`` the FR
table. Timings are wall-clock on a shared machine: expect noise.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np

import schedgym  # noqa: F401  (registers the env ids)
from schedgym.envs.vmsched.instances import load_instance, resolve_instances
from schedgym.envs.vmsched.metrics import metrics
from schedgym.envs.vmsched.state import VMState
from schedgym.envs.vmsched.validate import validate

ENV_ID = "schedgym/VMReschedule-v0"


def _episode_step_times(env: gym.Env, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    times, done = [], False
    stop = env.unwrapped.stop_action
    while not done:
        valid = np.flatnonzero(info["action_mask"])
        if info["phase"] == 0 and len(valid) > 1:
            valid = valid[valid != stop]
        a = int(valid[rng.integers(len(valid))])
        t = time.perf_counter()
        obs, r, term, trunc, info = env.step(a)
        times.append(time.perf_counter() - t)
        done = term or trunc
    return times


def bench_rows(instance: str = "gen_m_medium_s0", episodes: int = 20, resets: int = 50,
               greedy_moves: int = 50) -> list[dict[str, Any]]:
    """Timing rows of VMReschedule-v0 at M size: ``{"env", "instance", "metric", "value", "unit",
    "target"}`` for step time, reset time (loaded instance and first reset) and joint-greedy move time."""
    from schedgym.baselines.vm_joint_greedy import best_move

    inst = load_instance(instance)
    rows: list[dict[str, Any]] = []

    def row(metric: str, value: float, unit: str, target: float | None, note: str = "") -> None:
        rows.append({"env": "VMReschedule-v0", "instance": instance, "metric": metric, "value": value,
                     "unit": unit, "target": target, "note": note})

    env = gym.make(ENV_ID, instance=inst).unwrapped  # unwrapped: no checker/order wrappers in the timing
    t = time.perf_counter()
    env.reset(seed=0)
    first = time.perf_counter() - t
    times = []
    for ep in range(episodes):
        times += _episode_step_times(env, ep)
    row("step_ms", 1e3 * statistics.fmean(times), "ms", 0.2, f"mean of {len(times)} steps (both phases)")
    row("step_p50_ms", 1e3 * statistics.median(times), "ms", None, "median step")
    rt = []
    for s in range(resets):
        t = time.perf_counter()
        env.reset(seed=s)
        rt.append(time.perf_counter() - t)
    row("reset_ms", 1e3 * statistics.fmean(rt), "ms", 5.0, f"mean of {resets} resets, instance loaded")
    row("first_reset_ms", 1e3 * first, "ms", None, "first reset of an instance object (static tables)")
    st = VMState(inst)
    mt = []
    while st.migrations_left > 0 and len(mt) < greedy_moves:
        t = time.perf_counter()
        mv = best_move(st, improving_only=False)
        mt.append(time.perf_counter() - t)
        if mv is None:
            break
        st.move(*mv)
    row("joint_greedy_move_ms", 1e3 * statistics.fmean(mt), "ms", 50.0,
        f"mean of {len(mt)} best-move evaluations over all (VM, PM, NUMA)")
    return rows


def _policies(lns_limits: tuple[float, ...]) -> list[Any]:
    from schedgym.baselines.vm_bestfit import VMBestFitPolicy
    from schedgym.baselines.vm_cpsat_lns import VMCPSATLNSSolver
    from schedgym.baselines.vm_greedy import VMGreedyPolicy
    from schedgym.baselines.vm_joint_greedy import VMJointGreedyPolicy
    from schedgym.baselines.vm_random import VMRandomPolicy

    pols: list[Any] = [VMRandomPolicy(seed=0), VMGreedyPolicy(), VMJointGreedyPolicy(), VMBestFitPolicy()]
    pols += [VMCPSATLNSSolver(time_limit_s=t, name=f"vm_cpsat_lns_{t:g}s") for t in lns_limits]
    return pols


def quality_rows(instances: list[str] | str = "generated_m", mnl: int = 50,
                 lns_limits: tuple[float, ...] = (1.0, 5.0, 30.0)) -> list[dict[str, Any]]:
    """FR table rows: per policy, the mean initial and final fragment rate, migrations, wall time
    (seconds per instance) over ``instances`` at ``mnl``; every plan is validated."""
    names = resolve_instances(instances)
    insts = [load_instance(n, mnl=mnl) for n in names]
    rows = []
    for pol in _policies(lns_limits):
        fr, init, mig, wall = [], [], [], []
        for inst in insts:
            t = time.perf_counter()
            sol = pol.solve(inst) if hasattr(pol, "solve") else pol.solve_plan(inst)
            wall.append(time.perf_counter() - t)
            validate(inst, sol)
            m = metrics(inst, sol)
            fr.append(m["fragment_rate"])
            init.append(m["initial_fragment_rate"])
            mig.append(m["migrations"])
        rows.append({"policy": pol.name, "instances": len(insts), "mnl": mnl,
                     "initial_fr": statistics.fmean(init), "final_fr": statistics.fmean(fr),
                     "final_fr_min": min(fr), "final_fr_max": max(fr), "migrations": statistics.fmean(mig),
                     "wall_s": statistics.fmean(wall)})
    return rows


def _print(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for k in rows[0]:
        t.add_column(k, justify="left" if isinstance(rows[0][k], str) else "right")
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else ("-" if v is None else str(v)) for v in r.values()])
    Console(width=160).print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 instances, LNS at 1 and 5 s, fewer episodes")
    ap.add_argument("--instances", default=None, help="instance set or names for the FR table (default generated_m)")
    ap.add_argument("--mnl", type=int, default=50)
    args = ap.parse_args()
    if args.quick:
        timing = bench_rows(episodes=5, resets=20)
        quality = quality_rows(args.instances or ["gen_m_medium_s0", "gen_m_medium_s1"], args.mnl, (1.0, 5.0))
    else:
        timing = bench_rows()
        quality = quality_rows(args.instances or "generated_m", args.mnl)
    _print(timing, "VMReschedule-v0 timings (M size)")
    _print(quality, f"final fragment rate per baseline, MNL {args.mnl}")


if __name__ == "__main__":
    main()
