"""`training_view(model)`: the graph the training loop runs, an exact rewrite of the model.

The view computes the same function with the same gradients, on the same parameter objects,
and is used by the training loop only; the model itself (inspection hooks, evaluation,
export, saved weights) keeps its plain PyTorch structure. This is the only place that knows
about the compiled kernels, and every rewrite below is bit-identical (the kernels check
themselves against PyTorch before first use and fall back to its operators when they differ).

1. conv [-> BatchNorm] -> ReLU -> max-pool becomes conv [-> BatchNorm] -> max-pool -> ReLU,
   for a `ConvAct` stage, a `ConvBNReLU` block or a Sequential stage ending in one, followed
   by the pool. Max-pooling commutes with any non-decreasing function, so the values are
   equal; so are the gradients: where a window's maximum is positive both orders route the
   gradient to the same (first) maximal element, where it is not the ReLU zeroes it in both.
   The ReLU then runs on a quarter of the elements; where the kernel applies (2x2 pools of
   channels-last CPU maps) pool and ReLU are one pass each way (`pooling.pool_relu`).
2. A BatchNorm followed by a ReLU (a `ConvBNReLU` block, or the pair in a Sequential) becomes
   one `BatchNormReLU`: one compiled pass each way where the kernel applies.
3. Every remaining plain module with a kernel is wrapped to use it: BatchNorm2d
   (`KernelBatchNorm`), Dropout (`KernelDropout`: the mask drawn in C), MaxPool2d
   (`KernelMaxPool`), and Flatten (`LayoutKeepingFlatten`, no kernel: its gradient stays
   channels-last).

Rewritten containers are shallow copies whose submodule table is new; parameters and buffers
are the model's own objects, so the optimiser, the EMA and the checkpoint see the model.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from fashionlab.accel.batchnorm import BatchNormReLU, KernelBatchNorm
from fashionlab.accel.bernoulli import KernelDropout
from fashionlab.accel.layout import LayoutKeepingFlatten, is_plain_flatten
from fashionlab.accel.pooling import KernelMaxPool, native_pool_applies, pool_relu
from fashionlab.models.base import ConvAct, FashionNet
from fashionlab.models.studies import ConvBNReLU


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


# Modules that already run a kernel: their children are left as they are.
_ACCELERATED = (BatchNormReLU, KernelBatchNorm, KernelDropout, KernelMaxPool)


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


def _pool_before_relu(trunk: nn.Sequential) -> nn.Sequential:
    """Rewrite 1 over a FashionNet trunk's stages (the trunk itself when nothing applies)."""
    children = list(trunk.named_children())
    rewritten: OrderedDict[str, nn.Module] = OrderedDict()
    i = 0
    while i < len(children):
        name, stage = children[i]
        following = children[i + 1][1] if i + 1 < len(children) else None
        split = _split_off_relu(stage)
        if (
            split is not None
            and isinstance(following, nn.MaxPool2d)
            and not following.return_indices
        ):
            rewritten[name] = PoolThenAct(split[0], split[1], following)
            i += 2
        else:
            rewritten[name] = stage
            i += 1
    return trunk if len(rewritten) == len(children) else nn.Sequential(rewritten)


def _with_children(module: nn.Module, children: OrderedDict[str, nn.Module]) -> nn.Module:
    """`module` with a new submodule table, or `module` itself when nothing changed."""
    if len(children) == len(module._modules) and all(
        children.get(n) is m for n, m in module._modules.items()
    ):
        return module
    if type(module) is nn.Sequential:
        return nn.Sequential(children)
    clone = copy.copy(module)  # same parameters and buffers; only the submodule table is new
    clone._modules = children
    return clone


def _fuse_bn_relu(module: nn.Module) -> nn.Module:
    """Rewrite 2: each BatchNorm2d -> ReLU pair in `module` as one `BatchNormReLU`."""
    if type(module) is ConvBNReLU and type(module.act) is nn.ReLU:
        return nn.Sequential(module.conv, BatchNormReLU(module.bn, module.act))
    if isinstance(module, _ACCELERATED):
        return module
    names = list(module._modules)
    children = [_fuse_bn_relu(module._modules[n]) for n in names]
    fused: OrderedDict[str, nn.Module] = OrderedDict()
    i = 0
    while i < len(names):
        child = children[i]
        following = children[i + 1] if i + 1 < len(children) else None
        if (
            type(module) is nn.Sequential
            and type(child) is nn.BatchNorm2d
            and type(following) is nn.ReLU
        ):
            fused[names[i]] = BatchNormReLU(child, following)
            i += 2
        else:
            fused[names[i]] = child
            i += 1
    return _with_children(module, fused)


_SUBSTITUTES: tuple[tuple[Callable[[nn.Module], bool], Callable[[nn.Module], nn.Module]], ...] = (
    (lambda m: type(m) is nn.BatchNorm2d, KernelBatchNorm),
    (lambda m: type(m) is nn.Dropout, KernelDropout),
    (lambda m: type(m) is nn.MaxPool2d and not m.return_indices, KernelMaxPool),
    (is_plain_flatten, lambda m: LayoutKeepingFlatten()),
)


def _substitute(module: nn.Module) -> nn.Module:
    """Rewrite 3: plain modules wrapped to run their kernel (exact types only)."""
    if isinstance(module, PoolThenAct):  # its pool already runs the kernel; its body may not
        body = _substitute(module.body)
        return module if body is module.body else PoolThenAct(body, module.act, module.pool)
    for matches, wrap in _SUBSTITUTES:
        if matches(module):
            return wrap(module)
    if isinstance(module, _ACCELERATED):
        return module
    children = OrderedDict((n, _substitute(m)) for n, m in module._modules.items())
    return _with_children(module, children)


def training_view(model: nn.Module) -> nn.Module:
    """The model's training graph with the three rewrites above, or the model itself when
    none applies."""
    if isinstance(model, FashionNet):
        trunk = _substitute(_fuse_bn_relu(_pool_before_relu(model.trunk)))
        head = _substitute(_fuse_bn_relu(model.head))
        if trunk is model.trunk and head is model.head:
            return model
        # A FashionNet of its own (head(trunk(x))) with no inspection stages.
        view = FashionNet(trunk, head)
        view.train(model.training)
        return view
    return _substitute(_fuse_bn_relu(model))
