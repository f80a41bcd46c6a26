"""The configured optimiser and learning-rate schedule."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch

from fashionlab.config import TrainConfig


def build_optimizer(
    config: TrainConfig, params: Iterable[torch.nn.Parameter], fused: bool = True
) -> torch.optim.Optimizer:
    """The configured optimiser. `fused`: Adam and AdamW use PyTorch's single-kernel update
    where it has one for the parameters' device, else its default.

    Why fused: the default CPU implementation makes one pass over memory per arithmetic step
    (lerp, mul, addcmul, sqrt, div, addcdiv), a large share of a step for wide linear layers
    (docs/performance.md). It computes the same update up to rare last-bit differences. SGD
    keeps PyTorch's default: fused was barely faster on `fast`, its one user."""
    if config.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        params = list(params)
        kwargs = {"lr": config.lr, "weight_decay": config.weight_decay}
        if fused:
            # PyTorch refuses `fused` for devices or dtypes it has no kernel for.
            with contextlib.suppress(RuntimeError, ValueError):
                return cls(params, fused=True, **kwargs)
        return cls(params, **kwargs)
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )


def build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """The configured schedule; None for `scheduler: none`. `onecycle` steps per batch, the
    others per epoch (`plateau` on the validation loss)."""
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
        )
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.step_gamma)
    return None
