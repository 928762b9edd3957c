"""Gantt chart of a (partial) GPU-DAG schedule: one row per device, bars coloured by job (or kind)."""

from __future__ import annotations

import numpy as np

from schedgym.envs.core.render import figure_to_rgb, new_figure
from schedgym.envs.gpudag.types import GPUDagInstance


def draw_gantt(instance: GPUDagInstance, start: np.ndarray, device: np.ndarray, now: float | None = None,
               title: str | None = None, ax=None, labels: bool | None = None):
    """Draw every assigned task (device >= 0); multi-job instances are coloured by job, others by kind."""
    import matplotlib

    fig = None
    D = instance.n_devices
    if ax is None:
        fig = new_figure(10, max(2.5, 0.35 * D + 1.2))
        ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["tab20"]
    done = np.flatnonzero(device >= 0)
    dur = instance.exec_time[done, instance.device_type[device[done]]]
    if labels is None:
        labels = instance.n_tasks <= 40
    color_by = instance.task_job if instance.n_jobs > 1 else (
        instance.task_kind if instance.task_kind is not None else np.arange(instance.n_tasks))
    for t, w in zip(done, dur, strict=False):
        d = int(device[t])
        ax.barh(d, w, left=start[t], color=cmap(int(color_by[t]) % 20), edgecolor="black", lw=0.3)
        if labels:
            ax.text(start[t] + w / 2, d, str(int(t)), ha="center", va="center", fontsize=6)
    if now is not None:
        ax.axvline(now, color="red", lw=0.8, ls="--")
    names = instance.type_names or tuple(str(k) for k in range(instance.n_types))
    ax.set_yticks(range(D))
    ax.set_yticklabels([f"d{d} {names[int(instance.device_type[d])]}" for d in range(D)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"time ({instance.time_unit})")
    mk = float((start[done] + dur).max()) if len(done) else 0.0
    ax.set_title(title or f"{instance.name}: {len(done)}/{instance.n_tasks} tasks, makespan {mk:.4g}", fontsize=9)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


def gantt_rgb(instance: GPUDagInstance, start: np.ndarray, device: np.ndarray, now: float | None = None,
              title: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 Gantt chart."""
    return figure_to_rgb(draw_gantt(instance, start, device, now=now, title=title))
