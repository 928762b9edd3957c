"""Gantt chart of a (partial) job-shop schedule."""

from __future__ import annotations

import numpy as np

from schedgym.envs.core.render import figure_to_rgb, new_figure
from schedgym.envs.jobshop.types import JobShopInstance


def draw_gantt(
    instance: JobShopInstance, start: np.ndarray, machine: np.ndarray, title: str | None = None, ax=None
):
    """Draw one bar per scheduled operation (start >= 0), one row per machine, coloured by job."""
    import matplotlib

    fig = None
    if ax is None:
        fig = new_figure(10, max(2.5, 0.3 * instance.n_machines + 1.2))
        ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["tab20"]
    done = np.flatnonzero(start >= 0)
    ends = start[done] + instance.proc[done, machine[done]]
    for o, e in zip(done, ends):
        j = int(instance.op_job[o])
        ax.barh(int(machine[o]), e - start[o], left=start[o], color=cmap(j % 20), edgecolor="black", lw=0.3)
    ax.set_yticks(range(instance.n_machines))
    ax.set_yticklabels([f"M{m}" for m in range(instance.n_machines)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time")
    mk = int(ends.max()) if len(ends) else 0
    ax.set_title(title or f"{instance.name}: {len(done)}/{instance.n_ops} ops, makespan {mk}", fontsize=9)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


def gantt_rgb(instance: JobShopInstance, start: np.ndarray, machine: np.ndarray, title: str | None = None):
    """(H, W, 3) uint8 Gantt chart."""
    return figure_to_rgb(draw_gantt(instance, start, machine, title))
