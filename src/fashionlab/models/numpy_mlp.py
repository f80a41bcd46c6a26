"""`numpy-mlp`: the from-scratch NumPy MLP (fashionlab.numpy_nn) as a registered model.

It trains through `fashionlab.training.numpy_trainer` into the same run-folder format as the PyTorch
models, so studies and reports treat it like any other model. With `features_run` it learns
from a trained CNN run's penultimate-trunk features instead of pixels (S1-FEAT).
"""

from __future__ import annotations

from typing import Any

from fashionlab.models._registry import register_model

# S1-MLP: 48k/12k split, z-scored pixels (train-only statistics), mini-batch gradient descent
# with lr 1e-3, up to 200 epochs with early stopping (patience 5) restoring the best epoch.
# Plain SGD is what the study's update rule says; `--optimizer adam` converges in far fewer
# epochs. The study does not state its batch size; 16 is the one whose early stops match its
# logs, while at 64 plain SGD is still improving when the 200 epochs run out (measured in
# docs/reproductions/notes.yaml).
S1_MLP: dict[str, Any] = {
    "epochs": 200,
    "batch_size": 16,
    "optimizer": "sgd",
    "momentum": 0.0,
    "lr": 1e-3,
    "normalization": "zscore",
    "split": "random",
    "val_fraction": 0.2,
    "split_seed": 42,
    "seed": 42,
    "early_stopping_patience": 5,
    "use_best_weights": True,
}


@register_model(
    "numpy-mlp",
    study="S1",
    description="From-scratch NumPy MLP: model_args hidden, activation, dropout, init, "
    "features_run",
    recipe=S1_MLP,
    framework="numpy",
)
def numpy_mlp(
    hidden: list[int] | tuple[int, ...] = (128,),
    activation: str = "relu",
    dropout: float = 0.0,
    init: str = "he",
    features_run: str | None = None,
):
    """An unfitted `NumpyMLP`; the trainer sets lr, batch size, epochs, patience and seed."""
    from fashionlab.numpy_nn import NumpyMLP
    from fashionlab.numpy_nn._validation import check_hyperparameters

    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    estimator = NumpyMLP(hidden_layers=hidden, activation=activation, dropout=dropout, init=init)
    check_hyperparameters(estimator.get_params())  # bad model_args fail before any data loads
    return estimator
