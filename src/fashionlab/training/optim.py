"""The configured optimiser and learning-rate schedule."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from fashionlab.config import TrainConfig
from fashionlab.training.muon import MuonSGD

NORM_LAYERS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)


def parameter_groups(
    config: TrainConfig, model: torch.nn.Module
) -> list[dict[str, Any]] | Iterator[torch.nn.Parameter]:
    """The model's parameters as the optimiser takes them: one group, or a list of groups.

    With `norm_lr_scale` != 1 the normalisation layers' weights and biases form their own group
    at `lr * norm_lr_scale` and `weight_decay / norm_lr_scale` (airbench's high bias learning
    rate: their decay then pulls no harder per step than the other weights', only their step
    is larger). With `optimizer: muon` the hidden weight matrices and filters form a group
    marked `muon` at `muon_lr`: every parameter of 2 or more dimensions except the first and
    the last (the layer that reads the pixels and the classifier, which Muon leaves to SGD)."""
    if config.norm_lr_scale == 1 and config.optimizer != "muon":
        return model.parameters()
    norm_ids = set()
    if config.norm_lr_scale != 1:
        norm_ids = {
            id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters()
        }
    muon_ids = set()
    if config.optimizer == "muon":
        matrices = [p for p in model.parameters() if p.ndim >= 2 and id(p) not in norm_ids]
        muon_ids = {id(p) for p in matrices[1:-1]}
    params = list(model.parameters())
    groups: list[dict[str, Any]] = [
        {"params": [p for p in params if id(p) not in norm_ids | muon_ids]}
    ]
    if norm_ids:
        scale = config.norm_lr_scale
        groups.append(
            {
                "params": [p for p in params if id(p) in norm_ids],
                "lr": config.lr * scale,
                "weight_decay": config.weight_decay / scale,
            }
        )
    if muon_ids:
        groups.append(
            {
                "params": [p for p in params if id(p) in muon_ids],
                "lr": config.muon_lr,
                "muon": True,
                "momentum": config.momentum
                if config.muon_momentum is None
                else config.muon_momentum,
                "weight_norm": config.muon_weight_norm,
            }
        )
    return groups


def build_optimizer(
    config: TrainConfig,
    params: Iterable[torch.nn.Parameter] | list[dict[str, Any]],
    fused: bool = True,
) -> torch.optim.Optimizer:
    """The configured optimiser over `params` (parameters or `parameter_groups`' groups).
    `fused`: Adam and AdamW use PyTorch's single-kernel update where it has one for the
    parameters' device, else its default.

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
    if config.optimizer == "muon":
        return MuonSGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
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
        # Each group peaks at its own learning rate (the normalisation group's is scaled).
        peaks = [group["lr"] for group in optimizer.param_groups]
        # One-cycle also cycles momentum (0.95 -> 0.85 -> 0.95); a set `muon_momentum` holds
        # the Muon group's still, or the schedule would overwrite it at the first step.
        momenta = {}
        if config.muon_momentum is not None:
            base, peak = 0.85, 0.95  # OneCycleLR's own defaults, for the other groups
            held = [bool(group.get("muon")) for group in optimizer.param_groups]
            momenta = {
                "base_momentum": [config.muon_momentum if h else base for h in held],
                "max_momentum": [config.muon_momentum if h else peak for h in held],
            }
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
            **momenta,
        )
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.step_gamma)
    return None
