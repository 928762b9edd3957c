"""Pictures of a serving run: latency CDFs and the KV-cache / queue timeline (matplotlib Agg)."""

from __future__ import annotations

import numpy as np

from schedgym.envs.core.render import figure_to_rgb, new_figure
from schedgym.envs.llmserve.metrics import per_request
from schedgym.envs.llmserve.types import LLMServeInstance, LLMServeSolution
from schedgym.envs.llmserve.validate import replay


def _cdf(ax, x: np.ndarray, label: str, slo: float | None = None) -> None:
    x = np.sort(x[np.isfinite(x)])
    if len(x):
        ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=label)
    if slo is not None:
        ax.axvline(slo, color="gray", ls="--", lw=0.8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction of requests")


def figure(instance: LLMServeInstance, sol: LLMServeSolution, now: float | None = None):
    """A 3-panel figure: TTFT CDF, TPOT CDF, KV blocks in use per replica over time."""
    fig = new_figure(12, 3.6)
    axes = fig.subplots(1, 3)
    pr = per_request(instance, sol)
    _cdf(axes[0], pr["ttft_s"], "TTFT", float(instance.slo_ttft[0]))
    axes[0].set_xlabel("time to first token (s)")
    _cdf(axes[1], pr["tpot_s"], "TPOT", float(instance.slo_tpot[0]))
    axes[1].set_xlabel("time per output token (s)")
    kv = replay(instance, sol, check=False)["kv_blocks"]
    ax = axes[2]
    pd = instance.pd
    for r in range(instance.n_replicas):
        sel = sol.it_replica == r
        role = "" if pd is None else (" (prefill)" if r < pd.n_prefill else " (decode)")
        if sel.any():
            ax.step(sol.it_end[sel], kv[sel] / max(sol.num_blocks[r], 1), where="post", lw=0.8,
                    label=f"replica {r}{role}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("KV cache in use (fraction)")
    ax.set_ylim(0, 1.05)
    if instance.n_replicas <= 8:
        ax.legend(fontsize=7, loc="upper right")
    title = f"{instance.name}"
    if now is not None:
        title += f"  t={now:.1f}s"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def render_rgb(instance: LLMServeInstance, sol: LLMServeSolution, now: float | None = None) -> np.ndarray:
    """(H, W, 3) uint8 picture of :func:`figure`."""
    return figure_to_rgb(figure(instance, sol, now))
