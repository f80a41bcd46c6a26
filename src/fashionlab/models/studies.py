"""The plain CNNs and ANNs of studies S0, S2, S3 and S4, layer for layer as docs/studies/
describes them.

Study models take no model_args: they are the studies' fixed networks (vary them with `mlp` or
`s1-cnn5`). Each conv + ReLU is one `ConvAct` stage, so hooks see post-ReLU activation maps.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fashionlab.models import recipes
from fashionlab.models._registry import register_model
from fashionlab.models.base import NUM_CLASSES, ConvAct, FashionNet, trunk_output_dim
from fashionlab.models.mlp import build_mlp


@dataclass(frozen=True)
class Conv:
    """`conv(in->out, kernel, padding)` + ReLU, then MaxPool2d(2) if `pool`."""

    out: int
    kernel: int
    padding: int = 0
    pool: bool = False
    stride: int | tuple[int, int] = 1


def build_plain_cnn(convs: Sequence[Conv], hidden: int, dropout: float = 0.0) -> FashionNet:
    """convs -> flatten -> fc(D->hidden) ReLU [Dropout] -> fc(hidden->10)."""
    trunk: OrderedDict[str, nn.Module] = OrderedDict()
    stages = []
    channels = 1
    for i, c in enumerate(convs, start=1):
        conv = nn.Conv2d(channels, c.out, c.kernel, stride=c.stride, padding=c.padding)
        trunk[f"conv{i}"] = ConvAct(conv)
        stages.append(f"conv{i}")
        if c.pool:
            trunk[f"pool{i}"] = nn.MaxPool2d(2)
        channels = c.out
    trunk["flatten"] = nn.Flatten()
    trunk_seq = nn.Sequential(trunk)

    head: OrderedDict[str, nn.Module] = OrderedDict()
    head["fc1"] = nn.Linear(trunk_output_dim(trunk_seq), hidden)
    head["act1"] = nn.ReLU()
    if dropout > 0:
        head["drop1"] = nn.Dropout(dropout)
    head["out"] = nn.Linear(hidden, NUM_CLASSES)
    return FashionNet(trunk_seq, nn.Sequential(head), stages)


# -- S0 -------------------------------------------------------------------------------------------


@register_model(
    "s0-m1",
    study="S0",
    description="S0 baseline: 2 conv (32, 64) + pool, fc 9216->128, dropout 0.25",
    recipe=recipes.S0_M1,
)
def s0_m1() -> FashionNet:
    return build_plain_cnn([Conv(32, 3), Conv(64, 3, pool=True)], hidden=128, dropout=0.25)


class ConvBNReLU(nn.Module):
    """conv(k=3, p=1, no bias) -> BatchNorm -> ReLU (the bias would be cancelled by BN)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


@register_model(
    "s0-m2",
    study="S0",
    description="S0 deeper: 3 stages x 2 ConvBNReLU (32, 64, 128), GAP, fc 128->128",
    recipe=recipes.S0_M2,
)
def s0_m2() -> FashionNet:
    trunk: OrderedDict[str, nn.Module] = OrderedDict()
    stages = []
    channels = 1
    plan = [(32, True, 0.05), (64, True, 0.10), (128, False, 0.15)]
    for s, (width, pool, rate) in enumerate(plan, start=1):
        trunk[f"stage{s}"] = nn.Sequential(
            OrderedDict(block1=ConvBNReLU(channels, width), block2=ConvBNReLU(width, width))
        )
        stages += [f"stage{s}.block1", f"stage{s}.block2"]
        if pool:
            trunk[f"pool{s}"] = nn.MaxPool2d(2)
        trunk[f"drop{s}"] = nn.Dropout(rate)
        channels = width
    trunk["gap"] = nn.AdaptiveAvgPool2d(1)
    trunk["flatten"] = nn.Flatten()
    head = OrderedDict(
        fc1=nn.Linear(128, 128),
        act1=nn.ReLU(),
        drop1=nn.Dropout(0.20),
        out=nn.Linear(128, NUM_CLASSES),
    )
    return FashionNet(nn.Sequential(trunk), nn.Sequential(head), stages)


# -- S2 -------------------------------------------------------------------------------------------


@register_model(
    "s2-ann",
    study="S2",
    description="S2 Keras-style ANN: 784-256-128-10, dropout 0.2 before the output",
    recipe=recipes.S2,
)
def s2_ann() -> FashionNet:
    return build_mlp([256, 128], "relu", dropout=[0.0, 0.2])


@register_model(
    "s2-cnn",
    study="S2",
    description="S2 CNN: conv 32 pool, conv 64 pool (valid), fc 1600->128, dropout 0.25",
    recipe=recipes.S2,
)
def s2_cnn() -> FashionNet:
    return build_plain_cnn(
        [Conv(32, 3, pool=True), Conv(64, 3, pool=True)], hidden=128, dropout=0.25
    )


# -- S3 -------------------------------------------------------------------------------------------


@register_model(
    "s3-base",
    study="S3",
    description="S3 baseline: conv 32 pool, conv 64 pool (same), fc 3136->128, dropout 0.5",
    recipe=recipes.S3,
    expected_params=421_642,
)
def s3_base() -> FashionNet:
    convs = [Conv(32, 3, 1, pool=True), Conv(64, 3, 1, pool=True)]
    return build_plain_cnn(convs, hidden=128, dropout=0.5)


@register_model(
    "s3-deep",
    study="S3",
    description="S3 deeper: conv 32, 64 (pooled), 128; fc 6272->256, dropout 0.5",
    recipe=recipes.S3,
    expected_params=1_701_130,
)
def s3_deep() -> FashionNet:
    convs = [Conv(32, 3, 1, pool=True), Conv(64, 3, 1, pool=True), Conv(128, 3, 1)]
    return build_plain_cnn(convs, hidden=256, dropout=0.5)


# -- S4 -------------------------------------------------------------------------------------------


@register_model(
    "s4-ann",
    study="S4",
    description="S4 ANN: 784-64-128-10, no dropout",
    recipe=recipes.S4,
)
def s4_ann() -> FashionNet:
    return build_mlp([64, 128], "relu", dropout=0.0)


@register_model(
    "s4-cnn1",
    study="S4",
    description="S4 CNN1: conv 32 (4x4, valid) pool, fc 4608->128",
    recipe=recipes.S4,
)
def s4_cnn1() -> FashionNet:
    return build_plain_cnn([Conv(32, 4, pool=True)], hidden=128)


@register_model(
    "s4-cnn2",
    study="S4",
    description="S4 CNN2: CNN1 with stride (1,1) written out -- the same network",
    recipe=recipes.S4,
)
def s4_cnn2() -> FashionNet:
    # Kept as its own entry on purpose: the study trains it separately, and the report uses
    # `architecture_signature` to say that it is CNN1 again.
    return build_plain_cnn([Conv(32, 4, pool=True, stride=(1, 1))], hidden=128)


@register_model(
    "s4-cnn3",
    study="S4",
    description="S4 CNN3: conv 32 pool, conv 64 pool (valid), fc 1600->128, dropout 0.2",
    recipe=recipes.S4,
)
def s4_cnn3() -> FashionNet:
    return build_plain_cnn(
        [Conv(32, 3, pool=True), Conv(64, 3, pool=True)], hidden=128, dropout=0.2
    )
