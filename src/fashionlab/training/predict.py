"""The one prediction path: logits for uint8 images, as a run's test pass computed them.

The trainer's validation and test passes, `evaluate`, the ONNX check, `predict` and `serve`
all call `predict_logits`, with the settings the run recorded (`PredictSettings.of_run`): its
precision, its test-time augmentation, and its model's memory format. Same model, same images,
same batches: the same logits, bit for bit, on the machine that trained the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fashionlab.config import TrainConfig
from fashionlab.data import CLASS_NAMES, Normalizer, tta_average, tta_views
from fashionlab.models.memory_format import input_layout
from fashionlab.training.device import autocast, resolve_precision

EVAL_BATCH = 1000
CPU = torch.device("cpu")


@dataclass(frozen=True)
class PredictSettings:
    """How a run's model is evaluated: a resolved precision ('fp32' or 'bf16') and the
    test-time augmentation views."""

    precision: str = "fp32"
    tta_flip: bool = False
    tta_shift: bool = False

    @classmethod
    def of_run(
        cls, config: TrainConfig, metrics: dict[str, Any], device: torch.device = CPU
    ) -> PredictSettings:
        """The settings a finished run's test pass used: the precision it recorded in
        metrics.json (`precision_used`), so a run is evaluated as it was tested whatever the
        current machine would pick for `precision: auto`; older runs without the record get
        their config's precision resolved for `device`."""
        recorded = metrics.get("precision_used") if isinstance(metrics, dict) else None
        precision = recorded if recorded in ("fp32", "bf16") else None
        return cls(
            precision or resolve_precision(config.precision, device),
            config.tta_flip,
            config.tta_shift,
        )


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    normalizer: Normalizer,
    device: torch.device = CPU,
    settings: PredictSettings = PredictSettings(),  # noqa: B008  (frozen, shared safely)
    batch_size: int = EVAL_BATCH,
) -> torch.Tensor:
    """Logits (float32, CPU) for uint8 images (N, 28, 28), in fixed-size batches.

    `model` is an nn.Module (run in eval mode, its inputs in its memory format, under the
    settings' autocast) or any callable from a normalised float batch (N, 1, 28, 28) to logits
    (the ONNX model). Test-time augmentation: `tta_flip` adds the mirrored images; `tta_shift`
    adds each view moved one pixel up-left and one down-right, at half weight (airbench's
    scheme); the logits are the weighted mean over the views."""
    if isinstance(model, torch.nn.Module):
        module = model
        module.eval()
        layout = input_layout(module)

        def forward(v: torch.Tensor) -> torch.Tensor:
            return module(v.contiguous(memory_format=layout)).float()

    else:
        layout, forward = torch.contiguous_format, model
    chunks = []
    for i in range(0, len(images), batch_size):
        x = normalizer(images[i : i + batch_size]).to(device)
        if x.dim() == 4:
            x = x.contiguous(memory_format=layout)
        views = tta_views(x, settings.tta_flip, settings.tta_shift)
        with autocast(device, settings.precision):
            logits = tta_average(views, forward)
        chunks.append(logits.cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, len(CLASS_NAMES))
