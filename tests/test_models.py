"""Model zoo: every registered model builds, runs, trains one step; grid, errors, summary, CLI."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from fashionlab.errors import ConfigError
from fashionlab.models import (
    build_config,
    create_model,
    feature_layers,
    get_model_spec,
    gradcam_layer,
    list_models,
    penultimate_features,
    trunk_features,
)
from fashionlab.models.summary import (
    architecture_signature,
    count_flops,
    count_parameters,
    same_architecture,
)

TORCH_MODELS = [n for n in list_models() if get_model_spec(n).framework == "torch"]


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_every_model_trains_one_step(name: str) -> None:
    spec = get_model_spec(name)
    model = create_model(name)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 3, 7, 9])

    logits = model(x)
    assert logits.shape == (4, 10)
    loss = nn.functional.cross_entropy(logits, y)
    assert torch.isfinite(loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    optimizer.zero_grad()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))

    if spec.expected_params is not None:
        assert count_parameters(model) == spec.expected_params
    assert spec.description and spec.recipe
    build_config(name)  # the recipe uses only TrainConfig fields, with valid values

    # Inspection protocol: stages are (C,H,W) maps, features have the shapes the head expects.
    model.eval()
    with torch.no_grad():
        feats = trunk_features(model, x)
        pen = penultimate_features(model, x)
    assert feats.ndim == 2 and feats.shape[0] == 4
    assert pen.shape == (4, model.classifier.in_features)
    assert torch.allclose(model.classifier(pen), model(x), atol=1e-5)
    stages = feature_layers(model)
    target = gradcam_layer(model)
    if stages:
        assert all(model.get_submodule(n) is m for n, m in stages.items())
        assert target is not None and any(target is m for m in stages.values())
    else:
        assert target is None


def test_study_parameter_counts() -> None:
    assert count_parameters(create_model("s3-base")) == 421_642
    assert count_parameters(create_model("s3-deep")) == 1_701_130


GRID = list(itertools.product(["max", "avg", "global"], [2, 3, 5], ["default", "xavier", "he"]))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # k=2, expected
@pytest.mark.parametrize("pooling,kernel,init", GRID)
def test_cnn5_grid_small_channels(pooling: str, kernel: int, init: str) -> None:
    model = create_model(
        "s1-cnn5", pooling=pooling, channels=[4, 4, 4, 4, 4], kernel_size=kernel, init=init
    )
    x = torch.randn(2, 1, 28, 28)
    assert model(x).shape == (2, 10)
    assert trunk_features(model, x).shape == (2, 4)  # C5 features, as S1-FEAT uses them
    assert len(feature_layers(model)) == 5


@pytest.mark.parametrize(
    "channels,hidden",
    [([16] * 5, 32), ([16, 32, 64, 128, 256], 512), ([32, 64, 128, 256, 512], 1024)],
)
def test_cnn5_grid_channel_plans(channels: list[int], hidden: int) -> None:
    model = create_model("s1-cnn5", channels=channels)
    assert model.classifier.in_features == hidden  # the study's H = 2 * C5
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_cnn5_inits_change_weights_and_zero_biases() -> None:
    he = create_model("s1-cnn5", channels=[4] * 5, init="he")
    conv = he.get_submodule("trunk.conv1.conv")
    assert torch.count_nonzero(conv.bias) == 0
    # He (fan-in 9, ReLU gain): std sqrt(2/9) ~ 0.47, well above PyTorch's default bound 1/3.
    assert conv.weight.std() > 0.3


def test_gradcam_layer_is_spatial() -> None:
    # S1-CNN5 with global pooling is 1x1 after conv1: Grad-CAM must fall back to conv1.
    model = create_model("s1-cnn5", pooling="global", channels=[4] * 5)
    assert gradcam_layer(model) is model.get_submodule("trunk.conv1")
    model = create_model("s1-cnn5", pooling="max", channels=[4] * 5)
    assert gradcam_layer(model) is model.get_submodule("trunk.conv4")  # 3x3; conv5 is 1x1
    m2 = create_model("s0-m2")
    assert gradcam_layer(m2) is m2.get_submodule("trunk.stage3.block2")


def test_unknown_model_lists_close_names() -> None:
    with pytest.raises(ConfigError, match="s4-cnn1"):
        create_model("s4-cnn")


@pytest.mark.parametrize(
    "name,args,fragment",
    [
        ("s1-cnn5", {"pooling": "median"}, "pooling"),
        ("s1-cnn5", {"init": "lecun"}, "init"),
        ("s1-cnn5", {"channels": [16, 32, 64]}, "exactly 5"),
        ("s1-cnn5", {"kernel_size": 7}, "kernel_size"),
        ("s1-cnn5", {"hidden": 0}, "hidden"),
        ("mlp", {"activation": "swish"}, "activation"),
        ("mlp", {"dropout": 1.0}, "dropout"),
        ("mlp", {"dropout": -0.1}, "dropout"),
        ("mlp", {"hidden": [128, "wide"]}, "hidden"),
        ("mlp", {"depth": 3}, "depth"),
        ("s0-m1", {"dropout": 0.5}, "dropout"),  # study models take no model_args
        ("fast", {"act": "tanh"}, "act"),
        ("fast", {"widths": [16, 32, 64]}, "4 channel counts"),
    ],
)
def test_bad_model_args(name: str, args: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        create_model(name, **args)
    assert name in str(info.value)


def test_mlp_options() -> None:
    for activation in ("relu", "leaky_relu", "tanh", "gelu"):
        model = create_model("mlp", hidden=[32, 16], activation=activation, dropout=0.0)
        assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert count_parameters(create_model("mlp", hidden=[])) == 784 * 10 + 10


def test_architecture_signature() -> None:
    cnn1, cnn2, cnn3 = (create_model(n) for n in ("s4-cnn1", "s4-cnn2", "s4-cnn3"))
    assert architecture_signature(cnn2) == architecture_signature(cnn1)
    assert architecture_signature(cnn2) != architecture_signature(cnn3)
    # Same layers, different dropout rate: a different network.
    assert not same_architecture(create_model("s2-cnn"), cnn3)
    # padding='same' with k=3 is padding=1.
    a = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 784, 10))
    b = nn.Sequential(nn.Conv2d(1, 2, (3, 3), padding="same"), nn.Flatten(), nn.Linear(1568, 10))
    assert same_architecture(a, b)


def test_flops_by_hand() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, bias=False),  # 2*9 per output * 2*28*28 = 28,224
        nn.BatchNorm2d(2),  # 2 per element * 1,568 = 3,136
        nn.ReLU(),  # 0
        nn.MaxPool2d(2),  # 4 per output * 2*14*14 = 1,568
        nn.Flatten(),
        nn.Linear(392, 10),  # (2*392 + 1) * 10 = 7,850
    )
    assert count_flops(model) == 28_224 + 3_136 + 1_568 + 7_850
    assert model.training  # the trace restores the mode


def test_cli_models(capsys: pytest.CaptureFixture[str]) -> None:
    from fashionlab.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_models())
    assert "s4-cnn2 is the same network as s4-cnn1" in out

    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["s3-base"]["params"] == 421_642
    assert rows["s4-cnn2"]["same_architecture_as"] == ["s4-cnn1"]

    assert main(["models", "s0-m1"]) == 0
    assert "trunk.conv2.conv" in capsys.readouterr().out
    assert main(["models", "no-such-model"]) == 2


def test_fast_activation_choice_changes_only_the_activations() -> None:
    gelu, relu = create_model("fast"), create_model("fast", act="relu")
    kinds = {type(m).__name__ for m in relu.modules()}
    assert "ReLU" in kinds and "GELU" not in kinds
    assert [p.shape for p in gelu.parameters()] == [p.shape for p in relu.parameters()]
    assert relu(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_the_training_flatten_returns_a_channels_last_gradient_with_the_same_values() -> None:
    # A channels-last CNN must stay channels-last in the backward pass: an NCHW gradient from
    # the flatten sends max-pool's backward down its slow NCHW path (accel.layout).
    from fashionlab.accel import LayoutKeepingFlatten

    x = torch.randn(8, 16, 5, 5).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(8, 16 * 5 * 5)
    grads = {}
    for name, flatten in (("plain", nn.Flatten()), ("ours", LayoutKeepingFlatten())):
        leaf = x.clone().requires_grad_()
        below = leaf * 2  # the layer below; its incoming gradient is what we look at
        below.register_hook(lambda g, name=name: grads.__setitem__(name, g))
        out = flatten(below)
        assert torch.equal(out, below.flatten(1))
        out.backward(grad)
    assert grads["ours"].is_contiguous(memory_format=torch.channels_last)
    assert not grads["plain"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(grads["ours"], grads["plain"])
    with torch.no_grad():  # no autograd: the plain op
        assert torch.equal(LayoutKeepingFlatten()(x), x.flatten(1))


@pytest.mark.parametrize("name", ["s2-cnn", "s0-m1", "s1-cnn5", "s0-m2", "s3-deep"])
def test_training_view_pools_before_the_relu_with_the_same_values_and_gradients(name) -> None:
    from fashionlab.accel.view import PoolThenAct, training_view

    model = create_model(name).to(memory_format=torch.channels_last)
    view = training_view(model)
    assert view is not model
    assert any(isinstance(m, PoolThenAct) for m in view.modules())
    assert [id(p) for p in view.parameters()] == [id(p) for p in model.parameters()]
    model.eval(), view.eval()  # no dropout: the same graph both ways
    # Whole numbers make ties between window elements common, where only routing the
    # gradient to the same element gives equal gradients.
    x = torch.randint(-3, 4, (6, 1, 28, 28)).float().contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (6,))
    grads = []
    for net in (model, view):
        net.zero_grad()
        out = net(x)
        nn.functional.cross_entropy(out, y).backward()
        grads.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    for g_model, g_view in zip(grads[0][1], grads[1][1], strict=True):
        assert torch.equal(g_model, g_view)


@pytest.mark.parametrize(
    "name", [n for n in list_models() if get_model_spec(n).framework == "torch"]
)
def test_every_training_view_trains_like_the_model_it_views(name: str) -> None:
    # Train mode (dropout on, BatchNorm on batch statistics), the same seed: the view must
    # give the same logits and gradients, on the model's own parameters, and leave the model
    # itself plain PyTorch (hooks, evaluation and export see its structure).
    from fashionlab.accel import training_view

    model = create_model(name).to(memory_format=torch.channels_last).train()
    view = training_view(model)
    assert [id(p) for p in view.parameters()] == [id(p) for p in model.parameters()]
    assert [id(b) for b in view.buffers()] == [id(b) for b in model.buffers()]
    assert all(type(m).__module__.startswith("torch.") or "fashionlab.models" in
               type(m).__module__ for m in model.modules())  # fmt: skip
    x = torch.randn(6, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (6,))
    results = []
    for net in (model, view):
        torch.manual_seed(0)
        net.zero_grad()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        out = net(x)
        nn.functional.cross_entropy(out, y).backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
        model.load_state_dict(state)  # BatchNorm's running statistics moved: start equal
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert torch.equal(a, b)
