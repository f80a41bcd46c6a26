"""Calibration metrics against hand-computed cases and torchmetrics; temperature scaling on a
trained run; what predict, serve and evaluate say about it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from fashionlab import evaluation as ev
from fashionlab.cli import main
from fashionlab.errors import ConfigError, RunError
from fashionlab.inference import Classifier
from fashionlab.runs import load_metrics, load_predictions


def _logits_for(probs: np.ndarray) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64))


def test_ece_and_mce_by_hand():
    # Four items, two classes. Confidences 0.9, 0.9 (bin 14 of 15, (0.8667, 0.9333]) with one
    # right; 0.6, 0.6 (bin 9, (0.5333, 0.6]) with both right.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    ece, mce = ev.calibration_errors(labels, _logits_for(probs))
    # bin 0.9: |0.5 - 0.9| = 0.4, bin 0.6: |1.0 - 0.6| = 0.4; weights 1/2 each
    assert ece == pytest.approx(0.4)
    assert mce == pytest.approx(0.4)
    rel = ev.reliability(labels, _logits_for(probs))
    assert rel.counts.sum() == 4 and rel.counts[13] == 2 and rel.counts[8] == 2


def test_a_confidence_on_a_bin_edge_belongs_to_the_bin_below():
    # 0.6 = 9/15 exactly: torchmetrics' (lower, upper] puts it in bin 8 (0-based)
    rel = ev.reliability(np.array([0]), _logits_for([[0.6, 0.4]]))
    assert rel.counts[8] == 1


def test_brier_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    labels = np.array([0, 2])
    expected = ((0.3**2 + 0.2**2 + 0.1**2) + (0.2**2 + 0.5**2 + 0.7**2)) / 2
    assert ev.brier_score(labels, _logits_for(probs)) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_and_mce_match_torchmetrics(seed):
    from torchmetrics.classification import MulticlassCalibrationError

    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (2000, 10))
    labels = np.where(rng.random(2000) < 0.7, logits.argmax(1), rng.integers(0, 10, 2000))
    ours_ece, ours_mce = ev.calibration_errors(labels, logits)
    probs = torch.from_numpy(ev.softmax(logits)).float()
    target = torch.from_numpy(labels)
    for norm, ours in (("l1", ours_ece), ("max", ours_mce)):
        theirs = MulticlassCalibrationError(num_classes=10, n_bins=15, norm=norm)(probs, target)
        assert ours == pytest.approx(float(theirs), abs=1e-5)


def test_temperature_scaling_finds_the_planted_temperature():
    # Labels drawn from softmax(z); the model reports 3 z: the best temperature is 3.
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (20000, 10))
    p = ev.softmax(z)
    labels = np.array([rng.choice(10, p=row) for row in p])
    assert ev.fit_temperature(labels, 3 * z) == pytest.approx(3.0, rel=0.05)
    out = ev.calibration_metrics(labels[:10000], 3 * z[:10000], labels[10000:], 3 * z[10000:])
    assert out["ece_calibrated"] < out["ece"] / 3
    assert out["nll_calibrated"] < ev.log_loss(labels[:10000], 3 * z[:10000])
    # temperature scaling never changes a prediction, so accuracy is untouched
    assert out["calibration"]["val_nll_calibrated"] < out["calibration"]["val_nll"]


def test_without_validation_logits_only_the_uncalibrated_numbers():
    out = ev.calibration_metrics(np.array([0, 1]), np.array([[2.0, 0.0], [0.0, 1.0]]))
    assert out["temperature"] is None and out["ece_calibrated"] is None
    assert "no validation logits" in out["calibration"]["note"]
    assert out["ece"] is not None


@pytest.mark.parametrize("bins", [0, -1, 1.5, True])
def test_bad_bins(bins):
    with pytest.raises(ConfigError, match="bins"):
        ev.calibration_errors(np.array([0]), np.array([[1.0, 0.0]]), bins=bins)


def test_bad_arrays_are_run_errors():
    with pytest.raises(RunError):
        ev.fit_temperature(np.array([0, 1]), np.array([[np.nan, 0.0], [0.0, 1.0]]))


def test_run_temperature_rejects_nonsense():
    assert ev.run_temperature({"temperature": 1.5}) == 1.5
    for bad in ({}, {"temperature": None}, {"temperature": -1}, {"temperature": "2"},
                {"temperature": float("inf")}, {"temperature": True}, []):  # fmt: skip
        assert ev.run_temperature(bad) is None


# ---------------------------------------------------------------- on a trained run


def test_a_run_saves_its_validation_logits_and_the_fitted_temperature(tiny_run_dir):
    pred = load_predictions(tiny_run_dir)
    metrics = load_metrics(tiny_run_dir)
    assert pred["val_logits"].shape == (len(pred["val_labels"]), 10)
    assert len(pred["val_indices"]) == len(pred["val_labels"]) > 0
    # the temperature is fitted on those logits and lowers their NLL
    t = ev.fit_temperature(pred["val_labels"], pred["val_logits"])
    assert metrics["temperature"] == pytest.approx(t)
    cal = metrics["calibration"]
    assert cal["val_nll_calibrated"] <= cal["val_nll"]
    assert cal["val_nll_calibrated"] < cal["val_nll"] - 1e-6 or abs(t - 1) < 1e-3
    for key in ("ece", "mce", "brier", "ece_calibrated", "nll_calibrated"):
        assert np.isfinite(metrics[key])
    assert metrics["ece"] == pytest.approx(ev.calibration_errors(pred["labels"], pred["logits"])[0])


def test_classifier_divides_by_the_temperature_and_says_unsure(tiny_run_dir):
    clf = Classifier.from_run(tiny_run_dir)
    t = load_metrics(tiny_run_dir)["temperature"]
    assert clf.temperature == pytest.approx(t) and clf.calibrated
    from fashionlab.data import prepare_data

    batch = prepare_data(clf.loaded.config)[0].test.images.numpy()[:20]
    raw = clf.probabilities(batch, calibrated=False)
    scaled = clf.probabilities(batch)
    np.testing.assert_allclose(scaled, ev.softmax(clf.logits(batch) / t), atol=1e-6)
    assert (raw.argmax(1) == scaled.argmax(1)).all()
    clf.unsure_below = 1.01  # every answer is unsure now: the top two are shown
    result = clf.classify(batch[0], top_k=1)
    assert result["unsure"] and len(result["top"]) == 2
    clf.unsure_below = 0.0
    result = clf.classify(batch[0], top_k=1)
    assert not result["unsure"] and len(result["top"]) == 1


def test_an_old_run_without_validation_logits_is_served_uncalibrated(tiny_run_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_run_dir, old)
    metrics = json.loads((old / "metrics.json").read_text())
    for key in ("temperature", "ece", "ece_calibrated", "calibration"):
        metrics.pop(key, None)
    (old / "metrics.json").write_text(json.dumps(metrics))
    clf = Classifier.from_run(old)
    assert clf.temperature is None and not clf.calibrated
    assert "uncalibrated" in clf.calibration_note
    assert clf.classify(np.zeros((28, 28), np.uint8))["calibrated"] is False


def test_predict_and_evaluate_report_calibration(tiny_run_dir, tmp_path, capsys):
    from PIL import Image

    from fashionlab.data import prepare_data

    config = Classifier.from_run(tiny_run_dir).loaded.config
    image = prepare_data(config)[0].test.images.numpy()[0]
    path = tmp_path / "item.png"
    Image.fromarray(image).save(path)
    assert main(["predict", str(tiny_run_dir), str(path), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["calibrated"] is True and row["temperature"] > 0 and "unsure" in row
    assert main(["predict", str(tiny_run_dir), str(path)]) == 0
    assert "calibrated by temperature scaling" in capsys.readouterr().out
    assert main(["evaluate", str(tiny_run_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["matches_stored"] and "ece" in out["compared"]
    assert out["temperature"] == pytest.approx(load_metrics(tiny_run_dir)["temperature"])
