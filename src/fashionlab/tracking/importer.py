"""`fashionlab track import DIR`: push run folders that already exist into MLflow.

Each complete run is replayed through the same logger live training uses, so an imported run
looks like one logged while it trained. A run already in the experiment is skipped, one whose
earlier logging broke off is replaced, and an incomplete or unreadable folder is reported,
not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fashionlab._io import load_yaml
from fashionlab._read import read_text
from fashionlab.errors import ConfigError, FashionlabError, one_line
from fashionlab.runs import is_complete
from fashionlab.runs.folder import STUDY_MARKER
from fashionlab.runs.table import run_folders
from fashionlab.tracking.mlflow_logger import (
    MLflowLogger,
    find_run,
    open_experiment,
    retrying,
    run_identity,
)
from fashionlab.tracking.settings import DEFAULT_EXPERIMENT, TrackingSettings
from fashionlab.training.callbacks import replay


@dataclass
class Imported:
    path: Path
    outcome: str  # "imported", "replaced", "already imported", "skipped", "failed"
    detail: str = ""


def study_name(folder: Path) -> str | None:
    """The name in a study folder's study.yaml (its MLflow experiment), or None."""
    if not (folder / STUDY_MARKER).exists():
        return None
    try:
        name = load_yaml(read_text(folder / "study.yaml")).get("name")
    except (OSError, ValueError, AttributeError, FashionlabError):
        name = None
    return str(name) if name else folder.name


def import_runs(
    root: str | Path, experiment: str | None = None, store_dir: str | Path | None = None
) -> list[Imported]:
    """Import every run folder under `root` (or `root` itself) into MLflow. The experiment is
    `experiment`, else the study's name when `root` is a study folder, else 'fashionlab';
    the local store is `store_dir/mlflow.db` (default: `root`)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder; give a run folder or a folder of runs")
    folders = list(run_folders(root))
    if not folders:
        raise ConfigError(f"{root}: no run folders in it (none holds a config.yaml)")
    settings = TrackingSettings.of(
        ["mlflow"], store_dir or root, experiment or study_name(root) or DEFAULT_EXPERIMENT
    )
    settings.check()
    client, experiment_id = open_experiment(settings)  # TrackingUnavailable: one line, exit 2
    return [_import_one(folder, settings, client, experiment_id) for folder in folders]


def _import_one(folder: Path, settings: TrackingSettings, client, experiment_id: str) -> Imported:
    if not is_complete(folder):
        return Imported(folder, "skipped", "not complete: resume or finish it first")
    existing = find_run(client, experiment_id, run_identity(folder))
    replaced = False
    if existing is not None:
        if existing.info.status == "FINISHED":
            return Imported(folder, "already imported", existing.info.run_id)
        retrying(client.delete_run, existing.info.run_id)  # a logging that broke off
        replaced = True
    logger = MLflowLogger(settings)
    try:
        replay([logger], folder)
    except (FashionlabError, OSError, ValueError) as exc:
        if logger.run_id is not None:
            retrying(client.delete_run, logger.run_id)  # nothing half-imported stays
        return Imported(folder, "failed", one_line(exc, 160))
    if logger.failed or logger.run_id is None:
        return Imported(folder, "failed", "MLflow refused it (see the message above)")
    return Imported(folder, "replaced" if replaced else "imported", logger.run_id)
