"""The data audit's galleries: the closest train/test pairs, and the most suspect labels."""

from __future__ import annotations

import os
from collections.abc import Sequence
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


def plot_duplicate_pairs(
    test_images: Any,
    train_images: Any,
    test_labels: Any,
    train_labels: Any,
    cosine: Any,
    path: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    threshold: float | None = None,
    title: str = "Closest train/test pairs",
    ncols: int = 6,
) -> Path | Figure:
    """Pairs side by side (test image, then its nearest training image), each captioned with
    both labels and the cosine similarity; a pair below `threshold` is captioned in grey."""
    tests = as_images(test_images, "test images")
    trains = as_images(train_images, "train images")
    n = len(tests)
    if len(trains) != n:
        raise ConfigError(f"{n} test images but {len(trains)} training images to pair them with")
    t_lab = as_labels(test_labels, n, "test labels")
    r_lab = as_labels(train_labels, n, "train labels")
    cos = np.asarray(cosine, dtype=np.float64).reshape(-1)
    if len(cos) != n:
        raise ConfigError(f"{len(cos)} similarities for {n} pairs")
    names = class_names_for(
        class_names, max(int(t_lab.max(initial=0)), int(r_lab.max(initial=0))) + 1
    )
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig = new_figure(2.4 * ncols, 1.6 * nrows)
    axes = fig.subplots(nrows, 2 * ncols, squeeze=False)
    for k in range(nrows * ncols):
        left, right = axes.flat[2 * k], axes.flat[2 * k + 1]
        hide_ticks(left)
        hide_ticks(right)
        if k >= n:
            left.set_axis_off()
            right.set_axis_off()
            continue
        left.imshow(tests[k], cmap="gray", vmin=0, vmax=255)
        right.imshow(trains[k], cmap="gray", vmin=0, vmax=255)
        dimmed = threshold is not None and cos[k] < threshold
        color = "dimgray" if dimmed else ("firebrick" if t_lab[k] != r_lab[k] else "black")
        left.set_title(f"test: {names[t_lab[k]]}", fontsize=6, color=color)
        right.set_title(f"train: {names[r_lab[k]]}", fontsize=6, color=color)
        left.set_xlabel(f"cos {cos[k]:.4f}", fontsize=6, color=color)
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "no pairs", ha="center", va="center")
    fig.suptitle(title + (f" (threshold {threshold:g})" if threshold is not None else ""))
    return save_png(fig, path)


def plot_label_issues(
    images: Any,
    given: Any,
    suggested: Any,
    given_probability: Any,
    path: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "Suspect labels (most suspect first)",
    ncols: int = 10,
    ranks: Sequence[int] | None = None,
) -> Path | Figure:
    """Grid of suspect items captioned with their rank, given and suggested label and the
    probability the models give the given label."""
    imgs = as_images(images)
    n = len(imgs)
    g = as_labels(given, n, "given labels")
    s = as_labels(suggested, n, "suggested labels")
    prob = np.asarray(given_probability, dtype=np.float64).reshape(-1)
    if len(prob) != n:
        raise ConfigError(f"{len(prob)} probabilities for {n} images")
    rank = list(ranks) if ranks is not None else list(range(1, n + 1))
    names = class_names_for(class_names, max(int(g.max(initial=0)), int(s.max(initial=0))) + 1)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig = new_figure(1.5 * ncols, 1.9 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        hide_ticks(ax)
        if k >= n:
            ax.set_axis_off()
            continue
        ax.imshow(imgs[k], cmap="gray", vmin=0, vmax=255)
        ax.set_title(
            f"#{rank[k]} given: {names[g[k]]}\nsuggested: {names[s[k]]}\np(given) {prob[k]:.2f}",
            fontsize=6,
        )
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "no suspect labels", ha="center", va="center")
    fig.suptitle(title)
    return save_png(fig, path)
