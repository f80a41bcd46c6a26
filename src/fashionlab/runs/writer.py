"""Writing a run folder, file by file, atomically.

Layout (docs/architecture.md): config.yaml, history.csv, metrics.json, predictions.npz,
model.safetensors + model.json, checkpoint.pt, env.json, and a `complete` marker written last.
Both the PyTorch trainer and the NumPy MLP write through `RunWriter`, so every consumer
(evaluate, report, study, predict, serve) reads one format.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import subprocess
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from fashionlab._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from fashionlab.config import TrainConfig
from fashionlab.runs.folder import COMPLETE_MARKER

HISTORY_FIELDS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
)


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
        self,
        labels: np.ndarray,
        logits: np.ndarray,
        indices: np.ndarray,
        pool: str,
        val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """The test pass (labels, logits, indices into `pool`) and, when the run has a
        validation split, its (labels, logits, indices into the training set) from the same
        weights: what temperature scaling is fitted on."""
        arrays = {
            "labels": np.asarray(labels, dtype=np.int64),
            "logits": np.asarray(logits, dtype=np.float32),
            "indices": np.asarray(indices, dtype=np.int64),
            "pool": np.array(pool),
        }
        if val is not None:
            arrays["val_labels"] = np.asarray(val[0], dtype=np.int64)
            arrays["val_logits"] = np.asarray(val[1], dtype=np.float32)
            arrays["val_indices"] = np.asarray(val[2], dtype=np.int64)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(self.dir / "predictions.npz", buffer.getvalue())

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.dir / "metrics.json", metrics)

    def write_model_info(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.dir / "model.json", info)

    def write_env(self, seed: int, device: str, threads: int, world_size: int = 1) -> None:
        env = environment(seed, device, threads)
        env["processes"] = world_size  # data-parallel processes (torchrun), 1 otherwise
        # Which training of this folder it was: a tracker tells a re-trained folder (same
        # path, --overwrite) from the run it already holds by this, not by the path.
        env["run_id"] = uuid.uuid4().hex
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
    from fashionlab._platform import cpu_description
    from fashionlab.accel import kernel_statuses

    return {
        "fashionlab": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_description(),
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
