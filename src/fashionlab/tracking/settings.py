"""Which trackers a command uses and where MLflow's store is: picklable, so a study's process
pool and Ray trials build the same trackers as the driver."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from fashionlab._extras import require_extra
from fashionlab.errors import ConfigError
from fashionlab.runs.folder import TRACKER_ARTIFACTS
from fashionlab.training.callbacks import Callback

LOGGERS = ("tensorboard", "mlflow")
DEFAULT_EXPERIMENT = "fashionlab"
LOCAL_STORE = "mlflow.db"  # beside the run folders it tracks


def parse_loggers(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """'tensorboard', 'mlflow', both (a list or comma-separated) or 'none' -> a tuple without
    repeats; an unknown name is a ConfigError that lists the known ones."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    names: list[str] = []
    for value in values:
        for name in str(value).split(","):
            name = name.strip().lower()
            if name in ("", "none"):
                continue
            if name not in LOGGERS:
                raise ConfigError(
                    f"unknown logger {name!r}; choose from {', '.join(LOGGERS)} or none"
                )
            if name not in names:
                names.append(name)
    return tuple(names)


@dataclass(frozen=True)
class TrackingSettings:
    """`loggers` to use; `store_dir`: the folder whose `mlflow.db` is the MLflow store when
    MLFLOW_TRACKING_URI is not set (the runs' parent folder); `experiment`: the MLflow
    experiment (a study's name, or 'fashionlab')."""

    loggers: tuple[str, ...] = ()
    store_dir: Path = Path("runs")
    experiment: str = DEFAULT_EXPERIMENT

    @classmethod
    def of(
        cls,
        loggers: Iterable[str] | str | None,
        store_dir: str | Path,
        experiment: str | None = None,
    ) -> TrackingSettings:
        return cls(parse_loggers(loggers), Path(store_dir).resolve(),
                   experiment or DEFAULT_EXPERIMENT)  # fmt: skip

    def local_store(self) -> bool:
        """Whether MLflow writes to the SQLite file beside the runs (no MLFLOW_TRACKING_URI)."""
        return not os.environ.get("MLFLOW_TRACKING_URI")

    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI when set (a server, Databricks, another database), else the
        SQLite file beside the runs."""
        if self.local_store():
            return f"sqlite:///{self.store_dir / LOCAL_STORE}"
        return os.environ["MLFLOW_TRACKING_URI"]

    def artifact_location(self) -> str | None:
        """Where a new experiment keeps artefacts: beside the local store (MLflow's default is
        ./mlruns under the working directory), or the server's choice when there is one."""
        if not self.local_store():
            return None
        return (self.store_dir / TRACKER_ARTIFACTS).as_uri()

    def check(self) -> None:
        """A one-line error naming the extra when a chosen tracker's package is missing."""
        if self.loggers:
            require_extra("track", f"--log {','.join(self.loggers)}")

    def prepare(self) -> TrackingSettings:
        """Create the MLflow store and experiment once, in the driver, before workers log to
        it concurrently (two processes creating a fresh SQLite schema at once would race).
        Returns the settings to use: without MLflow, after one warning line, when its store
        cannot be opened (the study goes on; `fashionlab track import` pushes it later)."""
        self.check()
        if "mlflow" not in self.loggers:
            return self
        from fashionlab.tracking.mlflow_logger import TrackingUnavailable, open_experiment

        try:
            open_experiment(self)
        except TrackingUnavailable as exc:
            print(
                f"mlflow logging off ({exc}); the runs are unaffected: push them later with "
                "fashionlab track import",
                file=sys.stderr,
            )
            return replace(self, loggers=tuple(n for n in self.loggers if n != "mlflow"))
        return self

    def close_unfinished(self) -> None:
        """Mark the experiment's MLflow runs that are still 'RUNNING' but whose folder is not
        complete as KILLED: trials a scheduler stopped by ending their process."""
        if "mlflow" in self.loggers:
            from fashionlab.tracking.mlflow_logger import TrackingUnavailable, close_unfinished

            try:
                close_unfinished(self)
            except TrackingUnavailable as exc:
                print(f"mlflow: could not close unfinished runs ({exc})", file=sys.stderr)

    def callbacks(self) -> list[Callback]:
        """One callback per chosen tracker."""
        self.check()
        out: list[Callback] = []
        if "tensorboard" in self.loggers:
            from fashionlab.tracking.tensorboard_logger import TensorBoardLogger

            out.append(TensorBoardLogger())
        if "mlflow" in self.loggers:
            from fashionlab.tracking.mlflow_logger import MLflowLogger

            out.append(MLflowLogger(self))
        return out
