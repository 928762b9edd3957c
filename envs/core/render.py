"""Rendering helpers: matplotlib figures to RGB arrays (headless, Agg backend)."""

from __future__ import annotations

import numpy as np


def new_figure(width_in: float = 10.0, height_in: float = 5.0, dpi: int = 80):
    """A matplotlib Figure on the Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_to_rgb(fig) -> np.ndarray:
    """(H, W, 3) uint8 picture of a figure."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return rgba[..., :3].copy()
