"""Reading a run folder back: config, history, metrics, predictions, each with one-line errors."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from fashionlab._io import YamlTooLarge, load_yaml, read_text_bounded
from fashionlab.config import TrainConfig, describe_validation_error
from fashionlab.errors import RunError, one_line


def load_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / "config.yaml"
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    try:
        raw = load_yaml(read_text_bounded(path))
    except FileNotFoundError:
        raise RunError(f"{path}: missing; is {run_dir} a fashionlab run folder?") from None
    except YamlTooLarge as exc:
        raise RunError(f"{path}: refused: the YAML is {exc}") from None
    except yaml.YAMLError as exc:
        raise RunError(f"{path}: not valid YAML ({one_line(exc, 200)})") from None
    except (OSError, ValueError) as exc:  # not a regular file, too large, not UTF-8
        raise RunError(f"{path}: cannot read it ({one_line(exc)})") from None
    if not isinstance(raw, dict):
        raise RunError(f"{path}: expected a mapping of config keys")
    try:
        return TrainConfig(**raw)
    except ValidationError as exc:
        raise RunError(describe_validation_error(exc, str(path))) from None


def load_history(run_dir: str | Path) -> list[dict[str, float]]:
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [
            {
                k: (int(v) if k == "epoch" else float(v))
                for k, v in row.items()
                if v not in ("", None)
            }
            for row in csv.DictReader(handle)
        ]


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return {}
    try:
        metrics = json.loads(read_text_bounded(path))
    except (json.JSONDecodeError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not readable JSON ({one_line(exc, 120)})") from None
    if not isinstance(metrics, dict):
        raise RunError(f"{path}: expected a JSON object of metrics, got {type(metrics).__name__}")
    return metrics


def load_predictions(run_dir: str | Path) -> dict[str, np.ndarray]:
    path = Path(run_dir) / "predictions.npz"
    try:
        with np.load(path, allow_pickle=False) as npz:
            out = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise RunError(f"{path}: missing; the run did not finish (try --resume)") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise RunError(f"{path}: corrupt ({exc}); re-run 'fashionlab evaluate'") from None
    for key in ("labels", "logits"):
        if key not in out:
            raise RunError(f"{path}: has no '{key}' array")
    return out


ROBUSTNESS_FILE = "robustness.json"


def load_robustness(folder: str | Path) -> dict[str, Any] | None:
    """A run's or study's robustness.json (`fashionlab robustness`), or None if never scored."""
    path = Path(folder) / ROBUSTNESS_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(read_text_bounded(path))
    except (json.JSONDecodeError, OSError, ValueError) as exc:
        raise RunError(
            f"{path}: not readable JSON ({one_line(exc, 120)}); run 'fashionlab robustness' again"
        ) from None
    if not isinstance(result, dict):
        raise RunError(f"{path}: not a robustness result; run 'fashionlab robustness' again")
    return result


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
    if not path.is_file():
        return None
    try:
        result = json.loads(read_text_bounded(path))
    except (json.JSONDecodeError, OSError, ValueError) as exc:
        raise RunError(
            f"{path}: not readable JSON ({one_line(exc, 120)}); run 'fashionlab audit' again"
        ) from None
    if not isinstance(result, dict) or not isinstance(result.get("flags"), dict):
        raise RunError(f"{path}: not a data audit; run 'fashionlab audit' again")
    return result


def study_audit_dir(study_dir: str | Path) -> Path | None:
    """The audit folder of a study, if `fashionlab audit --study` has written one."""
    folder = Path(study_dir) / AUDIT_DIR
    return folder if (folder / AUDIT_FILE).is_file() else None
