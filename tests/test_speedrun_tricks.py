"""The speed-run tricks: patch-whitening and identity initialisation, the normalisation layers'
learning-rate scale, progressive resizing (low-resolution first epochs), the Muon optimiser and
alternating flips."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from fashionlab.cli import main
from fashionlab.data.transforms import shrink
from fashionlab.models import build_config, create_model
from fashionlab.runs import load_history
from fashionlab.training import train
from fashionlab.training import trainer as trainer_module
from fashionlab.training.conv_init import dirac_init, whiten_first_conv
from fashionlab.training.muon import MuonSGD, orthogonalise
from fashionlab.training.optim import build_optimizer, build_scheduler, parameter_groups

TINY = {"train_subset": 256, "eval_subset": 200, "batch_size": 64, "val_fraction": 0.1}


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def test_whitened_first_conv_decorrelates_patches(fashion):
    model = create_model("fast")
    images = fashion.train_images[:500].float().unsqueeze(1) / 255
    images = (images - images.mean()) / images.std()
    assert whiten_first_conv(model, images) == 16  # 8 +/- pairs of the 9 patch directions
    out = _first_conv(model)(images)[:, ::2]  # one filter of each pair
    features = out.permute(0, 2, 3, 1).reshape(-1, 8).double()
    features -= features.mean(0)
    covariance = features.T @ features / len(features)
    # Unit variance along the leading directions (the eps damps the weakest a little), and no
    # correlation between them.
    assert torch.allclose(covariance.diag()[:6], torch.ones(6, dtype=torch.float64), atol=0.05)
    off_diagonal = covariance - torch.diag(covariance.diag())
    assert off_diagonal.abs().max() < 0.05
    pairs = _first_conv(model).weight[:16].reshape(8, 2, -1)
    assert torch.equal(pairs[:, 0], -pairs[:, 1])


def test_whitening_needs_a_convolution_on_the_image_channels():
    with pytest.raises(ValueError, match="has none"):
        whiten_first_conv(create_model("mlp"), torch.zeros(4, 1, 28, 28))
    with pytest.raises(ValueError, match="the images. 3"):
        whiten_first_conv(create_model("fast"), torch.zeros(4, 3, 28, 28))


def test_dirac_init_makes_square_convolutions_pass_their_input_through():
    model = create_model("fast")
    assert dirac_init(model) == 6  # every 3x3 conv after the stem
    conv = model.trunk.group1.residual[0]  # 32 -> 32
    x = torch.randn(2, 32, 14, 14)
    assert torch.allclose(conv(x), x)
    widening = model.trunk.group2.conv  # 32 -> 64: the first 32 outputs copy the input,
    before = widening.weight[32:].clone()  # the other 32 keep their random initialisation
    dirac_init(model)
    y = torch.randn(2, 32, 14, 14)
    assert torch.allclose(widening(y)[:, :32], y)
    assert torch.equal(widening.weight[32:], before)
    assert not torch.equal(_first_conv(model).weight, torch.zeros_like(_first_conv(model).weight))


def test_norm_layers_get_their_own_learning_rate_and_decay():
    model = create_model("fast")
    config = build_config("fast", {"norm_lr_scale": 16, "lr": 0.2, "weight_decay": 5e-4})
    groups = parameter_groups(config, model)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    norm_ids = {id(p) for m in norms for p in m.parameters()}
    assert {id(p) for p in groups[1]["params"]} == norm_ids
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    optimizer = build_optimizer(config, groups)
    assert [g["lr"] for g in optimizer.param_groups] == [0.2, 0.2 * 16]
    assert optimizer.param_groups[1]["weight_decay"] == pytest.approx(5e-4 / 16)
    scheduler = build_scheduler(config, optimizer, steps_per_epoch=10)
    for _ in range(60):  # past the one-cycle peak (30% of 160 steps)
        optimizer.step()
        scheduler.step()
    low, high = (g["lr"] for g in optimizer.param_groups)
    assert high == pytest.approx(16 * low)
    # The default is one plain group, as before.
    plain = build_config("fast", {})
    assert not isinstance(parameter_groups(plain, model), list)


def test_shrink_averages_areas_and_keeps_full_size_batches():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(shrink(x, 2), F.avg_pool2d(x, 2))
    assert shrink(x, 4) is x
    assert shrink(torch.rand(3, 1, 28, 28), 20).shape == (3, 1, 20, 20)


def test_low_res_epochs_train_on_shrunk_batches(tmp_path, monkeypatch):
    seen: list[tuple[int, int]] = []
    model_forward = nn.Conv2d.forward

    def spy(self, x):
        if self.in_channels == 1 and torch.is_grad_enabled():
            seen.append(tuple(x.shape[-2:]))
        return model_forward(self, x)

    monkeypatch.setattr(nn.Conv2d, "forward", spy)
    config = build_config("fast", {**TINY, "epochs": 3, "low_res": 20, "low_res_epochs": 2})
    run = train(config, tmp_path, quiet=True)
    steps = len(seen) // 3
    assert set(seen[: 2 * steps]) == {(20, 20)} and set(seen[2 * steps :]) == {(28, 28)}
    assert len(load_history(run)) == 3


def test_all_tricks_train_and_resume_to_the_same_weights(tmp_path):
    tricks = {
        **TINY,
        "epochs": 2,
        "whiten_init": True,
        "dirac_init": True,
        "norm_lr_scale": 8,
        "low_res": 22,
        "low_res_epochs": 1,
        "optimizer": "muon",
        "hflip_mode": "alternate",
    }
    whole = train(build_config("fast", {**tricks, "name": "whole"}), tmp_path, quiet=True)
    assert (whole / "complete").exists()
    code = main(
        ["train", "--model", "fast", "--runs-dir", str(tmp_path), "--name", "parts", "--quiet"]
        + [f"--set={k}={v}" for k, v in tricks.items()]
        + ["--stop-after", "1"]
    )
    assert code == 0
    assert main(["train", "--resume", str(tmp_path / "parts"), "--quiet"]) == 0
    a = load_file(whole / "model.safetensors")
    b = load_file(tmp_path / "parts" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "sets, message",
    [
        (["low_res=20"], "low_res and low_res_epochs go together"),
        (["low_res_epochs=3"], "low_res and low_res_epochs go together"),
        (["low_res=40", "low_res_epochs=1"], "low_res"),
        (["norm_lr_scale=0"], "norm_lr_scale"),
        (["hflip_mode=sometimes"], "hflip_mode"),
        (["optimizer=muon", "muon_lr=0"], "muon_lr"),
        (["optimizer=muon", "muon_momentum=1"], "muon_momentum"),
        (["optimizer=lion"], "optimizer"),
    ],
)
def test_bad_trick_settings_are_one_line_errors(tmp_path, capsys, sets, message):
    args = ["train", "--model", "fast", "--runs-dir", str(tmp_path), "--quiet"]
    code = main(args + [f"--set={s}" for s in sets])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and message in err[0], err


def test_whitening_a_model_without_convolutions_is_a_one_line_error(tmp_path, capsys):
    args = ["train", "--model", "mlp", "--runs-dir", str(tmp_path), "--quiet"]
    code = main(args + ["--set=whiten_init=true", "--set=train_subset=64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "whiten_init" in err[0], err
    assert not list(tmp_path.glob("*/*.safetensors")) and not list(tmp_path.glob("*/*.pt"))


@pytest.mark.parametrize("shape", [(64, 288), (288, 64), (10, 10)])
def test_orthogonalise_sets_every_singular_value_near_one_and_keeps_the_directions(shape):
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(shape[0], min(shape)))
    v, _ = torch.linalg.qr(torch.randn(shape[1], min(shape)))
    # Singular values from 1 down to 0.1 (three steps lift a value by 3.4^3 at most, so much
    # weaker directions than that stay short: Muon's documented compromise).
    spread = torch.logspace(0, -1, min(shape))
    matrix = 7.0 * u @ torch.diag(spread) @ v.T
    out = orthogonalise(matrix)
    assert out.shape == matrix.shape
    singular = torch.linalg.svdvals(out)
    # The iteration pushes values of 0.1 and of 1 alike into about [0.7, 1.2]...
    assert singular.min() > 0.6 and singular.max() < 1.25, singular
    # ... without turning the directions: out is close to u v^T, not to another rotation.
    target = u @ v.T
    cosine = (out * target).sum() / (out.norm() * target.norm())
    assert cosine > 0.95
    with pytest.raises(ValueError, match="2-D"):
        orthogonalise(torch.zeros(3, 3, 3))


def test_muon_takes_the_hidden_filters_and_sgd_the_rest():
    model = create_model("fast")
    config = build_config("fast", {"optimizer": "muon", "muon_lr": 0.03, "norm_lr_scale": 4})
    groups = parameter_groups(config, model)
    muon = next(g for g in groups if g.get("muon"))
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    # every conv but the stem's (it reads the pixels); the classifier stays with SGD too
    assert {id(p) for p in muon["params"]} == {id(p) for p in convs[1:]}
    assert muon["lr"] == 0.03
    norms = groups[1]["params"]
    assert all(p.ndim == 1 for p in norms) and len(norms) == 2 * 7  # 7 BatchNorms
    counted = sum(len(g["params"]) for g in groups)
    assert counted == len(list(model.parameters()))
    optimizer = build_optimizer(config, groups)
    assert isinstance(optimizer, MuonSGD)
    # One-cycle scales each group from its own peak, the Muon group's included.
    scheduler = build_scheduler(config, optimizer, steps_per_epoch=10)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    for _ in range(40):
        optimizer.step()
        scheduler.step()
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs[2] / lrs[0] == pytest.approx(0.03 / config.lr)


def test_muon_sgd_groups_step_as_torch_sgd_and_muon_groups_orthogonally():
    torch.manual_seed(1)
    plain, filters = torch.randn(5, 3), torch.randn(8, 4, 3, 3)
    twin = plain.clone()
    p = torch.nn.Parameter(plain.clone())
    q = torch.nn.Parameter(twin)
    w = torch.nn.Parameter(filters.clone())
    ours = MuonSGD(
        [{"params": [p]}, {"params": [w], "muon": True, "lr": 0.05}],
        lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3,
    )  # fmt: skip
    reference = torch.optim.SGD([q], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    for step in range(3):
        grad = torch.randn(5, 3, generator=torch.Generator().manual_seed(step))
        p.grad, q.grad = grad.clone(), grad.clone()
        w.grad = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(10 + step))
        before = w.detach().clone()
        ours.step()
        reference.step()
        assert torch.allclose(p, q, atol=1e-6)
        # The filters moved by lr times a matrix with singular values near 1 (after the tiny
        # decoupled decay), whatever the gradient's scale.
        moved = (before * (1 - 0.05 * 1e-3) - w.detach()).reshape(8, -1) / 0.05
        singular = torch.linalg.svdvals(moved)
        assert singular.min() > 0.6 and singular.max() < 1.25
    with pytest.raises(ValueError, match="2-D or more"):
        MuonSGD([{"params": [torch.nn.Parameter(torch.zeros(3))], "muon": True}], lr=0.1)


def test_muon_momentum_survives_one_cycle_and_weight_norm_fixes_each_filter_norm():
    model = create_model("fast")
    settings = {"optimizer": "muon", "muon_momentum": 0.6, "muon_weight_norm": True}
    config = build_config("fast", settings)
    optimizer = build_optimizer(config, parameter_groups(config, model))
    scheduler = build_scheduler(config, optimizer, steps_per_epoch=10)
    muon = next(g for g in optimizer.param_groups if g["muon"])
    sgd = next(g for g in optimizer.param_groups if not g["muon"])
    for _ in range(4):
        model(torch.randn(4, 1, 28, 28)).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        # One-cycle still cycles the SGD group's momentum, but leaves Muon's where it was set.
        assert muon["momentum"] == 0.6 and 0.85 <= sgd["momentum"] <= 0.95
    assert sgd["momentum"] != 0.95  # it did cycle
    for p in muon["params"]:
        # rescaled to sqrt(rows) before the last step, then moved by a step of lr * ~1 per row
        rows = p.shape[0]
        assert p.norm().item() == pytest.approx(rows**0.5, rel=0.05)
    # Without weight_norm the filters keep their initial scale (about sqrt(rows / 3)), and the
    # Muon group follows the common momentum.
    plain = build_config("fast", {"optimizer": "muon"})
    model = create_model("fast")
    optimizer = build_optimizer(plain, parameter_groups(plain, model))
    muon = next(g for g in optimizer.param_groups if g["muon"])
    assert muon["momentum"] == plain.momentum and not muon["weight_norm"]
    assert all(p.norm().item() < 0.8 * p.shape[0] ** 0.5 for p in muon["params"])


def test_muon_trains_the_speedrun_net_better_than_chance(tmp_path):
    config = build_config("fast", {**TINY, "epochs": 2, "optimizer": "muon", "ema_decay": 0})
    run = train(config, tmp_path, quiet=True)
    history = load_history(run)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert (run / "complete").exists()


def test_alternating_flips_mirror_each_image_every_other_epoch(tmp_path, monkeypatch):
    masks: list[torch.Tensor] = []
    original = trainer_module.augment_batch

    def spy(x, generator, crop_padding, crop_mode, hflip, erasing, flip_mask):
        masks.append(flip_mask)
        return original(x, generator, crop_padding, crop_mode, hflip, erasing, flip_mask)

    seen: list[torch.Tensor] = []
    original_iter = trainer_module.BatchIterator.__iter__

    def record(self):
        for images, labels, indices in original_iter(self):
            seen.append(indices)
            yield images, labels, indices

    monkeypatch.setattr(trainer_module, "augment_batch", spy)
    monkeypatch.setattr(trainer_module.BatchIterator, "__iter__", record)
    settings = {**TINY, "val_fraction": 0, "epochs": 3, "hflip_mode": "alternate", "ema_decay": 0}
    train(build_config("fast", settings), tmp_path, quiet=True)
    steps = len(masks) // 3
    flipped = []
    for epoch in range(3):
        state = torch.zeros(256, dtype=torch.long) - 1
        part = slice(epoch * steps, (epoch + 1) * steps)
        for m, i in zip(masks[part], seen[part], strict=True):
            state[i] = m.long()
        assert (state >= 0).all()  # every image seen once per epoch
        flipped.append(state.bool())
    assert 64 < int(flipped[0].sum()) < 192  # a random half starts mirrored
    assert torch.equal(flipped[1], ~flipped[0]) and torch.equal(flipped[2], flipped[0])
