"""`checkpoint.pt`: what a run needs to continue after an interruption, read and written safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fashionlab._io import atomic_write_with
from fashionlab._read import UnreadableFile, torch_load
from fashionlab.errors import RunError
from fashionlab.runs.folder import CHECKPOINT_FILE

CHECKPOINT = CHECKPOINT_FILE


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_with(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint's payload; a missing or damaged file is a one-line `RunError`."""
    try:
        payload = torch_load(path, map_location=device)
    except FileNotFoundError:
        raise RunError(f"{path}: missing; nothing to resume (start the run again)") from None
    except UnreadableFile as exc:
        raise RunError(f"{exc}; start again with --overwrite") from None
    if not isinstance(payload, dict) or not {"config", "model", "state"} <= payload.keys():
        raise RunError(f"{path}: not a fashionlab checkpoint; start again with --overwrite")
    return payload
