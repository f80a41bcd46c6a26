"""Saving and rebuilding a trained PyTorch model from a run folder.

Weights live in `model.safetensors` (loading it runs no code, unlike pickle); `model.json`
says how to rebuild the module (registry name + model_args) and holds the normaliser, so a
run folder alone is enough to classify new images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from fashionlab._io import atomic_write_bytes
from fashionlab.config import TrainConfig
from fashionlab.data import CLASS_NAMES, Normalizer
from fashionlab.errors import RunError
from fashionlab.models import create_model, get_model_spec
from fashionlab.models.memory_format import apply_memory_format
from fashionlab.runs.readers import load_config

WEIGHTS_FILE = "model.safetensors"


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state))


def model_info(config: TrainConfig, model: torch.nn.Module, normalizer: Normalizer) -> dict:
    return {
        "model": config.model,
        "model_args": config.model_args,
        "params": sum(p.numel() for p in model.parameters()),
        "class_names": list(CLASS_NAMES),
        "normalization": {
            "preset": normalizer.preset,
            "mean": normalizer.mean.tolist(),
            "std": normalizer.std.tolist(),
        },
    }


@dataclass
class LoadedModel:
    model: torch.nn.Module
    config: TrainConfig
    normalizer: Normalizer
    class_names: tuple[str, ...]
    info: dict[str, Any]
    run_dir: Path


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the run's model in eval mode; every failure is a one-line `RunError`."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    info_path, weights_path = run_dir / "model.json", run_dir / WEIGHTS_FILE
    try:
        info = json.loads(info_path.read_text())
    except FileNotFoundError:
        raise RunError(
            f"{info_path}: missing; the run has no saved model (did it finish?)"
        ) from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{info_path}: corrupt JSON ({exc})") from None
    if get_model_spec(info["model"]).framework != "torch":
        raise RunError(f"{run_dir}: model {info['model']!r} is not a PyTorch model")
    model = create_model(info["model"], **info.get("model_args", {}))
    try:
        state = load_file(weights_path)
    except FileNotFoundError:
        raise RunError(f"{weights_path}: missing; re-train or restore the file") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{weights_path}: corrupt safetensors file ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise RunError(
            f"{weights_path}: does not match model {info['model']!r} ({detail[:300]})"
        ) from None
    norm = info["normalization"]
    normalizer = Normalizer(norm["preset"], torch.tensor(norm["mean"]), torch.tensor(norm["std"]))
    model.to(device).eval()
    # The layout it was evaluated in during training: the same kernels, the same logits.
    apply_memory_format(model, config.memory_format)
    return LoadedModel(
        model, config, normalizer, tuple(info.get("class_names", CLASS_NAMES)), info, run_dir
    )
