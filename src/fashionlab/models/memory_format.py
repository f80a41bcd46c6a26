"""Memory layout of a model's weights: channels-last (NHWC) for conv models, or as built."""

from __future__ import annotations

import torch


def has_conv(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def apply_memory_format(model: torch.nn.Module, memory_format: str) -> bool:
    """Put a conv model's weights in channels-last layout when asked; True if it did."""
    if memory_format != "channels_last" or not has_conv(model):
        return False
    model.to(memory_format=torch.channels_last)
    return True


def input_layout(model: torch.nn.Module) -> torch.memory_format:
    """The layout inputs should have to take the model's fast path: channels-last when any
    conv holds NHWC weights that are not also NCHW (a 1-channel first conv is both)."""
    for m in model.modules():
        if (
            isinstance(m, torch.nn.Conv2d)
            and m.weight.is_contiguous(memory_format=torch.channels_last)
            and not m.weight.is_contiguous()
        ):
            return torch.channels_last
    return torch.contiguous_format
