"""A flatten whose gradient keeps the channels-last layout (for the training view)."""

from __future__ import annotations

import torch
from torch import nn


class _FlattenKeepingLayout(torch.autograd.Function):
    """flatten(1) whose gradient comes back in the input's channels-last layout."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.shape = x.shape
        return x.flatten(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


class LayoutKeepingFlatten(nn.Module):
    """The training view's stand-in for `nn.Flatten(1)`, with the same values.

    Flattening an NHWC map copies it into NCHW order, so autograd hands the layer below an
    NCHW gradient. Max-pool's backward then sees a channels-last input with an NCHW gradient
    and takes its NCHW path, copying its input and gradient into NCHW first (a large share of
    a bf16 s0-m1 step: docs/performance.md). Returning the gradient channels-last costs one
    copy of the small flattened map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.dim() == 4
            and x.requires_grad
            and torch.is_grad_enabled()
            and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            return _FlattenKeepingLayout.apply(x)
        return x.flatten(1)


def is_plain_flatten(module: nn.Module) -> bool:
    """An exact `nn.Flatten` of every dimension after the batch (a subclass may differ)."""
    return type(module) is nn.Flatten and module.start_dim == 1 and module.end_dim == -1
