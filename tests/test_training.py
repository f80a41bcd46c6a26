"""The training engine on real data subsets: run folder, resume, reproducibility, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fashionlab.cli import main
from fashionlab.errors import ConfigError, RunError
from fashionlab.models import build_config, list_models
from fashionlab.runs import load_history, load_predictions
from fashionlab.training import RunInterrupted, evaluate_run, resume, train

TINY = {"train_subset": 256, "eval_subset": 200, "batch_size": 64}


# The bit-identity tests compare whole runs in bf16, which CPUs without native bf16 emulate at
# about a fifth of the fp32 speed: a few steps of small batches compare the same code paths.
BIT_IDENTICAL = {"train_subset": 96, "eval_subset": 32, "batch_size": 16}


def tiny_config(model: str = "s4-ann", **overrides):
    return build_config(model, {**TINY, "epochs": 2, **overrides})


def test_run_folder_has_every_file(tmp_path):
    run = train(tiny_config(epochs=3, lr=5e-3), tmp_path, quiet=True)
    for name in (
        "config.yaml",
        "history.csv",
        "metrics.json",
        "predictions.npz",
        "model.safetensors",
        "model.json",
        "checkpoint.pt",
        "env.json",
        "complete",
    ):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "macro_f1", "weighted_f1"):
        assert 0 <= metrics[key] < 10
    assert metrics["test_accuracy"] > 0.4  # 3 epochs on 256 images learn something (chance 0.1)
    preds = load_predictions(run)
    assert preds["logits"].shape == (200, 10) and preds["labels"].shape == (200,)
    env = json.loads((run / "env.json").read_text())
    assert env["seed"] == 42 and env["torch"].startswith("2.13")
    assert [row["epoch"] for row in load_history(run)] == [1, 2, 3]
    assert not list(run.glob(".*.tmp"))  # atomic writes leave no temp files


def test_same_seed_same_history(tmp_path):
    a = train(tiny_config("s0-m2", name="a"), tmp_path, quiet=True)
    b = train(tiny_config("s0-m2", name="b"), tmp_path, quiet=True)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in load_history(a)]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in load_history(b)]


@pytest.mark.parametrize("model", ["s0-m2", "s3-base", "fast"])
def test_resume_after_interrupt_gives_identical_weights(tmp_path, model):
    # fast adds the EMA of the weights, one-cycle, Nesterov, label smoothing, TTA and
    # precision auto (bf16 on this CPU) to what the checkpoint must carry.
    """2 epochs straight == 1 epoch, Ctrl-C, resume, 1 epoch (BN, dropout, augment, plateau)."""
    straight = train(tiny_config(model, name="straight"), tmp_path, quiet=True)

    def interrupt_after_first(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted, match="--resume"):
        train(
            tiny_config(model, name="cut"),
            tmp_path,
            quiet=True,
            epoch_callback=interrupt_after_first,
        )
    cut = tmp_path / "cut"
    assert not (cut / "complete").exists() and (cut / "checkpoint.pt").exists()
    resume(cut, quiet=True)
    w1, w2 = load_file(straight / "model.safetensors"), load_file(cut / "model.safetensors")
    assert w1.keys() == w2.keys()
    for key in w1:
        assert torch.equal(w1[key], w2[key]), key


@pytest.mark.parametrize("model", ["s3-base", "fast"])
def test_evaluate_reproduces_stored_metrics(tmp_path, model):
    # fast: channels-last, EMA weights saved, flip TTA and bf16 autocast at evaluation too.
    run = train(tiny_config(model, epochs=1), tmp_path, quiet=True)
    metrics = evaluate_run(run)
    assert metrics["matches_stored"], metrics["mismatches"]
    assert main(["evaluate", str(run)]) == 0


def test_precision_auto_and_channels_last_are_resolved_and_recorded(tmp_path):
    from fashionlab.training.device import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    run = train(tiny_config("s2-cnn", epochs=1, precision="auto"), tmp_path, quiet=True)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["precision_used"] == resolve_precision("auto", cpu)
    assert metrics["channels_last"] is True
    mlp = train(tiny_config("s4-ann", epochs=1, name="mlp"), tmp_path, quiet=True)
    assert json.loads((mlp / "metrics.json").read_text())["channels_last"] is False


def test_auto_precision_never_picks_emulated_bf16_on_a_gpu(monkeypatch):
    from fashionlab.training.device import resolve_precision

    cuda = torch.device("cuda")
    # A pre-Ampere GPU: bf16 "supported" only through emulation.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation)  # fmt: skip
    assert resolve_precision("auto", cuda) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", cuda) == "bf16"


def _tta_case():
    """A small CNN in eval mode, five random uint8 images, the dataset normaliser, the CPU."""
    from fashionlab.data import make_normalizer
    from fashionlab.models import create_model

    torch.manual_seed(0)
    model = create_model("s2-cnn").eval()
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    return model, images, make_normalizer("dataset"), torch.device("cpu")


def test_tta_flip_averages_the_mirrored_logits():
    from fashionlab.training import PredictSettings, predict_logits

    model, images, norm, cpu = _tta_case()
    plain = predict_logits(model, images, norm, cpu)
    mirrored = predict_logits(model, images.flip(-1), norm, cpu)
    both = predict_logits(model, images, norm, cpu, PredictSettings(tta_flip=True))
    torch.testing.assert_close(both, (plain + mirrored) / 2)


def test_translate_moves_pixels_and_fills_zeros():
    from fashionlab.data import translate

    x = torch.arange(1, 10, dtype=torch.float32).reshape(1, 1, 3, 3)
    down_right = translate(x, 1, 1)[0, 0]
    assert down_right.tolist() == [[0, 0, 0], [0, 1, 2], [0, 4, 5]]
    assert translate(x, -1, -1)[0, 0].tolist() == [[5, 6, 0], [8, 9, 0], [0, 0, 0]]


def test_tta_shift_is_the_weighted_mean_of_the_translated_views():
    from fashionlab.data import translate
    from fashionlab.training import PredictSettings, predict_logits

    model, images, norm, cpu = _tta_case()
    x = norm(images)
    with torch.inference_mode():
        views = [x, x.flip(-1)]
        full = sum(model(v) for v in views)
        half = sum(model(translate(v, d, d)) for v in views for d in (-1, 1))
    expected = (full + half / 2) / 4
    got = predict_logits(model, images, norm, cpu, PredictSettings(tta_flip=True, tta_shift=True))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    only_shift = predict_logits(model, images, norm, cpu, PredictSettings(tta_shift=True))
    with torch.inference_mode():
        manual = (model(x) + (model(translate(x, -1, -1)) + model(translate(x, 1, 1))) / 2) / 2
    torch.testing.assert_close(only_shift, manual, rtol=1e-5, atol=1e-5)


def test_zero_validation_fraction_trains_without_validation(tmp_path):
    """val_fraction=0 (fixed-length recipes on all 60k): no validation pass, the last weights."""
    config = tiny_config("fast", val_fraction=0.0, epochs=2, tta_shift=True)
    run = train(config, tmp_path, quiet=True)
    history = load_history(run)
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(np.isnan(row["val_loss"]) and np.isnan(row["val_accuracy"]) for row in history)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_val_loss"] is None and metrics["best_epoch"] == 2
    assert metrics["evaluated_weights"] == "last"
    assert evaluate_run(run)["matches_stored"]


def test_refuses_to_overwrite_silently(tmp_path):
    train(tiny_config(epochs=1), tmp_path, quiet=True)
    with pytest.raises(RunError, match="--overwrite"):
        train(tiny_config(epochs=1), tmp_path, quiet=True)
    train(tiny_config(epochs=1), tmp_path, quiet=True, overwrite=True)


def test_resume_with_changed_config_is_refused(tmp_path, capsys):
    run = train(tiny_config(epochs=1), tmp_path, quiet=True)
    (run / "complete").unlink()
    code = main(["train", "--resume", str(run), "--lr", "0.5", "--quiet"])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changed config" in err[0] and "lr" in err[0]


def test_early_stopping_and_best_weights(tmp_path):
    # A huge lr makes validation loss worse after epoch 1, so patience 1 stops at epoch 2.
    run = train(
        tiny_config(
            "s4-ann", epochs=6, lr=0.5, optimizer="sgd", momentum=0.0, early_stopping_patience=1
        ),
        tmp_path,
        quiet=True,
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] <= 6
    history = load_history(run)
    best = min(history, key=lambda r: r["val_loss"])
    assert metrics["best_epoch"] == best["epoch"]


def test_nan_loss_stops_with_clear_message(tmp_path, capsys):
    code = main(
        [
            "train",
            "--model",
            "s4-ann",
            "--lr",
            "1e30",
            "--optimizer",
            "sgd",
            "--train-subset",
            "256",
            "--eval-subset",
            "100",
            "--epochs",
            "3",
            "--quiet",
            "--runs-dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "loss became" in err[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "s0-m9"], "unknown model"),
        (["--model", "s0-m1", "--lr", "-1"], "lr"),
        (["--model", "s0-m1", "--epochs", "0"], "epochs"),
        (["--model", "s0-m1", "--batch-size", "0"], "batch_size"),
        (["--model", "s0-m1", "--set", "learning_rate=0.1"], "unknown key"),
        (["--model", "mlp", "--set", "model_args.dropout=1.5"], "dropout"),
        (["--model", "s0-m1", "--set", "optimizer=rmsprop"], "optimizer"),
        (["--model", "s0-m1", "--set", "val_fraction=0"], "val_fraction=0 leaves no validation"),
        (["--model", "fast", "--set", "val_fraction=0", "--set", "scheduler=plateau"], "plateau"),
    ],
)
def test_bad_config_is_one_line_error(tmp_path, capsys, args, message):
    code = main(["train", *args, "--runs-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and message in err[0], err


def test_unknown_key_suggests_close_name():
    with pytest.raises(ConfigError, match="did you mean"):
        build_config("s0-m1", {"epoch": 3})


@pytest.mark.parametrize("damage", ["missing", "corrupt", "mismatched"])
def test_damaged_weights_are_clear_errors(tmp_path, capsys, damage):
    run = train(tiny_config(epochs=1), tmp_path, quiet=True)
    weights = run / "model.safetensors"
    if damage == "missing":
        weights.unlink()
    elif damage == "corrupt":
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        other = train(tiny_config("s2-ann", epochs=1), tmp_path, quiet=True)
        weights.write_bytes((other / "model.safetensors").read_bytes())
    assert main(["evaluate", str(run)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.safetensors" in err[0], err


def test_cli_train_reproduces_recipe(tmp_path, capsys):
    code = main(
        [
            "train",
            "--model",
            "s0-m1",
            "--epochs",
            "1",
            "--train-subset",
            "128",
            "--eval-subset",
            "100",
            "--runs-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    import yaml

    config = yaml.safe_load((tmp_path / "s0-m1-seed42" / "config.yaml").read_text())
    assert config["optimizer"] == "adam" and config["batch_size"] == 128
    assert config["normalization"] == "dataset" and config["epochs"] == 1
    assert np.isclose(config["lr"], 1e-3)


def test_bf16_precision_trains_and_evaluates(tmp_path):
    run = train(tiny_config("s3-base", epochs=1, precision="bf16"), tmp_path, quiet=True)
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["test_loss"])
    assert evaluate_run(run)["matches_stored"]


@pytest.mark.parametrize("model", list_models())
def test_every_registered_model_trains_from_the_cli(tmp_path, model):
    code = main(
        [
            "train",
            "--model",
            model,
            "--epochs",
            "1",
            "--train-subset",
            "128",
            "--eval-subset",
            "100",
            "--runs-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    run = tmp_path / f"{model}-seed42"
    assert code == 0 and (run / "complete").exists()
    assert load_predictions(run)["logits"].shape == (100, 10)


def _assert_same_runs(runs: dict) -> None:
    """Every run folder in `runs` has the first one's history (but its timings) and weights,
    to the bit."""
    histories = {
        name: [{k: v for k, v in r.items() if k != "seconds"} for r in load_history(run)]
        for name, run in runs.items()
    }
    weights = {name: load_file(run / "model.safetensors") for name, run in runs.items()}
    first, *others = runs
    for name in others:
        assert histories[name] == histories[first], name
        assert weights[name].keys() == weights[first].keys()
        assert all(torch.equal(weights[name][k], weights[first][k]) for k in weights[name])


@pytest.mark.parametrize("model", ["s2-cnn", "s0-m2"])
def test_the_rewritten_training_graph_trains_bit_identically(tmp_path, monkeypatch, model):
    # s2-cnn and s0-m2 (conv -> BatchNorm -> ReLU -> pool) train through accel's training view
    # (max-pool before ReLU, as one compiled pass where the kernel builds); the same run through
    # PyTorch's pool and ReLU, and on the model as built, must give the same history and the
    # same weights, to the bit.
    import fashionlab.accel.pooling as pooling
    import fashionlab.accel.view as fusion

    config = tiny_config(model, **BIT_IDENTICAL, precision="bf16")
    calls = []
    kernel = fusion.pool_relu
    monkeypatch.setattr(fusion, "pool_relu", lambda x: calls.append(1) or kernel(x))
    runs = {"native": train(config.model_copy(update={"name": "native"}), tmp_path, quiet=True)}
    assert calls or pooling._kernel() is None  # the kernel ran wherever it is in use
    monkeypatch.setattr(fusion, "native_pool_applies", lambda x, pool: False)
    runs["view"] = train(config.model_copy(update={"name": "view"}), tmp_path, quiet=True)
    import fashionlab.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "training_view", lambda model: model)
    runs["plain"] = train(config.model_copy(update={"name": "plain"}), tmp_path, quiet=True)
    _assert_same_runs(runs)


def test_dropout_masks_from_the_kernel_train_bit_identically(tmp_path, monkeypatch):
    # S0-M2 has dropout on channels-last bf16 feature maps and in its head; its masks drawn by
    # the compiled kernel and by PyTorch's bernoulli_ must give the same run, to the bit.
    import fashionlab.accel.bernoulli as bernoulli

    config = tiny_config("s0-m2", **BIT_IDENTICAL, precision="bf16")
    runs = {"kernel": train(config.model_copy(update={"name": "kernel"}), tmp_path, quiet=True)}
    if bernoulli._kernel() is not None:
        env = json.loads((runs["kernel"] / "env.json").read_text())
        assert env["native_kernels"]["dropout_mask"].startswith("compiled")
    monkeypatch.setattr(bernoulli, "_applies", lambda mask: False)
    runs["pytorch"] = train(config.model_copy(update={"name": "pytorch"}), tmp_path, quiet=True)
    _assert_same_runs(runs)


def test_the_speed_run_net_trains_bit_identically_through_the_pool_kernel(tmp_path, monkeypatch):
    # `fast` pools before its BatchNorm: its MaxPool2d trains through the compiled kernel,
    # and a run with PyTorch's max-pool instead must be the same run, to the bit.
    import fashionlab.accel.pooling as pooling

    config = tiny_config("fast", **BIT_IDENTICAL, precision="bf16", epochs=1)
    calls = []
    kernel = pooling.max_pool_2x2
    monkeypatch.setattr(pooling, "max_pool_2x2", lambda x: calls.append(1) or kernel(x))
    runs = {"kernel": train(config.model_copy(update={"name": "kernel"}), tmp_path, quiet=True)}
    assert calls or pooling._kernel() is None
    monkeypatch.setattr(pooling, "native_pool_applies", lambda x, pool: False)
    runs["pytorch"] = train(config.model_copy(update={"name": "pytorch"}), tmp_path, quiet=True)
    _assert_same_runs(runs)


@pytest.mark.parametrize(
    ("model", "precision", "args"),
    [
        ("s0-m2", "bf16", None),
        ("s0-m2", "fp32", None),
        ("fast", "bf16", {"widths": [16, 32, 64, 128], "act": "relu"}),
    ],
)
def test_batchnorm_kernel_trains_bit_identically(tmp_path, monkeypatch, model, precision, args):
    # S0-M2's conv -> BatchNorm -> ReLU blocks and the speed-run net's BatchNorms train through
    # the compiled BatchNorm (+ ReLU) kernel; a run with PyTorch's BatchNorm and ReLU instead
    # must be the same run, to the bit: history, weights and running statistics.
    import fashionlab.accel.batchnorm as batchnorm

    extra = {"epochs": 1} if model == "fast" else {}
    if args:
        extra["model_args"] = args
    config = tiny_config(model, **BIT_IDENTICAL, precision=precision, **extra)
    calls = []
    kernel = batchnorm.batch_norm
    monkeypatch.setattr(batchnorm, "batch_norm", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    runs = {"kernel": train(config.model_copy(update={"name": "kernel"}), tmp_path, quiet=True)}
    if batchnorm._kernel() is not None:
        assert calls
        env = json.loads((runs["kernel"] / "env.json").read_text())
        assert env["native_kernels"]["batchnorm"].startswith("compiled")
    monkeypatch.setattr(batchnorm, "native_batch_norm_applies", lambda x, bn: False)
    runs["pytorch"] = train(config.model_copy(update={"name": "pytorch"}), tmp_path, quiet=True)
    _assert_same_runs(runs)


def test_with_every_kernel_off_training_gives_the_same_run(tmp_path, monkeypatch):
    # The fallback as a user gets it (no compiler, a rejected kernel, FASHIONLAB_NATIVE=0):
    # PyTorch's operators everywhere, and the same history and weights, to the bit.
    import fashionlab.accel.batchnorm as batchnorm
    import fashionlab.accel.bernoulli as bernoulli
    import fashionlab.accel.build as build
    import fashionlab.accel.pooling as pooling

    kernels = (pooling._kernel, bernoulli._kernel, batchnorm._kernel)
    config = tiny_config("s0-m2", **BIT_IDENTICAL, precision="bf16")
    runs = {"kernels": train(config.model_copy(update={"name": "kernels"}), tmp_path, quiet=True)}
    monkeypatch.setenv("FASHIONLAB_NATIVE", "0")
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.setattr(build, "_reasons", {})
    for kernel in kernels:
        kernel.cache_clear()
    try:
        runs["pytorch"] = train(config.model_copy(update={"name": "pytorch"}), tmp_path, quiet=True)
        env = json.loads((runs["pytorch"] / "env.json").read_text())
        assert set(env["native_kernels"].values()) == {"not used (FASHIONLAB_NATIVE=0)"}
    finally:
        for kernel in kernels:
            kernel.cache_clear()  # later tests load the real kernels again
    _assert_same_runs(runs)
