"""What a tracker records of a run, the same for every backend: the config flattened to
parameters, the numeric history and final metrics, and the run's key files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fashionlab.config import TrainConfig

# The files worth keeping beside the numbers, in the order they are uploaded; absent ones are
# skipped (a report exists once `fashionlab report` or a study wrote it).
ARTIFACTS = (
    "config.yaml",
    "env.json",
    "metrics.json",
    "history.csv",
    "model.json",
    "report.md",
    "report.html",
    "model.safetensors",
)
MAX_PARAM_CHARS = 500  # MLflow accepts longer values, TensorBoard's hparams table does not


def config_params(config: TrainConfig) -> dict[str, str | int | float | bool]:
    """The resolved config as flat parameters: nested dicts as `key.sub`, lists and None as
    their text."""
    flat: dict[str, Any] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            if not value:
                flat[prefix] = "{}"
            for key, sub in value.items():
                add(f"{prefix}.{key}", sub)
        elif isinstance(value, bool | int | float | str):
            flat[prefix] = value
        else:
            flat[prefix] = str(value)[:MAX_PARAM_CHARS]

    for key, value in config.model_dump(mode="json").items():
        add(key, value)
    return flat


def numeric(values: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, float]:
    """The finite numbers of a flat dict (no bools, no NaN: an empty chart beats a NaN one)."""
    out = {}
    for key, value in values.items():
        if key in skip or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def epoch_values(row: dict[str, Any]) -> dict[str, float]:
    """A history row's numbers, the epoch itself being the step."""
    return numeric(row, skip=("epoch",))


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """metrics.json's top-level numbers (test accuracy, macro-F1, ECE, seconds, ...)."""
    return numeric(metrics, skip=("seed", "epochs_run", "best_epoch"))


def artifact_files(run_dir: Path) -> list[Path]:
    return [run_dir / name for name in ARTIFACTS if (run_dir / name).is_file()]
