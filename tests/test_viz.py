"""fashionlab.viz: every figure is a readable PNG; hooks never outlive their call; Grad-CAM is
a correct, bounded 28x28 map; MLPs (no Conv2d) get None instead of a crash."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import image as mpimg
from torch import nn

from fashionlab import evaluation as ev
from fashionlab import viz
from fashionlab.errors import ConfigError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class TwoConv(nn.Module):
    """A tiny conv net; in-place ReLUs check that hooks store the layer's own output."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(6 * 7 * 7, 16),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(16, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 12), nn.ReLU(), nn.Linear(12, 10))


def normalize(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() / 255.0 - 0.286) / 0.353).unsqueeze(1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    labels = np.tile(np.arange(10), 4).astype(np.int64)
    return images, labels


@pytest.fixture(scope="module")
def conv_model():
    torch.manual_seed(0)
    return TwoConv()


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert not list(path.parent.glob(".*.tmp")), "atomic write left a temp file"


def assert_no_hooks(model: nn.Module) -> None:
    for module in model.modules():
        assert not module._forward_hooks
        assert not module._forward_pre_hooks
        assert not module._backward_hooks


def history(epochs: int = 5):
    lrs = [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]
    return [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_accuracy": 1 - 0.5 / e,
            "val_loss": 1.1 / e,
            "val_accuracy": 1 - 0.6 / e,
            "lr": lrs[e - 1],
            "seconds": 1.0,
        }
        for e in range(1, epochs + 1)
    ]


# ------------------------------------------------------------------ data and training figures


def test_data_figures(tmp_path, data):
    images, labels = data
    out = viz.plot_sample_grid(images, labels, tmp_path / "grid.png", per_class=3)
    assert out == tmp_path / "grid.png"
    assert_png(out)
    out = viz.plot_class_distribution(
        {"train": labels, "val": labels[:20], "test": torch.as_tensor(labels[:10])},
        tmp_path / "sub" / "dist.png",
    )
    assert_png(out)


def test_training_figures(tmp_path):
    assert viz.lr_changes(history()) == [(3.0, 5e-4), (5.0, 2.5e-4)]
    assert_png(viz.plot_learning_curves(history(), tmp_path / "lc.png", "run", best_epoch=4))
    # history.csv rows read as strings, and a run without validation, still plot
    as_text = [
        {k: str(v) for k, v in row.items()} | {"val_loss": "", "val_accuracy": ""}
        for row in history()
    ]
    assert_png(viz.plot_learning_curves(as_text, tmp_path / "lc_text.png"))
    out = viz.plot_validation_curves({"M1": history(), "M2": history(3)}, tmp_path / "vc.png")
    assert_png(out)
    with pytest.raises(ConfigError, match="empty"):
        viz.plot_learning_curves([], tmp_path / "x.png")


def test_evaluation_figures(tmp_path, data):
    images, labels = data
    logits = np.random.default_rng(1).normal(size=(40, 10)).astype(np.float32)
    assert_png(viz.plot_confusion_matrix(ev.confusion_matrix(labels, logits), tmp_path / "cm.png"))
    acc = ev.per_class_accuracy(labels, logits)
    assert_png(viz.plot_per_class_accuracy(acc, tmp_path / "pca1.png"))
    assert_png(viz.plot_per_class_accuracy({"a": acc, "b": acc[::-1]}, tmp_path / "pca2.png"))
    m = ev.most_confident_mistakes(labels, logits, k=5)
    out = viz.plot_misclassified(
        images[m.indices], m.true, m.predicted, m.confidence, tmp_path / "mis.png", ncols=3
    )
    assert_png(out)
    with pytest.raises(ConfigError, match="square"):
        viz.plot_confusion_matrix(np.zeros((2, 3)), tmp_path / "bad.png")
    with pytest.raises(ConfigError, match="uint8"):
        viz.plot_misclassified(
            images[:2].astype(np.float32), [0, 1], [1, 0], [0.9, 0.8], tmp_path / "bad.png"
        )
    assert not (tmp_path / "bad.png").exists()


# ------------------------------------------------------------------ model figures and hooks


def test_filters(tmp_path, conv_model):
    name, filters = viz.first_layer_filters(conv_model)
    assert name == "features.0" and filters.shape == (4, 3, 3)
    assert_png(viz.plot_first_layer_filters(conv_model, tmp_path / "f.png"))
    name, filters = viz.first_layer_filters(make_mlp())
    assert name == "1" and filters.shape == (12, 28, 28)
    assert_png(viz.plot_first_layer_filters(make_mlp(), tmp_path / "f_mlp.png"))
    assert viz.plot_first_layer_filters(nn.Sequential(nn.ReLU()), tmp_path / "none.png") is None


def test_activations_and_hooks_removed(tmp_path, data, conv_model):
    images, _ = data
    acts = viz.capture_activations(conv_model, images[:3], normalize)
    assert list(acts) == ["features.0", "features.3"]
    assert acts["features.0"].shape == (3, 4, 28, 28)
    assert acts["features.3"].shape == (3, 6, 14, 14)
    # the stored conv output is the pre-ReLU one, despite the in-place ReLU after it
    assert (acts["features.0"] < 0).any()
    assert_no_hooks(conv_model)
    assert conv_model.training  # mode restored after the eval-mode pass

    out = viz.plot_activation_maps(conv_model, images[:2], normalize, tmp_path / "act.png")
    assert_png(out)
    named = viz.plot_activation_maps(
        conv_model, images, normalize, tmp_path / "act2.png", layer_names=["features.1"]
    )
    assert_png(named)
    assert_no_hooks(conv_model)
    with pytest.raises(ConfigError, match="unknown layer"):
        viz.capture_activations(conv_model, images[:1], normalize, ["nope"])
    with pytest.raises(ConfigError, match="not feature maps"):
        viz.plot_activation_maps(
            conv_model, images[:1], normalize, tmp_path / "x.png", layer_names=["head.1"]
        )
    assert_no_hooks(conv_model)

    mlp = make_mlp()
    assert viz.capture_activations(mlp, images[:2], normalize) is None
    assert viz.plot_activation_maps(mlp, images[:2], normalize, tmp_path / "mlp.png") is None
    assert not (tmp_path / "mlp.png").exists()


def test_record_outputs_removes_hooks_on_error(conv_model):
    with pytest.raises(RuntimeError, match="boom"):
        with viz.record_outputs(conv_model) as store:
            conv_model(torch.zeros(1, 1, 28, 28))
            assert set(store) == {"features.0", "features.3"}
            raise RuntimeError("boom")
    assert_no_hooks(conv_model)


# ------------------------------------------------------------------ Grad-CAM


def test_gradcam_shape_range_and_no_side_effects(tmp_path, data, conv_model):
    images, labels = data
    cam = viz.gradcam(conv_model, images[0], normalize)
    assert cam.shape == (28, 28) and cam.dtype == np.float32
    assert np.all(np.isfinite(cam)) and cam.min() >= 0.0 and cam.max() <= 1.0
    assert all(p.grad is None for p in conv_model.parameters())  # autograd.grad, not backward
    assert conv_model.training
    assert_no_hooks(conv_model)

    # a web handler may call it under inference_mode, with a frozen model
    frozen = TwoConv().requires_grad_(False).eval()
    with torch.inference_mode():
        res = viz.compute_gradcam(frozen, images[:4], normalize, target_layer="features.0")
    assert res.cams.shape == (4, 28, 28) and res.layer == "features.0"
    assert res.classes.shape == (4,) and np.all((res.probabilities > 0) & (res.probabilities <= 1))
    with torch.no_grad():
        predicted = frozen(normalize(torch.from_numpy(images[:4]))).argmax(1).numpy()
    assert np.array_equal(res.classes, predicted)

    overlay = viz.overlay_heatmap(images[0], cam)
    assert overlay.shape == (28, 28, 3) and overlay.dtype == np.uint8
    out = viz.plot_gradcam(conv_model, images[:3], normalize, tmp_path / "gc.png", labels=labels)
    assert_png(out)
    assert_no_hooks(conv_model)

    with pytest.raises(ConfigError, match="one target class per image"):
        viz.compute_gradcam(conv_model, images[:2], normalize, target_classes=[1])
    with pytest.raises(ConfigError, match="not feature maps"):
        viz.compute_gradcam(conv_model, images[:2], normalize, target_layer="head.1")
    assert_no_hooks(conv_model)


def test_gradcam_equals_cam_for_a_gap_network(data):
    """With conv -> global average pool -> linear, Grad-CAM is exactly CAM (Zhou et al.):
    ReLU(sum_k w[c, k] A_k), scaled to a maximum of 1."""
    torch.manual_seed(1)
    conv = nn.Conv2d(1, 3, 3, padding=1)
    fc = nn.Linear(3, 10)
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)
    image = data[0][5]
    res = viz.compute_gradcam(model, image, normalize, target_classes=[7])
    with torch.no_grad():
        act = conv(normalize(torch.from_numpy(image[None])))[0]
        cam = torch.relu((fc.weight[7][:, None, None] * act).sum(0))
    expected = (cam / cam.max()).numpy()
    assert res.classes.tolist() == [7]
    np.testing.assert_allclose(res.cams[0], expected, atol=1e-5)


def test_gradcam_skips_mlp(tmp_path, data):
    images, _ = data
    mlp = make_mlp()
    assert viz.gradcam(mlp, images[0], normalize) is None
    assert viz.compute_gradcam(mlp, images[:2], normalize) is None
    assert viz.plot_gradcam(mlp, images[:2], normalize, tmp_path / "gc.png") is None
    assert_no_hooks(mlp)


# ------------------------------------------------------------------ PCA


def test_pca(tmp_path, data, conv_model):
    images, labels = data
    view = viz.pca_view(images.reshape(40, -1) / 255.0, labels, max_points=30, seed=0)
    assert view.coords.shape == (30, 2) and len(view.indices) == 30
    assert view.cumulative_variance[-1] == pytest.approx(1.0)
    assert np.all(np.diff(view.cumulative_variance) >= -1e-12)
    assert_png(viz.plot_pca_data(images, labels, tmp_path / "pca.png", max_points=30))

    feats = viz.image_features(conv_model, images[:7], normalize, batch_size=3)
    assert feats.shape == (7, 16)
    assert viz.image_features(make_mlp(), images[:5], normalize).shape == (5, 12)
    assert viz.image_features(nn.Sequential(nn.Flatten()), images[:2], normalize) is None
    assert_no_hooks(conv_model)
    out = viz.plot_pca_features(conv_model, images, labels, normalize, tmp_path / "pf.png")
    assert_png(out)
    assert_no_hooks(conv_model)
    with pytest.raises(ConfigError, match="labels has 3 items"):
        viz.plot_pca_data(images, labels[:3], tmp_path / "bad.png")
