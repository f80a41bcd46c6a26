"""Multi-layer perceptrons in PyTorch: the general `mlp` and the builder the study ANNs share."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from torch import nn

from fashionlab.models import recipes
from fashionlab.models._checks import check_choice, check_int_list, check_probability
from fashionlab.models._registry import register_model
from fashionlab.models.base import INPUT_SHAPE, NUM_CLASSES, FashionNet

# The S1 activations; Leaky-ReLU slope 0.01 and exact GELU as in the study.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


def build_mlp(
    hidden: int | Sequence[int],
    activation: str = "relu",
    dropout: float | Sequence[float] = 0.0,
) -> FashionNet:
    """flatten -> [Linear -> activation -> Dropout(p) if p > 0] per hidden width -> Linear(10).

    `dropout` is one rate for every hidden layer or one per hidden layer (S2-ANN drops only
    after its second layer). A rate of 0 adds no Dropout module at all.
    """
    widths = check_int_list("hidden", [hidden] if isinstance(hidden, int) else hidden)
    check_choice("activation", activation, ACTIVATIONS)
    if isinstance(dropout, (int, float)):
        rates = [check_probability("dropout", dropout)] * len(widths)
    else:
        if len(dropout) != len(widths):
            raise ValueError(
                f"dropout has {len(dropout)} rates for {len(widths)} hidden layers: {dropout!r}"
            )
        rates = [check_probability(f"dropout[{i}]", p) for i, p in enumerate(dropout)]

    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width_in = INPUT_SHAPE[0] * INPUT_SHAPE[1] * INPUT_SHAPE[2]
    for i, (width, rate) in enumerate(zip(widths, rates, strict=True), start=1):
        layers[f"fc{i}"] = nn.Linear(width_in, width)
        layers[f"act{i}"] = ACTIVATIONS[activation]()
        if rate > 0:
            layers[f"drop{i}"] = nn.Dropout(rate)
        width_in = width
    layers["out"] = nn.Linear(width_in, NUM_CLASSES)
    # An MLP has no feature extractor: its trunk is only the flatten.
    return FashionNet(nn.Sequential(OrderedDict(flatten=nn.Flatten())), nn.Sequential(layers))


@register_model(
    "mlp",
    description="General MLP: model_args hidden (list), activation, dropout",
    recipe=recipes.MLP,
)
def mlp(
    hidden: int | Sequence[int] = (256, 128),
    activation: str = "relu",
    dropout: float | Sequence[float] = 0.2,
) -> FashionNet:
    return build_mlp(hidden, activation, dropout)
