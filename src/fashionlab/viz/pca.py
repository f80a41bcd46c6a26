"""PCA views (scikit-learn): of the raw pixels, and of a model's penultimate features.

Both are fitted on a seeded subsample (`max_points`): the picture of 5,000 points is the same as
that of 60,000, at a fraction of the time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from torch import nn

from fashionlab.errors import ConfigError
from fashionlab.viz._common import as_images, as_labels, class_names_for, new_figure, save_png
from fashionlab.viz.hooks import Normalize, eval_mode, find_layers, model_device, to_model_input


class PCAView(NamedTuple):
    coords: np.ndarray  # (n, 2) the points projected on the first two components
    labels: np.ndarray  # (n,) class of each point
    cumulative_variance: np.ndarray  # (k,) cumulative explained-variance ratio
    indices: np.ndarray  # (n,) which input rows were used (the subsample)


def _subsample(n: int, max_points: int, seed: int) -> np.ndarray:
    if max_points < 3:
        raise ConfigError(f"max_points must be >= 3, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def pca_view(features: Any, labels: Any, max_points: int = 5000, seed: int = 0) -> PCAView:
    """Fit PCA on (a subsample of) `features` (N, D) and project it on 2 components."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3 or x.shape[1] < 2:
        raise ConfigError(f"PCA needs at least 3 points of dimension >= 2, got shape {x.shape}")
    y = as_labels(labels, len(x))
    idx = _subsample(len(x), max_points, seed)
    # all components (the cumulative curve needs them); eigh of the D x D covariance is ~3x
    # faster than a full SVD when points outnumber dimensions (needs scikit-learn >= 1.5)
    solver = "covariance_eigh" if len(idx) >= x.shape[1] else "full"
    pca = PCA(svd_solver=solver, random_state=seed).fit(x[idx])
    coords = pca.transform(x[idx])[:, :2]
    return PCAView(coords, y[idx], np.cumsum(pca.explained_variance_ratio_), idx)


def _plot_view(
    view: PCAView, path: str | os.PathLike | None, names: list[str], title: str
) -> Path | Figure:
    fig = new_figure(12.0, 5.0)
    ax_scatter, ax_var = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1.0]})
    palette = [f"C{i % 10}" for i in range(len(names))]  # tab10: distinct for 10 classes
    for cls, name in enumerate(names):
        mask = view.labels == cls
        if mask.any():
            ax_scatter.scatter(*view.coords[mask].T, s=4, alpha=0.6, color=palette[cls], label=name)
    ax_scatter.set_xlabel("PC 1")
    ax_scatter.set_ylabel("PC 2")
    ax_scatter.set_title(f"{title}: first two components ({len(view.labels)} points)")
    ax_scatter.legend(fontsize=7, markerscale=3, loc="best")
    k = np.arange(1, len(view.cumulative_variance) + 1)
    ax_var.plot(k, view.cumulative_variance)
    for level in (0.8, 0.9, 0.95):
        needed = int(np.searchsorted(view.cumulative_variance, level) + 1)
        if needed <= len(k):
            ax_var.axhline(level, color="gray", linestyle=":", linewidth=0.8)
            ax_var.annotate(
                f"{level:.0%}: {needed} comps",
                (needed, level),
                fontsize=7,
                xytext=(5, -10),
                textcoords="offset points",
            )
    ax_var.set_xscale("log")
    ax_var.set_ylim(0.0, 1.02)
    ax_var.set_xlabel("components")
    ax_var.set_ylabel("cumulative explained variance")
    ax_var.set_title("Explained variance")
    ax_var.grid(alpha=0.3)
    return save_png(fig, path)


def plot_pca_data(
    images: Any,
    labels: Any,
    path: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    max_points: int = 5000,
    seed: int = 0,
) -> Path | Figure:
    """PCA of raw pixels (scaled to [0, 1]): 2-D scatter by class + cumulative variance."""
    imgs = as_images(images)
    flat = imgs.reshape(len(imgs), -1).astype(np.float32) / 255.0
    view = pca_view(flat, labels, max_points, seed)
    names = class_names_for(class_names, int(view.labels.max()) + 1)
    return _plot_view(view, path, names, "PCA of pixels")


def image_features(
    model: nn.Module, images: Any, normalize: Normalize, batch_size: int = 512
) -> np.ndarray | None:
    """The input of the model's last nn.Linear (its penultimate features), float32 (N, D).

    Captured with a forward pre-hook, so it works for any model whose classifier ends in a
    Linear; None if the model has no nn.Linear. "Last" is the last one registered, which is
    the classifier head for every model built as a sequence of layers.
    """
    linears = find_layers(model, nn.Linear)
    if not linears:
        return None
    _, head = linears[-1]
    imgs = as_images(images)
    chunks: list[np.ndarray] = []

    def pre_hook(_module: nn.Module, inputs: tuple[Any, ...]) -> None:
        chunks.append(inputs[0].detach().flatten(1).float().cpu().numpy())

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        with eval_mode(model), torch.no_grad():
            device = model_device(model)
            for start in range(0, len(imgs), batch_size):
                model(to_model_input(imgs[start : start + batch_size], normalize).to(device))
    finally:
        handle.remove()
    return np.concatenate(chunks) if chunks else np.zeros((0, head.in_features), np.float32)


def plot_pca_features(
    model: nn.Module,
    images: Any,
    labels: Any,
    normalize: Normalize,
    path: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    max_points: int = 2000,
    seed: int = 0,
) -> Path | Figure | None:
    """PCA of the penultimate features (see `image_features`) on a seeded subsample;
    None (no file) if the model has no nn.Linear."""
    imgs = as_images(images)
    y = as_labels(labels, len(imgs))
    idx = _subsample(len(imgs), max_points, seed)  # subsample first: only these go through
    feats = image_features(model, imgs[idx], normalize)
    if feats is None:
        return None
    view = pca_view(feats, y[idx], max_points, seed)
    names = class_names_for(class_names, int(view.labels.max()) + 1)
    return _plot_view(view, path, names, "PCA of penultimate features")
