"""Size, cost and identity of a model: parameters, forward FLOPs, a Keras-like layer table, and
a canonical architecture signature ("S4-CNN2 is the same network as S4-CNN1").

FLOP convention (per image, forward pass, one dummy 28x28 image in eval mode):
- Conv2d / Linear: a multiply-add counts as 2 FLOPs, plus 1 per output for the bias.
- BatchNorm: 2 per element (eval mode folds it into one scale and one shift).
- Pooling: 1 per window element per output (a comparison for max, an addition for average);
  adaptive pooling: 1 per input element.
- Activations, dropout, flatten: 0 (cheap next to the layers above, and tools disagree).
Only modules are seen (forward hooks): a functional op (F.relu, torch.flatten) in a custom
forward is not counted and not part of the signature. Every model in this package uses modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from fashionlab.models.base import INPUT_SHAPE


@dataclass(frozen=True)
class LayerInfo:
    """One executed leaf module: qualified name, type, output shape (no batch), params, FLOPs."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    flops: int
    signature: str


@dataclass(frozen=True)
class ModelSummary:
    params: int
    trainable_params: int
    flops: int  # forward FLOPs per image, multiply-add = 2
    layers: tuple[LayerInfo, ...]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# -- FLOPs per module type ------------------------------------------------------------------------


def _conv_flops(m: nn.Conv2d, inp: torch.Tensor, out: torch.Tensor) -> int:
    per_output = 2 * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    return out.numel() * (per_output + (1 if m.bias is not None else 0))


def _linear_flops(m: nn.Linear, inp: torch.Tensor, out: torch.Tensor) -> int:
    return out.numel() * (2 * m.in_features + (1 if m.bias is not None else 0))


def _pool_flops(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    return out.numel() * math.prod(_pair(m.kernel_size))


def _adaptive_pool_flops(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    return inp.numel()


def _norm_flops(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    return 2 * inp.numel()


_FLOP_RULES: tuple[tuple[type, Callable[..., int]], ...] = (
    (nn.Conv2d, _conv_flops),
    (nn.Linear, _linear_flops),
    ((nn.MaxPool2d, nn.AvgPool2d), _pool_flops),
    ((nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), _adaptive_pool_flops),
    (nn.modules.batchnorm._BatchNorm, _norm_flops),
)


def _module_flops(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    for kinds, rule in _FLOP_RULES:
        if isinstance(m, kinds):
            return rule(m, inp, out)
    return 0


# -- canonical description of one module ----------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def _conv_padding(m: nn.Conv2d) -> tuple[int, ...] | str:
    # 'same' with an odd effective kernel is plain symmetric padding: write it as numbers so
    # conv(k=3, padding='same') and conv(k=3, padding=1) compare equal. Even kernels pad
    # asymmetrically and stay 'same'.
    if m.padding == "valid":
        return (0, 0)
    if m.padding == "same":
        spans = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size, strict=True)]
        if all(s % 2 == 0 for s in spans):
            return tuple(s // 2 for s in spans)
        return "same"
    return _pair(m.padding)


def describe_module(m: nn.Module) -> str:
    """Type and every setting that changes what the module computes, in a canonical form
    (stride=1 and stride=(1,1) read the same); names and weights play no part."""
    kind = type(m).__name__
    if isinstance(m, nn.Conv2d):
        fields = {
            "in": m.in_channels,
            "out": m.out_channels,
            "kernel": _pair(m.kernel_size),
            "stride": _pair(m.stride),
            "padding": _conv_padding(m),
            "dilation": _pair(m.dilation),
            "groups": m.groups,
            "bias": m.bias is not None,
            "padding_mode": m.padding_mode,
        }
    elif isinstance(m, nn.Linear):
        fields = {"in": m.in_features, "out": m.out_features, "bias": m.bias is not None}
    elif isinstance(m, nn.MaxPool2d):
        fields = {
            "kernel": _pair(m.kernel_size),
            "stride": _pair(m.stride or m.kernel_size),  # stride None means the kernel size
            "padding": _pair(m.padding),
            "dilation": _pair(m.dilation),
            "ceil_mode": m.ceil_mode,
        }
    elif isinstance(m, nn.AvgPool2d):
        fields = {
            "kernel": _pair(m.kernel_size),
            "stride": _pair(m.stride or m.kernel_size),
            "padding": _pair(m.padding),
            "ceil_mode": m.ceil_mode,
            "count_include_pad": m.count_include_pad,
            "divisor_override": m.divisor_override,
        }
    elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        fields = {"output": _pair(m.output_size)}
    elif isinstance(m, nn.modules.batchnorm._BatchNorm):
        fields = {
            "features": m.num_features,
            "eps": m.eps,
            "momentum": m.momentum,
            "affine": m.affine,
            "track_running_stats": m.track_running_stats,
        }
    elif isinstance(m, nn.modules.dropout._DropoutNd):
        fields = {"p": m.p}
    elif isinstance(m, nn.LeakyReLU):
        fields = {"negative_slope": m.negative_slope}
    elif isinstance(m, nn.GELU):
        fields = {"approximate": m.approximate}
    elif isinstance(m, nn.Flatten):
        fields = {"start_dim": m.start_dim, "end_dim": m.end_dim}
    elif isinstance(m, (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity)):
        fields = {}  # `inplace` changes memory use, not the function
    else:
        # Unknown type: its repr settings and the shapes of its own parameters.
        shapes = [f"{n}:{_fmt(tuple(p.shape))}" for n, p in m.named_parameters(recurse=False)]
        extra = m.extra_repr()
        return f"{kind}({', '.join(filter(None, [extra, *shapes]))})"
    return f"{kind}({', '.join(f'{k}={_fmt(v)}' for k, v in fields.items())})"


# -- one traced forward pass ----------------------------------------------------------------------


def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Run one dummy image and record every leaf module call, in execution order."""
    names = {m: n for n, m in model.named_modules()}
    layers: list[LayerInfo] = []

    def hook(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
        inp = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if not isinstance(out, torch.Tensor) or inp is None:
            flops, shape = 0, ()
        else:
            flops, shape = _module_flops(m, inp, out), tuple(out.shape[1:])
        own = sum(p.numel() for p in m.parameters(recurse=False))
        layers.append(
            LayerInfo(names.get(m, "?"), type(m).__name__, shape, own, flops, describe_module(m))
        )

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()  # no BatchNorm statistics update, no dropout
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return layers


def summarize_model(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE) -> ModelSummary:
    """Parameters, forward FLOPs per image and the per-layer table of `model`."""
    layers = tuple(_trace(model, input_shape))
    return ModelSummary(
        params=count_parameters(model),
        trainable_params=count_parameters(model, trainable_only=True),
        flops=sum(layer.flops for layer in layers),
        layers=layers,
    )


def count_flops(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE) -> int:
    """Forward FLOPs for one image (multiply-add = 2; see the module docstring)."""
    return summarize_model(model, input_shape).flops


def architecture_signature(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE) -> str:
    """One line per executed leaf module: canonical description and output shape.

    Equal strings mean the same computation graph up to weights and module names, e.g.
    S4-CNN2 (stride written as (1,1)) == S4-CNN1. Dropout rates count as architecture.
    """
    return "\n".join(
        f"{layer.signature} -> {_fmt(layer.output_shape)}" for layer in _trace(model, input_shape)
    )


def same_architecture(
    a: nn.Module, b: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE
) -> bool:
    return architecture_signature(a, input_shape) == architecture_signature(b, input_shape)


def format_count(n: int) -> str:
    """1234567 -> '1.23M', for tables."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= limit:
            return f"{n / limit:.2f}{suffix}"
    return str(n)


def format_layer_table(summary: ModelSummary) -> str:
    """A Keras-style `model.summary()` table."""
    rows = [("layer", "type", "output", "params", "FLOPs")]
    rows += [
        (layer.name, layer.kind, _fmt(layer.output_shape), f"{layer.params:,}", f"{layer.flops:,}")
        for layer in summary.layers
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("-" * len(lines[0]))
    lines.append(
        f"total params {summary.params:,} (trainable {summary.trainable_params:,}); "
        f"forward FLOPs per image {summary.flops:,} (multiply-add = 2)"
    )
    return "\n".join(lines)
