"""`checkpoint.pt`: what a run needs to continue after an interruption, read and written safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fashionlab._io import atomic_write_with
from fashionlab.errors import RunError
from fashionlab.runs.folder import CHECKPOINT_FILE

CHECKPOINT = CHECKPOINT_FILE


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_with(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint's payload; a missing or damaged file is a one-line `RunError`."""
    try:
        # weights_only: a checkpoint is tensors and plain containers; never unpickle code.
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise RunError(f"{path}: missing; nothing to resume (start the run again)") from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise RunError(
            f"{path}: corrupt checkpoint ({type(exc).__name__}); start again with --overwrite"
        ) from None
    if not isinstance(payload, dict) or not {"config", "model", "state"} <= payload.keys():
        raise RunError(f"{path}: not a fashionlab checkpoint; start again with --overwrite")
    return payload
