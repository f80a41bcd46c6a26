"""Shared plumbing for the figure modules: an Agg figure, atomic PNG saving, input checks.

Figures are built on `matplotlib.figure.Figure` with an explicit Agg canvas and never through
pyplot: pyplot keeps a global registry of open figures (a leak if one is not closed) and a global
backend (a web server drawing Grad-CAM from several threads must not share either). Matplotlib's
own docs recommend this for servers. Nothing here changes the caller's pyplot backend.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fashionlab._io import atomic_write_with
from fashionlab.errors import ConfigError

DPI = 100  # small files; figures are sized in inches so text stays readable


def new_figure(width: float, height: float) -> Figure:
    """A figure drawn by Agg (explicit canvas: no pyplot, no global state)."""
    # constrained layout keeps suptitles, colorbars and rotated tick labels from overlapping
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | os.PathLike | None, dpi: int = DPI) -> Path | Figure:
    """Write `fig` to `path` as PNG atomically, release its memory, return the path; with no
    path, return the figure itself (a notebook shows it inline)."""
    if path is None:
        return fig
    path = Path(path)
    try:
        # format given explicitly: the temp file's name ends in .tmp, not .png. No
        # bbox_inches="tight": constrained layout already fits everything, and "tight" costs
        # a second full draw.
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        fig.clear()  # the figure is not in pyplot's registry; clearing frees artists now
    return path


def class_names_for(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    """Names for at least `num_classes` classes: the given ones, else Fashion-MNIST's ten when
    the labels fit in 0..9 (a subset of items may not show every class), else "0", "1", ..."""
    if class_names is None:
        if num_classes <= 10:
            from fashionlab.data import CLASS_NAMES  # lazy: viz must not load data at import

            return list(CLASS_NAMES)
        return [str(i) for i in range(num_classes)]
    names = [str(n) for n in class_names]
    if len(names) < num_classes:
        raise ConfigError(f"got {len(names)} class names for {num_classes} classes")
    return names


def as_images(images: Any, name: str = "images") -> np.ndarray:
    """uint8 (N, H, W) NumPy array from a NumPy array or torch tensor (a single (H, W) -> N=1)."""
    if hasattr(images, "detach"):  # torch tensor, without importing torch here
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ConfigError(f"{name} must have shape (N, H, W), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ConfigError(f"{name} for display must be uint8, got {arr.dtype}")
    return arr


def as_labels(labels: Any, n: int | None = None, name: str = "labels") -> np.ndarray:
    """int64 (N,) from a NumPy array, list or torch tensor; length checked against `n`."""
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"{name} must be a 1-D integer array, got shape {arr.shape} {arr.dtype}")
    if n is not None and len(arr) != n:
        raise ConfigError(f"{name} has {len(arr)} items but there are {n} images")
    return arr.astype(np.int64, copy=False)


def hide_ticks(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
