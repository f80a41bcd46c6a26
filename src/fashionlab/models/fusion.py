"""Exact rewrites of a model's training graph that make a training step cheaper.

`training_view(model)` returns a module that computes the same function with the same
gradients, on the same parameter objects, for the training loop only. The model itself
(inspection hooks, evaluation, export, saved weights) keeps its structure.

The first rewrite: conv [-> BatchNorm] -> ReLU -> max-pool becomes conv [-> BatchNorm] ->
max-pool -> ReLU, for a `ConvAct` stage, a `ConvBNReLU` block or a Sequential stage ending in
one (S0-M2's), followed by the pool. Max-pooling commutes with any non-decreasing function, so
the forward values are equal, and the gradients are equal too: where a window's maximum is
positive both orders route the gradient to the same (first) maximal element; where it is not,
the ReLU zeroes the gradient in both. The ReLU then runs on a quarter of the elements (a 2x2
pool): on the S2 CNN its forward and backward were about a fifth of a bf16 step
(`benchmarks/train_speed.py --profile s2-cnn`). Where the compiled kernel applies (2x2 pools
of channels-last CPU maps), pool and ReLU run as one pass each way
(fashionlab.native.pool_relu), again with bit-identical values and gradients.

The second: a BatchNorm followed by a ReLU (a `ConvBNReLU` block, or the pair inside a
Sequential, as in `fast`'s conv-BN-ReLU) becomes one `BatchNormReLU`, which runs both as one
compiled pass each way where the kernel applies (fashionlab.native.batchnorm): the ReLU is
applied as the normalised value is stored, and its mask is read as the BatchNorm's gradient
sums are taken. Same parameters and statistics, bit-identical values and gradients.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

from fashionlab.models.base import ConvAct, FashionNet
from fashionlab.models.studies import ConvBNReLU
from fashionlab.native import BatchNormReLU, native_pool_applies, pool_relu


class PoolThenAct(nn.Module):
    """`act(pool(body(x)))` for a stage that computes `act(body(x))` and is followed by a
    max-pool; `body` holds the stage's own modules (the same parameters, in the same order)."""

    def __init__(self, body: nn.Module, act: nn.ReLU, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.body, self.pool, self.act = body, pool, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        if native_pool_applies(x, self.pool):
            return pool_relu(x)
        return self.act(self.pool(x))


def _split_off_relu(stage: nn.Module) -> tuple[nn.Module, nn.ReLU] | None:
    """(body, relu) with stage(x) == relu(body(x)), for the stage types known to end in a
    ReLU; None for anything else. Exact types: a subclass may compute something else."""
    if type(stage) is ConvAct and type(stage.act) is nn.ReLU:
        return stage.conv, stage.act
    if type(stage) is ConvBNReLU and type(stage.act) is nn.ReLU:
        return nn.Sequential(stage.conv, stage.bn), stage.act
    if type(stage) is nn.Sequential and len(stage) > 0:
        last = _split_off_relu(stage[-1])
        if last is not None:
            return nn.Sequential(*list(stage)[:-1], last[0]), last[1]
    return None


def _rewrite(stage: nn.Module, following: nn.Module | None) -> PoolThenAct | None:
    if not isinstance(following, nn.MaxPool2d) or following.return_indices:
        return None
    split = _split_off_relu(stage)
    return None if split is None else PoolThenAct(split[0], split[1], following)


def _fuse_bn_relu(module: nn.Module) -> nn.Module:
    """`module` with each BatchNorm2d -> ReLU pair in it replaced by a `BatchNormReLU`, or the
    module itself when it has none. Rewritten containers are shallow copies sharing the
    original parameter objects; exact types only (a subclass may compute something else)."""
    if type(module) is ConvBNReLU and type(module.act) is nn.ReLU:
        return nn.Sequential(module.conv, BatchNormReLU(module.bn, module.act))
    names = list(module._modules)
    children = [_fuse_bn_relu(module._modules[n]) for n in names]
    fused: OrderedDict[str, nn.Module] = OrderedDict()
    i = 0
    while i < len(names):
        child = children[i]
        following = children[i + 1] if i + 1 < len(children) else None
        if (
            type(module) is nn.Sequential
            and isinstance(child, nn.BatchNorm2d)
            and type(following) is nn.ReLU
        ):
            fused[names[i]] = BatchNormReLU(child, following)
            i += 2
        else:
            fused[names[i]] = child
            i += 1
    if len(fused) == len(names) and all(fused[n] is module._modules[n] for n in names):
        return module
    if type(module) is nn.Sequential:
        return nn.Sequential(fused)
    clone = copy.copy(module)  # same parameters and buffers; only the submodule table is new
    clone._modules = fused
    return clone


def training_view(model: nn.Module) -> nn.Module:
    """The model's training graph with [BatchNorm ->] ReLU -> max-pool stages pooled before
    the ReLU and BatchNorm -> ReLU pairs fused, or the model itself when nothing is rewritten
    (MLPs, nets without max-pools or BatchNorm)."""
    if not isinstance(model, FashionNet):
        return model
    children = list(model.trunk.named_children())
    rewritten: OrderedDict[str, nn.Module] = OrderedDict()
    i = 0
    while i < len(children):
        name, module = children[i]
        following = children[i + 1][1] if i + 1 < len(children) else None
        fused = _rewrite(module, following)
        if fused is not None:
            rewritten[name] = fused
            i += 2
        else:
            rewritten[name] = module
            i += 1
    pooled = model.trunk if len(rewritten) == len(children) else nn.Sequential(rewritten)
    trunk = _fuse_bn_relu(pooled)
    if trunk is model.trunk:
        return model
    # A FashionNet of its own (head(trunk(x))) with no inspection stages: only training runs it.
    view = FashionNet(trunk, model.head)
    view.train(model.training)
    return view
