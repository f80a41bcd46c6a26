"""Figures of how far a model can be trusted: the reliability diagram (calibration), the
accuracy heat-map over corruptions and severities, and a grid of corrupted examples."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fashionlab.errors import ConfigError
from fashionlab.evaluation import Reliability
from fashionlab.viz._common import hide_ticks, new_figure, save_png


def plot_reliability(
    diagrams: Mapping[str, Reliability],
    path: str | os.PathLike | None = None,
    title: str = "Reliability diagram (test set)",
) -> Path | Figure:
    """Accuracy against mean confidence per bin, one line per series (e.g. before and after
    temperature scaling), with the diagonal of perfect calibration and the item counts."""
    if not diagrams:
        raise ConfigError("plot_reliability needs at least one series")
    fig = new_figure(9.0, 4.0)
    ax, counts_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for (label, rel), marker in zip(diagrams.items(), "os^v", strict=False):
        filled = rel.counts > 0
        ax.plot(rel.confidence[filled], rel.accuracy[filled], marker=marker, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean top-label confidence in the bin")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    width = 0.8 / len(diagrams)
    for i, (label, rel) in enumerate(diagrams.items()):
        centres = (rel.edges[:-1] + rel.edges[1:]) / 2
        step = rel.edges[1] - rel.edges[0]
        counts_ax.bar(centres + (i - (len(diagrams) - 1) / 2) * width * step,
                      rel.counts, width * step, label=label)  # fmt: skip
    counts_ax.set_yscale("log")
    counts_ax.set_xlim(0, 1)
    counts_ax.set_xlabel("confidence bin")
    counts_ax.set_ylabel("items (log scale)")
    counts_ax.set_title("Items per bin")
    return save_png(fig, path)


def plot_robustness_heatmap(
    accuracy: Mapping[str, Mapping[int, float]],
    path: str | os.PathLike | None = None,
    clean_accuracy: float | None = None,
    title: str = "Accuracy under corruption",
) -> Path | Figure:
    """Corruptions (rows) x severities (columns) heat-map of accuracy in [0, 1]."""
    names = list(accuracy)
    if not names:
        raise ConfigError("plot_robustness_heatmap needs at least one corruption")
    severities = sorted({int(s) for cells in accuracy.values() for s in cells})
    grid = np.full((len(names), len(severities)), np.nan)
    for i, name in enumerate(names):
        for j, s in enumerate(severities):
            if s in accuracy[name]:
                grid[i, j] = accuracy[name][s]
    fig = new_figure(1.1 * len(severities) + 3.5, 0.38 * len(names) + 1.6)
    ax = fig.subplots()
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, shrink=0.8, label="accuracy")
    for i in range(len(names)):
        for j in range(len(severities)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if grid[i, j] > 0.6 else "white")  # fmt: skip
    ax.set_xticks(range(len(severities)), [str(s) for s in severities])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("severity")
    clean = "" if clean_accuracy is None else f" (clean: {clean_accuracy:.3f})"
    ax.set_title(title + clean)
    return save_png(fig, path)


def plot_corruption_examples(
    clean: Any,
    rows: Sequence[tuple[str, Sequence[Any]]],
    path: str | os.PathLike | None = None,
    title: str = "One test image under each corruption (severity 1 to 5)",
) -> Path | Figure:
    """A grid: one row per corruption with the clean image and then each severity's version
    (`rows` = [(name, [image per severity]), ...], uint8 28x28 images)."""
    if not rows:
        raise ConfigError("plot_corruption_examples needs at least one corruption")
    ncols = 1 + max(len(images) for _, images in rows)
    fig = new_figure(1.1 * ncols + 1.0, 1.1 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for i, (name, images) in enumerate(rows):
        for j, ax in enumerate(axes[i]):
            hide_ticks(ax)
            shown = clean if j == 0 else (images[j - 1] if j - 1 < len(images) else None)
            if shown is None:
                ax.set_axis_off()
                continue
            ax.imshow(np.asarray(shown), cmap="gray", vmin=0, vmax=255)
            if i == 0:
                ax.set_title("clean" if j == 0 else f"{j}", fontsize=8)
        axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_png(fig, path)
