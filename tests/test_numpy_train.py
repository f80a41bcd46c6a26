"""The NumPy MLP as a registered model: run folder, evaluate, CNN features -> MLP in a study."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fashionlab.cli import main
from fashionlab.errors import ConfigError
from fashionlab.models import build_config
from fashionlab.runs import load_history, load_predictions
from fashionlab.studies import run_study
from fashionlab.training import evaluate_run, train

TINY = {"train_subset": 1000, "eval_subset": 300, "epochs": 3, "optimizer": "adam"}


def test_numpy_mlp_writes_a_standard_run_folder(tmp_path):
    config = build_config("numpy-mlp", {**TINY, "model_args": {"hidden": [64]}})
    run = train(config, tmp_path, quiet=True)
    for name in (
        "config.yaml",
        "history.csv",
        "metrics.json",
        "predictions.npz",
        "model.npz",
        "model.json",
        "env.json",
        "complete",
    ):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.6 and metrics["params"] == 784 * 64 + 64 + 64 * 10 + 10
    assert metrics["precision_used"] == "fp32"  # the reports' precision column
    assert len(load_history(run)) == 3
    assert load_predictions(run)["logits"].shape == (300, 10)
    assert evaluate_run(run)["matches_stored"]


def test_an_interrupted_numpy_run_resumes_from_its_last_epoch(tmp_path, capsys):
    config = build_config("numpy-mlp", {**TINY, "epochs": 4, "model_args": {"dropout": 0.2}})
    whole = train(config, tmp_path / "whole", quiet=True)
    assert (whole / "checkpoint.pt").is_file()  # the state after epoch 3, the last one kept
    # The same run stopped after epoch 3: its folder as it was before the last epoch.
    cut = tmp_path / "cut" / whole.name
    shutil.copytree(whole, cut)
    for name in ("complete", "metrics.json", "model.npz", "model.json", "predictions.npz"):
        (cut / name).unlink()
    (cut / "history.csv").write_text(
        "\n".join((whole / "history.csv").read_text().splitlines()[:4]) + "\n"
    )
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    assert (cut / "complete").exists()
    a, b = load_predictions(whole), load_predictions(cut)
    assert np.array_equal(a["logits"], b["logits"])  # epoch 4 trained again, bit for bit
    losses = [[r["val_loss"] for r in load_history(run)] for run in (whole, cut)]
    assert losses[0] == losses[1] and len(losses[1]) == 4
    # Resumed, not retrained: epochs 1-3 keep the timings they were measured with.
    seconds = [[r["seconds"] for r in load_history(run)] for run in (whole, cut)]
    assert seconds[1][:3] == seconds[0][:3] and seconds[1][3] != seconds[0][3]
    # A checkpoint that is not one is a one-line error, and nothing is trained from it.
    for name in ("complete", "metrics.json"):
        (cut / name).unlink()
    (cut / "checkpoint.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(["train", "--resume", str(cut), "--quiet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint" in err[0] and "--overwrite" in err[0]


def test_numpy_runs_give_blas_the_run_threads(tmp_path, monkeypatch):
    from threadpoolctl import threadpool_info

    from fashionlab.numpy_nn import NumpyMLP

    seen: list[int] = []
    fit = NumpyMLP.fit

    def spy(self, *args, **kwargs):
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(NumpyMLP, "fit", spy)
    config = build_config("numpy-mlp", {**TINY, "epochs": 1, "threads": 1})
    run = train(config, tmp_path, quiet=True)
    assert seen and set(seen) == {1}  # not one BLAS thread per core beside the other workers
    assert json.loads((run / "env.json").read_text())["threads"] == 1


def test_features_dead_on_the_training_images_are_zeroed_not_blown_up():
    from fashionlab.training.numpy_trainer import standardize_features

    rng = np.random.default_rng(0)
    train = np.maximum(rng.standard_normal((500, 4)), 0).astype(np.float32)  # ReLU features
    train[:, 2] = 0.0  # dead on every training image
    train[:, 3] = 1e-7 * rng.random(500)  # as good as dead
    test = np.maximum(rng.standard_normal((100, 4)), 0).astype(np.float32)  # they fire here
    z = standardize_features({"train": train, "test": test})
    assert np.abs(z["test"]).max() < 10 and z["test"].dtype == np.float32
    assert not z["test"][:, 2:].any() and not z["train"][:, 2:].any()
    live = (test[:, :2] - train[:, :2].mean(0)) / train[:, :2].std(0)
    np.testing.assert_allclose(z["test"][:, :2], live, rtol=1e-5)
    np.testing.assert_allclose(z["train"][:, :2].std(0), 1, rtol=1e-4)


def test_numpy_mlp_recipe_is_s1():
    config = build_config("numpy-mlp")
    assert (config.optimizer, config.lr, config.batch_size) == ("sgd", 1e-3, 16)
    assert (config.normalization, config.val_fraction, config.early_stopping_patience) == (
        "zscore",
        0.2,
        5,
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"optimizer": "adamw"}, "adam or sgd"),
        ({"erasing": 0.5}, "random erasing"),
        ({"crop_padding": 2, "crop_mode": "reflect"}, "reflect crop padding"),
        ({"model_args": {"activation": "swish"}}, "activation"),
    ],
)
def test_unsupported_settings_are_clear_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(build_config("numpy-mlp", {**TINY, **overrides}), tmp_path, quiet=True)


def test_cli_train_numpy_mlp(tmp_path, capsys):
    code = main(
        [
            "train",
            "--model",
            "numpy-mlp",
            "--train-subset",
            "500",
            "--eval-subset",
            "200",
            "--epochs",
            "2",
            "--optimizer",
            "adam",
            "--runs-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0 and (tmp_path / "numpy-mlp-seed42" / "complete").exists()


def test_cnn_features_feed_the_numpy_mlp_in_a_study(tmp_path):
    study = tmp_path / "s1-tiny.yaml"
    study.write_text(
        "name: s1-tiny\nseeds: [1]\n"
        "overrides: {train_subset: 600, eval_subset: 200, epochs: 1}\n"
        "runs:\n"
        "  - label: cnn\n    model: s1-cnn5\n"
        "    overrides: {model_args: {channels: [8, 8, 8, 8, 8], hidden: 16}}\n"
        "  - label: feat\n    model: numpy-mlp\n    features_from: cnn\n"
        "    overrides: {optimizer: adam, epochs: 3, model_args: {hidden: [16]}}\n"
        "compare:\n  - {a: feat, b: cnn}\n"
    )
    out = run_study(study, tmp_path / "out", quiet=True, make_report=False)
    feat = out / "feat-seed1"
    metrics = json.loads((feat / "metrics.json").read_text())
    assert metrics["input_features"] == 8  # the CNN's C5 channels, not 784 pixels
    assert evaluate_run(feat)["matches_stored"]
    summary = json.loads((out / "study.json").read_text())
    assert summary["comparisons"][0]["per_seed"][0]["p_value"] <= 1


def test_numpy_nn_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, fashionlab.numpy_nn; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
