"""`fast`: the speed-run family, built for accuracy per CPU-second rather than for a study.

Shape (after KellerJordan/cifar10-airbench, adapted to 28x28 grey images): a stem conv, then
three groups that each go narrow-to-wide -- conv, 2x2 max-pool, BN, GELU (or ReLU), then a
residual conv-BN-GELU at the pooled size -- then a global max-pool and a bias-free linear
classifier whose logits are scaled down (a small logit scale makes the first epochs stable at a high
learning rate). Spatial sizes 28 -> 14 -> 7 -> 3. Convolutions have no bias (BN follows).

Its recipe (`recipes.FAST`) is the rest of the speed-run: whole-batch pad-crop + flip
augmentation, label smoothing, Nesterov SGD with one-cycle warm-up and decay, bf16 on
capable hardware, an EMA of the weights and flip test-time augmentation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from fashionlab.models import recipes
from fashionlab.models._checks import check_choice, check_int_list
from fashionlab.models._registry import register_model
from fashionlab.models.base import NUM_CLASSES, FashionNet

# GELU is airbench's choice; ReLU's forward and backward cost a fraction of GELU's on CPU
# (GELU was about 16% of a bf16 training step of the default net here).
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


def _conv_bn_act(c_in: int, c_out: int, act: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        ACTIVATIONS[act](),
    )


class ConvGroup(nn.Module):
    """conv(c_in -> c_out) -> maxpool 2 -> BN -> act, then x + conv-BN-act(x)."""

    def __init__(self, c_in: int, c_out: int, act: str = "gelu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = ACTIVATIONS[act]()
        self.residual = _conv_bn_act(c_out, c_out, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.pool(self.conv(x))))
        return x + self.residual(x)


class ScaledLinear(nn.Linear):
    """Linear layer whose output is multiplied by a fixed `scale` (airbench's 1/9 trick)."""

    def __init__(self, in_features: int, out_features: int, scale: float) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.scale


@register_model(
    "fast",
    study="speedrun",
    description="Speed-run net: stem + 3 residual conv groups (narrow to wide), max-pool head; "
    "model_args widths",
    recipe=recipes.FAST,
)
def fast(
    widths: Sequence[int] = (16, 32, 64, 128), logit_scale: float = 1 / 9, act: str = "gelu"
) -> FashionNet:
    """`widths` = (stem, group1, group2, group3) channels; `act` the activation."""
    widths = check_int_list("widths", widths)
    check_choice("act", act, ACTIVATIONS)
    if len(widths) != 4:
        raise ValueError(f"widths needs 4 channel counts (stem, 3 groups), got {widths!r}")
    stem, w1, w2, w3 = widths
    trunk = nn.Sequential(
        OrderedDict(
            stem=_conv_bn_act(1, stem, act),
            group1=ConvGroup(stem, w1, act),
            group2=ConvGroup(w1, w2, act),
            group3=ConvGroup(w2, w3, act),
            pool=nn.AdaptiveMaxPool2d(1),
            flatten=nn.Flatten(),
        )
    )
    head = nn.Sequential(OrderedDict(out=ScaledLinear(w3, NUM_CLASSES, logit_scale)))
    return FashionNet(trunk, head, stages=("stem", "group1", "group2", "group3"))
