"""Training recipes of the reference studies, as data (keys are `TrainConfig` fields).

Each comes from the reference study's "Train:" lines and split decisions (the studies are
summarised in docs/results.md); a value the study leaves unstated keeps the
`TrainConfig` default, except where named here. The registry attaches one to every model, so
`fashionlab train --model s0-m1` reproduces the study setting.

Precision is `TrainConfig`'s default, `auto` (bf16 where the hardware has it natively), for
each recipe whose study's headline models scored within 0.3 points of fp32 over three seeds
(`benchmarks/precision_check.py`); a recipe not yet checked says `fp32`."""

from __future__ import annotations

from typing import Any

# S0: 54k/6k random split with seed 42; the epoch with the lowest val loss is tested.
S0_M1: dict[str, Any] = {
    "epochs": 12,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "scheduler": "none",
    "normalization": "dataset",  # mean 0.2860 / std 0.3530
    "split": "random",
    "val_fraction": 0.1,
    "split_seed": 42,
    "seed": 42,
    "use_best_weights": True,
}

S0_M2: dict[str, Any] = {
    **S0_M1,
    "optimizer": "adamw",
    "weight_decay": 1e-5,
    "scheduler": "plateau",
    "plateau_factor": 0.5,
    "plateau_patience": 2,
    "normalization": "half",  # mean 0.5 / std 0.5
    "crop_padding": 4,  # RandomCrop(28, padding=4) pads with zeros
    "crop_mode": "zero",
    "hflip": True,
}

# S1: 48k/12k, inputs in [-1, 1].
S1_CNN5: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 64,
    "optimizer": "adam",
    "lr": 1e-3,
    "normalization": "half",
    "split": "random",
    "val_fraction": 0.2,
    "split_seed": 42,
    "seed": 42,
    "precision": "fp32",  # bf16 not yet checked against fp32 on S1's grid
}

# S2: 54k/6k, inputs in [0, 1].
S2: dict[str, Any] = {
    "epochs": 20,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 1e-3,
    "normalization": "unit",
    "split": "random",
    "val_fraction": 0.1,
    "split_seed": 42,
    "seed": 42,
}

# S3: 54k/6k, inputs in [-1, 1], no augmentation.
S3: dict[str, Any] = {
    "epochs": 20,
    "batch_size": 64,
    "optimizer": "adam",
    "lr": 1e-3,
    "normalization": "half",
    "split": "random",
    "val_fraction": 0.1,
    "split_seed": 42,
    "seed": 42,
    "precision": "auto",  # bf16 within 0.3 points of fp32 over 3 seeds (docs/precision.md)
}

# S4: all 70k pooled, then 60/20/20 stratified; val_fraction is the validation share of the pool.
S4: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,  # Keras default
    "optimizer": "adam",
    "lr": 1e-3,
    "normalization": "unit",
    "split": "pooled",
    "val_fraction": 0.2,
    "split_seed": 42,
    "seed": 42,
}

# General-purpose MLP: not a study; a reasonable default with early stopping.
MLP: dict[str, Any] = {
    "epochs": 30,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 1e-3,
    "normalization": "dataset",
    "split": "stratified",
    "val_fraction": 0.1,
    "split_seed": 42,
    "seed": 42,
    "early_stopping_patience": 5,
}


# The speed-run (`fast`): everything that buys accuracy per CPU-second. Whole-batch pad-crop
# and flip, label smoothing, Nesterov SGD under a one-cycle schedule (warm-up, then decay),
# bf16 where the hardware has it, an EMA of the weights, flip test-time augmentation; the last
# weights are tested (the schedule ends annealed), and nothing stops early.
FAST: dict[str, Any] = {
    "epochs": 16,
    "batch_size": 256,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "scheduler": "onecycle",
    "label_smoothing": 0.1,
    "normalization": "dataset",
    "split": "random",
    "val_fraction": 0.1,
    "split_seed": 42,
    "seed": 42,
    "crop_padding": 2,
    "hflip": True,
    "ema_decay": 0.99,
    "tta_flip": True,
    "early_stopping_patience": None,
    "use_best_weights": False,
}
