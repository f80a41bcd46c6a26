"""Exact rewrites of a model's training graph that make a training step cheaper.

`training_view(model)` returns a module that computes the same function with the same
gradients, on the same parameter objects, for the training loop only. The model itself
(inspection hooks, evaluation, export, saved weights) keeps its structure.

The one rewrite: conv -> ReLU -> max-pool becomes conv -> max-pool -> ReLU. Max-pooling
commutes with any non-decreasing function, so the forward values are equal, and the
gradients are equal too: where a window's maximum is positive both orders route the gradient
to the same (first) maximal element; where it is not, the ReLU zeroes the gradient in both.
The ReLU then runs on a quarter of the elements (a 2x2 pool): on the S2 CNN its forward and
backward were about a fifth of a bf16 step (`benchmarks/train_speed.py --profile s2-cnn`).
Where the compiled kernel applies (2x2 pools of channels-last CPU maps), pool and ReLU run as
one pass each way (fashionlab.native.pool_relu), again with bit-identical values and gradients.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from fashionlab.models.base import ConvAct, FashionNet
from fashionlab.native import native_pool_relu_applies, pool_relu


class PoolThenAct(nn.Module):
    """`act(pool(conv(x)))` on the modules of a `ConvAct` stage followed by a max-pool."""

    def __init__(self, stage: ConvAct, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.conv, self.pool, self.act = stage.conv, pool, stage.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if native_pool_relu_applies(x, self.pool):
            return pool_relu(x)
        return self.act(self.pool(x))


def _swappable(stage: nn.Module, following: nn.Module | None) -> bool:
    return (
        isinstance(stage, ConvAct)
        and type(stage.act) is nn.ReLU
        and isinstance(following, nn.MaxPool2d)
        and not following.return_indices
    )


def training_view(model: nn.Module) -> nn.Module:
    """The model's training graph with conv -> ReLU -> max-pool stages pooled before the
    ReLU, or the model itself when nothing is rewritten (MLPs, BatchNorm nets, other types)."""
    if not isinstance(model, FashionNet):
        return model
    children = list(model.trunk.named_children())
    rewritten: OrderedDict[str, nn.Module] = OrderedDict()
    i = 0
    while i < len(children):
        name, module = children[i]
        following = children[i + 1][1] if i + 1 < len(children) else None
        if _swappable(module, following):
            rewritten[name] = PoolThenAct(module, following)
            i += 2
        else:
            rewritten[name] = module
            i += 1
    if len(rewritten) == len(children):
        return model
    # A FashionNet of its own (head(trunk(x))) with no inspection stages: only training runs it.
    view = FashionNet(nn.Sequential(rewritten), model.head)
    view.train(model.training)
    return view
