"""fashionlab.inference.Classifier: classify, Grad-CAM, the ONNX backend, thread safety."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from fashionlab.data import CLASS_NAMES, prepare_data
from fashionlab.errors import ConfigError, ImageError, RunError
from fashionlab.inference import Classifier
from fashionlab.models import create_model
from fashionlab.runs import load_predictions
from fashionlab.training import predict_logits


@pytest.fixture(scope="module")
def run_dir(tiny_run_dir):
    return tiny_run_dir


@pytest.fixture(scope="module")
def classifier(run_dir):
    return Classifier.from_run(run_dir)


@pytest.fixture(scope="module")
def test_images(run_dir, classifier):
    """The run's test images, in the order of its saved predictions."""
    split, _ = prepare_data(classifier.loaded.config)
    return split.test.images.numpy()


def test_classify_returns_every_class_and_a_sorted_top_k(classifier, test_images):
    result = classifier.classify(test_images[0], top_k=4)
    assert result["classes"] == list(CLASS_NAMES)
    probs = np.array(result["probabilities"])
    assert probs.shape == (10,) and np.all(probs >= 0)
    assert probs.sum() == pytest.approx(1.0, abs=1e-9)
    top = result["top"]
    assert len(top) == 4
    assert [t["probability"] for t in top] == sorted(probs, reverse=True)[:4]
    assert top[0]["class"] == result["label"] == CLASS_NAMES[int(probs.argmax())]
    for t in top:
        assert t["probability"] == result["probabilities"][CLASS_NAMES.index(t["class"])]


def test_logits_match_the_runs_saved_test_predictions(run_dir, classifier, test_images):
    saved = load_predictions(run_dir)
    got = classifier.logits(test_images)
    assert got.shape == saved["logits"].shape
    np.testing.assert_allclose(got, saved["logits"], atol=1e-4)


def test_top_k_bounds(classifier, test_images):
    one = classifier.classify(test_images[0], top_k=1)
    assert len(one["top"]) == (2 if one["unsure"] else 1)  # unsure: the top two
    assert len(classifier.classify(test_images[0], top_k=10)["top"]) == 10
    for bad in (0, 11, -1, True, 2.5):
        with pytest.raises(ConfigError):
            classifier.classify(test_images[0], top_k=bad)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((28, 28), dtype=np.float32),  # not uint8
        np.zeros((32, 32), dtype=np.uint8),  # wrong size
        np.zeros((28, 28, 3), dtype=np.uint8),  # colour
        np.zeros((2, 28, 28), dtype=np.uint8),  # a batch where one image is expected
    ],
)
def test_bad_images_are_image_errors(classifier, image):
    with pytest.raises(ImageError):
        classifier.classify(image)


def test_gradcam_is_a_28x28_map_in_unit_range(classifier, test_images):
    assert classifier.has_gradcam
    cam = classifier.gradcam(test_images[0])
    assert cam.shape == (28, 28) and cam.dtype == np.float32
    assert 0.0 <= cam.min() and cam.max() <= 1.0 and cam.max() > 0
    # another class's evidence lies elsewhere: the map depends on the target
    other = classifier.gradcam(test_images[0], target_class=1)
    assert other.shape == (28, 28)
    # Grad-CAM must leave the model as it found it: eval mode, no gradients stored
    assert not classifier.loaded.model.training
    assert all(p.grad is None for p in classifier.loaded.model.parameters())


def test_gradcam_of_an_mlp_is_none(classifier, test_images):
    mlp = create_model("s4-ann").eval()
    loaded = dataclasses.replace(classifier.loaded, model=mlp)
    clf = Classifier(loaded)
    assert not clf.has_gradcam
    assert clf.gradcam(test_images[0]) is None
    assert clf.classify(test_images[0])["label"] in CLASS_NAMES


def test_onnx_backend_exports_once_and_matches_torch(run_dir, classifier, test_images):
    pytest.importorskip("onnxruntime", reason="needs the [export] extra (onnx, onnxruntime)")
    from fashionlab.inference.onnx import ONNX_FILENAME

    onnx_path = run_dir / ONNX_FILENAME
    onnx_path.unlink(missing_ok=True)
    onnx = Classifier.from_run(run_dir, backend="onnx")
    assert onnx.onnx_path == onnx_path and onnx_path.is_file()
    # The ONNX graph computes in fp32; the run may predict in bf16 (`auto`), so compare with
    # the same model's fp32 pass.
    fp32 = dataclasses.replace(classifier.settings, precision="fp32")
    logits = predict_logits(
        classifier.loaded.model,
        torch.from_numpy(test_images[:50]),
        classifier.loaded.normalizer,
        settings=fp32,
    )
    np.testing.assert_allclose(onnx.logits(test_images[:50]), logits.numpy(), atol=1e-4)
    assert onnx.classify(test_images[3])["label"] == classifier.classify(test_images[3])["label"]
    assert onnx.gradcam(test_images[3]).shape == (28, 28)  # from the torch model

    # A file exported from these weights is reused, whatever its age.
    mtime = onnx_path.stat().st_mtime_ns
    weights_mtime = (run_dir / "model.safetensors").stat().st_mtime
    os.utime(onnx_path, (weights_mtime - 100, weights_mtime - 100))
    Classifier.from_run(run_dir, backend="onnx")
    assert onnx_path.stat().st_mtime < weights_mtime
    # One from other weights (planted beside them, newer than them) is exported again.
    from fashionlab.inference.onnx import export_onnx

    export_onnx(create_model(classifier.model_name).eval(), onnx_path)
    planted = onnx_path.read_bytes()
    assert onnx_path.stat().st_mtime_ns > mtime
    again = Classifier.from_run(run_dir, backend="onnx")
    assert onnx_path.read_bytes() != planted
    np.testing.assert_allclose(again.logits(test_images[:50]), logits.numpy(), atol=1e-4)


def test_bad_run_and_backend(tmp_path, run_dir):
    with pytest.raises(RunError):
        Classifier.from_run(tmp_path / "nope")
    with pytest.raises(ConfigError):
        Classifier.from_run(run_dir, backend="tensorflow")


def test_concurrent_classify_and_gradcam_match_sequential(classifier, test_images):
    images = test_images[:4]
    expected = [(classifier.classify(im), classifier.gradcam(im)) for im in images]
    threads = torch.get_num_threads()

    def work(i: int):
        im = images[i % len(images)]
        return i % len(images), classifier.classify(im), classifier.gradcam(im)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(24)))
    for k, result, cam in results:
        assert result == expected[k][0]
        np.testing.assert_array_equal(cam, expected[k][1])
    assert torch.get_num_threads() == threads


@pytest.mark.extra("export")  # compares with the ONNX backend too
def test_a_run_tested_with_tta_is_classified_with_the_same_views(tmp_path):
    """`fast` tests with flip + shift TTA; predict/serve must give the logits it was scored
    with, on both backends, not one plain forward pass."""
    from fashionlab.models import build_config
    from fashionlab.training import train

    overrides = {"epochs": 1, "train_subset": 256, "eval_subset": 100, "precision": "fp32"}
    # logit_scale 1: logits large enough after one tiny epoch for the views to differ clearly.
    tta = {"tta_flip": True, "tta_shift": True, "model_args": {"logit_scale": 1.0}}
    config = build_config("fast", {**overrides, **tta})
    run = train(config, tmp_path, quiet=True)
    clf = Classifier.from_run(run)
    images = prepare_data(clf.loaded.config)[0].test.images.numpy()
    got = clf.logits(images)
    np.testing.assert_allclose(got, load_predictions(run)["logits"], atol=1e-4)
    with torch.inference_mode():
        plain = clf.loaded.model(clf.loaded.normalizer(torch.from_numpy(images))).numpy()
    assert np.abs(got - plain).max() > 1e-3  # the views do change the logits
    onnx = Classifier.from_run(run, backend="onnx")
    np.testing.assert_allclose(onnx.logits(images), got, atol=1e-4)


@pytest.mark.extra("export")  # compares with the ONNX backend too
def test_a_bf16_run_is_classified_with_the_logits_of_its_own_test_pass(tmp_path, capsys):
    """`fast` trains and tests in bf16 where the CPU has it (`precision: auto`); the classifier
    behind predict and serve must take the same path, not an fp32 forward pass."""
    from fashionlab.inference.imaging import prepare_image
    from fashionlab.models import build_config
    from fashionlab.serve import create_app
    from fashionlab.training import PredictSettings, predict_logits, train

    overrides = {"epochs": 1, "train_subset": 256, "eval_subset": 100, "precision": "bf16"}
    config = build_config("fast", {**overrides, "model_args": {"logit_scale": 1.0}})
    run = train(config, tmp_path, quiet=True)
    clf = Classifier.from_run(run)
    assert clf.settings == PredictSettings("bf16", True, False)  # fast's recipe: flip TTA
    images = prepare_data(clf.loaded.config)[0].test.images.numpy()
    saved = load_predictions(run)["logits"]
    assert np.array_equal(clf.logits(images), saved)  # bit for bit
    fp32 = dataclasses.replace(clf.settings, precision="fp32")
    plain = predict_logits(
        clf.loaded.model, torch.from_numpy(images), clf.loaded.normalizer, settings=fp32
    )
    assert not np.array_equal(plain.numpy(), saved)  # an fp32 pass is not the run's own

    # predict (the CLI) and serve classify one image through that classifier.
    from fashionlab.cli import main

    item = images[7]
    np.save(tmp_path / "item.npy", item)
    prepared, _ = prepare_image(tmp_path.joinpath("item.npy").read_bytes())
    expected = clf.classify(prepared, top_k=10)
    from fastapi.testclient import TestClient

    with TestClient(create_app(run), base_url="http://localhost") as client:
        served = client.post(
            "/api/predict",
            files={"file": ("item.npy", (tmp_path / "item.npy").read_bytes(), "x")},
            data={"top_k": "10"},
        ).json()
    assert served["probabilities"] == expected["probabilities"]
    capsys.readouterr()
    args = ["predict", str(run), str(tmp_path / "item.npy"), "--json", "--top-k", "10"]
    assert main(args) == 0
    import json

    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["predictions"] == expected["top"]
