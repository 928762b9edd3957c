"""Aggregation of episode rows into leaderboard tables: means with 95 % bootstrap confidence
intervals over instances and seeds, ranks, wall time per episode; published rows kept apart."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from schedgym.envs.core.domain import get_domain


def bootstrap_ci(values: list[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
                 ) -> tuple[float, float, float]:
    """(mean, low, high) of the mean with a percentile bootstrap over the values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    a = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def table_primary_metrics(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """The metric each (domain, instance set) table ranks by: the domain's primary metric for the
    set's instances (:meth:`Domain.primary_for`; GPU DAG: mean JCT for online workloads)."""
    names: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        found = names.setdefault((r["domain"], r["instance_set"]), set())
        if r.get("instance") is not None:  # rows without instance names rank by the domain's metric
            found.add(str(r["instance"]))
    return {key: get_domain(key[0]).primary_for(sorted(inst)) for key, inst in names.items()}


def aggregate(rows: list[dict[str, Any]], n_boot: int = 2000) -> list[dict[str, Any]]:
    """One record per (domain, instance_set, policy, metric) of the computed rows.

    Keys: domain, instance_set, policy, source ("run"), metric, mean, ci_low, ci_high, episodes,
    failed, wall_time_s_per_episode, rank (by the table's primary metric, ``rank_metric``: the domain's
    primary metric for the set's instances, :func:`table_primary_metrics`; 1 = best; equal means
    share a rank; None when no episode of the policy succeeded).
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["domain"], r["instance_set"], r["policy"]), []).append(r)
    out: list[dict[str, Any]] = []
    primary = table_primary_metrics(rows)
    for (dom_name, iset, policy), rs in sorted(groups.items()):
        domain = get_domain(dom_name)
        ok = [r for r in rs if r["status"] not in ("failed", "invalid", "none") and r["metrics"]]
        metrics = list(dict.fromkeys([primary[(dom_name, iset)], *domain.table_metrics]))
        wall = float(np.mean([r["wall_time_s"] for r in rs])) if rs else math.nan
        for m in metrics:
            mean, lo, hi = bootstrap_ci([float(r["metrics"].get(m, math.nan)) for r in ok], n_boot=n_boot)
            out.append({"domain": dom_name, "instance_set": iset, "policy": policy, "source": "run", "metric": m,
                        "mean": mean, "ci_low": lo, "ci_high": hi, "episodes": len(rs),
                        "failed": len(rs) - len(ok), "wall_time_s_per_episode": wall, "rank": None,
                        "rank_metric": primary[(dom_name, iset)], "citation": "", "note": ""})
    # ranks per (domain, set) on the primary metric, among computed rows only
    by_table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in out:
        if rec["metric"] == primary[(rec["domain"], rec["instance_set"])]:
            by_table.setdefault((rec["domain"], rec["instance_set"]), []).append(rec)
    for (dom_name, _), recs in by_table.items():
        lower = get_domain(dom_name).lower_is_better
        valid = [r for r in recs if math.isfinite(r["mean"])]
        valid.sort(key=lambda r: r["mean"] if lower else -r["mean"])
        for i, r in enumerate(valid, start=1):  # equal means share the better rank (1, 2, 2, 4)
            r["rank"] = valid[i - 2]["rank"] if i > 1 and r["mean"] == valid[i - 2]["mean"] else i
        ranks = {r["policy"]: r["rank"] for r in recs}
        for rec in out:
            if rec["domain"] == dom_name and rec["instance_set"] == recs[0]["instance_set"]:
                rec["rank"] = ranks.get(rec["policy"])
    return out


def with_published(records: list[dict[str, Any]], published: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records plus the published rows of the (domain, instance_set) tables present, marked
    ``source="reported, not run"``; the published values never enter the computed statistics."""
    tables = {(r["domain"], r["instance_set"]) for r in records}
    extra = []
    for p in published:
        if (p["domain"], p["instance_set"]) in tables:
            extra.append({"domain": p["domain"], "instance_set": p["instance_set"], "policy": p["policy"],
                          "source": "reported, not run", "metric": p["metric"], "mean": p["value"],
                          "ci_low": math.nan, "ci_high": math.nan, "episodes": 0, "failed": 0,
                          "wall_time_s_per_episode": math.nan, "rank": None, "rank_metric": "",
                          "citation": p["citation"],
                          "note": p.get("note", "")})
    return records + extra


def _f(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.1f}" if abs(x) >= 1000 else f"{x:.3f}"
    return str(x)


def to_markdown(records: list[dict[str, Any]], title: str = "Leaderboard") -> str:
    """One markdown table per (domain, instance set); rows by rank, reported rows last."""
    lines = [f"# {title}", ""]
    tables: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        tables.setdefault((r["domain"], r["instance_set"]), []).append(r)
    for (dom_name, iset), recs in sorted(tables.items()):
        domain = get_domain(dom_name)
        primary = next((r["rank_metric"] for r in recs if r.get("rank_metric")), domain.primary_metric)
        metrics = list(dict.fromkeys([primary, *domain.table_metrics]))
        policies: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for r in recs:
            policies.setdefault((r["policy"], r["source"]), {})[r["metric"]] = r
        arrow = "lower is better" if domain.lower_is_better else "higher is better"
        lines += [f"## {dom_name} / {iset}", "", f"Primary metric: `{primary}` ({arrow}); "
                  "mean [95 % bootstrap CI] over instances and seeds.", ""]
        header = ["rank", "policy", *metrics, "episodes", "failed", "wall s/episode", "source"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))

        def sort_key(item):
            (policy, source), ms = item
            rank = next((m["rank"] for m in ms.values() if m["rank"] is not None), None)
            return (source != "run", rank if rank is not None else 1e9, policy)

        for (policy, source), ms in sorted(policies.items(), key=sort_key):
            any_rec = next(iter(ms.values()))
            cells = []
            for m in metrics:
                rec = ms.get(m)
                if rec is None:
                    cells.append("-")
                elif source == "run" and math.isfinite(rec["ci_low"]):
                    cells.append(f"{_f(rec['mean'])} [{_f(rec['ci_low'])}, {_f(rec['ci_high'])}]")
                else:
                    cells.append(_f(rec["mean"]))
            src = source if source == "run" else f"reported, not run: {any_rec['citation']}" + (
                f" ({any_rec['note']})" if any_rec["note"] else "")
            lines.append("| " + " | ".join([_f(any_rec["rank"]) if source == "run" else "", policy, *cells,
                                            str(any_rec["episodes"]) if source == "run" else "",
                                            str(any_rec["failed"]) if source == "run" else "",
                                            _f(any_rec["wall_time_s_per_episode"]), src]) + " |")
        lines.append("")
    return "\n".join(lines)
