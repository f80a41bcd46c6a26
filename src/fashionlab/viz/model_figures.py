"""What a trained model learned: first-layer filters and activation maps of any layer."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from torch import nn

from fashionlab.errors import ConfigError
from fashionlab.viz._common import as_images, hide_ticks, new_figure, save_png
from fashionlab.viz.hooks import Normalize, capture_activations, find_layers


def first_layer_filters(model: nn.Module) -> tuple[str, np.ndarray] | None:
    """(layer name, filters (K, h, w)) of the first learned layer, or None if there is none.

    Conv nets: the first nn.Conv2d's kernels (input channel 0, the only one for grayscale).
    MLPs: the first nn.Linear's weight rows reshaped to the image, if its input is a square
    (784 -> 28x28); each row is the template that hidden unit matches.
    """
    convs = find_layers(model, nn.Conv2d)
    if convs:
        name, conv = convs[0]
        return name, conv.weight.detach().float().cpu().numpy()[:, 0]
    linears = find_layers(model, nn.Linear)
    if linears:
        name, linear = linears[0]
        side = math.isqrt(linear.in_features)
        if side * side == linear.in_features:
            weight = linear.weight.detach().float().cpu().numpy()
            return name, weight.reshape(-1, side, side)
    return None


def plot_first_layer_filters(
    model: nn.Module, path: str | os.PathLike | None = None, max_filters: int = 64
) -> Path | Figure | None:
    """Grid of the first layer's filters (see `first_layer_filters`); None (no file) if the
    model has neither a Conv2d nor a square-input Linear."""
    found = first_layer_filters(model)
    if found is None:
        return None
    name, filters = found
    filters = filters[:max_filters]
    ncols = min(8, len(filters))
    nrows = -(-len(filters) // ncols)
    fig = new_figure(1.1 * ncols, 1.1 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        hide_ticks(ax)
        if k >= len(filters):
            ax.set_axis_off()
            continue
        # each filter on its own symmetric scale: sign is what matters (red +, blue -)
        bound = float(np.abs(filters[k]).max()) or 1.0
        ax.imshow(filters[k], cmap="RdBu_r", vmin=-bound, vmax=bound)
    fig.suptitle(f"First-layer filters: {name} ({len(filters)} shown)")
    return save_png(fig, path)


def plot_activation_maps(
    model: nn.Module,
    images: Any,
    normalize: Normalize,
    path: str | os.PathLike | None = None,
    layer_names: Sequence[str] | None = None,
    max_images: int = 2,
    max_channels: int = 8,
) -> Path | Figure | None:
    """Feature maps of each layer (default: every nn.Conv2d) for a few fixed images.

    One row per (layer, image): the input, then the `max_channels` channels with the largest
    mean |activation| over the shown images (the same channels for every image of a layer, so
    rows compare). Returns None (no file) for a model without Conv2d when no names are given.
    """
    imgs = as_images(images)[:max_images]
    if len(imgs) == 0:
        raise ConfigError("plot_activation_maps got no images")
    acts = capture_activations(model, imgs, normalize, layer_names)
    if acts is None:
        return None
    for name, act in acts.items():
        if act.ndim != 4:
            raise ConfigError(
                f"layer {name!r} outputs shape {act.shape}, not feature maps (N, C, H, W)"
            )
    ncols = 1 + min(max_channels, max(a.shape[1] for a in acts.values()))
    nrows = len(acts) * len(imgs)
    fig = new_figure(1.2 * ncols + 1.5, 1.25 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        hide_ticks(ax)
        ax.set_axis_off()
    row = 0
    for name, act in acts.items():
        strongest = np.argsort(-np.abs(act).mean(axis=(0, 2, 3)), kind="stable")[:max_channels]
        for i in range(len(imgs)):
            ax = axes[row, 0]
            ax.set_axis_on()
            ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=255)
            ax.set_ylabel(f"{name}\n{act.shape[1]}x{act.shape[2]}x{act.shape[3]}", fontsize=7)
            for col, ch in enumerate(strongest, start=1):
                axes[row, col].imshow(act[i, ch], cmap="viridis")
                if i == 0:
                    axes[row, col].set_title(f"ch {ch}", fontsize=7)
            row += 1
    fig.suptitle("Activation maps (strongest channels per layer)")
    return save_png(fig, path)
