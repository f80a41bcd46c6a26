"""Run folders: writing them (atomically, file by file) and reading them back.

Layout (docs/architecture.md): config.yaml, history.csv, metrics.json, predictions.npz,
model.safetensors + model.json, checkpoint.pt, env.json, and a `complete` marker written last.
Both the PyTorch trainer and the NumPy MLP write through `RunWriter`, so every consumer
(evaluate, report, study, predict, serve) reads one format.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from fashionlab.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from fashionlab.config import TrainConfig, describe_validation_error
from fashionlab.errors import RunError

HISTORY_FIELDS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
)
COMPLETE_MARKER = "complete"


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to silently reuse a folder that holds a run; `overwrite` empties it first."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir}: exists and is not a folder")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            state = (
                "a finished run" if (run_dir / COMPLETE_MARKER).exists() else "an unfinished run"
            )
            raise RunError(
                f"{run_dir} already holds {state}; pass --overwrite to replace it"
                + ("" if state == "a finished run" else " or --resume to continue it")
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


class RunWriter:
    """Writes the files of one run folder; every write is atomic."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)

    def write_config(self, config: TrainConfig) -> None:
        atomic_write_text(self.dir / "config.yaml", config.to_yaml())

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in HISTORY_FIELDS})
        atomic_write_text(self.dir / "history.csv", buffer.getvalue())

    def write_predictions(
        self, labels: np.ndarray, logits: np.ndarray, indices: np.ndarray, pool: str
    ) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            labels=np.asarray(labels, dtype=np.int64),
            logits=np.asarray(logits, dtype=np.float32),
            indices=np.asarray(indices, dtype=np.int64),
            pool=np.array(pool),
        )
        atomic_write_bytes(self.dir / "predictions.npz", buffer.getvalue())

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.dir / "metrics.json", metrics)

    def write_model_info(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.dir / "model.json", info)

    def write_env(self, seed: int, device: str, threads: int, world_size: int = 1) -> None:
        env = environment(seed, device, threads)
        env["processes"] = world_size  # data-parallel processes (torchrun), 1 otherwise
        atomic_write_json(self.dir / "env.json", env)

    def mark_complete(self) -> None:
        atomic_write_text(self.dir / COMPLETE_MARKER, "ok\n")


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def environment(seed: int, device: str, threads: int) -> dict[str, Any]:
    """Versions, device, threads, seed and git commit: what a reader needs to reproduce a run."""
    import sklearn
    import torch

    from fashionlab import __version__
    from fashionlab.native import kernel_statuses

    return {
        "fashionlab": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "device": device,
        "threads": threads,
        # Same values either way; recorded because it changes the speed.
        "native_kernels": kernel_statuses(),
        "seed": seed,
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# ---------------------------------------------------------------- reading


@dataclass
class RunRecord:
    """What a finished (or partial) run folder holds, without the model."""

    dir: Path
    config: TrainConfig
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    complete: bool

    @property
    def name(self) -> str:
        return self.dir.name

    def predictions(self) -> dict[str, np.ndarray]:
        return load_predictions(self.dir)


def load_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / "config.yaml"
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: missing; is {run_dir} a fashionlab run folder?") from None
    except yaml.YAMLError as exc:
        raise RunError(f"{path}: not valid YAML ({exc})") from None
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
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: corrupt JSON ({exc})") from None


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


def load_run(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    return RunRecord(
        dir=run_dir,
        config=load_config(run_dir),
        history=load_history(run_dir),
        metrics=load_metrics(run_dir),
        complete=(run_dir / COMPLETE_MARKER).exists(),
    )
