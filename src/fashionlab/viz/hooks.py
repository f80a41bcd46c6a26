"""Find layers generically and record what they output, through hooks that are always removed.

Nothing here knows any architecture: layers are found with `named_modules()` by type or name, so
every registered model (and any user's nn.Module) works. A model without the layers asked for
(an MLP has no Conv2d) gives None, never an exception, so a report can simply skip the figure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fashionlab.errors import ConfigError
from fashionlab.viz._common import as_images

Normalize = Callable[[torch.Tensor], torch.Tensor]


def find_layers(model: nn.Module, kind: type[nn.Module] = nn.Conv2d) -> list[tuple[str, nn.Module]]:
    """(name, module) of every submodule of type `kind`, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kind)]


def resolve_layers(
    model: nn.Module, names: Sequence[str] | None, kind: type[nn.Module] = nn.Conv2d
) -> list[tuple[str, nn.Module]]:
    """The named layers (unknown name -> ConfigError), or every layer of type `kind` if None."""
    if names is None:
        return find_layers(model, kind)
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        known = ", ".join(n for n in modules if n) or "(none)"
        raise ConfigError(f"unknown layer(s) {', '.join(missing)}; the model has: {known}")
    return [(n, modules[n]) for n in names]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate with dropout off and BatchNorm on running stats; restore the old mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def record_outputs(
    model: nn.Module, layer_names: Sequence[str] | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that store each layer's output (a detached copy) under its name while the
    block runs; default layers: every nn.Conv2d.

    The copy matters: an in-place op after the layer (ReLU(inplace=True)) would otherwise
    overwrite what we stored. Hooks are removed on exit, even when the forward pass raises.
    """
    layers = resolve_layers(model, layer_names)
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                store[name] = output.detach().clone()

        return hook

    try:
        for name, module in layers:
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def to_model_input(images: Any, normalize: Normalize) -> torch.Tensor:
    """uint8 images (N, 28, 28) (NumPy or torch) -> the model's float input via `normalize`."""
    arr = as_images(images)
    # a copy: the caller's array may be read-only (np.load, mmap), which torch warns about
    x = normalize(torch.from_numpy(arr.copy()))
    if x.ndim != 4:
        raise ConfigError(f"normalize must return (N, 1, H, W), got shape {tuple(x.shape)}")
    return x


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def capture_activations(
    model: nn.Module,
    images: Any,
    normalize: Normalize,
    layer_names: Sequence[str] | None = None,
) -> dict[str, np.ndarray] | None:
    """Outputs of the named layers (default: every nn.Conv2d) for uint8 `images`.

    Returns {layer name: float32 array (N, ...)} in layer order, or None when the model has no
    Conv2d and no names were given (an MLP has no feature maps).
    """
    layers = resolve_layers(model, layer_names)
    if not layers:
        return None
    x = to_model_input(images, normalize).to(model_device(model))
    with eval_mode(model), torch.no_grad(), record_outputs(model, [n for n, _ in layers]) as store:
        model(x)
    return {name: store[name].float().cpu().numpy() for name, _ in layers if name in store}
