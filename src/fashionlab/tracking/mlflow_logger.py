"""MLflow: one MLflow run per run folder, in the experiment of its study (or 'fashionlab').

Runs are found again by the `run_id` their env.json records, so a resumed run continues its
MLflow run and importing a folder twice does not duplicate it. The store is SQLite (a real
database, which MLflow's UI and `mlflow.search_runs` read) unless MLFLOW_TRACKING_URI names
another.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fashionlab._read import read_json
from fashionlab.errors import FashionlabError, one_line
from fashionlab.runs import is_complete
from fashionlab.tracking.base import Tracker
from fashionlab.tracking.records import (
    artifact_files,
    config_params,
    epoch_values,
    final_metrics,
)
from fashionlab.training.callbacks import TrainingRun

if TYPE_CHECKING:  # settings builds the loggers, lazily: a type-only import keeps no cycle
    from fashionlab.tracking.settings import TrackingSettings

RUN_ID_TAG = "fashionlab.run_id"
BATCH = 100  # MLflow's limit of params per log_batch call
OUTCOME_STATUS = {"paused": "KILLED", "interrupted": "KILLED", "failed": "FAILED"}
T = TypeVar("T")


# MLflow's defaults let one unreachable server hold a run for minutes without a word (7
# retries with exponential backoff on a 120 s timeout). A tracker must never hang a run: these
# bounds apply unless the user set the variable (it then goes to the processes we start too).
BOUNDED_HTTP = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
# Loggers whose lines (schema creation at INFO, every retry at WARNING) would reach the user's
# terminal; a failure reaches it once, as the tracker's own one-line warning.
_CHATTY = ("mlflow", "alembic", "urllib3")


class TrackingUnavailable(FashionlabError):
    """The MLflow store cannot be opened; the message says which and why, in one line."""


def _bounded_mlflow() -> None:
    for name, value in BOUNDED_HTTP.items():
        os.environ.setdefault(name, value)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _check_sqlite(uri: str) -> None:
    """Open an SQLite store ourselves first: MLflow retries a store it cannot open ten times
    over about 100 s, with a warning each time, before it gives up."""
    if not uri.startswith("sqlite:///"):
        return
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    if path in ("", ":memory:"):
        return
    try:
        connection = sqlite3.connect(path, timeout=5)
        try:
            connection.execute("PRAGMA schema_version")
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise TrackingUnavailable(f"MLflow store {uri}: cannot open it ({exc})") from None


def retrying(action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `action`, retrying while SQLite reports the store locked by another process
    (a study's workers log concurrently)."""
    for attempt in range(7):
        try:
            return action(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - MLflow wraps the driver's error
            if "locked" not in str(exc):
                raise
            time.sleep(0.1 * 2**attempt)
    return action(*args, **kwargs)  # the last try: its error, if any, is the caller's


def open_experiment(settings: TrackingSettings):
    """(client, experiment id), creating the store and the experiment if needed; a store that
    cannot be reached or opened is `TrackingUnavailable`, within seconds."""
    _bounded_mlflow()
    from mlflow.tracking import MlflowClient

    uri = settings.tracking_uri()
    try:
        if settings.local_store():
            settings.store_dir.mkdir(parents=True, exist_ok=True)
        _check_sqlite(uri)
        client = MlflowClient(tracking_uri=uri)
        found = retrying(client.get_experiment_by_name, settings.experiment)
    except TrackingUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the network, the database driver, MLflow itself
        raise TrackingUnavailable(f"MLflow store {uri}: {one_line(exc, 200)}") from None
    if found is not None:
        return client, found.experiment_id
    try:
        return client, retrying(
            client.create_experiment, settings.experiment,
            artifact_location=settings.artifact_location(),
        )  # fmt: skip
    except Exception:  # noqa: BLE001 - another process created it first
        found = retrying(client.get_experiment_by_name, settings.experiment)
        if found is None:
            raise
        return client, found.experiment_id


def run_identity(run_dir: Path) -> str:
    """The env.json run_id of this training of the folder; older folders have none, and
    their absolute path stands in."""
    try:
        run_id = read_json(run_dir / "env.json").get("run_id")
    except (OSError, ValueError, AttributeError):
        run_id = None
    return str(run_id) if run_id else f"path:{run_dir.resolve()}"


def find_run(client, experiment_id: str, identity: str):
    found = retrying(
        client.search_runs,
        [experiment_id],
        filter_string=f"tags.`{RUN_ID_TAG}` = '{identity}'",
        max_results=1,
    )
    return found[0] if found else None


def close_unfinished(settings: TrackingSettings) -> None:
    client, experiment_id = open_experiment(settings)
    running = retrying(
        client.search_runs, [experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    for found in running:
        folder = found.data.tags.get("fashionlab.run_dir")
        if folder and not is_complete(folder):
            retrying(client.set_terminated, found.info.run_id, "KILLED")


class MLflowLogger(Tracker):
    """Logs params at the start, each history row as metrics (step = epoch), the final metrics
    and artefacts at the end, and the run's status."""

    name = "mlflow"
    recovery = ": push it later with fashionlab track import"

    def __init__(self, settings: TrackingSettings) -> None:
        super().__init__()
        self.settings = settings
        self.client = None
        self.run_id: str | None = None

    def on_train_start(self, run: TrainingRun) -> None:
        self.guard(self._start, run)

    def _start(self, run: TrainingRun) -> None:
        from mlflow.entities import Param

        self.client, experiment_id = open_experiment(self.settings)
        identity = run_identity(run.path)
        existing = find_run(self.client, experiment_id, identity)
        if existing is not None:  # a resumed run continues its MLflow run
            self.run_id = existing.info.run_id
            retrying(self.client.update_run, self.run_id, status="RUNNING")
            return
        tags = {
            RUN_ID_TAG: identity,
            "fashionlab.run_dir": str(run.path.resolve()),
            "fashionlab.model": run.config.model,
            "fashionlab.seed": str(run.config.seed),
        }
        created = retrying(
            self.client.create_run, experiment_id, run_name=run.path.name, tags=tags
        )
        self.run_id = created.info.run_id
        params = [Param(k, str(v)) for k, v in config_params(run.config).items()]
        for start in range(0, len(params), BATCH):
            retrying(self.client.log_batch, self.run_id, params=params[start : start + BATCH])
        for row in run.history:  # resumed with no MLflow run yet: the epochs done so far
            self._epoch(row)

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        if metrics:
            retrying(self.client.log_batch, self.run_id, metrics=metrics)

    def on_epoch_end(self, run: TrainingRun, row: dict[str, Any]) -> None:
        self.guard(self._epoch, row)

    def _epoch(self, row: dict[str, Any]) -> None:
        self._log_metrics(epoch_values(row), int(row["epoch"]))

    def on_train_end(self, run: TrainingRun, metrics: dict[str, Any]) -> None:
        self.guard(self._end, run, metrics)

    def _end(self, run: TrainingRun, metrics: dict[str, Any]) -> None:
        self._log_metrics(final_metrics(metrics), run.epoch)
        for path in artifact_files(run.path):
            retrying(self.client.log_artifact, self.run_id, str(path))
        retrying(self.client.set_terminated, self.run_id, "FINISHED")

    def on_train_incomplete(self, run: TrainingRun, outcome: str) -> None:
        if self.run_id is not None:
            self.guard(self.client.set_terminated, self.run_id, OUTCOME_STATUS[outcome])
