"""Evaluate a policy or solver on an instance set, validate every solution, print and save a table.

Examples::

    python scripts/evaluate.py env=jobshop instances=taillard_15x15 policy=mwkr
    python scripts/evaluate.py env=jobshop instances=ft policy=cpsat time_limit_s=30
    python scripts/evaluate.py -m policy=spt,mwkr,mopnr instances=taillard_15x15

Writes ``results.csv`` (one row per episode: env_id, suite, instance, policy, seed, metrics,
wall_time_s, steps, status, error, config_hash, run_key) into the Hydra output dir. Rerunning into
the same dir (``hydra.run.dir=...``) reuses the episodes already there that have the same
``run_key``: the same instance (a file by its full path), seed and config (``config_hash``: the env
keywords, the resolved policy config and checkpoint, the solver time limit); it says how many it
reused, recomputes the rest, keeps other runs' rows in the file and summarises only this run's.

Exit status (see :mod:`schedgym.cli`): 0; 1 when an episode failed or was invalid (all rows are
written first); 2 for a bad command line (unknown name, ``names=[]``, ``seeds=[]``, a policy that
does not apply to the env), before any episode runs; 130 when interrupted.
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from schedgym.baselines.base import bind_env_domain, check_policy_domain
from schedgym.cli import CONFIG_PATH
from schedgym.cli._exit import EXIT_INTERRUPTED, Outcome, config_errors_exit, run_app
from schedgym.envs.core.domain import Domain, get_domain
from schedgym.envs.core.episode import EpisodeResult, env_kwargs_for_agent, is_solver, run_episode
from schedgym.envs.core.errors import ConfigError
from schedgym.envs.core.results import read_csv_rows, write_csv_atomic
from schedgym.evaluation.suite import stable_hash, weights_fingerprint


def instance_spec(cfg: DictConfig) -> tuple[str, list[str]]:
    """(suite name, spec list) from ``names=``, ``instances=``/``workload=`` or the env's default."""
    if cfg.get("names") is not None:
        names = [str(n) for n in cfg.names]
        return "custom", names
    for group in ("instances", "workload"):
        node = cfg.get(group)
        if node is not None:
            return str(node.get("name", group)), list(node.spec)
    spec = list(cfg.env.default_instances)
    return ",".join(spec), spec


def build_agent(policy_cfg: dict[str, Any]) -> Any:
    return hydra.utils.instantiate(policy_cfg, _convert_="all")


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


def _check_lists(cfg: DictConfig) -> None:
    """``names=[]``, ``seeds=[]`` (or an empty instance set) run nothing: a :class:`ConfigError`."""
    if cfg.get("names") is not None and len(cfg.names) == 0:
        raise ConfigError("names=[] lists no instance: give names=[ft06,...] (names or file paths), or leave names "
                          "unset to run instances=/workload= or the env's default_instances")
    if cfg.get("seeds") is None or len(cfg.seeds) == 0:
        raise ConfigError("seeds=[] runs no episode: give at least one seed, e.g. seeds=[0] or seeds=[0,1,2]")
    for s in cfg.seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise ConfigError(f"seeds: {s!r} is not an integer; give integer seeds, e.g. seeds=[0,1,2]")


def policy_label(cfg: DictConfig) -> str:
    """The policy's name as given on the command line (``policy=heft``), else its ``_target_``."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return str(choices.get("policy") or cfg.policy.get("_target_", "policy"))


def instance_ref(name: str) -> str:
    """An instance's full identity for the resume key: the absolute path of a file, else the name
    (two files with one stem in different folders are different instances)."""
    path = Path(name)
    return str(path.resolve()) if path.is_file() else name


def run_config_hash(domain: Domain, env_kwargs: dict[str, Any], policy_cfg: dict[str, Any],
                    time_limit_s: float | None) -> str:
    """Hash of everything besides instance and seed that determines an episode: the domain, the env
    keywords the episode runs with, the resolved policy config (and its checkpoint's bytes) and the
    solver time limit in seconds (None for step-wise policies, which ignore it)."""
    return stable_hash({"domain": domain.name, "env_kwargs": env_kwargs, "policy": policy_cfg,
                        "weights": weights_fingerprint(policy_cfg), "time_limit_s": time_limit_s})


def run_key(config_hash: str, instance: str, seed: int) -> str:
    """Resume key of one episode: its config hash, :func:`instance_ref` and seed."""
    return stable_hash({"config_hash": config_hash, "instance": instance_ref(instance), "seed": int(seed)})


#: what the jobs of this process ran into (a sweep runs several); read by :func:`main`
OUTCOME = Outcome()


def _prepare(cfg: DictConfig) -> tuple[Domain, str, list[str], dict[str, Any], Any]:
    """(domain, suite name, instance names, resolved policy config, agent) of the command line;
    :class:`ConfigError` / :class:`UnknownNameError` before anything runs when it cannot run."""
    domain = get_domain(cfg.env.domain)
    _check_lists(cfg)
    suite, spec = instance_spec(cfg)
    names = list(dict.fromkeys(domain.resolve(spec)))  # an instance named twice runs once
    if not names:
        raise ConfigError(f"the instance set {suite!r} ({spec}) has no instance; give names=[...] or another "
                          "instances=/workload=")
    policy_cfg = bind_env_domain(OmegaConf.to_container(cfg.policy, resolve=True), domain.name,
                                 cfg.env.get("name"))
    check_policy_domain(policy_label(cfg), policy_cfg, domain.name)
    return domain, suite, names, policy_cfg, build_agent(policy_cfg)


def _split_rows(csv_path: Path, keys: set[str], resume: bool) -> tuple[list[dict], dict[str, dict]]:
    """(rows of other runs, kept as they are; reusable rows of this run by ``run_key``): with
    ``resume``, this run's rows already in ``csv_path`` except failed ones (which run again)."""
    old_rows = read_csv_rows(csv_path)
    others = [r for r in old_rows if r.get("run_key") not in keys]
    reuse = {r["run_key"]: r for r in old_rows if r.get("run_key") in keys and r.get("status") != "failed"}
    return others, (reuse if resume else {})


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def _app(cfg: DictConfig) -> float:
    OUTCOME.started = True
    if "torch" in sys.modules or "ppo" in str(cfg.policy.get("_target_", "")) or "trained" in str(
            cfg.policy.get("_target_", "")):
        import torch

        # one torch thread per process (DESIGN.md section 3); OMP_NUM_THREADS overrides
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with config_errors_exit():
        domain, suite, names, policy_cfg, agent = _prepare(cfg)
    agent_name = getattr(agent, "name", type(agent).__name__)
    env_kwargs = env_kwargs_for(cfg, agent)
    time_limit_s = float(cfg.time_limit_s) if is_solver(agent) else None
    chash = run_config_hash(domain, env_kwargs, policy_cfg, time_limit_s)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    csv_path = out_dir / "results.csv"
    seeds = list(dict.fromkeys(int(s) for s in cfg.seeds))
    cells = [(n, s, run_key(chash, n, s)) for n in names for s in seeds]
    others, this = _split_rows(csv_path, {k for _, _, k in cells}, bool(cfg.resume))
    if this:
        print(f"resuming: {len(this)} of {len(cells)} episodes reused from {csv_path} (same instance, seed and "
              f"config {chash}; resume=false recomputes them)")
    todo = [(n, s, k) for n, s, k in cells if k not in this]
    iterator = todo
    if cfg.progress and len(todo) > 1:
        from rich.progress import track

        iterator = track(todo, description=f"{agent_name} on {suite}", transient=True)
    done = 0
    try:
        for name, seed, key in iterator:
            res = _run_one(domain, name, agent, seed, suite, env_kwargs, time_limit_s)
            this[key] = {**res.row(), "config_hash": chash, "run_key": key}
            write_csv_atomic(csv_path, others + [this[k] for _, _, k in cells if k in this])
            done += 1
            if res.status in ("failed", "invalid"):
                print(f"[{res.status}] {res.instance} seed {seed}: {_last_line(res.error)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {done} of {len(todo)} episodes of this run are in {csv_path}; run the same "
              f"command (same hydra.run.dir) to resume", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    results = [_result_from_row(this[k]) for _, _, k in cells]  # this run's episodes only
    print_tables(domain, results, cfg.show_instances)
    kept = f" (+{len(others)} rows of other runs, not summarised)" if others else ""
    print(f"results: {csv_path}{kept}")
    bad = sum(1 for r in results if r.status in ("failed", "invalid"))
    if bad:
        OUTCOME.fail(f"{bad} of {len(results)} episodes of {agent_name} on {suite} failed or were invalid; "
                     f"see the error column of {csv_path}")
    return _mean([r.metrics.get(domain.primary_metric) for r in results if r.metrics])


def main() -> None:
    """Console entry point (``schedgym-evaluate``, ``python scripts/evaluate.py``); exit statuses
    as documented in :mod:`schedgym.cli`."""
    run_app(_app, OUTCOME)


def _run_one(domain: Domain, name: str, agent: Any, seed: int, suite: str, env_kwargs: dict[str, Any],
             time_limit_s: float | None) -> EpisodeResult:
    """One episode; an instance that fails to load is a failed episode (the run goes on)."""
    try:
        instance = domain.load(name)
    except Exception:  # noqa: BLE001 - recorded with its traceback, like a crashing policy
        return EpisodeResult(env_id="", suite=suite, instance=_short(name), policy=getattr(agent, "name", ""),
                             seed=seed, status="failed", error=traceback.format_exc(limit=4))
    if hasattr(agent, "reset_seed"):
        agent.reset_seed(seed)
    return run_episode(domain, instance, agent, seed=seed, suite=suite, env_kwargs=env_kwargs,
                       time_limit_s=time_limit_s)


def _last_line(error: str) -> str:
    lines = error.strip().splitlines()
    return lines[-1] if lines else ""


def _short(name: str) -> str:
    return Path(name).stem if ("/" in name or name.endswith((".txt", ".fjs", ".json"))) else name


def _result_from_row(row: dict[str, Any]) -> EpisodeResult:
    base = {"env_id", "suite", "instance", "policy", "seed", "wall_time_s", "steps", "status", "error",
            "config_hash", "run_key"}
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
