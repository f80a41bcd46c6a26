"""Train one planned run of a study unless it is complete; resume it if it was interrupted.

Every backend (sequential, process pool, Ray) calls `execute_run`, so the run folders are the
same whichever one ran them.
"""

from __future__ import annotations

from pathlib import Path

from fashionlab.errors import ConfigError, RunError
from fashionlab.runs import is_complete, load_config
from fashionlab.studies.spec import PlannedRun
from fashionlab.tracking import TrackingSettings
from fashionlab.training import resume, train
from fashionlab.training.checkpoint import CHECKPOINT


def _features_run_dir(planned: list[PlannedRun], run: PlannedRun) -> Path:
    for other in planned:
        if other.label == run.features_from and other.seed == run.seed:
            return other.run_dir
    raise ConfigError(f"features_from {run.features_from!r} has no run with seed {run.seed}")


def resolve_features_source(run: PlannedRun, planned: list[PlannedRun]) -> None:
    """Point a features_from run's config at its CNN run's folder (idempotent)."""
    if run.features_from:
        source_run = _features_run_dir(planned, run)
        args = {**run.config.model_args, "features_run": str(source_run)}
        run.config = run.config.model_copy(update={"model_args": args})


def execute_run(
    run: PlannedRun,
    planned: list[PlannedRun],
    quiet: bool,
    data_dir: str | Path | None,
    tracking: TrackingSettings | None = None,
) -> str:
    """Train one planned run unless it is complete; resume it if it was interrupted.
    Returns 'done' (was complete), 'resumed' or 'trained'. `tracking`: the study's trackers."""
    resolve_features_source(run, planned)
    config = run.config
    if is_complete(run.run_dir):
        if load_config(run.run_dir) != config:
            raise RunError(
                f"{run.run_dir} was made with a different config; pass --overwrite "
                "to re-run it or choose another --out folder"
            )
        return "done"
    callbacks = tracking.callbacks() if tracking else []
    if (run.run_dir / CHECKPOINT).exists() and load_config(run.run_dir) == config:
        resume(run.run_dir, quiet=quiet, data_dir=data_dir, callbacks=callbacks)
        return "resumed"
    train(config, run.run_dir.parent, overwrite=True, quiet=quiet, data_dir=data_dir,
          callbacks=callbacks)  # fmt: skip
    return "trained"
