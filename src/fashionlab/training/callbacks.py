"""Callbacks: objects that watch a training run and may end it early, cleanly.

    class StopAt(fashionlab.Callback):
        def on_epoch_end(self, run, row):
            if row["val_accuracy"] > 0.9:
                run.request_stop("val accuracy above 0.9")

A requested stop ends the run after the current epoch as a complete run: the chosen weights
are tested and every file is written, as at the last epoch of the schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashionlab.config import TrainConfig


@dataclass
class TrainingRun:
    """What a callback sees of the run being trained."""

    path: Path
    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None

    @property
    def epoch(self) -> int:
        """Epochs finished so far."""
        return len(self.history)

    def request_stop(self, reason: str = "a callback asked to stop") -> None:
        """End the run after this epoch, as complete with the epochs done."""
        self.stop_reason = reason


class Callback:
    """Override the hooks you need; every one does nothing by default."""

    def on_train_start(self, run: TrainingRun) -> None:
        """Before the first epoch of this invocation (also when resuming)."""

    def on_epoch_end(self, run: TrainingRun, row: dict[str, Any]) -> None:
        """After each epoch, with its history row (losses, accuracies, lr, seconds)."""

    def on_train_end(self, run: TrainingRun, metrics: dict[str, Any]) -> None:
        """After the test pass, with the run's final metrics (every file is written)."""

    def on_train_incomplete(self, run: TrainingRun, outcome: str) -> None:
        """When this invocation ends without finishing the run: `outcome` is 'paused'
        (--stop-after), 'interrupted' (Ctrl-C; resumable) or 'failed' (an error)."""


def replay(callbacks: Sequence[Callback], run_dir: Path) -> None:
    """Drive the hooks over a finished run folder, as if they had watched it train: for runs
    whose trainer has no live hooks (the NumPy MLP) and for pushing existing runs to a
    tracker. A stop requested here has nothing left to stop."""
    if not callbacks:
        return
    from fashionlab.runs import load_config, load_history, load_metrics

    view = TrainingRun(Path(run_dir), load_config(run_dir))
    rows = load_history(run_dir)
    for callback in callbacks:
        callback.on_train_start(view)
    for row in rows:
        view.history.append(row)
        for callback in callbacks:
            callback.on_epoch_end(view, row)
    metrics = load_metrics(run_dir)
    for callback in callbacks:
        callback.on_train_end(view, metrics)
