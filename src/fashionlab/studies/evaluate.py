"""Every run of a study evaluated again from its saved weights (`fashionlab evaluate STUDY`).

Each run goes through `evaluate_run`, the one prediction path with the precision and
test-time augmentation the run recorded; the data is loaded once for the whole study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fashionlab.errors import RunError
from fashionlab.report import read_study_summary
from fashionlab.training import evaluate_run


def study_run_folders(study_dir: str | Path) -> list[Path]:
    """The run folders study.json lists, in its order; RunError naming a missing one."""
    folder = Path(study_dir)
    runs = []
    for row in read_study_summary(folder)["rows"]:
        for name in row.get("runs", []):
            run = folder / str(name)
            if not (run / "config.yaml").is_file():
                raise RunError(f"{run}: listed in study.json but not a run folder; run the "
                               "study again to train it")  # fmt: skip
            runs.append(run)
    return runs


def evaluate_study(
    study_dir: str | Path, data_dir: str | Path | None = None, device: str = "cpu"
) -> dict[str, dict[str, Any]]:
    """{run folder name: `evaluate_run`'s metrics and comparison}, for every run of the study."""
    return {run.name: evaluate_run(run, data_dir=data_dir, device=device)
            for run in study_run_folders(study_dir)}  # fmt: skip
