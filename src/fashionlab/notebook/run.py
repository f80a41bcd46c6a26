"""`Run`: a run folder as an object, for notebooks and scripts.

    run = fashionlab.train("s0-m1", epochs=3, lr=1e-3)
    run.metrics["test_accuracy"], run.history[-1], run.predict(images)
    same = fashionlab.load_run(run.path)

A `Run` is also a path (`os.fspath(run)`, `run / "metrics.json"`), so it goes wherever a run
folder did.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from fashionlab.config import TrainConfig, describe_validation_error
from fashionlab.errors import ConfigError, RunError
from fashionlab.models import build_config, get_model_spec
from fashionlab.runs import is_complete, load_config, load_history, load_metrics
from fashionlab.tracking import TrackingSettings
from fashionlab.training import Callback
from fashionlab.training import train as train_config

SUMMARY_KEYS = ("test_accuracy", "macro_f1", "ece", "epochs_run", "train_seconds")


class Run(os.PathLike):
    """A finished (or interrupted) run folder: its config, history and metrics, and its model."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.config: TrainConfig = load_config(self.path)  # also checks it is a run folder
        self._classifier = None

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    def __repr__(self) -> str:
        acc = self.metrics.get("test_accuracy")
        score = f", test accuracy {acc:.4f}" if isinstance(acc, float) else ""
        return f"Run({str(self.path)!r}, model {self.config.model}{score})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(self.metrics.get(k)))}</td></tr>"
            for k in SUMMARY_KEYS
            if k in self.metrics
        )
        state = "complete" if self.complete else "not complete"
        return (
            f"<b>Run</b> <code>{html.escape(str(self.path))}</code>: "
            f"{html.escape(self.config.model)}, seed {self.config.seed}, {state}"
            f"<table>{rows}</table>"
        )

    # -- what the folder holds (read fresh each time: a run may still be training) ---------------

    @property
    def complete(self) -> bool:
        return is_complete(self.path)

    @property
    def history(self) -> list[dict[str, float]]:
        """One row per epoch: train/val loss and accuracy, lr, seconds."""
        return load_history(self.path)

    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json: test accuracy, F1, calibration, timings ({} until the run finishes)."""
        return load_metrics(self.path)

    # -- the trained model -----------------------------------------------------------------------

    def _torch_only(self) -> None:
        if get_model_spec(self.config.model).framework != "torch":
            raise ConfigError(
                f"{self.path}: a {self.config.model} run has no PyTorch model; use "
                "fashionlab.numpy_nn to load its weights"
            )
        if not self.complete:
            raise RunError(f"{self.path}: the run has not finished; resume it first")

    def model(self) -> torch.nn.Module:
        """The evaluated weights as a PyTorch module, in eval mode."""
        self._torch_only()
        from fashionlab.runs.weights import load_model

        return load_model(self.path).model.eval()

    def classifier(self):
        """The run's `Classifier` (calibrated probabilities, top-k, Grad-CAM), loaded once."""
        self._torch_only()
        if self._classifier is None:
            from fashionlab.inference import Classifier

            self._classifier = Classifier.from_run(self.path)
        return self._classifier

    def predict(self, images: Any, probabilities: bool = False) -> np.ndarray:
        """Predicted classes (int64, N) of uint8 images (N x 28 x 28, or one 28 x 28), with the
        run's precision and test-time augmentation; `probabilities=True`: the (calibrated)
        probabilities (N x 10) instead."""
        probs = self.classifier().probabilities(images)
        return probs if probabilities else probs.argmax(axis=1)

    def report(self, data_dir: str | Path | None = None) -> Path:
        """Write (or refresh) the run's report.html and report.md; returns the HTML's path."""
        from fashionlab.report import write_report

        return write_report(self.path, data_dir)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def load_run(path: str | os.PathLike) -> Run:
    """The run at `path` (a folder with config.yaml)."""
    return Run(path)


def train(
    model: str | TrainConfig,
    runs_dir: str | os.PathLike = "runs",
    *,
    callbacks: Sequence[Callback] = (),
    log: Sequence[str] | str | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    data_dir: str | os.PathLike | None = None,
    **overrides: Any,
) -> Run:
    """Train a model (a registry name, with its study's recipe, or a full `TrainConfig`) with
    config fields as keyword overrides (`epochs=3, lr=1e-3, model_args={...}`) into
    `runs_dir/<name>/`, and return the `Run`. Callbacks: `fashionlab.Callback`; `log`:
    'tensorboard' and/or 'mlflow', as `--log` (MLflow's store: runs_dir/mlflow.db unless
    MLFLOW_TRACKING_URI is set)."""
    if isinstance(model, TrainConfig):
        try:
            config = TrainConfig(**{**model.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, "fashionlab.train()")) from None
    elif isinstance(model, str):
        config = build_config(model, overrides, source="fashionlab.train()")
    else:
        raise ConfigError(
            f"train() wants a model name or a TrainConfig, got {type(model).__name__}"
        )
    trackers = TrackingSettings.of(log, runs_dir).callbacks()
    path = train_config(
        config, runs_dir, overwrite=overwrite, quiet=quiet, data_dir=data_dir,
        callbacks=[*callbacks, *trackers],
    )  # fmt: skip
    return Run(path)
