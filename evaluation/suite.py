"""Suites: which (environment, instance set, policy, seed) cells a leaderboard runs.

A suite config (``conf/suite/*.yaml``) is a list of cells::

    cells:
      - env: jobshop                    # a config in conf/env/
        instances: [taillard_15x15]     # instance sets of that domain, one table each; a nested
                                        # list of names ([[ft06, la01]]) is one table
        policies: [spt, mwkr, {name: ppo_gnn, label: ppo_gnn_x16, overrides: {samples: 16}}]
        seeds: [0]
        time_limit_s: 10                # solvers, seconds per instance

:func:`expand_suite` turns it into tasks: plain dicts (picklable, for process pools and Ray), one
per episode, each with a key that hashes everything that determines its result.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from schedgym.baselines.base import bind_env_domain, check_policy_domain
from schedgym.envs.core.domain import get_domain
from schedgym.envs.core.errors import ConfigError, UnknownNameError


def stable_hash(obj: Any) -> str:
    """16 hex digits of the SHA-1 of ``obj``'s canonical JSON (sorted keys): the same on every machine."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_fingerprint(pcfg: dict[str, Any]) -> str | None:
    """Content hash of the checkpoint a trained-policy config loads (``checkpoint: null`` is the
    shipped one), so that retraining into the same path invalidates stored results; None for
    policies without weights."""
    if not str(pcfg.get("_target_", "")).startswith("schedgym.agents."):
        return None
    from schedgym.agents.checkpoint import resolve_checkpoint

    try:
        path = resolve_checkpoint(pcfg.get("checkpoint"), pcfg.get("domain"))
    except FileNotFoundError:
        return None  # the cell fails at run time with the loader's message
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


def policy_names(conf_dir: Path) -> list[str]:
    return sorted(p.stem for p in (conf_dir / "policy").glob("*.yaml"))


def load_policy_cfg(conf_dir: Path, name: str, overrides: dict[str, Any] | None = None
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(policy config, env kwargs it sets) of ``conf/policy/<name>.yaml`` with ``overrides`` merged.

    Policy files in the global package (``# @package _global_``, with ``policy:`` and
    ``env: kwargs:`` sections) may set env options, e.g. the LLM env's mode.
    """
    path = conf_dir / "policy" / f"{name}.yaml"
    if not path.exists():
        exc = UnknownNameError("policy", name, policy_names(conf_dir))
        if "did you mean" not in str(exc):  # no close match: list every policy, not the first 30
            exc.args = (f"unknown policy {name!r}; valid names: {', '.join(policy_names(conf_dir))}",)
        raise exc
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    env_kwargs: dict[str, Any] = {}
    if "@package _global_" in path.read_text().splitlines()[0]:
        env_kwargs = dict((cfg.get("env") or {}).get("kwargs") or {})
        cfg = cfg["policy"]
    if overrides:
        cfg = OmegaConf.to_container(OmegaConf.merge(cfg, overrides), resolve=True)
    return cfg, env_kwargs


def load_env_cfg(conf_dir: Path, name: str) -> dict[str, Any]:
    path = conf_dir / "env" / f"{name}.yaml"
    if not path.exists():
        raise UnknownNameError("env config", name, sorted(p.stem for p in (conf_dir / "env").glob("*.yaml")))
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def _set_spec(conf_dir: Path, name: str) -> list[str]:
    """The ``spec`` list of ``conf/instances/<name>.yaml`` or ``conf/workload/<name>.yaml``, else ``[name]``."""
    for group in ("instances", "workload"):
        path = conf_dir / group / f"{name}.yaml"
        if path.exists():
            return [str(x) for x in OmegaConf.load(path).spec]
    return [name]


def set_names(conf_dir: Path) -> list[str]:
    """Names of the instance and workload set files (``conf/instances``, ``conf/workload``)."""
    return sorted({p.stem for group in ("instances", "workload") for p in (conf_dir / group).glob("*.yaml")})


def _resolve_set(domain: Any, conf_dir: Path, set_spec: Any) -> list[str]:
    """Instance names of one set spec; an unknown set name also gets the close matches among the
    set files of ``conf/`` that this domain can load."""
    if isinstance(set_spec, list):
        return domain.resolve(list(set_spec))
    try:
        return domain.resolve(_set_spec(conf_dir, str(set_spec)))
    except UnknownNameError as exc:
        close = []
        for cand in difflib.get_close_matches(str(set_spec), set_names(conf_dir), n=5, cutoff=0.5):
            try:
                domain.resolve(_set_spec(conf_dir, cand))
            except Exception:  # noqa: BLE001 - another domain's set
                continue
            close.append(cand)
        if close:
            exc.args = (f"{exc.args[0]} (set files in conf/instances, conf/workload: "
                        f"{', '.join(repr(c) for c in close)})",)
        raise


def expand_suite(suite_cfg: dict[str, Any], conf_dir: str | Path) -> list[dict[str, Any]]:
    """All episodes of a suite as task dicts, one per distinct key (a cell repeated in the suite
    runs once). Raises, naming the suite and cell, :class:`UnknownNameError` on an unknown env,
    policy or instance set and :class:`ConfigError` on an empty list (cells, policies, instance
    sets, seeds) or a policy that does not apply to the cell's env (:class:`PolicyDomainError`), so
    that nothing runs."""
    conf_dir = Path(conf_dir)
    suite = str(suite_cfg.get("name", "suite"))
    tasks: dict[str, dict[str, Any]] = {}
    configs: dict[tuple[str, str, str], tuple[str, int]] = {}
    if not suite_cfg.get("cells"):
        raise ConfigError(f"suite {suite!r} has no cells; list at least one under cells: (see conf/suite/smoke.yaml)")
    for i, cell in enumerate(suite_cfg["cells"]):
        try:
            cell_tasks = _cell_tasks(suite, cell, conf_dir)
        except (UnknownNameError, ConfigError) as exc:
            exc.args = (f"suite {suite!r}, cell {i} (env {cell.get('env')!r}): {exc.args[0]}",)
            raise
        for task in cell_tasks:
            row = (task["domain"], task["instance_set"], task["policy"])
            first = configs.setdefault(row, (task["config_hash"], i))
            if first[0] != task["config_hash"]:
                raise ConfigError(
                    f"suite {suite!r}: policy {task['policy']!r} appears in cells {first[1]} and {i} for "
                    f"{task['domain']} / {task['instance_set']} with different settings; one table row "
                    f"cannot mix them: give one a label ({{name: {task['policy']}, label: ...}})")
            tasks.setdefault(task["key"], task)
    return list(tasks.values())


def _cell_list(cell: dict[str, Any], *keys: str, default: Any = None) -> list[Any]:
    """The cell's list under the first of ``keys`` it has (a single string is a list of one), else
    ``default``; an empty list, or nothing and no default, is a :class:`ConfigError`."""
    key = next((k for k in keys if cell.get(k) is not None), None)
    value = cell[key] if key is not None else default
    if isinstance(value, str):
        value = [value]
    if not value:
        given = f"{key}: []" if key is not None else f"no {' or '.join(keys)}"
        raise ConfigError(f"{given} leaves the cell nothing to run; list at least one ({'/'.join(keys)})")
    return list(value)


def _cell_tasks(suite: str, cell: dict[str, Any], conf_dir: Path) -> list[dict[str, Any]]:
    """The tasks of one suite cell (see the module docstring)."""
    tasks: list[dict[str, Any]] = []
    env_cfg = load_env_cfg(conf_dir, cell["env"])
    domain = get_domain(env_cfg["domain"])
    env_kwargs = dict(env_cfg.get("kwargs") or {})
    env_kwargs.update(cell.get("env_kwargs") or {})
    sets = _cell_list(cell, "instances", "workload", default=env_cfg.get("default_instances"))
    seeds = _cell_list(cell, "seeds", default=[0])
    policies = []
    for p in _cell_list(cell, "policies"):
        if isinstance(p, str):
            p = {"name": p}
        pcfg, p_env = load_policy_cfg(conf_dir, p["name"], p.get("overrides"))
        pcfg = bind_env_domain(pcfg, domain.name, env_cfg.get("name", cell["env"]))
        check_policy_domain(p.get("label", p["name"]), pcfg, domain.name)
        policies.append((p.get("label", p["name"]), pcfg, p_env, weights_fingerprint(pcfg)))
    for set_spec in sets:
        # a set of conf/instances or conf/workload, a name the domain resolves, or a list of
        # instance names that forms one table
        names = _resolve_set(domain, conf_dir, set_spec)
        if isinstance(set_spec, list):
            set_spec = ",".join(str(x) for x in set_spec)
        for label, pcfg, p_env, weights in policies:
            for name in names:
                for seed in seeds:
                    task = {
                        "suite": suite,
                        "domain": domain.name,
                        "env_config": cell["env"],
                        "instance_set": str(set_spec),
                        "instance": str(name),
                        "policy": label,
                        "policy_cfg": pcfg,
                        "seed": int(seed),
                        "env_kwargs": {**env_kwargs, **p_env},
                        "time_limit_s": float(cell.get("time_limit_s", 10.0)),
                    }
                    task["config_hash"] = stable_hash({**{k: task[k] for k in ("policy_cfg", "env_kwargs", "time_limit_s")},
                                                 "weights": weights})
                    task["key"] = stable_hash({k: v for k, v in task.items() if k != "suite"})
                    tasks.append(task)
    return tasks
