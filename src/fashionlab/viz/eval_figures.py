"""Figures of test results: confusion-matrix heatmap, per-class accuracy, misclassified items.

They take the arrays `fashionlab.evaluation` computes, so they never need the model.
"""

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


def plot_confusion_matrix(
    counts: Any,
    path: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "Confusion matrix (rows normalised)",
) -> Path | Figure:
    """Heatmap of the row-normalised matrix; each cell shows the fraction and the count."""
    cm = np.asarray(counts)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ConfigError(f"confusion matrix must be square (C, C), got {cm.shape}")
    totals = cm.sum(axis=1, keepdims=True).astype(np.float64)
    norm = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
    names = class_names_for(class_names, len(cm))[: len(cm)]
    size = max(5.0, 0.75 * len(cm) + 2.0)
    fig = new_figure(size + 1.0, size)
    ax = fig.subplots()
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8)
    # counts only when they are counts (an already-normalised matrix has nothing more to say)
    integral = np.issubdtype(cm.dtype, np.integer)
    for i in range(len(cm)):
        for j in range(len(cm)):
            text = f"{norm[i, j]:.2f}" + (f"\n({int(cm[i, j])})" if integral else "")
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(cm)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(cm)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save_png(fig, path)


def plot_per_class_accuracy(
    accuracies: Mapping[str, Any] | Any,
    path: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "Per-class accuracy",
) -> Path | Figure:
    """Bars of accuracy per class; pass {label: accuracies} to compare several runs side by side.

    Accuracies are fractions in [0, 1] (NaN, for a class with no test items, draws no bar).
    """
    series = dict(accuracies) if isinstance(accuracies, Mapping) else {"": accuracies}
    if not series:
        raise ConfigError("plot_per_class_accuracy needs at least one series")
    arrays = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in series.items()}
    num_classes = max(len(a) for a in arrays.values())
    names = class_names_for(class_names, num_classes)[:num_classes]
    x = np.arange(num_classes)
    width = 0.8 / len(arrays)
    fig = new_figure(max(6.0, 0.8 * num_classes), 4.0)
    ax = fig.subplots()
    for i, (label, acc) in enumerate(arrays.items()):
        offset = (i - (len(arrays) - 1) / 2) * width
        bars = ax.bar(x[: len(acc)] + offset, np.nan_to_num(acc), width, label=label or None)
        if len(arrays) == 1:  # values on the bars only when they do not overlap
            for bar, value in zip(bars, acc, strict=True):
                if np.isfinite(value):
                    ax.text(
                        bar.get_x() + bar.get_width() / 2,
                        value,
                        f"{value:.3f}",
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
    ax.set_xticks(x, names, rotation=35, ha="right")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if len(arrays) > 1:
        ax.legend(fontsize=8, loc="lower right")
    return save_png(fig, path)


def plot_misclassified(
    images: Any,
    true: Any,
    predicted: Any,
    confidence: Any,
    path: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    ncols: int = 8,
    flags: Sequence[str] | None = None,
) -> Path | Figure:
    """Grid of wrongly classified images titled true / predicted (confidence).

    `images` are the misclassified items themselves (e.g. `test_images[mistakes.indices]`).
    `flags`: a short note per item ("" for none), e.g. the data audit's "suspect label";
    flagged items get the note under the image and a dashed frame.
    """
    imgs = as_images(images)
    t = as_labels(true, len(imgs), "true")
    p = as_labels(predicted, len(imgs), "predicted")
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if len(conf) != len(imgs):
        raise ConfigError(f"confidence has {len(conf)} items but there are {len(imgs)} images")
    if ncols < 1:
        raise ConfigError(f"ncols must be >= 1, got {ncols}")
    notes = [""] * len(imgs) if flags is None else [str(f) for f in flags]
    if len(notes) != len(imgs):
        raise ConfigError(f"{len(notes)} flags for {len(imgs)} images")
    top = max(int(t.max(initial=0)), int(p.max(initial=0))) + 1
    names = class_names_for(class_names, top)
    ncols = max(1, min(ncols, len(imgs)))
    nrows = max(1, -(-len(imgs) // ncols))
    fig = new_figure(1.5 * ncols, 1.8 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        hide_ticks(ax)
        if k >= len(imgs):
            ax.set_axis_off()
            continue
        ax.imshow(imgs[k], cmap="gray", vmin=0, vmax=255)
        ax.set_title(
            f"true: {names[t[k]]}\npred: {names[p[k]]} ({conf[k]:.2f})",
            fontsize=7,
            color="firebrick",
        )
        if notes[k]:
            ax.set_xlabel(notes[k], fontsize=6, color="darkorange")
            for spine in ax.spines.values():
                spine.set(visible=True, color="darkorange", linestyle="--", linewidth=1.5)
    if len(imgs) == 0:
        axes[0, 0].text(0.5, 0.5, "no misclassified items", ha="center", va="center")
    fig.suptitle("Misclassified (most confident first)")
    return save_png(fig, path)
