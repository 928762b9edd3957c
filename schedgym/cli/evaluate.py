"""Evaluate a policy or solver on an instance set, validate every solution, print and save a table.

Examples::

    python scripts/evaluate.py env=jobshop instances=taillard_15x15 policy=mwkr
    python scripts/evaluate.py env=jobshop instances=ft policy=cpsat time_limit_s=30
    python scripts/evaluate.py -m policy=spt,mwkr,mopnr instances=taillard_15x15

Writes ``results.csv`` (one row per episode: env_id, suite, instance, policy, seed, metrics,
wall_time_s, steps, status, error) into the Hydra output dir; rerunning into the same dir
(``hydra.run.dir=...``) skips the episodes already there.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from schedgym.cli import CONFIG_PATH
from schedgym.envs.core.domain import Domain, get_domain
from schedgym.envs.core.episode import EpisodeResult, env_kwargs_for_agent, is_solver, run_episode
from schedgym.envs.core.results import read_csv_rows, write_csv_atomic


def instance_spec(cfg: DictConfig) -> tuple[str, list[str]]:
    """(suite name, spec list) from ``names=``, ``instances=``/``workload=`` or the env's default."""
    if cfg.get("names"):
        names = [str(n) for n in cfg.names]
        return "custom", names
    for group in ("instances", "workload"):
        node = cfg.get(group)
        if node is not None:
            return str(node.get("name", group)), list(node.spec)
    spec = list(cfg.env.default_instances)
    return ",".join(spec), spec


def build_agent(cfg: DictConfig) -> Any:
    return hydra.utils.instantiate(cfg.policy, _convert_="all")


def env_kwargs_for(cfg: DictConfig, agent: Any) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.env.get("kwargs", {}), resolve=True) or {}
    return env_kwargs_for_agent(kwargs, agent)


def print_tables(domain: Domain, results: list[EpisodeResult], show_instances: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    cols = list(domain.table_metrics)
    if show_instances:
        t = Table(title="episodes")
        for c in ["instance", "policy", "seed", *cols, "wall_time_s", "status"]:
            t.add_column(c, justify="left" if c in ("instance", "policy", "status") else "right")
        for r in results:
            vals = [_fmt(r.metrics.get(c)) for c in cols]
            t.add_row(r.instance, r.policy, str(r.seed), *vals, f"{r.wall_time_s:.3f}", r.status)
        console.print(t)
    t = Table(title="summary (mean over episodes)")
    for c in ["suite", "policy", "episodes", *[f"mean {c}" for c in cols], "mean wall_time_s", "failed/invalid"]:
        t.add_column(c, justify="left" if c in ("suite", "policy") else "right")
    groups: dict[tuple[str, str], list[EpisodeResult]] = {}
    for r in results:
        groups.setdefault((r.suite, r.policy), []).append(r)
    for (suite, policy), rs in groups.items():
        ok = [r for r in rs if r.metrics]
        means = [_mean([r.metrics.get(c) for r in ok]) for c in cols]
        bad = sum(1 for r in rs if r.status in ("failed", "invalid"))
        t.add_row(suite, policy, str(len(rs)), *[_fmt(m) for m in means],
                  f"{_mean([r.wall_time_s for r in rs]):.3f}", str(bad))
    console.print(t)


def _mean(xs: list[Any]) -> float:
    vals = [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(vals) / len(vals) if vals else float("nan")


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if x != 0 and abs(x) < 1:
            return f"{x:.4f}"  # rates and fractions (fragment rate, SLO attainment) need more digits
        return f"{x:.2f}" if abs(x) < 1e5 else f"{x:.4g}"
    return str(x)


def _row_key(instance: str, policy: str, seed: Any) -> tuple[str, str, str]:
    return str(instance), str(policy), str(seed)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def main(cfg: DictConfig) -> float:
    if "torch" in sys.modules or "ppo" in str(cfg.policy.get("_target_", "")) or "trained" in str(
            cfg.policy.get("_target_", "")):
        import torch

        # one torch thread per process (DESIGN.md section 3); OMP_NUM_THREADS overrides
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    domain = get_domain(cfg.env.domain)
    suite, spec = instance_spec(cfg)
    names = domain.resolve(spec)
    agent = build_agent(cfg)
    agent_name = getattr(agent, "name", type(agent).__name__)
    env_kwargs = env_kwargs_for(cfg, agent)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    csv_path = out_dir / "results.csv"
    old_rows = read_csv_rows(csv_path) if cfg.resume else []
    done_keys = {_row_key(r["instance"], r["policy"], r["seed"]) for r in old_rows
                 if r.get("status") not in ("failed",)}
    rows: list[dict[str, Any]] = [r for r in old_rows
                                  if _row_key(r["instance"], r["policy"], r["seed"]) in done_keys]
    results: list[EpisodeResult] = []
    cells = [(n, int(s)) for n in names for s in cfg.seeds]
    todo = [(n, s) for n, s in cells if _row_key(_short(n), agent_name, s) not in done_keys]
    if len(todo) < len(cells):
        print(f"resuming: {len(cells) - len(todo)} of {len(cells)} episodes already in {csv_path}")
    iterator = todo
    if cfg.progress and len(todo) > 1:
        from rich.progress import track

        iterator = track(todo, description=f"{agent_name} on {suite}", transient=True)
    for name, seed in iterator:
        instance = domain.load(name)
        if hasattr(agent, "reset_seed"):
            agent.reset_seed(seed)
        res = run_episode(domain, instance, agent, seed=seed, suite=suite, env_kwargs=env_kwargs,
                          time_limit_s=cfg.time_limit_s if is_solver(agent) else None)
        results.append(res)
        rows.append(res.row())
        write_csv_atomic(csv_path, rows)
        if res.status in ("failed", "invalid"):
            print(f"[{res.status}] {res.instance} seed {seed}: {res.error.strip().splitlines()[-1]}",
                  file=sys.stderr)
    # reload earlier rows as results for the summary
    all_results = [_result_from_row(r) for r in rows]
    print_tables(domain, all_results, cfg.show_instances)
    print(f"results: {csv_path}")
    ok = [r.metrics.get(domain.primary_metric) for r in all_results if r.metrics]
    return _mean(ok)


def _short(name: str) -> str:
    return Path(name).stem if ("/" in name or name.endswith((".txt", ".fjs", ".json"))) else name


def _result_from_row(row: dict[str, Any]) -> EpisodeResult:
    base = {"env_id", "suite", "instance", "policy", "seed", "wall_time_s", "steps", "status", "error"}
    metrics = {}
    for k, v in row.items():
        if k in base or v in ("", None):
            continue
        try:
            metrics[k] = float(v)
        except (TypeError, ValueError):
            pass
    return EpisodeResult(env_id=str(row["env_id"]), suite=str(row["suite"]), instance=str(row["instance"]),
                         policy=str(row["policy"]), seed=int(row["seed"]), metrics=metrics,
                         wall_time_s=float(row["wall_time_s"]), steps=int(row["steps"]),
                         status=str(row["status"]), error=str(row.get("error") or ""))


if __name__ == "__main__":
    main()
