"""The run folder as a place on disk: claiming it, and knowing when a run in it is finished.

The `complete` marker is written last, after every other file, so its presence is the one
test of a finished run that every reader (study, evaluate, report, serve) uses.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fashionlab.errors import RunError

COMPLETE_MARKER = "complete"


def is_complete(run_dir: str | Path) -> bool:
    """Whether the run in `run_dir` finished training and evaluation."""
    return (Path(run_dir) / COMPLETE_MARKER).exists()

def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to silently reuse a folder that holds a run; `overwrite` empties it first."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir}: exists and is not a folder")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            state = (
                "a finished run" if is_complete(run_dir) else "an unfinished run"
            )
            raise RunError(
                f"{run_dir} already holds {state}; pass --overwrite to replace it"
                + ("" if state == "a finished run" else " or --resume to continue it")
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
