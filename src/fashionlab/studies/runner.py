"""`run_study(path)`: validate, plan, train what is missing, aggregate, report.

Everything is validated first (unknown keys, bad values, unknown models are reported with the
file, the line and what is allowed); every run that is not already complete is trained (so an
interrupted study resumes where it stopped); then the aggregate (mean ± std over seeds, the
study's reported numbers beside ours, McNemar tests for the claimed comparisons, identical
architectures) goes to study.json and the report module renders it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fashionlab._io import atomic_write_json, atomic_write_text
from fashionlab._read import read_text
from fashionlab.errors import ConfigError
from fashionlab.report import write_report
from fashionlab.robustness import score_robustness
from fashionlab.runs.folder import (
    STUDY_MARKER,
    claim_folder,
    is_complete,
    is_ours,
    mark,
    prepare_folder,
)
from fashionlab.studies.aggregate import aggregate
from fashionlab.studies.backends import check_backend, run_planned
from fashionlab.studies.spec import PlannedRun, StudySpec, load_study, plan_study, select_runs
from fashionlab.tracking import TrackingSettings


def run_study(
    path: str | Path,
    out_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    quiet: bool = False,
    data_dir: str | Path | None = None,
    overwrite: bool = False,
    make_report: bool = True,
    seeds: list[int] | None = None,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    loggers: Sequence[str] | str | None = None,
    report_only: bool = False,
    only: Sequence[str] | None = None,
) -> Path:
    """Run (or resume) a study and write its aggregate and report; returns the study folder.

    `seeds` replaces the seeds given in the file, for every run. `backend` 'local' runs the
    runs one after another (workers=1) or in a process pool of `workers`; 'ray' runs them as
    Ray Tune trials on a local Ray instance or the cluster at `address`. Every backend writes
    the same run folders, so the aggregate and report do not depend on it. `loggers`
    ('tensorboard', 'mlflow'): each run logs there too, the study being an MLflow experiment
    whose store is the study folder's mlflow.db unless MLFLOW_TRACKING_URI is set.
    `report_only`: train nothing; aggregate and report the runs that are complete, the others
    listed as missing (a long study looked at while it runs, or after it was stopped).
    `only`: label patterns (`*`, `?`); train just those runs and the runs they read, then
    report every complete run of the study (a slice of a big study, the rest missing)."""
    check_backend(backend, workers, address)
    study = load_study(path)
    if seeds:
        study.seeds = list(seeds)
        for spec in study.runs:
            spec.seeds = None
    out = Path(out_dir) if out_dir else Path("runs") / study.name
    planned = plan_study(study, out, overrides, source=str(path))
    selected = select_runs(planned, list(only), source=str(path)) if only else planned
    # The same record as the training invocation, so the scoreboard's command still trains it.
    invocation = {"study_file": str(path), "seeds": list(seeds) if seeds else None,
                  "overrides": dict(overrides or {}), "workers": workers,
                  "only": list(only) if only else None}  # fmt: skip
    if report_only:
        return _report_partial(out, study, planned, quiet, data_dir, make_report, invocation)
    tracking = TrackingSettings.of(loggers, out, study.name)
    tracking.check()
    with claim_folder(out, "study"):
        if overwrite:
            prepare_folder(out, overwrite=True, marker=STUDY_MARKER)
        mark(out, STUDY_MARKER)
        tracking = tracking.prepare()
        return _run_in(out, study, planned, selected, path, backend, workers, address, quiet,
                       data_dir, make_report, tracking, invocation)  # fmt: skip


def _run_in(
    out: Path,
    study: StudySpec,
    planned: list[PlannedRun],
    selected: list[PlannedRun],
    path: str | Path,
    backend: str,
    workers: int,
    address: str | None,
    quiet: bool,
    data_dir: str | Path | None,
    make_report: bool,
    tracking: TrackingSettings,
    invocation: dict[str, Any],
) -> Path:
    atomic_write_text(out / "study.yaml", read_text(path))
    started = time.perf_counter()
    details = run_planned(selected, backend, workers, address, quiet, data_dir, tracking)
    # A slice leaves runs out: the aggregate reads the complete ones, the rest are missing.
    summary = _summary(study, planned, _complete(planned), invocation)
    summary["wall_seconds_this_invocation"] = time.perf_counter() - started
    summary["backend"] = {"name": backend, "workers": workers, "address": address}
    # Ray: the node that trained or found each run, and the data each node verified.
    summary["backend"].update(details)
    atomic_write_json(out / "study.json", summary)
    if study.robustness is not None:
        spec = study.robustness
        score_robustness(out, spec.corruptions, spec.severities, spec.items, spec.seed,
                   spec.reference, data_dir=data_dir, quiet=quiet, make_report=False)  # fmt: skip
    _write_report(out, quiet, data_dir, make_report)
    return out


def _complete(planned: list[PlannedRun]) -> list[PlannedRun]:
    return [run for run in planned if is_complete(run.run_dir)]


def _summary(
    study: StudySpec,
    planned: list[PlannedRun],
    done: list[PlannedRun],
    invocation: dict[str, Any],
) -> dict[str, Any]:
    """The aggregate of the complete runs, how many of the planned ones they are, and the
    invocation (so the scoreboard's command trains the study)."""
    summary = aggregate(study, done)
    summary["runs_complete"] = runs_complete(planned)
    summary["invocation"] = invocation
    return summary


def _write_report(out: Path, quiet: bool, data_dir: str | Path | None, make_report: bool) -> None:
    if make_report:
        html = write_report(out, data_dir=data_dir)
        if not quiet:
            print(f"report: {html}", file=sys.stderr)


def runs_complete(planned: list[PlannedRun]) -> dict[str, int]:
    """How many of the study's run folders are complete (a twin's folder counted once)."""
    folders = {run.run_dir for run in planned}
    return {"complete": sum(is_complete(f) for f in folders), "planned": len(folders)}


def _report_partial(
    out: Path,
    study: StudySpec,
    planned: list[PlannedRun],
    quiet: bool,
    data_dir: str | Path | None,
    make_report: bool,
    invocation: dict[str, Any],
) -> Path:
    # No claim on the folder: a study training in it keeps its claim, and writes its own
    # study.json when it ends. Only complete runs are read; their marker is written last.
    if not is_ours(out, STUDY_MARKER):
        raise ConfigError(
            f"{out} is not a study folder; run the study first (without --report-only)"
        )
    done = _complete(planned)
    if not done:
        raise ConfigError(f"no run of the study in {out} is complete yet; nothing to report")
    atomic_write_json(out / "study.json", _summary(study, planned, done, invocation))
    _write_report(out, quiet, data_dir, make_report)
    return out
