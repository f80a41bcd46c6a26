"""Reading a run folder back: config, history, metrics, predictions, each with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from fashionlab._io import YamlTooLarge, load_yaml
from fashionlab._read import (
    HISTORY_CSV,
    LARGE_JSON,
    UnreadableFile,
    check_fields,
    load_npz,
    read_csv_rows,
    read_json,
    read_text,
)
from fashionlab.config import TrainConfig, describe_validation_error
from fashionlab.errors import RunError, one_line


def load_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / "config.yaml"
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    try:
        raw = load_yaml(read_text(path))
    except FileNotFoundError:
        raise RunError(f"{path}: missing; is {run_dir} a fashionlab run folder?") from None
    except YamlTooLarge as exc:
        raise RunError(f"{path}: refused: the YAML is {exc}") from None
    except yaml.YAMLError as exc:
        raise RunError(f"{path}: not valid YAML ({one_line(exc, 200)})") from None
    except UnreadableFile as exc:  # not a regular file, too large, not UTF-8
        raise RunError(str(exc)) from None
    if not isinstance(raw, dict):
        raise RunError(f"{path}: expected a mapping of config keys")
    try:
        return TrainConfig(**raw)
    except ValidationError as exc:
        raise RunError(describe_validation_error(exc, str(path))) from None


def load_history(run_dir: str | Path) -> list[dict[str, float]]:
    """history.csv as one dict per epoch (numbers only; empty cells left out), [] if absent."""
    path = Path(run_dir) / "history.csv"
    try:
        rows = read_csv_rows(path, HISTORY_CSV)
    except FileNotFoundError:
        return []
    except UnreadableFile as exc:
        raise RunError(str(exc)) from None
    history = []
    for number, row in enumerate(rows, start=2):
        try:
            history.append(
                {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
            )
        except ValueError:
            raise RunError(
                f"{path}:{number}: a value is not a number; re-run the training"
            ) from None
    return history


# The types of metrics.json's values that readers compute with; others are shown as they are.
_NUMBER = (int, float)
METRIC_TYPES: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(
        (
            "best_epoch", "best_val_loss", "brier", "brier_calibrated", "ece", "ece_calibrated",
            "epochs_run", "macro_f1", "macro_precision", "macro_recall", "mce", "mce_calibrated",
            "nll_calibrated", "num_test", "params", "seconds_per_epoch", "seed", "temperature",
            "test_accuracy", "test_loss", "train_seconds", "weighted_f1", "weighted_precision",
            "weighted_recall", "train_accuracy",
        ),
        _NUMBER,
    ),
    "calibration": dict,
    "budget": dict,
    "per_class": list,
    "model": str,
    "precision_used": str,
    "evaluated_weights": str,
}  # fmt: skip


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    """metrics.json, its values' types checked; {} if the run has none yet."""
    path = Path(run_dir) / "metrics.json"
    try:
        metrics = read_json(path)
        check_fields(metrics, METRIC_TYPES, str(path))
    except FileNotFoundError:
        return {}
    except UnreadableFile as exc:
        raise RunError(str(exc)) from None
    return metrics


def load_predictions(run_dir: str | Path) -> dict[str, np.ndarray]:
    path = Path(run_dir) / "predictions.npz"
    try:
        out = load_npz(path)
    except FileNotFoundError:
        raise RunError(f"{path}: missing; the run did not finish (try --resume)") from None
    except UnreadableFile as exc:
        raise RunError(f"{exc}; re-run 'fashionlab evaluate'") from None
    for key in ("labels", "logits"):
        if key not in out:
            raise RunError(f"{path}: has no '{key}' array")
    return out


ENV_FILE = "env.json"


def load_env(run_dir: str | Path) -> dict[str, Any]:
    """env.json (where and with what the run was trained), or {} if the run has none."""
    try:
        return read_json(Path(run_dir) / ENV_FILE)
    except FileNotFoundError:
        return {}
    except UnreadableFile as exc:
        raise RunError(str(exc)) from None


def load_config_text(run_dir: str | Path) -> str:
    """config.yaml as written, for showing it (load_config parses and validates it)."""
    try:
        return read_text(Path(run_dir) / "config.yaml")
    except FileNotFoundError:
        raise RunError(f"{Path(run_dir) / 'config.yaml'}: missing") from None
    except UnreadableFile as exc:
        raise RunError(str(exc)) from None


ROBUSTNESS_FILE = "robustness.json"


def load_robustness(folder: str | Path) -> dict[str, Any] | None:
    """A run's or study's robustness.json (`fashionlab robustness`), or None if never scored."""
    path = Path(folder) / ROBUSTNESS_FILE
    try:
        return read_json(path)
    except FileNotFoundError:
        return None
    except UnreadableFile as exc:
        raise RunError(f"{exc}; run 'fashionlab robustness' again") from None


AUDIT_FILE = "audit.json"
# The test subsets an audit scores runs on: the standard number first; the cleaned subsets are
# secondary, and named for what they drop.
AUDIT_SUBSETS = (
    "full test set",
    "without near-duplicates",
    "without suspect labels",
    "without both",
)
# Where `fashionlab audit --study STUDY` writes, and where a study's reports look for it.
AUDIT_DIR = "audit"


def load_audit(folder: str | Path) -> dict[str, Any] | None:
    """A data audit's audit.json (`fashionlab audit`), or None if `folder` holds none."""
    path = Path(folder) / AUDIT_FILE
    try:
        result = read_json(path, LARGE_JSON)
    except FileNotFoundError:
        return None
    except UnreadableFile as exc:
        raise RunError(f"{exc}; run 'fashionlab audit' again") from None
    if not isinstance(result.get("flags"), dict):
        raise RunError(f"{path}: not a data audit; run 'fashionlab audit' again")
    return result


def study_audit_dir(study_dir: str | Path) -> Path | None:
    """The audit folder of a study, if `fashionlab audit --study` has written one."""
    folder = Path(study_dir) / AUDIT_DIR
    return folder if (folder / AUDIT_FILE).is_file() else None
