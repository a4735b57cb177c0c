"""Figures for the lecture studies, drawn on matplotlib's object API (no pyplot global state),
so studies can run in threads or tests without a display.
"""

import pathlib

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def grid(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (5.0, 4.0)):
    """A figure and its axes as a 2-D array [nrows, ncols], each panel `size` inches."""
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save(fig: Figure, path: pathlib.Path) -> str:
    """Saves a PNG and returns its file name, as verdict.md links it."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path.name


def heatmap(ax: Axes, values: np.ndarray, rows: list[str], cols: list[str], title: str) -> None:
    """values [rows, cols] with every cell labelled by its row and column names."""
    image = ax.imshow(values, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046)
