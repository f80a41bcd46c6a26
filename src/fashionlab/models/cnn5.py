"""S1-CNN5: the five-conv grid of study S1 (pooling x channels x kernel x init).

Five `conv(k, p=(k-1)//2)` + ReLU layers (even k: padding 'same', the S1 decision for k=2),
a pooling layer after each of the first four, flatten -> fc(C5->H) ReLU -> fc(H->10).
'global' pooling is AdaptiveAvgPool2d(1) after every layer, as the study did: the map is 1x1
from the first layer on, which is why that column of the grid collapses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from torch import nn

from fashionlab.models import recipes
from fashionlab.models._checks import check_choice, check_int_list, check_positive_int
from fashionlab.models._registry import register_model
from fashionlab.models.base import NUM_CLASSES, ConvAct, FashionNet

POOLINGS: dict[str, Callable[[], nn.Module]] = {
    "max": lambda: nn.MaxPool2d(2),
    "avg": lambda: nn.AvgPool2d(2),
    "global": lambda: nn.AdaptiveAvgPool2d(1),
}
KERNEL_SIZES = (2, 3, 5)
INITS = ("default", "xavier", "he")
# The study's grid: channel plan -> hidden width. Its rule is H = 2 * C5, used as the default.
GRID_CHANNELS = ((16, 16, 16, 16, 16), (16, 32, 64, 128, 256), (32, 64, 128, 256, 512))


def init_weights(model: nn.Module, init: str) -> None:
    """'default' keeps PyTorch's init; 'xavier' / 'he' redraw conv and linear weights and zero
    the biases."""
    if init == "default":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if init == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:  # he: normal, fan-in, ReLU gain (nn.init.kaiming_normal_)
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


@register_model(
    "s1-cnn5",
    study="S1",
    description="S1 5-conv grid: model_args pooling, channels, kernel_size, init, hidden",
    recipe=recipes.S1_CNN5,
)
def s1_cnn5(
    pooling: str = "max",
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    kernel_size: int = 3,
    init: str = "default",
    hidden: int | None = None,
) -> FashionNet:
    check_choice("pooling", pooling, POOLINGS)
    widths = check_int_list("channels", channels, length=5)
    check_choice("kernel_size", check_positive_int("kernel_size", kernel_size), KERNEL_SIZES)
    check_choice("init", init, INITS)
    hidden = 2 * widths[-1] if hidden is None else check_positive_int("hidden", hidden)
    padding: int | str = (kernel_size - 1) // 2 if kernel_size % 2 else "same"

    trunk: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = 1
    for i, width in enumerate(widths, start=1):
        trunk[f"conv{i}"] = ConvAct(nn.Conv2d(c_in, width, kernel_size, padding=padding))
        if i < len(widths):
            trunk[f"pool{i}"] = POOLINGS[pooling]()
        c_in = width
    # 28 -> 14 -> 7 -> 3 -> 1 with max/avg, 1x1 throughout with global: flatten gives C5.
    trunk["flatten"] = nn.Flatten()
    head = OrderedDict(
        fc1=nn.Linear(widths[-1], hidden), act1=nn.ReLU(), out=nn.Linear(hidden, NUM_CLASSES)
    )
    model = FashionNet(nn.Sequential(trunk), nn.Sequential(head), [f"conv{i}" for i in range(1, 6)])
    init_weights(model, init)
    return model
