"""Training figures from history rows (history.csv: epoch, train/val loss and accuracy, lr)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fashionlab.errors import ConfigError
from fashionlab.viz._common import new_figure, save_png

History = Sequence[Mapping[str, Any]]


def _column(history: History, key: str) -> np.ndarray:
    """A history column as floats; missing or blank cells (no validation split) become NaN."""
    out = []
    for row in history:
        value = row.get(key)
        try:
            out.append(float(value) if value not in (None, "") else np.nan)
        except (TypeError, ValueError):
            raise ConfigError(f"history value {key}={value!r} is not a number") from None
    return np.asarray(out, dtype=np.float64)


def _epochs(history: History) -> np.ndarray:
    if not history:
        raise ConfigError("history is empty: no epochs to plot")
    if "epoch" not in history[0]:
        return np.arange(1, len(history) + 1, dtype=np.float64)
    return _column(history, "epoch")


def lr_changes(history: History) -> list[tuple[float, float]]:
    """(epoch, new lr) for every epoch whose lr differs from the previous epoch's."""
    if not history or "lr" not in history[0]:
        return []
    epochs, lrs = _epochs(history), _column(history, "lr")
    return [
        (float(epochs[i]), float(lrs[i]))
        for i in range(1, len(lrs))
        if np.isfinite(lrs[i])
        and np.isfinite(lrs[i - 1])
        and not np.isclose(lrs[i], lrs[i - 1], rtol=1e-9, atol=0.0)
    ]


def plot_learning_curves(
    history: History,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    best_epoch: int | None = None,
) -> Path | Figure:
    """Loss and accuracy, train vs validation; dashed lines where the lr changed, a dotted line
    at `best_epoch` (the checkpoint that was evaluated) when given."""
    epochs = _epochs(history)
    fig = new_figure(10.0, 4.0)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = _column(history, f"{split}_{metric}")
            if np.isfinite(values).any():  # runs without a validation split have none
                ax.plot(epochs, values, style, markersize=3, label=split)
        for i, (epoch, lr) in enumerate(lr_changes(history)):
            # the label goes in the legend once; the line sits between the two epochs
            ax.axvline(
                epoch - 0.5,
                color="gray",
                linestyle="--",
                linewidth=0.8,
                label="lr change" if i == 0 else None,
            )
            ax.text(
                epoch - 0.5,
                0.97,
                f"lr {lr:.1e}",
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                color="gray",
                ha="right",
                va="top",
                rotation=90,
            )
        if best_epoch is not None:
            ax.axvline(best_epoch, color="green", linestyle=":", linewidth=1.0, label="best")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_loss.set_title("Loss")
    ax_acc.set_title("Accuracy")
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def plot_validation_curves(
    histories: Mapping[str, History],
    path: str | os.PathLike | None = None,
    title: str | None = None,
) -> Path | Figure:
    """Validation loss and accuracy of several runs overlaid (label -> history)."""
    if not histories:
        raise ConfigError("plot_validation_curves needs at least one run")
    fig = new_figure(10.0, 4.0)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for label, history in histories.items():
        epochs = _epochs(history)
        ax_loss.plot(epochs, _column(history, "val_loss"), "-o", markersize=3, label=label)
        ax_acc.plot(epochs, _column(history, "val_accuracy"), "-o", markersize=3, label=label)
    for ax, metric in ((ax_loss, "validation loss"), (ax_acc, "validation accuracy")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.set_title(metric.capitalize())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)
