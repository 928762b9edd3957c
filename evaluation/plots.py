"""Leaderboard plots (PNG, matplotlib Agg). Each domain has its plot functions; a plot that fails is
reported (its traceback on stderr) and the others are still made, then the leaderboard exits 1.

* job-shop: mean gap by Taillard size per policy (published rows dashed);
* GPU DAG: SLR against CCR per policy;
* VM rescheduling: fragment rate against migrations per policy;
* LLM serving: TTFT and TPOT CDFs and goodput against load;
* every domain: a Gantt-style picture of the best policy's solution on one instance.
"""

from __future__ import annotations

import math
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from schedgym.envs.core.render import new_figure

PlotFn = Callable[[list[dict[str, Any]], list[dict[str, Any]], Path], list[Path]]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    return path


def _mean_by(rows: list[dict[str, Any]], key: Callable[[dict], Any], metric: str) -> dict[tuple[str, Any], float]:
    acc: dict[tuple[str, Any], list[float]] = {}
    for r in rows:
        v = r["metrics"].get(metric)
        k = key(r)
        if v is None or k is None or not math.isfinite(float(v)):
            continue
        acc.setdefault((r["policy"], k), []).append(float(v))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def jobshop_gap_by_size(rows, published, out: Path) -> list[Path]:
    sizes = ["15x15", "20x15", "20x20", "30x15", "30x20", "50x15", "50x20", "100x20"]
    rows = [r for r in rows if r["domain"] == "jobshop" and r["instance_set"].startswith("taillard_")]
    if not rows:
        return []
    means = _mean_by(rows, lambda r: r["instance_set"].split("_", 1)[1], "gap_to_bks_pct")
    present = [s for s in sizes if any(k[1] == s for k in means)]
    fig = new_figure(8, 4.5, dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for policy in sorted({k[0] for k in means}):
        ys = [means.get((policy, s), np.nan) for s in present]
        ax.plot(present, ys, marker="o", label=policy)
    pub: dict[str, dict[str, float]] = {}
    for p in published:
        if p["domain"] == "jobshop" and p["instance_set"].startswith("taillard_"):
            pub.setdefault(p["policy"], {})[p["instance_set"].split("_", 1)[1]] = p["value"]
    for policy, vals in pub.items():
        ax.plot(present, [vals.get(s, np.nan) for s in present], ls="--", alpha=0.6, label=f"{policy} (reported)")
    ax.set_xlabel("Taillard size (jobs x machines)")
    ax.set_ylabel("mean gap to best known (%)")
    ax.set_title("Job-shop: mean gap by Taillard size")
    ax.legend(fontsize=7, ncol=2)
    return [_save(fig, out / "jobshop_gap_by_size.png")]


def gpudag_slr_vs_ccr(rows, published, out: Path) -> list[Path]:
    rows = [r for r in rows if r["domain"] == "gpudag"]

    def ccr(r):
        m = re.search(r"-ccr([0-9.]+)", r["instance"])
        return float(m.group(1)) if m else None

    means = _mean_by(rows, ccr, "slr")
    if not means:
        return []
    fig = new_figure(7, 4.5, dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for policy in sorted({k[0] for k in means}):
        pts = sorted((c, v) for (p, c), v in means.items() if p == policy)
        ax.plot([c for c, _ in pts], [v for _, v in pts], marker="o", label=policy)
    ax.set_xscale("log")
    ax.set_xlabel("communication-to-computation ratio (CCR)")
    ax.set_ylabel("mean SLR")
    ax.set_title("GPU DAG: schedule length ratio against CCR")
    ax.legend(fontsize=7)
    return [_save(fig, out / "gpudag_slr_vs_ccr.png")]


def llmserve_goodput_vs_load(rows, published, out: Path) -> list[Path]:
    """Goodput against offered load: one figure per workload set with at least two rates
    (``llmserve_goodput_vs_load.png`` for ``azure_conv_load`` or a lone set, else
    ``llmserve_goodput_vs_load_<set>.png``); admission rows are drawn dashed."""
    rows = [r for r in rows if r["domain"] == "llmserve"]

    def rate(r):
        m = re.search(r"rate=([0-9.]+)", r["instance"])
        return float(m.group(1)) if m else None

    sets = sorted({r.get("instance_set", "") for r in rows})
    paths: list[Path] = []
    for iset in sets:
        means = _mean_by([r for r in rows if r.get("instance_set", "") == iset], rate, "goodput_rps")
        if len({k[1] for k in means}) < 2:
            continue
        fig = new_figure(7, 4.5, dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        for policy in sorted({k[0] for k in means}):
            pts = sorted((c, v) for (p, c), v in means.items() if p == policy)
            if len(pts) > 1:
                ax.plot([c for c, _ in pts], [v for _, v in pts], marker="o", label=policy,
                        ls="--" if policy.startswith("adm_") else "-")
        ax.set_xlabel("offered load (requests/s)")
        ax.set_ylabel("goodput (requests/s meeting both SLOs)")
        ax.set_title(f"LLM serving: goodput against load ({iset})" if iset else "LLM serving: goodput against load")
        ax.legend(fontsize=7)
        lone = iset == "azure_conv_load" or len(sets) == 1
        paths.append(_save(fig, out / ("llmserve_goodput_vs_load.png" if lone else f"llmserve_goodput_vs_load_{iset}.png")))
    return paths


PLOTS: dict[str, list[PlotFn]] = {
    "jobshop": [jobshop_gap_by_size],
    "gpudag": [gpudag_slr_vs_ccr],
    "llmserve": [llmserve_goodput_vs_load],
}


def llmserve_latency_cdfs(rows, tasks_by_key, out: Path) -> list[Path]:
    """TTFT and TPOT CDFs of every LLM policy on the first workload they all ran (re-run here)."""
    from schedgym.envs.core.domain import get_domain
    from schedgym.envs.llmserve.metrics import per_request
    from schedgym.evaluation.runners import agent_for

    rows = [r for r in rows if r["domain"] == "llmserve" and r["status"] not in ("failed", "invalid")]
    if not rows:
        return []
    domain = get_domain("llmserve")
    first = sorted(r["instance"] for r in rows)[0]
    fig = new_figure(10, 4, dpi=100)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for r in sorted((r for r in rows if r["instance"] == first), key=lambda r: r["policy"]):
        task = tasks_by_key.get(r["key"])
        if task is None:
            continue
        instance, sol = solve_task(domain, task, agent_for(task))
        pr = per_request(instance, sol)
        for ax, key in ((ax1, "ttft_s"), (ax2, "tpot_s")):
            x = np.sort(pr[key][np.isfinite(pr[key])])
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=r["policy"])
    ax1.set_xlabel("time to first token (s)")
    ax2.set_xlabel("time per output token (s)")
    for ax in (ax1, ax2):
        ax.set_ylabel("fraction of requests")
        ax.legend(fontsize=7)
    fig.suptitle(first, fontsize=8)
    return [_save(fig, out / "llmserve_latency_cdfs.png")]


def vmsched_fr_vs_migrations(rows, tasks_by_key, out: Path) -> list[Path]:
    """Fragment rate after each migration of every VM policy's plan on the first VM instance they
    ran (re-run here; the plan replayed move by move from the snapshot)."""
    from schedgym.envs.core.domain import get_domain
    from schedgym.envs.vmsched.state import VMState
    from schedgym.evaluation.runners import agent_for

    rows = [r for r in rows if r["domain"] == "vmsched" and r["status"] not in ("failed", "invalid")]
    if not rows:
        return []
    domain = get_domain("vmsched")
    first = sorted(r["instance"] for r in rows)[0]
    fig = new_figure(8, 4.5, dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    seen: set[str] = set()
    mnl = None
    for r in sorted((r for r in rows if r["instance"] == first), key=lambda r: (r["policy"], r["seed"])):
        task = tasks_by_key.get(r["key"])
        if task is None or r["policy"] in seen:  # one line per policy (its first seed)
            continue
        seen.add(r["policy"])
        instance, sol = solve_task(domain, task, agent_for(task))
        domain.validate(instance, sol)
        st = VMState(instance, mnl=max(sol.limit(instance), sol.n_moves))
        fr = [st.fragment_rate()]
        for v, p, n in sol.moves.tolist():
            st.move(v, p, n)
            fr.append(st.fragment_rate())
        mnl = sol.limit(instance)
        # line styles cycle so that policies with the same plan stay visible
        ax.step(np.arange(len(fr)), fr, where="post", ls=("-", "--", ":", "-.")[(len(seen) - 1) % 4], lw=1.5,
                label=f"{r['policy']} ({fr[-1]:.3f}, {sol.n_moves} moves)")
    if not seen:
        return []
    if mnl is not None:
        ax.axvline(mnl, color="grey", ls=":", lw=1)
    ax.set_xlabel("migrations used")
    ax.set_ylabel("fragment rate (free cores mod 16 / free cores)")
    ax.set_title(f"VM rescheduling: fragment rate against migrations ({first})", fontsize=9)
    ax.legend(fontsize=7)
    return [_save(fig, out / "vmsched_fr_vs_migrations.png")]


#: plots that re-run episodes (they need the tasks), per domain
RERUN_PLOTS: dict[str, list[Callable]] = {"llmserve": [llmserve_latency_cdfs]}
RERUN_PLOTS["vmsched"] = [vmsched_fr_vs_migrations]


def register_plot(domain: str, fn: PlotFn) -> None:
    PLOTS.setdefault(domain, []).append(fn)


def best_solution_picture(dom_name: str, rows: list[dict[str, Any]], tasks_by_key: dict[str, dict[str, Any]],
                          out: Path) -> list[Path]:
    """Re-run the best policy of domain ``dom_name`` (by primary metric) on its first instance and save
    the env's rgb_array rendering of the finished episode (solvers: their solution replayed); no
    picture when the domain has no successful row or cannot render. Raises what the re-run raises."""
    from schedgym.envs.core.domain import get_domain
    from schedgym.evaluation.runners import agent_for

    domain = get_domain(dom_name)
    ok = [r for r in rows if r["domain"] == dom_name and r["metrics"] and r["status"] not in ("failed", "invalid")]
    by_policy: dict[str, list[float]] = {}
    for r in ok:
        v = r["metrics"].get(domain.primary_metric)
        if v is not None and math.isfinite(float(v)):
            by_policy.setdefault(r["policy"], []).append(float(v))
    if not by_policy:
        return []
    best = (min if domain.lower_is_better else max)(by_policy, key=lambda p: np.mean(by_policy[p]))
    row = next(r for r in ok if r["policy"] == best)
    task = tasks_by_key.get(row["key"])
    if task is None:
        return []
    img = render_task(domain, task, agent_for(task))
    if img is None:
        return []
    import matplotlib.image

    path = out / f"{dom_name}_best_{re.sub(r'[^A-Za-z0-9_.-]', '_', best)}.png"
    matplotlib.image.imsave(path, img)
    return [path]


def _env_kwargs(task: dict[str, Any], agent: Any) -> dict[str, Any]:
    from schedgym.envs.core.episode import env_kwargs_for_agent

    return env_kwargs_for_agent(task["env_kwargs"], agent)


def solve_task(domain, task: dict[str, Any], agent: Any) -> tuple[Any, Any]:
    """(instance, solution) of the task's episode, re-run here."""
    from schedgym.envs.core.episode import apply_env_overrides, is_solver

    instance = apply_env_overrides(domain, domain.load(task["instance"]), _env_kwargs(task, agent))
    if is_solver(agent):
        return instance, agent.solve(instance, task["time_limit_s"])
    env = domain.make_env(instance, **_env_kwargs(task, agent))
    obs, info = env.reset(seed=task["seed"], options={"instance": instance})
    agent.reset(env)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(agent.act(obs, info))
        done = term or trunc
    return instance, info["solution"]


def render_task(domain, task: dict[str, Any], agent: Any) -> np.ndarray | None:
    """Run the task's episode with render_mode rgb_array and return the last frame."""
    from schedgym.envs.core.episode import apply_env_overrides, is_solver

    env_kwargs = _env_kwargs(task, agent)
    instance = apply_env_overrides(domain, domain.load(task["instance"]), env_kwargs)
    if is_solver(agent):
        if domain.render_solution is None:
            return None
        sol = agent.solve(instance, task["time_limit_s"])
        return domain.render_solution(instance, sol)
    env = domain.make_env(instance, render_mode="rgb_array", **env_kwargs)
    obs, info = env.reset(seed=task["seed"], options={"instance": instance})
    agent.reset(env)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(agent.act(obs, info))
        done = term or trunc
    return env.render()


@dataclass
class PlotResult:
    """What :func:`make_plots` made.

    Attributes:
        paths: the PNG files written.
        failures: one line per plot that raised (``<plot>: <exception>``); its traceback was printed.
    """

    paths: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def attempt(self, label: str, fn: Callable[..., list[Path]], *args: Any) -> None:
        """Run one plot function, adding its files, or its failure (traceback to stderr)."""
        try:
            self.paths += fn(*args)
        except Exception as exc:  # noqa: BLE001 - the other plots still get made; the caller fails the run
            print(f"[plots] {label} failed:\n{traceback.format_exc(limit=3)}", file=sys.stderr)
            self.failures.append(f"{label}: {type(exc).__name__}: {exc}")


def make_plots(rows: list[dict[str, Any]], published: list[dict[str, Any]], out: Path,
               tasks_by_key: dict[str, dict[str, Any]] | None = None, pictures: bool = True) -> PlotResult:
    """Every plot of the domains in ``rows`` into ``out``; a plot that raises is reported in the
    result's ``failures`` (the leaderboard then exits 1) and the others are still made."""
    out.mkdir(parents=True, exist_ok=True)
    result = PlotResult()
    domains = sorted({r["domain"] for r in rows})
    for dom_name in domains:
        for fn in PLOTS.get(dom_name, []):
            result.attempt(fn.__name__, fn, rows, published, out)
    if pictures and tasks_by_key:
        for dom_name in domains:
            for fn in RERUN_PLOTS.get(dom_name, []):
                result.attempt(fn.__name__, fn, rows, tasks_by_key, out)
        for dom_name in domains:
            result.attempt(f"best_solution_picture({dom_name})", best_solution_picture, dom_name, rows, tasks_by_key,
                           out)
    return result
