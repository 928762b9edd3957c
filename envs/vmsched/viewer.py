"""Pictures of PM/NUMA usage: used cores per NUMA node, fragment cores highlighted, before and after."""

from __future__ import annotations

import numpy as np

from schedgym.envs.core.render import figure_to_rgb, new_figure
from schedgym.envs.vmsched.types import VMInstance, fragment_rate


def _panel(ax, instance: VMInstance, pm: np.ndarray, numa: np.ndarray, title: str) -> None:
    inst = instance
    used, _, _ = inst.usage(pm, numa)
    free = inst.pm_cpu - used
    g = inst.granularity
    frag = np.where(inst.pm_active[:, None], free % g, 0)
    x = np.arange(inst.n_pms)
    w = 0.4 if inst.n_pms <= 60 else 0.5  # large clusters: no gaps between PMs (they read as stripes)
    for n, off in ((0, -w / 2), (1, w / 2)):
        ax.bar(x + off, used[:, n], width=w, color="#4878d0" if n == 0 else "#6acc64", lw=0)
        ax.bar(x + off, free[:, n] - frag[:, n], bottom=used[:, n], width=w, color="#dddddd", lw=0)
        ax.bar(x + off, frag[:, n], bottom=used[:, n] + free[:, n] - frag[:, n], width=w, color="#d65f5f", lw=0)
    bad = np.flatnonzero(~inst.pm_active)
    if len(bad):
        ax.scatter(bad, np.full(len(bad), inst.pm_cpu.max() * 1.02), marker="x", color="black", s=12)
    ax.set_xlim(-1, inst.n_pms)
    ax.set_ylabel("cores per NUMA node")
    ax.set_title(f"{title}: FR {fragment_rate(inst, pm, numa):.3f}", fontsize=9)


def draw_usage(instance: VMInstance, pm: np.ndarray, numa: np.ndarray, title: str | None = None):
    """Two panels: the snapshot and the given placement. Per PM two bars (NUMA 0 blue, NUMA 1
    green) of used cores, free cores in grey, fragment cores (free mod 16) in red; x marks PMs that
    are not ACTIVE."""
    fig = new_figure(12, 5)
    ax0 = fig.add_subplot(2, 1, 1)
    ax1 = fig.add_subplot(2, 1, 2, sharex=ax0)
    _panel(ax0, instance, instance.init_pm, instance.init_numa, f"{instance.name} before")
    moved = int(((pm != instance.init_pm) | (numa != instance.init_numa)).sum())
    _panel(ax1, instance, pm, numa, title or f"after ({moved} VMs moved)")
    ax1.set_xlabel("PM")
    fig.tight_layout()
    return fig


def usage_rgb(instance: VMInstance, pm: np.ndarray, numa: np.ndarray, title: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 picture of :func:`draw_usage`."""
    return figure_to_rgb(draw_usage(instance, pm, numa, title))
