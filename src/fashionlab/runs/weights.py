"""Saving and rebuilding a trained PyTorch model from a run folder.

Weights live in `model.safetensors` (loading it runs no code, unlike pickle); `model.json`
says how to rebuild the module (registry name + model_args) and holds the normaliser, so a
run folder alone is enough to classify new images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import save

from fashionlab._io import atomic_write_bytes
from fashionlab._read import UnreadableFile, load_safetensors, read_json, safetensors_header
from fashionlab.config import TrainConfig, describe_validation_error
from fashionlab.data import CLASS_NAMES, Normalizer
from fashionlab.errors import ConfigError, RunError, one_line
from fashionlab.models import create_model, get_model_spec, model_skeleton
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


class _Normalization(BaseModel):
    model_config = ConfigDict(extra="ignore")

    preset: Literal["dataset", "half", "unit", "zscore"]
    mean: float | list[list[float]] | list[list[list[float]]]
    std: float | list[list[float]] | list[list[list[float]]]


class _ModelInfo(BaseModel):
    """model.json, validated before anything it names is built."""

    model_config = ConfigDict(extra="ignore")

    model: str
    model_args: dict[str, Any] = Field(default_factory=dict)
    class_names: list[str] = Field(default_factory=lambda: list(CLASS_NAMES))
    normalization: _Normalization


def _read_info(path: Path) -> _ModelInfo:
    try:
        raw = read_json(path)
    except FileNotFoundError:
        raise RunError(f"{path}: missing; the run has no saved model (did it finish?)") from None
    except UnreadableFile as exc:
        raise RunError(str(exc)) from None
    try:
        info = _ModelInfo(**raw)
    except ValidationError as exc:
        raise RunError(one_line(describe_validation_error(exc, str(path)), 400)) from None
    if len(info.class_names) != len(CLASS_NAMES):
        raise RunError(f"{path}: class_names must list {len(CLASS_NAMES)} classes")
    return info


def _normalizer(info: _ModelInfo, path: Path) -> Normalizer:
    norm = info.normalization
    mean, std = torch.tensor(norm.mean), torch.tensor(norm.std)
    for name, t in (("mean", mean), ("std", std)):
        if t.dim() not in (0, 2, 3) or (t.dim() > 0 and tuple(t.shape[-2:]) != (28, 28)):
            raise RunError(f"{path}: normalization {name} must be a number or 28x28 values")
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
        raise RunError(f"{path}: normalization mean/std must be finite and std > 0")
    return Normalizer(norm.preset, mean, std)


def _check_against_header(weights_path: Path, name: str, model_args: dict[str, Any]) -> None:
    """The safetensors header's tensor names and shapes against the model's, before either
    is allocated: a model.json naming a huge model, or weights of another one, stop here."""
    try:
        skeleton = model_skeleton(name, **model_args)
    except ConfigError as exc:
        raise RunError(f"{weights_path.parent / 'model.json'}: {exc}") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    try:
        header = safetensors_header(weights_path)
        stored = {
            k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"
        }
    except FileNotFoundError:
        raise RunError(f"{weights_path}: missing; re-train or restore the file") from None
    except UnreadableFile as exc:
        raise RunError(f"{exc}; re-train or restore the file") from None
    except (TypeError, KeyError):
        raise RunError(
            f"{weights_path}: corrupt safetensors header; re-train or restore the file"
        ) from None
    if stored != expected:
        missing = sorted(expected.keys() - stored.keys())[:3]
        unexpected = sorted(stored.keys() - expected.keys())[:3]
        shapes = [k for k in expected.keys() & stored.keys() if expected[k] != stored[k]][:3]
        raise RunError(
            f"{weights_path}: does not match model {name!r} (missing {missing}, unexpected "
            f"{unexpected}, other shapes {shapes}); re-train or restore the run's files"
        )


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the run's model in eval mode; every failure is a one-line `RunError`.

    Nothing in the folder is trusted before it is checked: model.json is validated, the
    model it names is built on the `meta` device and compared with the safetensors header,
    and only then are the model and the weights allocated; non-finite weights are refused."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    info_path, weights_path = run_dir / "model.json", run_dir / WEIGHTS_FILE
    info = _read_info(info_path)
    try:
        spec = get_model_spec(info.model)
    except ConfigError as exc:
        raise RunError(f"{info_path}: {exc}") from None
    if spec.framework != "torch":
        raise RunError(f"{run_dir}: model {info.model!r} is not a PyTorch model")
    normalizer = _normalizer(info, info_path)
    _check_against_header(weights_path, info.model, info.model_args)
    model = create_model(info.model, **info.model_args)
    try:
        state = load_safetensors(weights_path)
    except (UnreadableFile, FileNotFoundError) as exc:
        raise RunError(f"{one_line(exc)}; re-train or restore the file") from None
    bad = [k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise RunError(
            f"{weights_path}: {len(bad)} tensor(s) hold NaN or infinite values ({bad[0]}, ...); "
            "the run diverged or the file is damaged: re-train it"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RunError(
            f"{weights_path}: does not match model {info.model!r} ({one_line(exc, 300)})"
        ) from None
    model.to(device).eval()
    # The layout it was evaluated in during training: the same kernels, the same logits.
    apply_memory_format(model, config.memory_format)
    return LoadedModel(
        model, config, normalizer, tuple(info.class_names), info.model_dump(), run_dir
    )
