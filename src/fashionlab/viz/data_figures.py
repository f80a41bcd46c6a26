"""Figures of the data itself: a sample grid per class and the class distribution of splits."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fashionlab.errors import ConfigError
from fashionlab.viz._common import (
    as_images,
    as_labels,
    class_names_for,
    hide_ticks,
    new_figure,
    save_png,
)


def plot_sample_grid(
    images: Any,
    labels: Any,
    path: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    per_class: int = 8,
    seed: int = 0,
) -> Path | Figure:
    """One row per class with `per_class` random examples (seeded, so reruns draw the same)."""
    imgs = as_images(images)
    y = as_labels(labels, len(imgs))
    if per_class < 1:
        raise ConfigError(f"per_class must be >= 1, got {per_class}")
    if len(y) == 0:
        raise ConfigError("plot_sample_grid got no images")
    names = class_names_for(class_names, int(y.max()) + 1)
    rng = np.random.default_rng(seed)
    rows = len(names)
    fig = new_figure(per_class * 0.9 + 1.6, rows * 0.9)
    axes = fig.subplots(rows, per_class, squeeze=False)
    for row, name in enumerate(names):
        members = np.flatnonzero(y == row)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False)
        for col in range(per_class):
            ax = axes[row, col]
            hide_ticks(ax)
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(chosen):
                ax.imshow(imgs[chosen[col]], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("Samples per class")
    return save_png(fig, path)


def plot_class_distribution(
    splits: Mapping[str, Any],
    path: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
) -> Path | Figure:
    """Grouped bars: items per class, one bar colour per split (e.g. train / val / test)."""
    if not splits:
        raise ConfigError("plot_class_distribution needs at least one split")
    label_sets = {name: as_labels(lab, name=f"split {name!r}") for name, lab in splits.items()}
    every = np.concatenate(list(label_sets.values()))
    num_classes = int(every.max()) + 1 if every.size else 0
    names = class_names_for(class_names, num_classes)
    x = np.arange(len(names))
    width = 0.8 / len(label_sets)
    fig = new_figure(max(6.0, 0.8 * len(names)), 4.0)
    ax = fig.subplots()
    for i, (split, lab) in enumerate(label_sets.items()):
        counts = np.bincount(lab, minlength=len(names))[: len(names)]
        offset = (i - (len(label_sets) - 1) / 2) * width  # centre the group on the tick
        ax.bar(x + offset, counts, width, label=f"{split} ({len(lab)})")
    ax.set_xticks(x, names, rotation=35, ha="right")
    ax.set_ylabel("items")
    ax.set_title("Class distribution")
    # headroom above the tallest bar so the legend (one row) never covers a bar
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
    ax.legend(ncols=len(label_sets), loc="upper center", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_png(fig, path)
