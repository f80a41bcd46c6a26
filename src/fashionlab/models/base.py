"""`FashionNet`: the one shape every PyTorch model here has, and the inspection protocol.

A `FashionNet` is `trunk` then `head`:

- `trunk` (nn.Sequential): image (N,1,28,28) -> flat features (N,D). For CNNs it is the
  convolutional part up to and including the flatten; for MLPs it is only the flatten.
- `head` (nn.Sequential): (N,D) -> logits (N,10); its last module is the final nn.Linear.

Inspection (the functions at the bottom work on any nn.Module, so a model written without this
base class still gets sensible answers):

- `feature_layers(model)`: ordered {qualified name: module} of the spatial stages, for activation
  maps via forward hooks; each stage's output is a post-activation map (N,C,H,W). MLPs: empty.
- `trunk_features(model, x)`: the trunk output (N,D), i.e. "the network minus its classifier"
  (S1-FEAT trains the NumPy MLP on these: C5 values per image for S1-CNN5).
- `penultimate_features(model, x)`: the input to the final Linear (N,F), for PCA of features.
- `gradcam_layer(model)`: the last stage whose output is still spatial (H*W > 1 for a 28x28
  input), or None for MLPs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn

INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


class ConvAct(nn.Module):
    """Conv2d -> activation: one "stage" whose hooked output is the activation map."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = conv
        self.act = act if act is not None else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class FashionNet(nn.Module):
    """`head(trunk(x))`; `stages` names the trunk children that are activation-map stages."""

    def __init__(self, trunk: nn.Sequential, head: nn.Sequential, stages: Iterable[str] = ()):
        super().__init__()
        if not isinstance(head[-1], nn.Linear):
            raise TypeError("the head must end with the final nn.Linear")
        self.trunk = trunk
        self.head = head
        self._stages = tuple(f"trunk.{name}" for name in stages)
        for name in self._stages:
            self.get_submodule(name)  # fail at construction, not in a figure script

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

    @property
    def classifier(self) -> nn.Linear:
        return self.head[-1]

    def feature_layers(self) -> OrderedDict[str, nn.Module]:
        return OrderedDict((name, self.get_submodule(name)) for name in self._stages)

    def trunk_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def penultimate_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head[:-1](self.trunk(x))

    def gradcam_layer(self) -> nn.Module | None:
        return _last_spatial_stage(self, self.feature_layers())


def trunk_output_dim(trunk: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE) -> int:
    """Width of the flattened trunk output, measured rather than derived by hand."""
    with torch.no_grad():
        return int(trunk(torch.zeros(1, *input_shape)).shape[1])


def stage_output_shapes(
    model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE
) -> OrderedDict[str, tuple[int, ...]]:
    """{stage name: output shape without the batch dimension} for one dummy image."""
    stages = feature_layers(model)
    shapes: OrderedDict[str, tuple[int, ...]] = OrderedDict()
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))
        )
        for name, module in stages.items()
    ]
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model.eval()  # BatchNorm must not update its statistics from a dummy image
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes


def _last_spatial_stage(model: nn.Module, stages: OrderedDict[str, nn.Module]) -> nn.Module | None:
    # A 1x1 map (S1-CNN5 after four poolings, or with 'global' pooling) carries no "where",
    # so Grad-CAM uses the last stage that still has one.
    if not stages:
        return None
    shapes = stage_output_shapes(model)
    spatial = [n for n, s in shapes.items() if len(s) == 3 and s[1] * s[2] > 1]
    return stages[spatial[-1]] if spatial else next(reversed(stages.values()))


# -- the protocol for any nn.Module -------------------------------------------------------------


def feature_layers(model: nn.Module) -> OrderedDict[str, nn.Module]:
    """Activation-map stages in forward order; fallback: every Conv2d."""
    if hasattr(model, "feature_layers"):
        return model.feature_layers()
    return OrderedDict((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


def trunk_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The network minus its classifier head (see the module docstring)."""
    if hasattr(model, "trunk_features"):
        return model.trunk_features(x)
    raise TypeError(f"{type(model).__name__} does not define trunk_features()")


def penultimate_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input to the final Linear; fallback: captured by a hook on the last nn.Linear."""
    if hasattr(model, "penultimate_features"):
        return model.penultimate_features(x)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"{type(model).__name__} has no nn.Linear")
    captured: list[torch.Tensor] = []
    handle = linears[-1].register_forward_hook(lambda _m, inp, _o: captured.append(inp[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[-1]


def gradcam_layer(model: nn.Module) -> nn.Module | None:
    """The module whose output Grad-CAM weighs; None when the model has no spatial stage."""
    if hasattr(model, "gradcam_layer"):
        return model.gradcam_layer()
    return _last_spatial_stage(model, feature_layers(model))
